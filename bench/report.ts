// The suite's report: from the figures of one run (Results) to the table `bun run bench` prints, with
// the ratio to the C original, the paired difference where both watched the same event, the target
// from bench/README.md and the verdict. Pure: no I/O, no clock; run.ts measures, this judges.
import type { BurstResult, RateResult } from "./rate.ts";
import type { DowntimeResult } from "./downtime.ts";
import type { FailoverResult } from "./failover.ts";
import type { IdleResult } from "./idle.ts";
import type { RestartResult } from "./restart.ts";
import type { StormResult } from "./storm.ts";
import { fmtMb, fmtMs, fmtRate, fmtSpread, spread, type Spread } from "./stats.ts";

export interface Results {
  date: string;
  bun: string;
  replstatus: string;
  host: { cpus: number; kernel: string; loadavgStart: string; loadavgEnd?: string };
  quick: boolean;
  bgw: { available: boolean; install: string };
  backlog: { flag: boolean; replstatus: number };
  /** The floor's backlog in the burst part's raised run. */
  raisedBacklog: number;
  rate?: RateResult;
  burst?: BurstResult;
  storm?: StormResult | { skipped: string };
  failover?: FailoverResult;
  downtime?: DowntimeResult;
  /** The push part (push.ts): the downtime part's figures with a "route" key beside "replstatus" and "bgw". */
  push?: DowntimeResult;
  restart?: RestartResult;
  idle?: IdleResult;
  micro?: { name: string; avgNs: number; p99Ns: number }[] | { skipped: string };
  bgwRssKb?: number | null;
  /** Resident memory settleS after the last rate run. */
  settledRssKb?: { replstatus: number; floor: number; settleS: number };
}

export interface Row {
  figure: string;
  replstatus: string;
  baseline: string;
  ratio: string;
  /** Median of the per-trial differences (replstatus minus C) where both timed the same event. */
  paired: string;
  floor: string;
  target: string;
  verdict: string;
}

/**
 * The per-trial differences a[i] - b[i] of two series timed on the same events (trial i of each is
 * the same promotion, stop or kill), as a spread. A trial either side lost (NaN) drops out.
 * The median of these is less disturbed by the phase of the checks than the difference of medians.
 */
export function pairedDiff(a: number[], b: number[]): Spread {
  const n = Math.min(a.length, b.length);
  const diffs: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (Number.isFinite(d)) diffs.push(d);
  }
  return spread(diffs);
}

/** `+3.0 ms`, `-18 ms`: a difference, signed. */
export function fmtSignedMs(n: number): string {
  if (!Number.isFinite(n)) return "-";
  return `${n < 0 ? "-" : "+"}${fmtMs(Math.abs(n))}`;
}

export function ratioText(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : "-";
}

function verdict(ok: boolean | null): string {
  return ok === null ? "no baseline" : ok ? "met" : "NOT MET";
}

function row(r: Partial<Row> & Pick<Row, "figure" | "replstatus">): Row {
  return { baseline: "", ratio: "", paired: "", floor: "", target: "", verdict: "", ...r };
}

/** A timed event seen by replstatus (a) and the C worker (b): median, ratio and paired difference. */
function versus(
  a: Spread,
  b: Spread | undefined,
  missing: string,
): Pick<Row, "replstatus" | "baseline" | "ratio" | "paired"> {
  return {
    replstatus: fmtSpread(a, fmtMs),
    baseline: b ? fmtSpread(b, fmtMs) : missing,
    ratio: b ? ratioText(a.median, b.median) : "-",
    paired: b ? fmtSpread(pairedDiff(a.runs, b.runs), fmtSignedMs) : "",
  };
}

