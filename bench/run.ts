// The benchmark suite: replstatus side by side with the C bgw_replstatus, measured in one run on
// one machine by the same client, with the ratio to the C original and the target from bench/README.md.
//
//   bun run bench [--quick] [--only rate,burst,storm,failover,downtime,micro,idle,restart] [--json FILE] [--svg FILE]
//
// It starts everything it measures (a PostgreSQL primary + standby with the C extension,
// replstatus in its own process, the floor server, haproxy) and stops all of it at the end or
// on Ctrl-C. See bench/README.md for what each part measures and how long it takes.
import { cpus, release } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import pkg from "../package.json";
import { DOWNTIME_SETTINGS, measureDowntime, type DowntimeResult } from "./downtime.ts";
import { LOAD_C, measureFailover, type FailoverResult } from "./failover.ts";
import { measureIdle, type IdleResult } from "./idle.ts";
import { readRssKb } from "./loadgen.ts";
import { measureBurst, measureRate, type BurstResult, type RateResult, type Target } from "./rate.ts";
import { floorCommand, startServer } from "./server.ts";
import { fmtMb, fmtMs, fmtRate, fmtSpread, spread, type Spread } from "./stats.ts";
import { findHaproxy } from "../src/demo/haproxy.ts";
import { measureRestart, type RestartResult } from "./restart.ts";
import { measureStorm, type StormResult } from "./storm.ts";
import { rateSvg } from "./svg.ts";
import { backlogSupport, bgwWorkerPid, findBgw, startBgwPair, startReplstatus, waitAnswers } from "./targets.ts";

const PARTS = ["micro", "rate", "burst", "storm", "idle", "restart", "failover", "downtime"] as const;
type Part = (typeof PARTS)[number];

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    svg: { type: "string" },
    help: { type: "boolean", default: false },
  },
  strict: true,
});
if (values.help) {
  console.log(
    "usage: bun run bench [--quick] [--only rate,burst,storm,failover,downtime,micro,idle,restart] [--json FILE] [--svg FILE]",
  );
  process.exit(0);
}
const only = values.only?.split(",").map((s) => s.trim()) ?? [...PARTS];
for (const p of only) {
  if (!(PARTS as readonly string[]).includes(p)) {
    console.error(`bench: invalid value for --only: "${p}" (expected a comma-separated list of ${PARTS.join(", ")})`);
    process.exit(2);
  }
}
const want = (p: Part) => only.includes(p);
const quick = values.quick;

// Full: medians of three runs everywhere; quick: one run of each, shorter, as a smoke test.
const PLAN = quick
  ? {
      rateRuns: 1,
      rateS: 1,
      burstRuns: 1,
      stormRuns: 1,
      stormS: 3,
      trials: 2,
      idleS: 10,
      idleWindows: 1,
      restarts: 3,
      downtimeTrials: 1,
    }
  : {
      rateRuns: 3,
      rateS: 3,
      burstRuns: 3,
      stormRuns: 3,
      stormS: 5,
      trials: 5,
      idleS: 60,
      idleWindows: 2,
      restarts: 10,
      downtimeTrials: 5,
    };
const CONCURRENCIES = [1, 16, 64, 256];
const BURST_CONNS = 1000;
const RAISED_BACKLOG = 4096;
const SETTLE_MS = 10_000;

const t0 = performance.now();
const log = (line: string) => {
  const s = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
  console.error(`[${s}s] ${line}`);
};

interface Results {
  date: string;
  bun: string;
  replstatus: string;
  host: { cpus: number; kernel: string; loadavgStart: string; loadavgEnd?: string };
  quick: boolean;
  bgw: { available: boolean; install: string };
  backlog: { flag: boolean; replstatus: number };
  rate?: RateResult;
  burst?: BurstResult;
  storm?: StormResult | { skipped: string };
  failover?: FailoverResult;
  downtime?: DowntimeResult;
  restart?: RestartResult;
  idle?: IdleResult;
  micro?: { name: string; avgNs: number; p99Ns: number }[] | { skipped: string };
  bgwRssKb?: number | null;
  /** Resident memory SETTLE_MS after the last rate run. */
  settledRssKb?: { replstatus: number; floor: number };
}

