// The nemesis checker and plan on their own: histories in, findings out. The
// run that feeds them real histories is test/e2e/nemesis.test.ts (and
// bench/nemesis.ts).
import { describe, expect, test } from "bun:test";
import { check, gapsByKind, keyTimeline, type CheckInput, type Write } from "../kit/nemesis/check.ts";
import { FAULT_KINDS, plan } from "../kit/nemesis/schedule.ts";

const w = (id: number, node: string | undefined, sent: number, done: number, over: Partial<Write> = {}): Write => ({
  id,
  kind: "new",
  sent,
  done,
  ok: node === undefined ? false : true,
  ...(node !== undefined && { node }),
  ...over,
});

// db1 leads until 1000, no leader until 1500, db2 from then on.
const keys = [
  { at: 0, holder: "db1" },
  { at: 1000, holder: undefined },
  { at: 1500, holder: "db2" },
];

function input(over: Partial<CheckInput>): CheckInput {
  return {
    writes: [],
    keys,
    samples: [],
    view: [],
    faults: [],
    end: 3000,
    finalIds: new Set(),
    boundMs: 500,
    toleranceMs: 100,
    ...over,
  };
}

describe("the key's history", () => {
  const k = keyTimeline(keys);
  test.each([
    [-5, undefined],
    [0, "db1"],
    [999, "db1"],
    [1000, undefined],
    [1499, undefined],
    [2000, "db2"],
  ])("holder at %p is %p", (t, holder) => expect(k.holderAt(t)).toBe(holder));
  test.each([
    ["db1", 900, 1100, true],
    ["db1", 1001, 1400, false],
    ["db2", 1400, 1600, true],
    ["db2", 100, 900, false],
  ])("%s held it during [%p, %p]: %p", (node, from, to, want) => expect(k.heldDuring(node, from, to)).toBe(want));
  test("lost at", () => {
    expect(k.lostAt("db1", 1200)).toBe(1000);
    expect(k.lostAt("db1", 900)).toBeUndefined();
    expect(k.lostAt("db2", 2000)).toBeUndefined();
    expect(k.changes).toBe(1);
  });
});

describe("(a) writes acknowledged by a node without the key", () => {
  test.each<[string, Write[], { stale: number; pooled: number; beyondBound: number; windowMs: number }]>([
    [
      "none: every write on the holder",
      [w(1, "db1", 100, 200), w(2, "db2", 1600, 1700)],
      { stale: 0, pooled: 0, beyondBound: 0, windowMs: 0 },
    ],
    [
      "a write that spans the loss counts as held",
      [w(1, "db1", 900, 1100)],
      { stale: 0, pooled: 0, beyondBound: 0, windowMs: 0 },
    ],
    [
      "after the loss, within the bound",
      [w(1, "db1", 1100, 1200)],
      { stale: 1, pooled: 0, beyondBound: 0, windowMs: 200 },
    ],
    [
      "the window is the last one's; a pooled one beyond the bound",
      [w(1, "db1", 1100, 1200), w(2, "db1", 1600, 1700, { kind: "pool0" })],
      { stale: 2, pooled: 1, beyondBound: 1, windowMs: 700 },
    ],
    [
      "refused and unknown writes never count",
      [w(1, undefined, 1100, 1200), w(2, "db1", 1100, 1200, { ok: null })],
      { stale: 0, pooled: 0, beyondBound: 0, windowMs: 0 },
    ],
  ])("%s", (_, writes, want) => {
    const { a } = check(input({ writes, finalIds: new Set(writes.map((x) => x.id)) }));
    expect({ stale: a.stale, pooled: a.pooled, beyondBound: a.beyondBound, windowMs: a.windowMs }).toEqual(want);
  });

  test("a stale write after haproxy marked the server down is counted apart", () => {
    const view = [{ at: 1150, server: "db1", up: false }];
    const { a } = check(input({ writes: [w(1, "db1", 1100, 1120), w(2, "db1", 1200, 1250, { kind: "pool1" })], view }));
    expect(a.episodes).toEqual([
      { node: "db1", lostAt: 1000, writes: 2, pooled: 1, windowMs: 250, afterMarkedDown: 1 },
    ]);
  });
});