function rateRows(res: Results, missing: string): Row[] {
  const r = res.rate!;
  const cell = (key: string, c: number) => r.cells.find((x) => x.key === key && x.concurrency === c);
  const rows: Row[] = [];
  for (const c of r.concurrencies) {
    const [a, b, f] = [cell("replstatus", c)!, cell("bgw", c), cell("floor", c)];
    rows.push(
      row({
        figure: `conn/s, c=${c}`,
        replstatus: fmtSpread(a.connsPerS, fmtRate),
        baseline: b ? fmtSpread(b.connsPerS, fmtRate) : missing,
        ratio: b ? ratioText(a.connsPerS.median, b.connsPerS.median) : "-",
        floor: f ? fmtSpread(f.connsPerS, fmtRate) : "-",
        target: ">= 1.0x C",
        verdict: verdict(b ? a.connsPerS.median >= b.connsPerS.median : null),
      }),
    );
  }
  for (const c of r.concurrencies) {
    const [a, b, f] = [cell("replstatus", c)!, cell("bgw", c), cell("floor", c)];
    rows.push(
      row({
        figure: `p99, c=${c}`,
        replstatus: fmtSpread(a.p99Ms, fmtMs),
        baseline: b ? fmtSpread(b.p99Ms, fmtMs) : missing,
        ratio: b ? ratioText(a.p99Ms.median, b.p99Ms.median) : "-",
        floor: f ? fmtSpread(f.p99Ms, fmtMs) : "-",
      }),
    );
  }
  for (const c of r.concurrencies) {
    const [a, b, f] = [cell("replstatus", c)!, cell("bgw", c), cell("floor", c)];
    const errs = a.errors + a.mismatches > 0 ? `, ${a.errors} errors, ${a.mismatches} wrong` : "";
    rows.push(
      row({
        figure: `max latency, c=${c}`,
        replstatus: fmtSpread(a.maxMs, fmtMs) + errs,
        baseline: b ? fmtSpread(b.maxMs, fmtMs) + (b.errors > 0 ? `, ${b.errors} errors` : "") : missing,
        ratio: b ? ratioText(a.maxMs.median, b.maxMs.median) : "-",
        floor: f ? fmtSpread(f.maxMs, fmtMs) : "-",
        target: "< 50 ms",
        verdict: verdict(a.maxMs.median < 50 && a.errors === 0 && a.mismatches === 0),
      }),
    );
  }
  const [m, fm, settled] = [r.memory.replstatus, r.memory.floor, res.settledRssKb];
  if (m && fm && settled) {
    const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    rows.push(
      row({
        figure: `RSS idle / peak of the rate runs / ${settled.settleS} s after`,
        replstatus: `${fmtMb(m.beforeKb)} / ${fmtMb(m.peakKb)} / ${fmtMb(settled.replstatus)}`,
        baseline: res.bgwRssKb ? `${fmtMb(res.bgwRssKb)} (bgw worker, incl. shared memory)` : missing,
        ratio: `${x(m.beforeKb, fm.beforeKb)} / ${x(m.peakKb, fm.peakKb)} / ${x(settled.replstatus, settled.floor)} of floor`,
        floor: `${fmtMb(fm.beforeKb)} / ${fmtMb(fm.peakKb)} / ${fmtMb(settled.floor)}`,
        target: "<= 1.3x / 1.1x / 1.3x floor",
        verdict: verdict(
          m.beforeKb <= 1.3 * fm.beforeKb && m.peakKb <= 1.1 * fm.peakKb && settled.replstatus <= 1.3 * settled.floor,
        ),
      }),
    );
  }
  return rows;
}

