// The lag rule on its own: a table of polls in, verdicts out. The facts are
// what POLL_QUERY returns; the end-to-end tests in test/e2e/http.test.ts show the same
// rule against a real standby.
import { describe, expect, test } from "bun:test";
import { createLagJudge, type LagLimits } from "../../src/poll/lag.ts";
import { createLogger } from "../../src/log.ts";
import type { PollFacts } from "../../src/poll/facts.ts";

const MB = 1024 * 1024;

function facts(over: Partial<PollFacts>): PollFacts {
  return {
    inRecovery: true,
    receiverPid: 4242,
    receiverStatus: "streaming",
    lagBytes: 0,
    replayAgeSeconds: 0,
    replayLsn: null,
    systemId: "7712175825285183157",
    timeline: 1,
    startedAt: 0,
    durationMs: 1,
    ...over,
  };
}

function judge(limits: Partial<LagLimits>) {
  const lines: string[] = [];
  const j = createLagJudge(
    { maxLagBytes: undefined, maxLagSeconds: undefined, lagGraceMs: 0, ...limits },
    createLogger((line) => lines.push(line)),
  );
  return { j, lines };
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
  ] as const)("%s", (_, limits, poll, lagging, reason) => {
    const { j } = judge(limits);
    expect(j.judge(facts(poll), false, 0)).toEqual({ lagging, reason });
  });
});

describe("grace", () => {
  test("a healthy standby must stay over the limit for the grace period; back at once when under", () => {
    const { j } = judge({ maxLagBytes: MB, lagGraceMs: 1000 });
    const over = facts({ lagBytes: 2 * MB });
    expect(j.judge(over, true, 0).lagging).toBe(false);
    expect(j.judge(over, true, 999).lagging).toBe(false);
    expect(j.judge(over, true, 1000).lagging).toBe(true);
    // Lagging stays lagging while over, and the first poll under ends it.
    expect(j.judge(over, false, 1050).lagging).toBe(true);
    expect(j.judge(facts({ lagBytes: 0 }), false, 1100).lagging).toBe(false);
  });

  test("a spike shorter than the grace never flips it, and the next spike starts a new count", () => {
    const { j } = judge({ maxLagBytes: MB, lagGraceMs: 1000 });
    expect(j.judge(facts({ lagBytes: 2 * MB }), true, 0).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 0 }), true, 500).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 2 * MB }), true, 900).lagging).toBe(false);
    expect(j.judge(facts({ lagBytes: 2 * MB }), true, 1500).lagging).toBe(false);
  });

  test("not coming from a healthy standby (start-up, reconnect): lagging at once", () => {
    const { j } = judge({ maxLagBytes: MB, lagGraceMs: 60_000 });
    expect(j.judge(facts({ lagBytes: 2 * MB }), false, 0).lagging).toBe(true);
  });

  test("reset forgets an excursion", () => {
    const { j } = judge({ maxLagBytes: MB, lagGraceMs: 1000 });
    j.judge(facts({ lagBytes: 2 * MB }), true, 0);
    j.reset();
    expect(j.judge(facts({ lagBytes: 2 * MB }), true, 1000).lagging).toBe(false);
  });
});

test("without pg_read_all_stats: never lagging, and one warning however many polls", () => {
  const { j, lines } = judge({ maxLagBytes: MB });
  const hidden = facts({ receiverStatus: null, lagBytes: null, replayAgeSeconds: 99 });
  for (let i = 0; i < 5; i++) expect(j.judge(hidden, false, i).lagging).toBe(false);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("warning: cannot read the standby's lag");
});
