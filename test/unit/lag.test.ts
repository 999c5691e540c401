// The lag rule on its own: a table of polls in, verdicts out. The facts are
// what POLL_QUERY returns; the end-to-end tests in test/e2e/http.test.ts show the same
// rule against a real standby.
import { describe, expect, test } from "bun:test";
import { createLagJudge, cutOff, type LagLimits } from "../../src/poll/lag.ts";
import { hysteresisStep } from "../../src/hysteresis.ts";
import { createLogger } from "../../src/log.ts";
import type {} from "../../src/poll/facts.ts";
import { standbyFacts as facts } from "../kit/facts.ts";

const MB = 1024 * 1024;

function judge(limits: Partial<LagLimits>) {
  const lines: string[] = [];
  const j = createLagJudge(
    {
      maxLagBytes: undefined,
      maxLagSeconds: undefined,
      lagGraceMs: 0,
      rejoinLagBytes: undefined,
      rejoinLagSeconds: undefined,
      rejoinAfterMs: 0,
      ...limits,
    },
    createLogger((line) => lines.push(line)),
  );
  return { j, lines };
}

/** A healthy standby first (a poll under every limit), as after start-up. */
function healthy(limits: Partial<LagLimits>) {
  const made = judge(limits);
  expect(made.j.judge(facts({ lagBytes: 0 }), -1).lagging).toBe(false);
  return made;
}

describe("one poll", () => {
  test.each([
    ["under the byte limit", { maxLagBytes: 16 * MB }, { lagBytes: MB }, false, "replay 1 MB behind, limit 16 MB"],
    ["over the byte limit", { maxLagBytes: 16 * MB }, { lagBytes: 20 * MB }, true, "replay 20 MB behind, limit 16 MB"],
    ["no limit set: never lagging", {}, { lagBytes: 20 * MB, receiverStatus: "waiting" }, false, "no lag limit"],
    [
      "receiver not streaming",
      { maxLagBytes: 16 * MB },
      { receiverStatus: "waiting" },
      true,
      "WAL receiver waiting, not streaming",
    ],
    [
      "no receiver",
      { maxLagBytes: 16 * MB },
      { receiverPid: null, receiverStatus: null },
      true,
      "no WAL receiver running",
    ],
    [
      "old last transaction with WAL to replay",
      { maxLagSeconds: 30 },
      { lagBytes: 8192, replayAgeSeconds: 45 },
      true,
      "replay 8 kB and 45 s behind, limit 30 s",
    ],
    [
      "old last transaction, nothing to replay (an idle primary)",
      { maxLagSeconds: 30 },
      { lagBytes: 0, replayAgeSeconds: 3600 },
      false,
      "replay 0 bytes behind",
    ],
    [
      "between the rejoin and the leave limit, at start: a standby (only a lagging one must get under the rejoin limit)",
      { maxLagBytes: 16 * MB, rejoinLagBytes: 8 * MB },
      { lagBytes: 12 * MB },
      false,
      "replay 12 MB behind, limit 16 MB",
    ],
  ] as const)("%s", (_, limits, poll, lagging, reason) => {
    const { j } = judge(limits);
    expect(j.judge(facts(poll), 0)).toEqual({ lagging, reason, untilMs: undefined });
  });
});

describe("grace", () => {
  test("a healthy standby must stay over the limit for the grace period; back at once when under", () => {
    const { j } = healthy({ maxLagBytes: MB, lagGraceMs: 1000 });
    const over = facts({ lagBytes: 2 * MB });
    expect(j.judge(over, 0)).toMatchObject({ lagging: false, untilMs: 1000 });
    expect(j.judge(over, 999)).toMatchObject({ lagging: false, untilMs: 1000 });
    expect(j.judge(over, 1000)).toMatchObject({ lagging: true, untilMs: undefined });
    // Lagging stays lagging while over, and the first poll under ends it (no rejoin settings).
    expect(j.judge(over, 1050).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0 }), 1100)).toEqual({
      lagging: false,
      reason: "replay 0 bytes behind, limit 1 MB",
      untilMs: undefined,
    });
  });

  test("a spike shorter than the grace never flips it, and the next spike starts a new count", () => {
    const { j } = healthy({ maxLagBytes: MB, lagGraceMs: 1000 });
    expect(j.judge(facts({ lagBytes: 2 * MB }), 0).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 0 }), 500).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 2 * MB }), 900).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 2 * MB }), 1500).lagging).toBe(false);
  });

  test("not coming from a healthy standby (start-up, reconnect): lagging at once", () => {
    const { j } = judge({ maxLagBytes: MB, lagGraceMs: 60_000 });
    expect(j.judge(facts({ lagBytes: 2 * MB }), 0).lagging).toBe(true);
    const after = healthy({ maxLagBytes: MB, lagGraceMs: 60_000 }).j;
    after.interrupt();
    expect(after.judge(facts({ lagBytes: 2 * MB }), 0).lagging).toBe(true);
  });

  test("reset forgets an excursion", () => {
    const { j } = healthy({ maxLagBytes: MB, lagGraceMs: 1000 });
    j.judge(facts({ lagBytes: 2 * MB }), 0);
    j.reset();
    j.judge(facts({ lagBytes: 0 }), 500);
    expect(j.judge(facts({ lagBytes: 2 * MB }), 1000).lagging).toBe(false);
  });
});