describe("(b) acknowledged writes missing from the final primary", () => {
  test.each<[string, Set<number> | undefined, { lost: number; ids: number[]; checked: boolean }]>([
    ["all there", new Set([1, 2, 3]), { lost: 0, ids: [], checked: true }],
    [
      "one acknowledged write missing; an unknown one may be missing",
      new Set([1]),
      { lost: 1, ids: [2], checked: true },
    ],
    ["the table could not be read", undefined, { lost: 0, ids: [], checked: false }],
  ])("%s", (_, finalIds, want) => {
    const writes = [w(1, "db1", 10, 20), w(2, "db1", 30, 40), w(3, "db1", 50, 60, { ok: null })];
    expect(check(input({ writes, finalIds })).b).toEqual(want);
  });
});

describe("(c) unavailability per fault kind", () => {
  test("the longest time without an acknowledged new write, from a fault to the next, split at a fault", () => {
    const acks = [100, 200, 300, 1300, 1400, 2500, 2600].map((t, i) => w(i, "db1", t - 10, t));
    const pooled = w(99, "db1", 800, 900, { kind: "pool0" });
    const gaps = gapsByKind(
      [...acks, pooled],
      [
        { kind: "kill", start: 250 },
        { kind: "part", start: 1350 },
        { kind: "kill", start: 2000 },
      ],
      3000,
    );
    expect(gaps).toEqual([
      { kind: "kill", faults: 2, p50Ms: 1100, maxMs: 1100 },
      { kind: "part", faults: 1, p50Ms: 600, maxMs: 600 },
    ]);
  });
  test("a fault with no write at all until the next: the whole span", () => {
    const gaps = gapsByKind([w(1, "db1", 0, 90)], [{ kind: "stop", start: 100 }], 5000);
    expect(gaps).toEqual([{ kind: "stop", faults: 1, p50Ms: 4910, maxMs: 4910 }]);
  });
});

describe("(d) MASTER where the store names another", () => {
  test.each<[string, { node: string; from: number; to: number }, number]>([
    ["the holder", { node: "db1", from: 500, to: 510 }, 0],
    ["within the tolerance after the loss", { node: "db1", from: 1050, to: 1060 }, 0],
    ["beyond the tolerance", { node: "db1", from: 1200, to: 1210 }, 1],
    ["before the key came", { node: "db2", from: 1300, to: 1310 }, 1],
    ["a probe that ends after the key came", { node: "db2", from: 1490, to: 1510 }, 0],
  ])("%s", (_, s, want) => {
    const d = check(
      input({
        samples: [
          { ...s, text: "MASTER" },
          { ...s, text: "FENCED" },
        ],
      }),
    ).d;
    expect(d.contradictions).toBe(want);
    expect(d.masters).toBe(1);
  });
  test("a sample from before the history starts is not judged", () => {
    const late = [{ at: 100, holder: "db1" }];
    const d = check(input({ keys: late, samples: [{ node: "db1", from: 90, to: 95, text: "MASTER" }] })).d;
    expect([d.masters, d.contradictions]).toEqual([0, 0]);
  });
  test("the lag is from the loss", () => {
    expect(check(input({ samples: [{ node: "db1", from: 1700, to: 1710, text: "MASTER" }] })).d.maxLagMs).toBe(700);
  });
});

describe("the plan", () => {
  test("the same seed gives the same plan, another seed another", () => {
    expect(plan(42, 30)).toEqual(plan(42, 30));
    expect(plan(43, 30)).not.toEqual(plan(42, 30));
  });
  test("a hundred faults hold every kind, with holds in their ranges", () => {
    const p = plan(7, 100);
    expect(new Set(p.map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
    for (const f of p) {
      expect(f.holdMs).toBeGreaterThanOrEqual(0);
      expect(f.holdMs).toBeLessThanOrEqual(14_000);
      expect(f.gapMs).toBeGreaterThanOrEqual(300);
    }
  });
  test("a subset of kinds", () => {
    expect(new Set(plan(1, 20, ["switchover", "kill-patroni"]).map((f) => f.kind))).toEqual(
      new Set(["switchover", "kill-patroni"]),
    );
  });
});