async function readLoadavg(): Promise<string> {
  try {
    return (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

const bgwInfo = findBgw();
const backlog = backlogSupport();
const results: Results = {
  date: new Date().toISOString(),
  bun: Bun.version,
  replstatus: pkg.version,
  host: { cpus: cpus().length, kernel: release(), loadavgStart: await readLoadavg() },
  quick,
  bgw: { available: bgwInfo.available, install: bgwInfo.install },
  backlog: { flag: backlog.flag, replstatus: backlog.backlog },
};

console.log(
  `replstatus ${pkg.version} benchmark, ${quick ? "quick (one run each: a smoke test, not figures to quote)" : "full"}: ` +
    `bun ${Bun.version}, ${results.host.cpus} cpus, linux ${results.host.kernel}, load average ${results.host.loadavgStart}`,
);
if (!bgwInfo.available) {
  console.log(
    `C bgw_replstatus: MISSING (no bgw_replstatus.so in ${bgwInfo.pkglibdir || "pg_config --pkglibdir"}); ` +
      `baseline figures are skipped. To measure it: ${bgwInfo.install}`,
  );
}
console.log(
  `replstatus listen backlog: ${backlog.backlog}` +
    (backlog.flag ? " (its --backlog default)" : " (Bun's fixed backlog: this replstatus has no --backlog flag)"),
);

// Every part needs the pair: micro and idle poll its primary, the rest measure its C workers.
const pair = await startBgwPair(bgwInfo.available);
try {
  const primary = pair.pair.primary;
  log(
    `pair up: primary :${primary.port}, standby :${pair.pair.standby.port}` +
      (pair.bgw ? `, C bgw on :${pair.bgwPort.get("primary")} / :${pair.bgwPort.get("standby")}` : ""),
  );

  if (want("micro")) {
    log("micro: mitata");
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "micro.ts"), "--json", "--db", primary.url], {
      stdout: "pipe",
      stderr: "inherit",
    });
    const out = await new Response(proc.stdout).text();
    if ((await proc.exited) === 0) {
      const parsed = JSON.parse(out.slice(out.indexOf("{"))) as {
        benchmarks: { alias: string; runs: { stats: { avg: number; p99: number } }[] }[];
      };
      results.micro = parsed.benchmarks.map((b) => ({
        name: b.alias,
        avgNs: b.runs[0]!.stats.avg,
        p99Ns: b.runs[0]!.stats.p99,
      }));
    } else {
      results.micro = { skipped: `micro.ts exited with ${proc.exitCode}` };
    }
  }

  if (want("rate") || want("burst") || want("storm")) {
    await using replstatus = await startReplstatus(primary);
    await using floor = await startServer(floorCommand());
    await using raised = await startServer(floorCommand("--backlog", String(RAISED_BACKLOG)));
    const bgwPort = pair.bgwPort.get("primary");
    const bgwPid = pair.bgw ? bgwWorkerPid(primary) : 0;
    await waitAnswers([replstatus.port, ...(bgwPort ? [bgwPort] : [])], "MASTER");
    results.backlog.replstatus = replstatus.backlog;
    const rs: Target = {
      key: "replstatus",
      label: `replstatus (backlog ${replstatus.backlog})`,
      port: replstatus.port,
      pid: replstatus.pid,
    };
    const bgw: Target[] = bgwPort
      ? [{ key: "bgw", label: "C bgw_replstatus (backlog 5)", port: bgwPort, pid: bgwPid }]
      : [];
    const fl: Target = { key: "floor", label: "floor, Bun.listen (backlog 512)", port: floor.port, pid: floor.pid };
    if (want("rate")) {
      log(`rate: c = ${CONCURRENCIES.join(", ")}, ${PLAN.rateRuns} run(s) of ${PLAN.rateS} s each, interleaved`);
      results.rate = await measureRate([rs, ...bgw, fl], {
        concurrencies: CONCURRENCIES,
        runs: PLAN.rateRuns,
        durationS: PLAN.rateS,
        log,
      });
      // Memory given back: both servers' resident memory once the load has been gone for 10 s.
      await Bun.sleep(SETTLE_MS);
      results.settledRssKb = {
        replstatus: (await readRssKb(replstatus.pid)) ?? Number.NaN,
        floor: (await readRssKb(floor.pid)) ?? Number.NaN,
      };
    }
    if (want("burst")) {
      log(`burst: ${BURST_CONNS} at once, ${PLAN.burstRuns} run(s)`);
      const fr: Target = {
        key: "floor-raised",
        label: `floor, Bun.listen (backlog raised to ${RAISED_BACKLOG})`,
        port: raised.port,
        pid: raised.pid,
      };
      results.burst = await measureBurst([rs, ...bgw, fl, fr], { conns: BURST_CONNS, runs: PLAN.burstRuns, log });
    }
    if (want("storm")) {
      const haproxy = findHaproxy();
      if (!haproxy) {
        results.storm = { skipped: "haproxy not found: apt-get install -y haproxy" };
        console.log("storm: SKIPPED, haproxy not found. To run it: apt-get install -y haproxy");
      } else {
        log(`storm: haproxy, 100 servers, inter 10ms, ${PLAN.stormRuns} run(s) of ${PLAN.stormS} s`);
        results.storm = await measureStorm(
          [
            { key: "replstatus", port: replstatus.port },
            ...(bgwPort ? [{ key: "bgw", port: bgwPort }] : []),
            { key: "floor", port: floor.port },
          ],
          PLAN.stormRuns,
          { interMs: 10, windowS: PLAN.stormS, warmupS: 1 },
          log,
        );
      }
    }
    if (bgwPid) results.bgwRssKb = await readRssKb(bgwPid);
  }

  if (want("idle")) {
    log(`idle: CPU time over ${PLAN.idleWindows} x ${PLAN.idleS} s`);
    results.idle = await measureIdle(primary, pair.pair.standby, PLAN.idleS, log, PLAN.idleWindows);
  }

  if (want("restart")) {
    log(`restart: ${PLAN.restarts} restarts on a held socket, then as many binding the port`);
    results.restart = await measureRestart(primary, PLAN.restarts, log);
  }

  // Last: these promote, stop and kill nodes of the pair.
  if (want("failover")) {
    log(`failover: ${PLAN.trials} trial(s) each of promote, stop -m fast, kill -9, without and with a load`);
    results.failover = await measureFailover(pair, PLAN.trials, log);
  }
  if (want("downtime")) {
    if (!findHaproxy()) {
      console.log("downtime: SKIPPED, haproxy not found. To run it: apt-get install -y haproxy");
    } else {
      log(`downtime: ${PLAN.downtimeTrials} trial(s) each of stop -m fast + promote, kill -9 + promote`);
      // Last, and on its own: a failure here must not lose the figures of the other parts.
      try {
        results.downtime = await measureDowntime(pair, PLAN.downtimeTrials, log);
      } catch (err) {
        console.log(`downtime: FAILED, ${(err as Error).message.split("\n")[0]}`);
      }
    }
  }
} finally {
  await pair.pair.stop();
}
results.host.loadavgEnd = await readLoadavg();

