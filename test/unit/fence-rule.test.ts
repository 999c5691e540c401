// The fencing rules on their own: tables of peer views and own polls in,
// verdicts out. The end-to-end tests in test/e2e/fence.test.ts, test/e2e/peers-tls.test.ts and
// test/e2e/partition.test.ts show the same rules between real responders and real
// PostgreSQL nodes, the last across real links.
import { describe, expect, test } from "bun:test";
import {
  createIsolationMemory,
  fenceReason,
  fencingPeer,
  guardMode,
  holdingPeer,
  isolated,
  isolationReason,
  liftReason,
  promotionUntil,
  standing,
  type IsolationFacts,
  type PeerSeen,
  type PeerView,
} from "../../src/cluster/guard-rules.ts";
import type { PollFacts } from "../../src/poll/facts.ts";
import { primaryFacts } from "../kit/facts.ts";

const CLUSTER = "7712175825285183157";
const OTHER = "7712175825285183999";

/** This node's own poll: a primary of CLUSTER on timeline 1 unless a case says otherwise. */
const own = (over: Partial<PollFacts>) => primaryFacts({ systemId: CLUSTER, ...over });

function peer(url: string, over: Partial<PeerView>): PeerView {
  return {
    url,
    result: "ok",
    detail: "answering",
    role: "primary",
    state: "primary",
    timeline: 1,
    systemId: CLUSTER,
    answeredAt: 0,
    askedAt: 0,
    ...over,
  };
}

const A = "http://a:8008";
const B = "http://b:8008";

describe("who fences this node", () => {
  test.each<[string, Partial<PollFacts> | undefined, PeerView[], string | undefined]>([
    ["a peer primary on a higher timeline", {}, [peer(A, { timeline: 2 })], A],
    ["a peer primary on the same timeline: never fenced by an equal", {}, [peer(A, {})], undefined],
    [
      "a peer primary on a lower timeline: the rule only looks up",
      { timeline: 3 },
      [peer(A, { timeline: 2 })],
      undefined,
    ],
    ["the highest of two fencing peers", {}, [peer(A, { timeline: 2 }), peer(B, { timeline: 3 })], B],
    ["a peer standby on a higher timeline does not fence", {}, [peer(A, { role: "standby", timeline: 2 })], undefined],
    ["a peer of another cluster does not count", {}, [peer(A, { timeline: 2, systemId: OTHER })], undefined],
    ["a peer not yet known to be of another cluster counts", {}, [peer(A, { timeline: 2, systemId: null })], A],
    ["an unreachable peer does not count", {}, [peer(A, { timeline: 2, result: "timeout" })], undefined],
    ["a pending peer does not count", {}, [peer(A, { timeline: 2, result: "pending" })], undefined],
    ["a peer whose timeline is unknown does not fence", {}, [peer(A, { timeline: null })], undefined],
    ["this node a standby: nothing to fence", { inRecovery: true }, [peer(A, { timeline: 2 })], undefined],
    ["this node's own timeline unknown", { timeline: null }, [peer(A, { timeline: 2 })], undefined],
    ["this node's cluster unknown", { systemId: null }, [peer(A, { timeline: 2 })], undefined],
    ["no poll yet", undefined, [peer(A, { timeline: 2 })], undefined],
    ["no peers", {}, [], undefined],
  ])("%s", (_, facts, peers, expected) => {
    expect(fencingPeer(peers, facts && own(facts))?.url).toBe(expected);
  });
});

describe("a peer's standing", () => {
  test.each<[string, Partial<PeerView>, Partial<PollFacts> | undefined, string]>([
    ["answering, same cluster", {}, {}, "ok"],
    ["answering, another cluster", { systemId: OTHER }, {}, "other_cluster"],
    ["answering, own cluster not known yet", { systemId: OTHER }, undefined, "ok"],
    ["refused stays refused", { result: "refused", detail: "connection refused" }, {}, "refused"],
  ])("%s", (_, over, facts, expected) => {
    expect(standing(peer(A, over), facts && own(facts))[0]).toBe(expected as never);
  });
});

describe("the guard's mode", () => {
  test.each<[string, PeerView[], string]>([
    ["no --peer", [], "off"],
    ["one peer answers", [peer(A, { result: "timeout" }), peer(B, {})], "active"],
    ["none answers", [peer(A, { result: "timeout" }), peer(B, { result: "refused" })], "no peer reachable"],
    ["the only answer is of another cluster", [peer(A, { systemId: OTHER })], "no peer reachable"],
  ])("%s", (_, peers, expected) => {
    expect(guardMode(peers, own({}))).toBe(expected as never);
  });
});

