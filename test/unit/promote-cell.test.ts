// The cell word's writes around a promotion that the poll worker shows
// before the main thread hears of it (cell.ts: promote, the permit,
// lowered): pure functions on one Cell, no processes. The same on a real
// pair, with the maint override and a fence in force: test/e2e/promote-fast.test.ts.
import { describe, expect, test } from "bun:test";
import type { AgentConfig } from "../../src/config/types.ts";
import { buildResponses } from "../../src/listen/answers.ts";
import {
  createCell,
  DRAIN,
  FENCED,
  forceUnknown,
  generation,
  LAGGING,
  MAINT,
  permitDeadline,
  permitted,
  PRIMARY,
  promote,
  READY,
  shownAgent,
  shownState,
  STANDBY,
  UNKNOWN,
  wordState,
  type Override,
  type State,
} from "../../src/cell.ts";

const TEXTS = { primary: "MASTER", standby: "STANDBY", unknown: "UNKNOWN", lagging: "LAGGING", fenced: "FENCED" };
const AGENT: AgentConfig = { role: "primary", weightByLag: true, lagForMinWeightBytes: 64 * 1024 ** 2 };
const responses = buildResponses(TEXTS, AGENT);
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const nowEpochMs = () => performance.timeOrigin + performance.now();

/** A Cell as the main thread leaves it, and what raw and agent answer from its word. */
function node(state: State, override: Override = READY, bucket = 0) {
  const changes: string[] = [];
  const cell = createCell((from, to, reason) => changes.push(`${from} -> ${to} (${reason})`));
  cell.set(state, "poll ok");
  cell.setOverride(override);
  cell.setWeightBucket(bucket);
  changes.length = 0;
  const deadline = permitDeadline(cell.slots);
  const word = () => cell.slots[0]!;
  const shown = () => [text(responses.raw[shownState(word())]!), text(responses.agent[shownAgent(word())]!)];
  /** What the worker does for a poll that saw a primary. */
  const workerPromote = (at = nowEpochMs()) => promote(cell.slots, deadline, at);
  /** What poller.ts does with the worker's ok message for that poll: apply, then sync. */
  const mainApplies = (gen: number) => {
    cell.set(PRIMARY, "promoted");
    cell.sync(gen);
  };
  return { cell, changes, deadline, word, shown, workerPromote, mainApplies };
}

describe("the permit, kept by the main thread", () => {
  test("set with no fence and no guard; cleared by a fence and by a guard; the override does not touch it", () => {
    const n = node(STANDBY);
    expect(permitted(n.word())).toBe(true);
    n.cell.setFence("peer X is primary on timeline 3, we are on 2", "");
    expect(permitted(n.word())).toBe(false);
    expect(n.deadline[0]).toBe(0n);
    n.cell.setFence(undefined, "peer X unreachable");
    expect(permitted(n.word())).toBe(true);
    n.cell.setOverride(MAINT);
    expect(permitted(n.word())).toBe(true);
    n.cell.setPermit(0);
    expect(permitted(n.word())).toBe(false);
    n.cell.setPermit(Infinity);
    expect(permitted(n.word())).toBe(true);
    expect(Number(n.deadline[0])).toBeGreaterThan(nowEpochMs() + 1e12);
  });

  test("a guard's deadline: the permit is set until then, and none once it has passed", () => {
    const n = node(STANDBY);
    const untilMs = performance.now() + 60_000;
    n.cell.setPermit(untilMs);
    expect(permitted(n.word())).toBe(true);
    expect(Math.abs(Number(n.deadline[0]) - (performance.timeOrigin + untilMs))).toBeLessThanOrEqual(1);
    n.cell.setPermit(performance.now() - 1);
    expect(permitted(n.word())).toBe(false);
  });

  test("a forced UNKNOWN keeps it, whatever the generation", () => {
    const n = node(STANDBY);
    forceUnknown(n.cell.slots);
    expect(permitted(n.word())).toBe(true);
    n.cell.setFence("isolated", "");
    expect([permitted(n.word()), shownState(n.word())]).toEqual([false, UNKNOWN]);
  });
});

describe("a guard's verdict, in one step (setGuard)", () => {
  // guard.ts and patroni-view.ts give the fence and the permit together: the word never carries the
  // permit of one verdict with the fence of another, which a promotion written between two
  // separate writes would have shown for a moment.
  test("lifting a fence with a permit of 0 never sets the permit; the lift is logged once", () => {
    const n = node(PRIMARY);
    n.cell.setGuard("isolated: no peer answered", "", performance.now() + 60_000);
    expect([permitted(n.word()), shownState(n.word())]).toEqual([false, FENCED]);
    n.cell.set(STANDBY, "now in recovery");
    n.changes.length = 0;
    // The witness answers again and a peer is primary on a higher timeline: no fence (a
    // standby), and no permit either: the new timeline is known only from the next poll.
    n.cell.setGuard(undefined, "peers answer again", 0);
    expect([permitted(n.word()), n.cell.fence, n.workerPromote()]).toEqual([false, undefined, undefined]);
    expect(shownState(n.word())).toBe(STANDBY);
    n.cell.setGuard(undefined, "", Infinity);
    expect(permitted(n.word())).toBe(true);
    expect(n.changes).toEqual([]);
  });

  test("raising a fence logs it as setFence does, and the permit follows the fence", () => {
    const n = node(PRIMARY);
    n.cell.setGuard("member b holds the leader key", "member a holds the leader key", Infinity);
    expect([permitted(n.word()), shownState(n.word())]).toEqual([false, FENCED]);
    expect(n.changes).toEqual([`${PRIMARY} -> ${FENCED} (member b holds the leader key)`]);
    n.cell.setGuard(undefined, "member a holds the leader key", Infinity);
    expect([permitted(n.word()), shownState(n.word())]).toEqual([true, PRIMARY]);
    expect(n.changes.at(-1)).toBe(`${FENCED} -> ${PRIMARY} (member a holds the leader key)`);
  });
});

