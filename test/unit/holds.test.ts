// ?lag= checks with hysteresis (rejoin_lag=, rejoin_after=): the per-question
// memory, the plain http rule and the Patroni mode's, as sequences of looks.
// Pure: no PostgreSQL; test/e2e/lag-flap.test.ts shows them against a real pair.
import { describe, expect, test } from "bun:test";
import { createHolds } from "../../src/listen/http/holds.ts";
import { queryVerdict, type QueryNode } from "../../src/listen/http/query.ts";
import { checkStatus, parseQuery, readinessStatus, viewOf, type LocalNode } from "../../src/cluster/patroni-rules.ts";
import type { PollFacts } from "../../src/poll/facts.ts";
import { PRIMARY, STANDBY, UNKNOWN } from "../../src/cell.ts";
import { standbyFacts } from "../kit/facts.ts";

const MB = 1024 * 1024;

const facts = (over: Partial<PollFacts> = {}) => standbyFacts({ receiverPid: 1, systemId: "1", ...over });

describe("the memory", () => {
  test("one entry per question, at most the bound, the least recently asked dropped first", () => {
    const holds = createHolds(2, 60_000);
    expect(holds.look("a", true, false, 0, 0)).toBe(false);
    expect(holds.look("b", true, false, 0, 0)).toBe(false);
    expect(holds.look("a", false, false, 0, 1)).toBe(false);
    // c pushes out b (asked least recently); b starts fresh, in the band: in.
    holds.look("c", false, true, 0, 2);
    expect(holds.size).toBe(2);
    expect(holds.look("b", false, false, 0, 3)).toBe(true);
    expect(holds.look("c", true, false, 0, 4)).toBe(false);
  });

  test("a question not asked for the forget time starts fresh", () => {
    const holds = createHolds(8, 1000);
    expect(holds.look("a", true, false, 5000, 0)).toBe(false);
    expect(holds.look("a", false, false, 5000, 1000)).toBe(false);
    expect(holds.look("a", false, false, 5000, 2001)).toBe(true);
  });

  test("a failed look keeps an out question out and starts its hold again", () => {
    const holds = createHolds();
    holds.look("a", true, false, 1000, 0);
    expect(holds.look("a", false, true, 1000, 100)).toBe(false);
    holds.fail("a", 500);
    expect(holds.look("a", false, true, 1000, 1100)).toBe(false);
    expect(holds.look("a", false, true, 1000, 2100)).toBe(true);
  });
});

describe("plain http: ?lag= with rejoin_lag= and rejoin_after=", () => {
  const node = (lagBytes: number | null, extra: Partial<QueryNode> = {}): QueryNode => ({
    standby: true,
    base: true,
    facts: facts({ lagBytes }),
    tags: undefined,
    ...extra,
  });

  test.each([
    ["rejoin_lag without lag", "rejoin_lag=1MB", "bad-rejoin"],
    ["rejoin_after without lag", "rejoin_after=5s", "bad-rejoin"],
    ["rejoin_lag above lag", "lag=1MB&rejoin_lag=2MB", "bad-rejoin"],
    ["rejoin_lag twice", "lag=1MB&rejoin_lag=1kB&rejoin_lag=2kB", "bad-rejoin"],
    ["rejoin_lag bad unit", "lag=1MB&rejoin_lag=1XB", "bad-rejoin"],
    ["rejoin_lag without a value", "lag=1MB&rejoin_lag", "bad-rejoin"],
    ["rejoin_after bad", "lag=1MB&rejoin_after=soon", "bad-rejoin"],
    ["rejoin_after over an hour", "lag=1MB&rejoin_after=3601s", "bad-rejoin"],
    ["both, good", "lag=1MB&rejoin_lag=512kB&rejoin_after=5s", true],
    ["rejoin_lag equal to lag", "lag=1MB&rejoin_lag=1MB", true],
  ] as const)("%s: %p", (_, query, want) => {
    expect(queryVerdict("replica", query, node(0, { holds: createHolds(), nowMs: 0 }))).toBe(want);
  });

  test("a lag that swings around 1 MB every 500 ms: plain ?lag= flaps, with a rejoin limit it leaves once", () => {
    const swing = (query: string) => {
      const holds = createHolds();
      let last = true;
      let flips = 0;
      for (let t = 0; t < 10_000; t += 100) {
        const lagBytes = Math.floor(t / 500) % 2 === 1 ? 1.3 * MB : 0.7 * MB;
        const ok = queryVerdict("replica", query, node(lagBytes, { holds, nowMs: t }));
        if (ok !== last) flips++;
        last = ok as boolean;
      }
      return flips;
    };
    expect(swing("lag=1MB")).toBe(19);
    expect(swing("lag=1MB&rejoin_lag=512kB")).toBe(1);
    expect(swing("lag=1MB&rejoin_after=2s")).toBe(1);
  });

  test("out, it rejoins after rejoin_after under rejoin_lag; unknown lag is over both", () => {
    const holds = createHolds();
    const q = "lag=1MB&rejoin_lag=512kB&rejoin_after=2s";
    const ask = (lagBytes: number | null, nowMs: number, extra: Partial<QueryNode> = {}) =>
      queryVerdict("replica", q, node(lagBytes, { holds, nowMs, ...extra }));
    expect(ask(0, 0)).toBe(true);
    expect(ask(2 * MB, 100)).toBe(false);
    expect(ask(0.8 * MB, 200)).toBe(false);
    expect(ask(0.1 * MB, 300)).toBe(false);
    expect(ask(null, 1000)).toBe(false);
    expect(ask(0.1 * MB, 1100)).toBe(false);
    expect(ask(0.1 * MB, 3099)).toBe(false);
    expect(ask(0.1 * MB, 3100)).toBe(true);
    // Another question has its own memory; a plain ?lag= has none.
    expect(queryVerdict("replica", "lag=1MB&rejoin_after=9s", node(0, { holds, nowMs: 3100 }))).toBe(true);
    expect(queryVerdict("replica", "lag=1MB", node(0.9 * MB, { holds, nowMs: 3100 }))).toBe(true);
    expect(holds.size).toBe(2);
  });

  test("a node that is no standby at a look is 503, and its hold starts again", () => {
    const holds = createHolds();
    const q = "lag=1MB&rejoin_after=1s";
    queryVerdict("replica", q, node(2 * MB, { holds, nowMs: 0 }));
    expect(queryVerdict("replica", q, node(0, { holds, nowMs: 100 }))).toBe(false);
    expect(queryVerdict("replica", q, node(null, { holds, nowMs: 500, standby: false, base: false }))).toBe(false);
    expect(queryVerdict("replica", q, node(0, { holds, nowMs: 1100 }))).toBe(false);
    expect(queryVerdict("replica", q, node(0, { holds, nowMs: 2100 }))).toBe(true);
  });
});