describe("the log's reasons", () => {
  test.each<[string, Partial<PeerView>, Partial<PollFacts> | undefined, string]>([
    [
      "fenced peer now a standby",
      { role: "standby", timeline: 2 },
      {},
      `peer ${A} is standby on timeline 2, we are on 1`,
    ],
    [
      "fenced peer now unknown",
      { role: null, state: "unknown", timeline: null },
      {},
      `peer ${A} is unknown, we are on 1`,
    ],
    [
      "fenced peer unreachable",
      { result: "timeout", detail: "no answer within 200 ms" },
      {},
      `peer ${A} unreachable (no answer within 200 ms), no reachable peer is primary on a higher timeline`,
    ],
    [
      "fenced peer answers garbage",
      { result: "bad_answer", detail: "not JSON" },
      {},
      `peer ${A} answered garbage (not JSON), no reachable peer is primary on a higher timeline`,
    ],
    [
      "fenced peer of another cluster",
      { systemId: OTHER },
      {},
      `peer ${A} belongs to another cluster (system_identifier ${OTHER} there, ${CLUSTER} here), no reachable peer is primary on a higher timeline`,
    ],
    ["this node now a standby", {}, { inRecovery: true }, "no longer a primary"],
    ["this node down", {}, undefined, "no longer a primary"],
  ])("lifted: %s", (_, over, facts, expected) => {
    expect(liftReason(peer(A, over), facts && own(facts))).toBe(expected);
  });

  test("lifted: the isolation rule's fence", () => {
    expect(liftReason(undefined, own({}))).toBe("a peer answers again, isolation over");
  });

  test("raised", () => {
    expect(fenceReason(peer(A, { timeline: 2 }), own({}))).toBe(`peer ${A} is primary on timeline 2, we are on 1`);
  });
});

describe("a fence held while its fencer proves nothing", () => {
  const was = (over: Partial<PeerView>) => peer(A, { timeline: 2, ...over });
  test.each<[string, Partial<PeerView>, boolean, Partial<PollFacts> | undefined, string | undefined]>([
    ["the fencer answers as primary: still fenced", {}, false, {}, A],
    ["the fencer answers as standby: lifted", { role: "standby" }, false, {}, undefined],
    ["the fencer's certificate fails: held", { result: "bad_certificate" }, false, {}, A],
    ["the fencer is silent, rule off: lifted (availability)", { result: "timeout" }, false, {}, undefined],
    ["the fencer is silent, rule on: held", { result: "timeout" }, true, {}, A],
    ["the fencer answers garbage, rule on: held", { result: "bad_answer" }, true, {}, A],
    ["the fencer is of another cluster now: lifted", { systemId: OTHER }, true, {}, undefined],
    ["this node is a standby now: lifted", { result: "timeout" }, true, { inRecovery: true }, undefined],
    ["this node down: lifted", { result: "bad_certificate" }, true, undefined, undefined],
  ])("%s", (_, over, isolationOn, facts, expected) => {
    const fencer = was(over);
    expect(holdingPeer([fencer], facts && own(facts), fencer, isolationOn)?.url).toBe(expected);
  });

  test("a new fencing peer wins over the held one", () => {
    const held = was({ result: "timeout" });
    const fresh = peer(B, { timeline: 3 });
    expect(holdingPeer([held, fresh], own({}), held, true)?.url).toBe(B);
  });
});

const base: IsolationFacts = {
  isolationAfterMs: 2000,
  sinceReachedMs: 0,
  wasIsolated: false,
  roundSinceReached: false,
};

describe("the isolation rule", () => {
  test.each<[string, Partial<IsolationFacts>, boolean]>([
    ["rule off, never reached", { isolationAfterMs: undefined, sinceReachedMs: undefined }, false],
    ["rule off, long unreached", { isolationAfterMs: undefined, sinceReachedMs: 3_600_000 }, false],
    ["reached just now", { sinceReachedMs: 0 }, false],
    ["reached within the bound", { sinceReachedMs: 1999 }, false],
    ["at the bound", { sinceReachedMs: 2000 }, true],
    ["past the bound", { sinceReachedMs: 60_000 }, true],
    ["no peer reached since start", { sinceReachedMs: undefined }, true],
    ["was isolated, a peer answers, the round is not done", { wasIsolated: true, sinceReachedMs: 10 }, true],
    [
      "was isolated, a peer answers, the round is done",
      { wasIsolated: true, sinceReachedMs: 10, roundSinceReached: true },
      false,
    ],
    ["was isolated, still past the bound", { wasIsolated: true, sinceReachedMs: 5000, roundSinceReached: true }, true],
  ])("%s", (_, facts, verdict) => {
    expect(isolated({ ...base, ...facts })).toBe(verdict);
  });

  test.each<[Partial<IsolationFacts>, string]>([
    [{ sinceReachedMs: 2345 }, "no peer reached for 2.3s (--isolation-after 2s)"],
    [{ isolationAfterMs: 500, sinceReachedMs: undefined }, "no peer reached since start (--isolation-after 500ms)"],
    [
      { sinceReachedMs: 10, wasIsolated: true },
      "a peer answers again, waiting for every peer's next answer (--isolation-after 2s)",
    ],
  ])("reason %j", (facts, reason) => {
    expect(isolationReason({ ...base, ...facts })).toBe(reason);
  });
});