// ---- report ----

interface Row {
  figure: string;
  replstatus: string;
  baseline: string;
  ratio: string;
  floor: string;
  target: string;
  verdict: string;
}
const rows: Row[] = [];
const missing = results.bgw.available ? "-" : "missing";
const ratioText = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : "-";
const verdict = (ok: boolean | null) => (ok === null ? "no baseline" : ok ? "met" : "NOT MET");

if (results.rate) {
  const r = results.rate;
  const cell = (key: string, c: number) => r.cells.find((x) => x.key === key && x.concurrency === c);
  for (const c of r.concurrencies) {
    const a = cell("replstatus", c)!;
    const b = cell("bgw", c);
    const f = cell("floor", c);
    rows.push({
      figure: `conn/s, c=${c}`,
      replstatus: fmtSpread(a.connsPerS, fmtRate),
      baseline: b ? fmtSpread(b.connsPerS, fmtRate) : missing,
      ratio: b ? ratioText(a.connsPerS.median, b.connsPerS.median) : "-",
      floor: f ? fmtSpread(f.connsPerS, fmtRate) : "-",
      target: ">= 1.0x C",
      verdict: verdict(b ? a.connsPerS.median >= b.connsPerS.median : null),
    });
  }
  for (const c of r.concurrencies) {
    const a = cell("replstatus", c)!;
    const b = cell("bgw", c);
    const f = cell("floor", c);
    rows.push({
      figure: `p99, c=${c}`,
      replstatus: fmtSpread(a.p99Ms, fmtMs),
      baseline: b ? fmtSpread(b.p99Ms, fmtMs) : missing,
      ratio: b ? ratioText(a.p99Ms.median, b.p99Ms.median) : "-",
      floor: f ? fmtSpread(f.p99Ms, fmtMs) : "-",
      target: "",
      verdict: "",
    });
  }
  for (const c of r.concurrencies) {
    const a = cell("replstatus", c)!;
    const b = cell("bgw", c);
    const f = cell("floor", c);
    const errs = a.errors + a.mismatches > 0 ? `, ${a.errors} errors, ${a.mismatches} wrong` : "";
    rows.push({
      figure: `max latency, c=${c}`,
      replstatus: fmtSpread(a.maxMs, fmtMs) + errs,
      baseline: b ? fmtSpread(b.maxMs, fmtMs) + (b.errors > 0 ? `, ${b.errors} errors` : "") : missing,
      ratio: b ? ratioText(a.maxMs.median, b.maxMs.median) : "-",
      floor: f ? fmtSpread(f.maxMs, fmtMs) : "-",
      target: "< 50 ms",
      verdict: verdict(a.maxMs.median < 50 && a.errors === 0 && a.mismatches === 0),
    });
  }
  const m = r.memory.replstatus;
  const fm = r.memory.floor;
  const settled = results.settledRssKb;
  if (m && fm && settled) {
    const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    rows.push({
      figure: `RSS idle / peak of the rate runs / ${SETTLE_MS / 1000} s after`,
      replstatus: `${fmtMb(m.beforeKb)} / ${fmtMb(m.peakKb)} / ${fmtMb(settled.replstatus)}`,
      baseline: results.bgwRssKb ? `${fmtMb(results.bgwRssKb)} (bgw worker, incl. shared memory)` : missing,
      ratio: `${x(m.beforeKb, fm.beforeKb)} / ${x(m.peakKb, fm.peakKb)} / ${x(settled.replstatus, settled.floor)} of floor`,
      floor: `${fmtMb(fm.beforeKb)} / ${fmtMb(fm.peakKb)} / ${fmtMb(settled.floor)}`,
      target: "<= 1.3x / 1.1x / 1.3x floor",
      verdict: verdict(
        m.beforeKb <= 1.3 * fm.beforeKb && m.peakKb <= 1.1 * fm.peakKb && settled.replstatus <= 1.3 * settled.floor,
      ),
    });
  }
}
if (results.burst) {
  const cell = (key: string) => results.burst!.cells.find((x) => x.key === key);
  const a = cell("replstatus")!;
  const b = cell("bgw");
  const f = cell("floor");
  const fr = cell("floor-raised");
  const floorText = (k: "p999Ms" | "maxMs") =>
    [f ? `${fmtSpread(f[k], fmtMs)} @512` : "", fr ? `${fmtSpread(fr[k], fmtMs)} @${RAISED_BACKLOG}` : ""]
      .filter(Boolean)
      .join("; ");
  rows.push({
    figure: `burst ${BURST_CONNS}, p99.9 (backlog ${results.backlog.replstatus})`,
    replstatus: fmtSpread(a.p999Ms, fmtMs),
    baseline: b ? fmtSpread(b.p999Ms, fmtMs) : missing,
    ratio: b ? ratioText(a.p999Ms.median, b.p999Ms.median) : "-",
    floor: floorText("p999Ms"),
    target: "< 100 ms",
    verdict: verdict(a.p999Ms.median < 100),
  });
  rows.push({
    figure: `burst ${BURST_CONNS}, max / errors`,
    replstatus: `${fmtSpread(a.maxMs, fmtMs)} / ${a.errors}`,
    baseline: b ? `${fmtSpread(b.maxMs, fmtMs)} / ${b.errors}` : missing,
    ratio: b ? ratioText(a.maxMs.median, b.maxMs.median) : "-",
    floor: floorText("maxMs"),
    target: "no errors",
    verdict: verdict(a.errors === 0),
  });
}
if (results.storm && "cells" in results.storm) {
  const s = results.storm;
  const cell = (key: string) => s.cells.find((x) => x.key === key);
  const a = cell("replstatus")!;
  const b = cell("bgw");
  const f = cell("floor");
  rows.push({
    figure: `haproxy ${s.servers} servers inter ${s.interMs}ms: checks/s`,
    replstatus: fmtSpread(a.checksPerS, fmtRate),
    baseline: b ? fmtSpread(b.checksPerS, fmtRate) : missing,
    ratio: b ? ratioText(a.checksPerS.median, b.checksPerS.median) : "-",
    floor: f ? fmtSpread(f.checksPerS, fmtRate) : "-",
    target: ">= 1.5x C",
    verdict: verdict(b ? a.checksPerS.median >= 1.5 * b.checksPerS.median : null),
  });
  const perWindow = (x: { downEvents: Spread }) => `${fmtSpread(x.downEvents, (n) => n.toFixed(0))} in ${s.windowS} s`;
  rows.push({
    figure: "haproxy: false DOWN events",
    replstatus: perWindow(a),
    baseline: b ? perWindow(b) : missing,
    ratio: "",
    floor: f ? perWindow(f) : "-",
    target: "0",
    verdict: verdict(a.runs.every((r) => r.downEvents === 0)),
  });
}
if (results.idle) {
  const row = (k: string) => results.idle!.rows.find((r) => r.key === k);
  const others = results.idle.rows.filter((r) => !r.key.startsWith("replstatus"));
  for (const [key, where] of [
    ["replstatus", "primary"],
    ["replstatus-standby", "standby"],
  ] as const) {
    const a = row(key);
    const backend = row(`${key}-backend`);
    if (!a) continue;
    // With two windows the figure is the second: the first holds the warm-up (JIT, GC timer).
    const first = results.idle.firstRows?.find((r) => r.key === key);
    const w = results.idle.windowS;
    const when = first ? `${w} s, after a first ${w} s` : `${w} s`;
    rows.push({
      figure: `idle CPU on the ${where} over ${when} (% of a core)`,
      replstatus: `${a.cpuPercent.toFixed(2)}%${first ? ` (first window ${first.cpuPercent.toFixed(2)}%)` : ""}, ${fmtMb(a.rssKb)}`,
      baseline: backend ? `its backend ${backend.cpuPercent.toFixed(2)}%` : "(inside PostgreSQL)",
      ratio: "",
      floor: others.map((o) => `${o.key} ${o.cpuPercent.toFixed(2)}%`).join("; "),
      target: "<= 0.5%",
      verdict: verdict(a.cpuPercent <= 0.5),
    });
  }
}
if (results.failover) {
  const f = results.failover;
  const cell = (event: string, key: string) => f.cells.find((x) => x.event === event && x.key === key)?.ms;
  const plan: [string, string, string, (a: Spread, b: Spread | undefined) => [string, boolean | null]][] = [
    [
      "promote",
      "replstatus",
      "promote -> MASTER, default poll",
      (a, b) => ["<= C + 5 ms", b ? a.median <= b.median + 5 : null],
    ],
    [
      "promote",
      "replstatus-10ms",
      "promote -> MASTER, poll 10ms",
      (a, b) => ["<= C + 5 ms", b ? a.median <= b.median + 5 : null],
    ],
    [
      `promote-c${LOAD_C}`,
      "replstatus",
      `promote -> MASTER, c=${LOAD_C} load on each`,
      (a, b) => ["<= C + 5 ms", b ? a.median <= b.median + 5 : null],
    ],
    ["stop-fast", "replstatus", "stop -m fast -> not MASTER", (a) => ["<= 100 ms", a.median <= 100]],
    ["stop-fast", "replstatus-10ms", "stop -m fast -> not MASTER, poll 10ms", (a) => ["<= 100 ms", a.median <= 100]],
    ["kill-9", "replstatus", "kill -9 postmaster -> not MASTER", (a) => ["<= 200 ms", a.median <= 200]],
    ["kill-9", "replstatus-10ms", "kill -9 postmaster -> not MASTER, poll 10ms", (a) => ["<= 200 ms", a.median <= 200]],
    [
      `stop-fast-c${LOAD_C}`,
      "replstatus",
      `stop -m fast -> not MASTER, c=${LOAD_C} load on each`,
      (a) => ["<= 100 ms", a.median <= 100],
    ],
    [
      `kill-9-c${LOAD_C}`,
      "replstatus",
      `kill -9 postmaster -> not MASTER, c=${LOAD_C} load on each`,
      (a) => ["<= 200 ms", a.median <= 200],
    ],
  ];
  for (const [event, key, figure, judge] of plan) {
    const a = cell(event, key);
    if (!a) continue;
    const b = cell(event, "bgw");
    const [target, ok] = judge(a, b);
    rows.push({
      figure: `${figure} (p50 of ${f.trials})`,
      replstatus: fmtSpread(a, fmtMs),
      baseline: b ? fmtSpread(b, fmtMs) : missing,
      ratio: b ? ratioText(a.median, b.median) : "-",
      floor: "",
      target,
      verdict: verdict(ok),
    });
  }
}