function burstRows(res: Results, missing: string): Row[] {
  const burst = res.burst!;
  const cell = (key: string) => burst.cells.find((x) => x.key === key);
  const [a, b, f, fr] = [cell("replstatus")!, cell("bgw"), cell("floor"), cell("floor-raised")];
  const floorText = (k: "p999Ms" | "maxMs") =>
    [f ? `${fmtSpread(f[k], fmtMs)} @512` : "", fr ? `${fmtSpread(fr[k], fmtMs)} @${res.raisedBacklog}` : ""]
      .filter(Boolean)
      .join("; ");
  return [
    row({
      figure: `burst ${burst.conns}, p99.9 (backlog ${res.backlog.replstatus})`,
      replstatus: fmtSpread(a.p999Ms, fmtMs),
      baseline: b ? fmtSpread(b.p999Ms, fmtMs) : missing,
      ratio: b ? ratioText(a.p999Ms.median, b.p999Ms.median) : "-",
      floor: floorText("p999Ms"),
      target: "< 100 ms",
      verdict: verdict(a.p999Ms.median < 100),
    }),
    row({
      figure: `burst ${burst.conns}, max / errors`,
      replstatus: `${fmtSpread(a.maxMs, fmtMs)} / ${a.errors}`,
      baseline: b ? `${fmtSpread(b.maxMs, fmtMs)} / ${b.errors}` : missing,
      ratio: b ? ratioText(a.maxMs.median, b.maxMs.median) : "-",
      floor: floorText("maxMs"),
      target: "no errors",
      verdict: verdict(a.errors === 0),
    }),
  ];
}

function stormRows(s: StormResult, missing: string): Row[] {
  const cell = (key: string) => s.cells.find((x) => x.key === key);
  const [a, b, f] = [cell("replstatus")!, cell("bgw"), cell("floor")];
  const perWindow = (x: { downEvents: Spread }) => `${fmtSpread(x.downEvents, (n) => n.toFixed(0))} in ${s.windowS} s`;
  return [
    row({
      figure: `haproxy ${s.servers} servers inter ${s.interMs}ms: checks/s`,
      replstatus: fmtSpread(a.checksPerS, fmtRate),
      baseline: b ? fmtSpread(b.checksPerS, fmtRate) : missing,
      ratio: b ? ratioText(a.checksPerS.median, b.checksPerS.median) : "-",
      floor: f ? fmtSpread(f.checksPerS, fmtRate) : "-",
      target: ">= 1.5x C",
      verdict: verdict(b ? a.checksPerS.median >= 1.5 * b.checksPerS.median : null),
    }),
    row({
      figure: "haproxy: false DOWN events",
      replstatus: perWindow(a),
      baseline: b ? perWindow(b) : missing,
      floor: f ? perWindow(f) : "-",
      target: "0",
      verdict: verdict(a.runs.every((r) => r.downEvents === 0)),
    }),
  ];
}

function idleRows(idle: IdleResult): Row[] {
  const find = (k: string) => idle.rows.find((r) => r.key === k);
  const others = idle.rows.filter((r) => !r.key.startsWith("replstatus"));
  const rows: Row[] = [];
  for (const [key, where] of [
    ["replstatus", "primary"],
    ["replstatus-standby", "standby"],
  ] as const) {
    const a = find(key);
    if (!a) continue;
    const backend = find(`${key}-backend`);
    // With two windows the figure is the second: the first holds the warm-up (JIT, GC timer).
    const first = idle.firstRows?.find((r) => r.key === key);
    const when = first ? `${idle.windowS} s, after a first ${idle.windowS} s` : `${idle.windowS} s`;
    rows.push(
      row({
        figure: `idle CPU on the ${where} over ${when} (% of a core)`,
        replstatus: `${a.cpuPercent.toFixed(2)}%${first ? ` (first window ${first.cpuPercent.toFixed(2)}%)` : ""}, ${fmtMb(a.rssKb)}`,
        baseline: backend ? `its backend ${backend.cpuPercent.toFixed(2)}%` : "(inside PostgreSQL)",
        floor: others.map((o) => `${o.key} ${o.cpuPercent.toFixed(2)}%`).join("; "),
        target: "<= 0.5%",
        verdict: verdict(a.cpuPercent <= 0.5),
      }),
    );
  }
  return rows;
}

