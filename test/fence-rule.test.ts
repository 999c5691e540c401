// The fencing rule on its own: a table of peer views and own polls in,
// verdicts out. The end-to-end tests in fence.test.ts show the same rule
// between real responders and real PostgreSQL nodes.
import { describe, expect, test } from "bun:test";
import { fenceReason, fencingPeer, guardMode, liftReason, standing, type PeerView } from "../src/cluster/fence.ts";
import type { PollFacts } from "../src/poll/facts.ts";

const CLUSTER = "7712175825285183157";
const OTHER = "7712175825285183999";

function own(over: Partial<PollFacts>): PollFacts {
  return {
    inRecovery: false,
    receiverPid: null,
    receiverStatus: null,
    lagBytes: null,
    replayAgeSeconds: null,
    systemId: CLUSTER,
    timeline: 1,
    startedAt: 0,
    durationMs: 1,
    ...over,
  };
}

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

  test("raised", () => {
    expect(fenceReason(peer(A, { timeline: 2 }), own({}))).toBe(`peer ${A} is primary on timeline 2, we are on 1`);
  });
});
