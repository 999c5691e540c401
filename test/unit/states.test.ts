// The prebuilt answers and the cell that picks them: pure functions, no processes.
import { describe, expect, test } from "bun:test";
import { weightBucket } from "../../src/listen/agent.ts";
import type { AgentConfig } from "../../src/config/types.ts";
import type { PollFacts } from "../../src/poll/facts.ts";
import { buildResponses } from "../../src/listen/answers.ts";
import {
  shownAgent,
  createCell,
  DRAIN,
  FENCED,
  LAGGING,
  MAINT,
  OVERRIDE_SLOT,
  PRIMARY,
  READY,
  STANDBY,
  shownState,
  UNKNOWN,
  type Override,
  type State,
} from "../../src/cell.ts";
import { standbyFacts } from "../kit/facts.ts";

const TEXTS = { primary: "MASTER", standby: "STANDBY", unknown: "UNKNOWN", lagging: "LAGGING", fenced: "FENCED" };
const MB = 1024 ** 2;
const agent = (role: AgentConfig["role"], weightByLag = false): AgentConfig => ({
  role,
  weightByLag,
  lagForMinWeightBytes: 64 * MB,
});

/** What raw and agent listeners answer for a state, override and weight bucket. */
function answers(config: AgentConfig, state: State, override: Override, bucket = 0, cutOff = false) {
  const cell = createCell(() => {});
  const responses = buildResponses(TEXTS, config);
  cell.set(state, "test", cutOff);
  cell.setOverride(override);
  cell.setWeightBucket(bucket);
  const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
  return [text(responses.raw[shownState(cell.slots[0]!)]!), text(responses.agent[shownAgent(cell.slots[0]!)]!)];
}