// The hysteresis as a table: [phase before, over the leave limits, under the
// rejoin limits, the stretch began at, now] -> [phase after, stretch from, untilMs].
describe("hysteresisStep", () => {
  const GRACE = 1000;
  const HOLD = 5000;
  test.each([
    ["fresh, over: out at once", "fresh", true, false, undefined, 0, "out", undefined, undefined],
    ["fresh, in the band: in", "fresh", false, false, undefined, 0, "in", undefined, undefined],
    ["fresh, under: in", "fresh", false, true, undefined, 0, "in", undefined, undefined],
    ["in, over: the grace starts", "in", true, false, undefined, 100, "in", 100, 1100],
    ["in, over, grace not over", "in", true, false, 100, 1099, "in", 100, 1100],
    ["in, over for the grace: out", "in", true, false, 100, 1100, "out", undefined, undefined],
    [
      "in, back under the leave limit: the grace is forgotten",
      "in",
      false,
      false,
      100,
      900,
      "in",
      undefined,
      undefined,
    ],
    ["out, in the band: stays out", "out", false, false, undefined, 0, "out", undefined, undefined],
    ["out, over: stays out", "out", true, false, undefined, 0, "out", undefined, undefined],
    ["out, under: the hold starts", "out", false, true, undefined, 200, "out", 200, 5200],
    ["out, under, hold not over", "out", false, true, 200, 5199, "out", 200, 5200],
    ["out, under for the hold: in", "out", false, true, 200, 5200, "in", undefined, undefined],
    [
      "out, over the rejoin limit during the hold: the hold is forgotten",
      "out",
      false,
      false,
      200,
      3000,
      "out",
      undefined,
      undefined,
    ],
  ] as const)("%s", (_, phase, over, under, sinceMs, nowMs, wantPhase, wantSince, wantUntil) => {
    expect(hysteresisStep({ phase, sinceMs }, over, under, GRACE, HOLD, nowMs)).toEqual({
      phase: wantPhase,
      sinceMs: wantSince,
      untilMs: wantUntil,
    });
  });

  test("zero grace and zero hold: today's rule, out when over and in when under", () => {
    expect(hysteresisStep({ phase: "in", sinceMs: undefined }, true, false, 0, 0, 7).phase).toBe("out");
    expect(hysteresisStep({ phase: "out", sinceMs: undefined }, false, true, 0, 0, 7).phase).toBe("in");
  });
});