if (results.restart) {
  const held = results.restart.cells.find((c) => c.mode === "held")!;
  const bind = results.restart.cells.find((c) => c.mode === "bind")!;
  const notMaster = (c: typeof held) => Object.values(c.failed).reduce((a, b) => a + b, 0);
  rows.push({
    figure: `SIGTERM -> exit (p50 of ${held.restarts + bind.restarts})`,
    replstatus: fmtSpread(spread([...held.exitMs.runs, ...bind.exitMs.runs]), fmtMs),
    baseline: "(inside PostgreSQL)",
    ratio: "",
    floor: `PostgreSQL SIGSTOPped: ${fmtSpread(results.restart.hungExitMs, fmtMs)}`,
    target: "<= 100 ms",
    verdict: verdict(held.exitMs.max <= 100 && bind.exitMs.max <= 100 && results.restart.hungExitMs.max <= 100),
  });
  rows.push({
    figure: `restart: longest gap between answers (p50 of ${held.restarts})`,
    replstatus: `${fmtSpread(held.gapMs, fmtMs)}, ${notMaster(held)} not MASTER of ${held.probes}`,
    baseline: "",
    ratio: "",
    floor: `binding the port: ${fmtSpread(bind.gapMs, fmtMs)}, ${notMaster(bind)} not MASTER of ${bind.probes}`,
    target: "no check refused",
    verdict: verdict(notMaster(held) === 0),
  });
}