describe("Patroni mode: the same parameters, ignored by Patroni itself", () => {
  const view = viewOf(new Map([["leader", { value: "m0" }]]));
  const local = (polled: number, lagBytes: number | null): LocalNode => ({
    member: "m1",
    polled: polled as LocalNode["polled"],
    facts: polled === UNKNOWN ? undefined : facts({ lagBytes, inRecovery: polled !== PRIMARY }),
    tags: { values: {}, noloadbalance: false },
  });
  const code = (query: string, l: LocalNode, holds: ReturnType<typeof createHolds>, nowMs: number) =>
    checkStatus("/replica", parseQuery(query), l, view, holds, nowMs);

  test("out for lag, back only under rejoin_lag for rejoin_after", () => {
    const holds = createHolds();
    const q = "lag=1MB&rejoin_lag=512kB&rejoin_after=1s";
    expect(code(q, local(STANDBY, 0), holds, 0)).toBe(200);
    expect(code(q, local(STANDBY, 2 * MB), holds, 100)).toBe(503);
    expect(code(q, local(STANDBY, 0.9 * MB), holds, 200)).toBe(503);
    expect(code(q, local(STANDBY, 0.1 * MB), holds, 300)).toBe(503);
    expect(code(q, local(STANDBY, 0.1 * MB), holds, 1300)).toBe(200);
    // Without the parameters, Patroni's own rule: at once.
    expect(code("lag=1MB", local(STANDBY, 2 * MB), holds, 1400)).toBe(503);
    expect(code("lag=1MB", local(STANDBY, 0.9 * MB), holds, 1500)).toBe(200);
  });

  test("bad values are ignored, as Patroni ignores a bad lag; a rejoin_lag above lag counts as lag", () => {
    const holds = createHolds();
    expect(code("lag=1MB&rejoin_lag=junk&rejoin_after=junk", local(STANDBY, 2 * MB), holds, 0)).toBe(503);
    expect(code("lag=1MB&rejoin_lag=junk&rejoin_after=junk", local(STANDBY, 0.9 * MB), holds, 1)).toBe(200);
    expect(holds.size).toBe(0);
    expect(code("lag=1MB&rejoin_lag=5MB", local(STANDBY, 2 * MB), holds, 2)).toBe(503);
    expect(code("lag=1MB&rejoin_lag=5MB", local(STANDBY, 0.9 * MB), holds, 3)).toBe(200);
  });

  test("/readiness takes them too", () => {
    const holds = createHolds();
    const q = parseQuery("lag=1MB&rejoin_after=1s");
    expect(readinessStatus(q, local(STANDBY, 2 * MB), view, holds, 0)).toBe(503);
    expect(readinessStatus(q, local(STANDBY, 0), view, holds, 500)).toBe(503);
    expect(readinessStatus(q, local(STANDBY, 0), view, holds, 1500)).toBe(200);
  });
});