describe("answers per state and override", () => {
  test.each([
    ["primary", PRIMARY, READY, 0, ["MASTER", "up ready\n"]],
    ["primary", STANDBY, READY, 0, ["STANDBY", "down ready #standby\n"]],
    ["primary", UNKNOWN, READY, 0, ["UNKNOWN", "down ready #unknown\n"]],
    ["primary", PRIMARY, DRAIN, 0, ["MASTER", "up drain\n"]],
    ["primary", STANDBY, DRAIN, 0, ["STANDBY", "down drain #standby\n"]],
    ["primary", PRIMARY, MAINT, 0, ["UNKNOWN", "maint\n"]],
    ["primary", STANDBY, MAINT, 0, ["UNKNOWN", "maint\n"]],
    ["standby", STANDBY, READY, 0, ["STANDBY", "up ready\n"]],
    ["standby", PRIMARY, READY, 0, ["MASTER", "down ready #primary\n"]],
    ["standby+weight", STANDBY, READY, 0, ["STANDBY", "up ready 100%\n"]],
    ["standby+weight", STANDBY, READY, 3, ["STANDBY", "up ready 70%\n"]],
    ["standby+weight", STANDBY, READY, 9, ["STANDBY", "up ready 10%\n"]],
    ["standby+weight", STANDBY, DRAIN, 9, ["STANDBY", "up drain\n"]],
    ["standby+weight", UNKNOWN, READY, 9, ["UNKNOWN", "down ready #unknown\n"]],
    // Lagging only for distance: drained (sessions kept), no weight; the primary role's agent says down.
    ["standby", LAGGING, READY, 0, ["LAGGING", "up drain #lagging\n"]],
    ["standby+weight", LAGGING, READY, 7, ["LAGGING", "up drain #lagging\n"]],
    ["standby", LAGGING, DRAIN, 0, ["LAGGING", "up drain #lagging\n"]],
    ["standby", LAGGING, MAINT, 0, ["UNKNOWN", "maint\n"]],
    ["primary", LAGGING, READY, 0, ["LAGGING", "down ready #lagging\n"]],
  ] as const)("%s, state %d, override %d, bucket %d", (role, state, override, bucket, want) => {
    const config = role === "standby+weight" ? agent("standby", true) : agent(role);
    expect(answers(config, state, override, bucket)).toEqual([...want]);
  });

  test.each([
    ["standby", ["LAGGING", "down ready #lagging\n"]],
    ["standby+weight", ["LAGGING", "down ready #lagging\n"]],
    ["primary", ["LAGGING", "down ready #lagging\n"]],
  ] as const)("lagging with its WAL receiver gone (%s): down, not drain", (role, want) => {
    const config = role === "standby+weight" ? agent("standby", true) : agent(role);
    expect(answers(config, LAGGING, READY, 3, true)).toEqual([...want]);
  });

  test("lagging -> standby undoes the drain and carries the weight again", () => {
    const cell = createCell(() => {});
    const responses = buildResponses(TEXTS, agent("standby", true));
    const line = () => Buffer.from(responses.agent[shownAgent(cell.slots[0]!)]!).toString("latin1");
    cell.setWeightBucket(4);
    cell.set(LAGGING, "test");
    expect(line()).toBe("up drain #lagging\n");
    cell.set(LAGGING, "test", true);
    expect(line()).toBe("down ready #lagging\n");
    cell.set(STANDBY, "test");
    expect(line()).toBe("up ready 60%\n");
  });

  test("a fence is laid over a primary only, and stays up across other states", () => {
    const changes: string[] = [];
    const cell = createCell((from, to, reason) => changes.push(`${from} -> ${to} (${reason})`));
    const responses = buildResponses(TEXTS, agent("primary"));
    const raw = () => Buffer.from(responses.raw[shownState(cell.slots[0]!)]!).toString("latin1");
    const line = () => Buffer.from(responses.agent[shownAgent(cell.slots[0]!)]!).toString("latin1");
    cell.setFence("peer X is primary on timeline 2, we are on 1", "");
    cell.set(STANDBY, "poll ok");
    expect([raw(), line()]).toEqual(["STANDBY", "down ready #standby\n"]);
    cell.set(PRIMARY, "promoted");
    expect([raw(), line(), cell.state, cell.polled]).toEqual(["FENCED", "down ready #fenced\n", FENCED, PRIMARY]);
    cell.set(UNKNOWN, "connection lost");
    cell.set(PRIMARY, "poll ok");
    expect(raw()).toBe("FENCED");
    cell.setFence(undefined, "peer X unreachable");
    expect([raw(), line()]).toEqual(["MASTER", "up ready\n"]);
    expect(changes).toEqual([
      "2 -> 1 (poll ok)",
      "1 -> 4 (peer X is primary on timeline 2, we are on 1)",
      "4 -> 2 (connection lost)",
      "2 -> 4 (peer X is primary on timeline 2, we are on 1)",
      "4 -> 0 (peer X unreachable)",
    ]);
  });

  test("the override does not change the state the poller saw, and is published", () => {
    const cell = createCell(() => {});
    cell.set(PRIMARY, "test");
    expect(cell.setOverride(MAINT)).toBe(true);
    expect(cell.setOverride(MAINT)).toBe(false);
    expect([cell.state, cell.override, shownState(cell.slots[0]!), cell.slots[OVERRIDE_SLOT]]).toEqual([
      PRIMARY,
      MAINT,
      UNKNOWN,
      MAINT,
    ]);
  });
});

describe("weight bucket by replay lag", () => {
  const facts = (over: Partial<PollFacts>) => standbyFacts({ replayAgeSeconds: null, durationMs: 0, ...over });
  test.each([
    ["no lag", facts({ lagBytes: 0 }), 0],
    ["a little", facts({ lagBytes: 3 * MB }), 0],
    ["a quarter", facts({ lagBytes: 16 * MB }), 2],
    ["half", facts({ lagBytes: 32 * MB }), 5],
    ["at the limit", facts({ lagBytes: 64 * MB }), 9],
    ["far past it", facts({ lagBytes: 10_000 * MB }), 9],
    ["not known yet while streaming", facts({ lagBytes: null }), 0],
    ["receiver not streaming", facts({ receiverStatus: "stopping", lagBytes: 0 }), 9],
    ["receiver not visible", facts({ receiverStatus: null, lagBytes: null }), 9],
    ["a primary", facts({ inRecovery: false, receiverStatus: null, lagBytes: null }), 0],
  ] as const)("%s", (_, f, bucket) => {
    expect(weightBucket(agent("standby", true), f)).toBe(bucket);
  });
});
