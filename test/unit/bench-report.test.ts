// The bench's report on its own: figures of a run in, rows of the printed table out. The paired
// difference (median of replstatus minus C per trial) is computed here, not by hand in the docs.
import { expect, test } from "bun:test";
import { fmtSignedMs, pairedDiff, reportRows, table, type Results } from "../../bench/report.ts";
import type { FailoverResult } from "../../bench/failover.ts";
import type { DowntimeResult } from "../../bench/downtime.ts";
import { spread } from "../../bench/stats.ts";

test.each([
  // a (replstatus, trial order), b (C, same trials), median of a[i] - b[i], lowest, highest
  [[18, 20, 15], [14, 16, 14], 4, 1, 4],
  // The paired median (-2) is not the difference of the medians (20 - 12 = +8).
  [[10, 20, 30], [12, 8, 40], -2, -10, 12],
  // A trial lost on either side (NaN) drops out of the pairs, never shifts them.
  [[10, Number.NaN, 30, 7], [4, 5, Number.NaN, 8], 2.5, -1, 6],
  // Unequal lengths: only the common trials pair.
  [[5, 6, 7], [1], 4, 4, 4],
] as const)("pairedDiff(%j, %j) has median %d in %d..%d", (a, b, median, min, max) => {
  const d = pairedDiff([...a], [...b]);
  expect([d.median, d.min, d.max]).toEqual([median, min, max]);
});

test("pairedDiff of no common trial is NaN, printed as -", () => {
  expect(pairedDiff([], [1]).median).toBeNaN();
  expect(fmtSignedMs(pairedDiff([Number.NaN], [1]).median)).toBe("-");
});

test.each([
  [3, "+3.00 ms"],
  [-4, "-4.00 ms"],
  [-18.5, "-18.5 ms"],
  [0, "+0.00 ms"],
  [1234, "+1.23 s"],
])("fmtSignedMs(%d) is %s", (ms, text) => {
  expect(fmtSignedMs(ms)).toBe(text);
});

const base: Results = {
  date: "2026-12-06T00:00:00.000Z",
  bun: "1.4.5",
  replstatus: "0.1.0",
  host: { cpus: 2, kernel: "6.1", loadavgStart: "0.5 0.5 0.5" },
  quick: false,
  bgw: { available: true, install: "" },
  backlog: { flag: true, replstatus: 4096 },
  raisedBacklog: 4096,
};

const failover: FailoverResult = {
  trials: 3,
  loadC: 64,
  cells: [
    { event: "promote", key: "replstatus", ms: spread([18, 20, 15]) },
    { event: "promote", key: "bgw", ms: spread([14, 16, 14]) },
    { event: "kill-9", key: "replstatus", ms: spread([14, 250, 15]) },
    { event: "kill-9", key: "bgw", ms: spread([13, 13, 12]) },
  ],
};

test("a promotion row carries the median, the C worker's, the ratio and the paired difference", () => {
  const rows = reportRows({ ...base, failover });
  expect(rows.map((r) => r.figure)).toEqual([
    "promote -> MASTER, default poll (p50 of 3)",
    "kill -9 postmaster -> not MASTER (p50 of 3)",
  ]);
  expect(rows[0]).toEqual({
    figure: "promote -> MASTER, default poll (p50 of 3)",
    replstatus: "18.0 ms (15.0 ms..20.0 ms)",
    baseline: "14.0 ms (14.0 ms..16.0 ms)",
    ratio: "1.29x",
    paired: "+4.00 ms (+1.00 ms..+4.00 ms)",
    floor: "",
    target: "<= C + 5 ms",
    verdict: "met",
  });
  // The bound is on the median: one slow trial (250 ms) does not fail a 200 ms target.
  expect(rows[1]!.target).toBe("<= 200 ms");
  expect(rows[1]!.verdict).toBe("met");
  expect(rows[1]!.paired).toBe("+3.00 ms (+1.00 ms..+237 ms)");
});

test("the write-gap rows pair per setting, and judge replstatus's median against the C worker's", () => {
  const downtime: DowntimeResult = {
    trials: 2,
    attemptEveryMs: 5,
    settings: [{ name: "inter 100ms rise 1 (README)", line: "" }],
    cells: [
      { event: "stop-fast", setting: "inter 100ms rise 1 (README)", key: "replstatus", gapMs: spread([170, 180]) },
      { event: "stop-fast", setting: "inter 100ms rise 1 (README)", key: "bgw", gapMs: spread([160, 180]) },
    ],
  };
  const [r] = reportRows({ ...base, downtime });
  expect([r!.figure, r!.paired, r!.target, r!.verdict]).toEqual([
    "write gap, stop -m fast + promote, haproxy inter 100ms rise 1 (README) (p50 of 2)",
    "+5.00 ms (+0.00 ms..+10.0 ms)",
    "<= C",
    "NOT MET",
  ]);
});

test("a push row sets route's gap against the C worker's share, and says when PostgreSQL's own floor is above it", () => {
  const setting = "inter 100ms rise 2";
  const cell = (key: string, ms: number[]) => ({ event: "kill-9", setting, key, gapMs: spread(ms) });
  const push = (direct: number[]): DowntimeResult => ({
    trials: 2,
    attemptEveryMs: 10,
    settings: [{ name: setting, line: "" }],
    cells: [
      cell("route", [250, 260]),
      cell("bgw", [400, 410]),
      cell("replstatus", [410, 420]),
      cell("commands", [70, 80]),
      cell("pushed", [180, 190]),
      cell("direct", direct),
    ],
  });
  const [under] = reportRows({ ...base, push: push([200, 210]) });
  expect([under!.target, under!.verdict]).toEqual(["<= C / 3", "NOT MET (under PostgreSQL's floor)"]);
  expect(under!.floor).toBe(
    "replstatus checks only: 415 ms (410 ms..420 ms); pg_ctl's commands: 75.0 ms; pushed in: 185 ms; straight to the new primary: 205 ms",
  );
  // With a floor under the target, the verdict is the plain one.
  const [plain] = reportRows({ ...base, push: push([100, 110]) });
  expect(plain!.verdict).toBe("NOT MET");
});

test("without the C extension the baseline is missing, the verdict says so, and no pair is made", () => {
  const rows = reportRows({
    ...base,
    bgw: { available: false, install: "apt-get install -y postgresql-15-bgw-replstatus" },
    failover: { ...failover, cells: failover.cells.filter((c) => c.key !== "bgw") },
  });
  expect(rows[0]).toMatchObject({ baseline: "missing", ratio: "-", paired: "", verdict: "no baseline" });
});

test("the table leaves out a column no row fills, and pads the rest", () => {
  const text = table(reportRows({ ...base, failover: { ...failover, cells: failover.cells.slice(0, 1) } }));
  const [head, rule, line] = text.split("\n");
  expect(head).not.toContain("paired");
  expect(head).not.toContain("floor");
  expect(head!.indexOf("replstatus")).toBe(line!.indexOf("18.0 ms"));
  expect(rule).toMatch(/^-+( +-+)+$/);
});