if (results.downtime) {
  const d = results.downtime;
  const cell = (event: string, setting: string, key: string) =>
    d.cells.find((x) => x.event === event && x.setting === setting && x.key === key)?.gapMs;
  const events: [string, string][] = [
    ["stop-fast", "write gap, stop -m fast + promote"],
    ["kill-9", "write gap, kill -9 + promote"],
  ];
  for (const [event, label] of events) {
    for (const { name } of DOWNTIME_SETTINGS) {
      const a = cell(event, name, "replstatus");
      if (!a) continue;
      const b = cell(event, name, "bgw");
      rows.push({
        figure: `${label}, haproxy ${name} (p50 of ${d.trials})`,
        replstatus: fmtSpread(a, fmtMs),
        baseline: b ? fmtSpread(b, fmtMs) : missing,
        ratio: b ? ratioText(a.median, b.median) : "-",
        floor: "",
        target: "<= C",
        verdict: verdict(b ? a.median <= b.median : null),
      });
    }
  }
}

function table(rs: Row[]): string {
  const head: Row = {
    figure: "figure",
    replstatus: "replstatus",
    baseline: "C bgw_replstatus",
    ratio: "ratio",
    floor: "floor / reference",
    target: "target",
    verdict: "",
  };
  const cols = Object.keys(head) as (keyof Row)[];
  const width = cols.map((c) => Math.max(...[head, ...rs].map((r) => r[c].length)));
  const line = (r: Row) =>
    cols
      .map((c, i) => r[c].padEnd(width[i]!))
      .join("  ")
      .trimEnd();
  return [line(head), width.map((w) => "-".repeat(w)).join("  "), ...rs.map(line)].join("\n");
}