describe("the isolation watch over time: two peers, --isolation-after 2s", () => {
  const peer = (
    answeredAt: number | undefined,
    askedAt: number | undefined,
    systemId: string | null = "1",
  ): PeerSeen => ({
    answeredAt,
    askedAt,
    systemId,
  });

  test.each<[string, [PeerSeen[], number, boolean][]]>([
    ["never reached: isolated from the first check", [[[peer(undefined, 0), peer(undefined, 0)], 100, true]]],
    [
      "reached, then cut: isolated at the bound, not before",
      [
        [[peer(0, 0), peer(0, 0)], 100, false],
        [[peer(0, 1500), peer(0, 1500)], 1999, false],
        [[peer(0, 1900), peer(0, 1900)], 2000, true],
      ],
    ],
    [
      "healed: free only once every peer was asked after the first answer",
      [
        [[peer(0, 3000), peer(0, 3000)], 3000, true],
        // peer 1 answers (its request started at 3100); peer 2's last request is older
        [[peer(3100, 3100), peer(0, 3000)], 3150, true],
        [[peer(3200, 3200), peer(0, 3000)], 3250, true],
        // peer 2's next request (started after 3150) finished, failing: the round is done
        [[peer(3200, 3200), peer(0, 3300)], 3400, false],
      ],
    ],
    [
      "no verdict before every peer was asked once",
      [
        [[peer(undefined, 0), peer(undefined, undefined)], 100, false],
        [[peer(undefined, 0), peer(150, 150)], 200, false],
      ],
    ],
    ["a peer of another cluster does not count as reached", [[[peer(50, 50, "999"), peer(undefined, 50)], 100, true]]],
  ])("%s", (_, steps) => {
    const watch = createIsolationMemory(2000);
    for (const [peers, now, verdict] of steps) {
      watch.check(peers, "1", now);
      expect([now, watch.isolated]).toEqual([now, verdict]);
    }
  });
});

describe("a promotion shown before this thread hears of it (promotionUntil)", () => {
  const standby = { inRecovery: true, timeline: 2 };
  test.each<[string, Partial<PollFacts> | undefined, PeerView[], number | undefined, number | undefined, number]>([
    [
      "no peer is primary: until told otherwise",
      standby,
      [peer(A, { role: "standby", timeline: 3 })],
      0,
      undefined,
      Infinity,
    ],
    [
      "the old primary on a lower timeline cannot fence the new one",
      standby,
      [peer(A, { timeline: 1 })],
      0,
      undefined,
      Infinity,
    ],
    [
      "a peer primary on this standby's timeline: the new one is higher",
      standby,
      [peer(A, { timeline: 2 })],
      0,
      undefined,
      Infinity,
    ],
    [
      "a peer primary above this standby's timeline may fence the new one: not now",
      standby,
      [peer(A, { timeline: 3 })],
      0,
      undefined,
      0,
    ],
    [
      "the standby's timeline unknown: not while a peer is primary",
      { ...standby, timeline: null },
      [peer(A, {})],
      0,
      undefined,
      0,
    ],
    [
      "an unreachable peer does not count",
      standby,
      [peer(A, { timeline: 3, result: "timeout" })],
      0,
      undefined,
      Infinity,
    ],
    [
      "a peer of another cluster does not count",
      standby,
      [peer(A, { timeline: 3, systemId: OTHER })],
      0,
      undefined,
      Infinity,
    ],
    ["no poll yet", undefined, [], 0, undefined, 0],
    ["the isolation rule: until it would hold", standby, [peer(A, { role: "standby" })], 1500, 2000, 3500],
    ["the isolation rule, no peer reached yet: not now", standby, [], undefined, 2000, 0],
  ])("%s", (_, facts, peers, reachedAt, isolationAfterMs, expected) => {
    expect(promotionUntil(peers, facts && own(facts), reachedAt, isolationAfterMs)).toBe(expected);
  });
});