function failoverRows(f: FailoverResult, missing: string): Row[] {
  const cell = (event: string, key: string) => f.cells.find((x) => x.event === event && x.key === key)?.ms;
  const c = f.loadC;
  const nearC = (a: Spread, b: Spread | undefined): [string, boolean | null] => [
    "<= C + 5 ms",
    b ? a.median <= b.median + 5 : null,
  ];
  const within =
    (ms: number) =>
    (a: Spread): [string, boolean | null] => [`<= ${ms} ms`, a.median <= ms];
  const plan: [string, string, string, (a: Spread, b: Spread | undefined) => [string, boolean | null]][] = [
    ["promote", "replstatus", "promote -> MASTER, default poll", nearC],
    ["promote", "replstatus-10ms", "promote -> MASTER, poll 10ms", nearC],
    [`promote-c${c}`, "replstatus", `promote -> MASTER, c=${c} load on each`, nearC],
    ["stop-fast", "replstatus", "stop -m fast -> not MASTER", within(100)],
    ["stop-fast", "replstatus-10ms", "stop -m fast -> not MASTER, poll 10ms", within(100)],
    ["kill-9", "replstatus", "kill -9 postmaster -> not MASTER", within(200)],
    ["kill-9", "replstatus-10ms", "kill -9 postmaster -> not MASTER, poll 10ms", within(200)],
    [`stop-fast-c${c}`, "replstatus", `stop -m fast -> not MASTER, c=${c} load on each`, within(100)],
    [`kill-9-c${c}`, "replstatus", `kill -9 postmaster -> not MASTER, c=${c} load on each`, within(200)],
  ];
  const rows: Row[] = [];
  for (const [event, key, figure, judge] of plan) {
    const a = cell(event, key);
    if (!a) continue;
    const b = cell(event, "bgw");
    const [target, ok] = judge(a, b);
    rows.push(
      row({ figure: `${figure} (p50 of ${f.trials})`, ...versus(a, b, missing), target, verdict: verdict(ok) }),
    );
  }
  return rows;
}

function restartRows(r: RestartResult): Row[] {
  const held = r.cells.find((c) => c.mode === "held")!;
  const bind = r.cells.find((c) => c.mode === "bind")!;
  const notMaster = (c: typeof held) => Object.values(c.failed).reduce((a, b) => a + b, 0);
  return [
    row({
      figure: `SIGTERM -> exit (p50 of ${held.restarts + bind.restarts})`,
      replstatus: fmtSpread(spread([...held.exitMs.runs, ...bind.exitMs.runs]), fmtMs),
      baseline: "(inside PostgreSQL)",
      floor: `PostgreSQL SIGSTOPped: ${fmtSpread(r.hungExitMs, fmtMs)}`,
      target: "<= 100 ms",
      verdict: verdict(held.exitMs.max <= 100 && bind.exitMs.max <= 100 && r.hungExitMs.max <= 100),
    }),
    row({
      figure: `restart: longest gap between answers (p50 of ${held.restarts})`,
      replstatus: `${fmtSpread(held.gapMs, fmtMs)}, ${notMaster(held)} not MASTER of ${held.probes}`,
      floor: `binding the port: ${fmtSpread(bind.gapMs, fmtMs)}, ${notMaster(bind)} not MASTER of ${bind.probes}`,
      target: "no check refused",
      verdict: verdict(notMaster(held) === 0),
    }),
  ];
}

function downtimeRows(d: DowntimeResult, missing: string): Row[] {
  const cell = (event: string, setting: string, key: string) =>
    d.cells.find((x) => x.event === event && x.setting === setting && x.key === key)?.gapMs;
  const rows: Row[] = [];
  for (const [event, label] of [
    ["stop-fast", "write gap, stop -m fast + promote"],
    ["kill-9", "write gap, kill -9 + promote"],
  ] as const) {
    for (const { name } of d.settings) {
      const a = cell(event, name, "replstatus");
      if (!a) continue;
      const b = cell(event, name, "bgw");
      const direct = cell(event, name, "direct");
      rows.push(
        row({
          figure: `${label}, haproxy ${name} (p50 of ${d.trials})`,
          ...versus(a, b, missing),
          floor: direct ? `straight to the new primary: ${fmtSpread(direct, fmtMs)}` : "",
          target: "<= C",
          verdict: verdict(b ? a.median <= b.median : null),
        }),
      );
    }
  }
  return rows;
}