console.log("");
console.log(table(rows));
if (Array.isArray(results.micro)) {
  console.log("\nmicro-benchmarks (mitata, per call):");
  for (const m of results.micro) {
    const f = (ns: number) =>
      ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(1)} us` : `${ns.toFixed(2)} ns`;
    console.log(`  ${m.name.padEnd(48)} avg ${f(m.avgNs).padStart(10)}  p99 ${f(m.p99Ns).padStart(10)}`);
  }
}
if (results.rate?.maxTimeWait !== undefined && results.rate.maxTimeWait !== null) {
  console.log(`\nmost TIME_WAIT sockets on the host before a rate run: ${results.rate.maxTimeWait}`);
}
console.log(
  `load average at start ${results.host.loadavgStart}, at end ${results.host.loadavgEnd}` +
    ` (on ${results.host.cpus} cpus; other work on the machine makes the figures noisy, the same-run ratios less so)`,
);
console.log(`took ${((performance.now() - t0) / 1000).toFixed(0)} s`);

if (values.json) {
  mkdirSync(dirname(values.json), { recursive: true });
  writeFileSync(values.json, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${values.json}`);
}
const svgFile = values.svg ?? (values.json ? join(dirname(values.json), "rate.svg") : undefined);
if (svgFile && results.rate) {
  mkdirSync(dirname(svgFile), { recursive: true });
  writeFileSync(
    svgFile,
    rateSvg(
      results.rate,
      `${results.date.slice(0, 10)}, bun ${results.bun}, ${results.host.cpus} cpus; medians of ${results.rate.runsPerCell} run(s), whiskers min..max`,
    ),
  );
  console.log(`wrote ${svgFile}`);
}
process.exit(0);