describe("hysteresis", () => {
  /** A lag that swings between 0.6 and 1.4 MB every `halfMs`, polled every 50 ms for `forMs`; the transitions. */
  function swing(limits: Partial<LagLimits>, halfMs: number, forMs: number) {
    const { j } = healthy({ maxLagBytes: MB, lagGraceMs: 0, ...limits });
    let lagging = false;
    const changes: string[] = [];
    for (let t = 0; t < forMs; t += 50) {
      const lagBytes = Math.floor(t / halfMs) % 2 === 1 ? 1.4 * MB : 0.6 * MB;
      const v = j.judge(facts({ lagBytes }), t);
      if (v.lagging !== lagging) changes.push(`${t} ${v.lagging ? "leave" : "rejoin"}`);
      lagging = v.lagging;
    }
    return changes;
  }

  test("without it a lag around the limit flaps at every crossing: 29 transitions in 30 s", () => {
    expect(swing({}, 1000, 30_000)).toHaveLength(29);
    expect(swing({ lagGraceMs: 500 }, 1000, 30_000)).toHaveLength(29);
  });

  test("a rejoin limit below the swing: one leave, never a rejoin", () => {
    expect(swing({ rejoinLagBytes: MB / 2 }, 1000, 30_000)).toEqual(["1000 leave"]);
  });

  test("a hold longer than the swing's half period: one leave, never a rejoin", () => {
    expect(swing({ rejoinAfterMs: 1500 }, 1000, 30_000)).toEqual(["1000 leave"]);
  });

  test("once the swing stops under the rejoin limit, it rejoins after the hold, with a reason that says so", () => {
    const { j } = healthy({ maxLagBytes: MB, lagGraceMs: 0, rejoinLagBytes: MB / 2, rejoinAfterMs: 2000 });
    expect(j.judge(facts({ lagBytes: 2 * MB }), 0)).toMatchObject({ lagging: true });
    expect(j.judge(facts({ lagBytes: 0.8 * MB }), 100)).toEqual({
      lagging: true,
      reason: "replay 819.2 kB behind, rejoin limit 512 kB",
      untilMs: undefined,
    });
    expect(j.judge(facts({ lagBytes: 0.1 * MB }), 200)).toMatchObject({ lagging: true, untilMs: 2200 });
    expect(j.judge(facts({ lagBytes: 0.1 * MB }), 2199).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0.1 * MB }), 2200)).toEqual({
      lagging: false,
      reason: "replay 102.4 kB behind, rejoin limit 512 kB, under it for 2s",
      untilMs: undefined,
    });
  });

  test("a failed poll keeps a lagging standby out and starts its hold again", () => {
    const { j } = healthy({ maxLagBytes: MB, rejoinAfterMs: 1000 });
    j.judge(facts({ lagBytes: 2 * MB }), 0);
    j.judge(facts({ lagBytes: 0 }), 100);
    j.interrupt();
    expect(j.judge(facts({ lagBytes: 0 }), 1100)).toMatchObject({ lagging: true, untilMs: 2100 });
    expect(j.judge(facts({ lagBytes: 0 }), 2100).lagging).toBe(false);
  });

  test("a lost WAL receiver counts as over both limits; it must stream under the rejoin limit for the hold", () => {
    const { j } = healthy({ maxLagBytes: MB, rejoinAfterMs: 1000 });
    expect(j.judge(facts({ receiverStatus: "waiting" }), 0).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0 }), 100).lagging).toBe(true);
    expect(j.judge(facts({ receiverPid: null, receiverStatus: null }), 500).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0 }), 1100).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0 }), 2100).lagging).toBe(false);
  });

  test("the seconds limit has a rejoin limit too", () => {
    const { j } = healthy({ maxLagSeconds: 30, rejoinLagSeconds: 10 });
    expect(j.judge(facts({ lagBytes: 8192, replayAgeSeconds: 45 }), 0).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 8192, replayAgeSeconds: 20 }), 100)).toMatchObject({
      lagging: true,
      reason: "replay 8 kB and 20 s behind, rejoin limit 10 s",
    });
    expect(j.judge(facts({ lagBytes: 8192, replayAgeSeconds: 5 }), 200).lagging).toBe(false);
  });
});

test("retune (a reload): new limits from the next poll on; a lagging standby stays out and keeps its hold", () => {
  const { j } = healthy({ maxLagBytes: MB });
  expect(j.judge(facts({ lagBytes: 2 * MB }), 0).lagging).toBe(true);
  j.retune({
    maxLagBytes: 4 * MB,
    maxLagSeconds: undefined,
    lagGraceMs: 0,
    rejoinLagBytes: MB,
    rejoinLagSeconds: undefined,
    rejoinAfterMs: 1000,
  });
  expect(j.judge(facts({ lagBytes: 2 * MB }), 100)).toMatchObject({
    lagging: true,
    reason: "replay 2 MB behind, rejoin limit 1 MB",
  });
  expect(j.judge(facts({ lagBytes: 0 }), 200)).toMatchObject({ lagging: true, untilMs: 1200 });
  expect(j.judge(facts({ lagBytes: 0 }), 1200).lagging).toBe(false);
  expect(j.judge(facts({ lagBytes: 3 * MB }), 1300).lagging).toBe(false);
});

test("rejoinInMs: only while a lagging standby's hold runs", () => {
  const { j } = healthy({ maxLagBytes: MB, rejoinAfterMs: 3000 });
  expect(j.rejoinInMs(0)).toBeUndefined();
  j.judge(facts({ lagBytes: 2 * MB }), 0);
  expect(j.rejoinInMs(0)).toBeUndefined();
  j.judge(facts({ lagBytes: 0 }), 1000);
  expect([j.rejoinInMs(1000), j.rejoinInMs(2500), j.rejoinInMs(9000)]).toEqual([3000, 1500, 0]);
  j.judge(facts({ lagBytes: 0 }), 4000);
  expect(j.rejoinInMs(4000)).toBeUndefined();
});

test("cutOff: no receiver or one not streaming; not when the columns are hidden", () => {
  expect(cutOff(facts({ receiverPid: null, receiverStatus: null }))).toBe(true);
  expect(cutOff(facts({ receiverStatus: "waiting" }))).toBe(true);
  expect(cutOff(facts({ receiverStatus: null }))).toBe(false);
  expect(cutOff(facts({ lagBytes: 99 * MB }))).toBe(false);
});

test("without pg_read_all_stats: never lagging, and one warning however many polls", () => {
  const { j, lines } = judge({ maxLagBytes: MB });
  const hidden = facts({ receiverStatus: null, lagBytes: null, replayAgeSeconds: 99 });
  for (let i = 0; i < 5; i++) expect(j.judge(hidden, i).lagging).toBe(false);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("warning: cannot read the standby's lag");
});
