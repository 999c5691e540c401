// The benchmark suite: replstatus side by side with the C bgw_replstatus, measured in one run on
// one machine by the same client, with the ratio to the C original and the target from bench/README.md.
//
//   bun run bench [--quick] [--only rate,burst,storm,failover,downtime,push,micro,idle,restart] [--json FILE] [--svg FILE]
//
// It starts everything it measures (a PostgreSQL primary + standby with the C extension,
// replstatus in its own process, the floor server, haproxy) and stops all of it at the end or
// on Ctrl-C. See bench/README.md for what each part measures and how long it takes; report.ts
// (pure) turns the figures into the printed table.
import { cpus, release } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import pkg from "../package.json";
import { measureDowntime } from "./downtime.ts";
import { measurePush } from "./push.ts";
import { measureFailover } from "./failover.ts";
import { measureIdle } from "./idle.ts";
import { readRssKb } from "./loadgen.ts";
import { measureBurst, measureRate, type Target } from "./rate.ts";
import { floorCommand, startServer } from "./server.ts";
import { fmtNs, reportRows, table, type Results } from "./report.ts";
import { findHaproxy } from "../src/demo/haproxy.ts";
import { measureRestart } from "./restart.ts";
import { measureStorm } from "./storm.ts";
import { rateSvg } from "./svg.ts";
import { backlogSupport, bgwWorkerPid, findBgw, startBgwPair, startReplstatus, waitAnswers } from "./targets.ts";

const PARTS = ["micro", "rate", "burst", "storm", "idle", "restart", "failover", "downtime", "push"] as const;
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
    "usage: bun run bench [--quick] [--only rate,burst,storm,failover,downtime,push,micro,idle,restart] [--json FILE] [--svg FILE]",
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
      pushTrials: 1,
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
      pushTrials: 5,
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
  raisedBacklog: RAISED_BACKLOG,
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
        settleS: SETTLE_MS / 1000,
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
  if (want("push")) {
    if (!findHaproxy()) {
      console.log("push: SKIPPED, haproxy not found. To run it: apt-get install -y haproxy");
    } else {
      log(`push: ${PLAN.pushTrials} trial(s) each of stop -m fast + promote, kill -9 + promote, with replstatus route`);
      try {
        results.push = await measurePush(pair, PLAN.pushTrials, log);
      } catch (err) {
        console.log(`push: FAILED, ${(err as Error).message.split("\n")[0]}`);
      }
    }
  }
} finally {
  await pair.pair.stop();
}
results.host.loadavgEnd = await readLoadavg();

const rows = reportRows(results);
console.log("");
console.log(table(rows));
if (Array.isArray(results.micro)) {
  console.log("\nmicro-benchmarks (mitata, per call):");
  for (const m of results.micro) {
    console.log(`  ${m.name.padEnd(48)} avg ${fmtNs(m.avgNs).padStart(10)}  p99 ${fmtNs(m.p99Ns).padStart(10)}`);
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
  writeFileSync(values.json, `${JSON.stringify({ ...results, report: rows }, null, 2)}\n`);
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