describe("the worker's promotion write", () => {
  test.each<[string, State, Override, number, string[]]>([
    ["from standby", STANDBY, READY, 0, ["MASTER", "up ready 100%\n"]],
    ["from lagging, weight bucket 0 as for any primary", LAGGING, READY, 7, ["MASTER", "up ready 100%\n"]],
    ["under drain: raw keeps the role", STANDBY, DRAIN, 3, ["MASTER", "up drain\n"]],
    ["under maint: shown as unknown", STANDBY, MAINT, 0, ["UNKNOWN", "maint\n"]],
  ])("%s", (_, state, override, bucket, want) => {
    const n = node(state, override, bucket);
    const before = generation(n.word());
    const gen = n.workerPromote();
    expect(gen).toBe(before + 1);
    expect(generation(n.word())).toBe(gen!);
    expect(wordState(n.word())).toBe(PRIMARY);
    expect(n.shown()).toEqual(want);
    // The main thread's own publication for the same poll shows the same.
    n.mainApplies(gen!);
    n.cell.setWeightBucket(0);
    expect(n.shown()).toEqual(want);
    expect(n.changes).toEqual([`${state} -> 0 (promoted)`]);
  });

  test.each<[string, (n: ReturnType<typeof node>) => void]>([
    ["without the permit (a fence)", (n) => n.cell.setFence("isolated", "")],
    ["without the permit (a guard)", (n) => n.cell.setPermit(0)],
    ["past the permit's deadline", (n) => n.cell.setPermit(performance.now() + 5)],
    ["from UNKNOWN, forced by the worker", (n) => forceUnknown(n.cell.slots)],
  ])("refused %s", (_, setUp) => {
    const n = node(STANDBY);
    setUp(n);
    const word = n.word();
    expect(n.workerPromote(nowEpochMs() + 10)).toBeUndefined();
    expect(n.word()).toBe(word);
  });

  test.each<[string, State]>([
    ["from UNKNOWN: start-up and reconnects keep the main thread's path", UNKNOWN],
    ["from primary: nothing to promote", PRIMARY],
    ["from fenced", FENCED],
  ])("refused %s", (_, state) => {
    const n = node(state === FENCED ? PRIMARY : state);
    if (state === FENCED) n.cell.setFence("isolated", "");
    expect(wordState(n.word())).toBe(state);
    const word = n.word();
    expect(n.workerPromote()).toBeUndefined();
    expect(n.word()).toBe(word);
  });
});

describe("the main thread after the worker's write, before its message", () => {
  test("a fence raised shows fenced at once; the message keeps it fenced, logged once", () => {
    const n = node(STANDBY);
    const gen = n.workerPromote()!;
    expect(n.shown()[0]).toBe("MASTER");
    n.cell.setFence("peer X is primary on timeline 9, we are on 2", "");
    expect(n.shown()).toEqual(["FENCED", "down ready #fenced\n"]);
    expect(generation(n.word())).toBe(gen);
    n.mainApplies(gen);
    expect(n.shown()).toEqual(["FENCED", "down ready #fenced\n"]);
    expect(n.changes).toEqual(["1 -> 4 (peer X is primary on timeline 9, we are on 2)"]);
  });

  test("a guard taking its permit back shows fenced until the message, which decides", () => {
    const n = node(STANDBY);
    const gen = n.workerPromote()!;
    n.cell.setPermit(0);
    expect(n.shown()[0]).toBe("FENCED");
    n.mainApplies(gen);
    expect(n.shown()[0]).toBe("MASTER");
  });

  test("maint set shows unknown at once", () => {
    const n = node(STANDBY);
    const gen = n.workerPromote()!;
    n.cell.setOverride(MAINT);
    expect(n.shown()).toEqual(["UNKNOWN", "maint\n"]);
    n.mainApplies(gen);
    expect(n.shown()).toEqual(["UNKNOWN", "maint\n"]);
  });

  test("its own writes before the sync never take the promotion back to standby", () => {
    const n = node(STANDBY, READY, 4);
    expect(n.workerPromote()).toBeDefined();
    n.cell.setWeightBucket(5);
    n.cell.set(STANDBY, "poll ok");
    expect(n.shown()[0]).toBe("MASTER");
  });

  test("a forced UNKNOWN after it wins; the dropped message cannot bring MASTER back", () => {
    const n = node(STANDBY);
    n.workerPromote();
    const gen = forceUnknown(n.cell.slots);
    expect(n.shown()[0]).toBe("UNKNOWN");
    // poller.ts drops the promotion's message (its generation is behind); the fail message is applied.
    n.cell.set(UNKNOWN, "connection lost");
    n.cell.sync(gen);
    expect(n.shown()[0]).toBe("UNKNOWN");
    expect(n.workerPromote()).toBeUndefined();
  });
});