/** The push targets (push.ts): with `replstatus route`, this share of the C worker's gap at most. */
const PUSH_TARGETS: Record<string, number> = { "inter 100ms rise 2": 1 / 3, "inter 1s rise 2": 1 / 10 };

function pushRows(d: DowntimeResult, missing: string): Row[] {
  const cell = (event: string, setting: string, key: string) =>
    d.cells.find((x) => x.event === event && x.setting === setting && x.key === key)?.gapMs;
  const rows: Row[] = [];
  for (const [event, label] of [
    ["stop-fast", "write gap with route, stop -m fast + promote"],
    ["kill-9", "write gap with route, kill -9 + promote"],
  ] as const) {
    for (const { name } of d.settings) {
      const a = cell(event, name, "route");
      if (!a) continue;
      const b = cell(event, name, "bgw");
      const checks = cell(event, name, "replstatus");
      const pushed = cell(event, name, "pushed");
      const commands = cell(event, name, "commands");
      const direct = cell(event, name, "direct");
      const share = PUSH_TARGETS[name] ?? 1;
      // What the route gap is made of: PostgreSQL's own commands, then the push, then a write's connection.
      const parts = [
        checks && `replstatus checks only: ${fmtSpread(checks, fmtMs)}`,
        commands && `pg_ctl's commands: ${fmtMs(commands.median)}`,
        pushed && `pushed in: ${fmtMs(pushed.median)}`,
        direct && `straight to the new primary: ${fmtMs(direct.median)}`,
      ];
      rows.push(
        row({
          figure: `${label}, haproxy ${name} (p50 of ${d.trials})`,
          ...versus(a, b, missing),
          floor: parts.filter(Boolean).join("; "),
          target: `<= C / ${Math.round(1 / share)}`,
          // A target under the gap of a client writing straight to the new primary is out of any router's reach.
          verdict:
            b && a.median > b.median * share && direct && direct.median > b.median * share
              ? "NOT MET (under PostgreSQL's floor)"
              : verdict(b ? a.median <= b.median * share : null),
        }),
      );
    }
  }
  return rows;
}

/** Every row of the report, in the order of bench/README.md's targets. */
export function reportRows(res: Results): Row[] {
  const missing = res.bgw.available ? "-" : "missing";
  return [
    ...(res.rate ? rateRows(res, missing) : []),
    ...(res.burst ? burstRows(res, missing) : []),
    ...(res.storm && "cells" in res.storm ? stormRows(res.storm, missing) : []),
    ...(res.idle ? idleRows(res.idle) : []),
    ...(res.failover ? failoverRows(res.failover, missing) : []),
    ...(res.restart ? restartRows(res.restart) : []),
    ...(res.downtime ? downtimeRows(res.downtime, missing) : []),
    ...(res.push ? pushRows(res.push, missing) : []),
  ];
}

const HEAD: Row = {
  figure: "figure",
  replstatus: "replstatus",
  baseline: "C bgw_replstatus",
  ratio: "ratio",
  paired: "paired (rs - C)",
  floor: "floor / reference",
  target: "target",
  verdict: "",
};

/** The rows as a plain-text table; a column no row fills is left out. */
export function table(rows: Row[]): string {
  const cols = (Object.keys(HEAD) as (keyof Row)[]).filter((c) => c === "figure" || rows.some((r) => r[c] !== ""));
  const width = cols.map((c) => Math.max(...[HEAD, ...rows].map((r) => r[c].length)));
  const line = (r: Row) =>
    cols
      .map((c, i) => r[c].padEnd(width[i]!))
      .join("  ")
      .trimEnd();
  return [line(HEAD), width.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** A mitata figure per call: `12.34 ns`, `5.6 us`, `1.20 ms`. */
export function fmtNs(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(1)} us` : `${ns.toFixed(2)} ns`;
}
