// PostgreSQL's own lifecycle, timed from the outside with a probe every millisecond, and what
// each way of knowing the server's state costs. Not part of `bun run bench`:
//
//   bun bench/lifecycle.ts [--runs N] [--json]
//
// - costs: reading postmaster.pid's status (per call, in this process); a refused connection
//   attempt (57P03) to the server (its CPU and its log lines); replstatus's own CPU while
//   PostgreSQL is down, watching postmaster.pid against retrying at the poll interval;
// - smart shutdown with a client session open: from the SIGTERM until MASTER is gone;
// - restart: from `pg_ctl start` until MASTER, after a stop of --down-ms;
// - warm standby (hot_standby = off) promotion: from `pg_ctl promote` until MASTER.
// Each is measured for replstatus as the superuser (which reads postmaster.pid), replstatus
// as a role that cannot see data_directory (retries at the poll interval), and the C
// bgw_replstatus of the same node when it is installed.
import { appendFileSync, readFileSync } from "node:fs";
import { cpuSeconds } from "./cpu.ts";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { readPmStatus } from "../src/poll/worker/postmaster.ts";
import { run } from "../src/demo/proc.ts";
import { startResponder } from "../src/demo/responder.ts";
import { fmtMs, fmtSpread, spread, type Spread } from "./stats.ts";
import { findBgw, probe, startBgwPair, startReplstatus, waitAnswers, waitFor, type PgNode } from "./targets.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    "down-ms": { type: "string", default: "2000" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const RUNS = Number(values.runs);
const DOWN_MS = Number(values["down-ms"]);
const DEADLINE_MS = 15_000;
const PLAIN = "plain";

/** Milliseconds from t0 until `port` answers something `done` accepts; NaN at the deadline. */
async function until(port: number, done: (answer: string) => boolean, t0: number, deadlineMs = DEADLINE_MS) {
  while (performance.now() - t0 < deadlineMs) {
    if (done(await probe(port, 200))) return performance.now() - t0;
    await Bun.sleep(1);
  }
  return Number.NaN;
}

function startNoWait(node: PgNode): Promise<string> {
  return run(
    [join(node.binDir, "pg_ctl"), "start", "-W", "-D", node.dataDir, "-l", node.logFile],
    join(node.dataDir, ".."),
  );
}

const fatalLines = (node: PgNode) =>
  readFileSync(node.logFile, "utf8")
    .split("\n")
    .filter((l) => l.includes("FATAL:")).length;

const bgwInfo = findBgw();
const { pair, bgwPort } = await startBgwPair(bgwInfo.available);
const results: Record<string, Spread | number | string> = {};
try {
  const { primary, standby } = pair;
  await primary.sql(`create role ${PLAIN} login`);
  const plainUrl = (node: PgNode) => node.url.replace(`//${node.user}@`, `//${PLAIN}@`);
  // As deployed: over the local socket, as a role that can see data_directory.
  const watchingR = await startResponder(["--listen", "127.0.0.1:0"], primary.env);
  const watching = { port: watchingR.ports[0]!, pid: watchingR.proc.pid };
  // Without postmaster.pid a smart shutdown cannot be seen (its session would hold it up):
  // that responder joins after the shutdown.
  const shutdownTargets = [
    { key: "replstatus", port: watching.port },
    ...(bgwPort.has("primary") ? [{ key: "C bgw_replstatus", port: bgwPort.get("primary")! }] : []),
  ];
  await waitAnswers(
    shutdownTargets.map((t) => t.port),
    "MASTER",
  );

  // Costs.
  const n = 20_000;
  const t = performance.now();
  for (let i = 0; i < n; i++) readPmStatus(primary.dataDir);
  results["read postmaster.pid status, us/call"] = Number((((performance.now() - t) / n) * 1000).toFixed(2));

  const client = postgres(primary.url, { max: 1, onnotice: () => {} });
  await client`select 1`;
  const t0 = performance.now();
  process.kill(primary.pid(), "SIGTERM");
  // The C original answers MASTER until the server has stopped: given 3 s here.
  const gone = await Promise.all(shutdownTargets.map((x) => until(x.port, (a) => a !== "MASTER", t0, 3000)));
  // While the server waits for the client, each refused attempt is a fork and a FATAL line.
  const pm = primary.pid();
  const [cpu0, fatal0] = [cpuSeconds(pm, true), fatalLines(primary)];
  const attempts = 500;
  for (let i = 0; i < attempts; i++)
    await postgres(primary.url, { max: 1, onnotice: () => {} })`select 1`.catch(() => {});
  results["refused attempt (57P03), server CPU ms/attempt"] = Number(
    (((cpuSeconds(pm, true) - cpu0) * 1000) / attempts).toFixed(2),
  );
  results["refused attempt (57P03), server FATAL lines/attempt"] = (fatalLines(primary) - fatal0) / attempts;
  await client.end({ timeout: 1 });
  await waitFor("the primary to stop", () => readPmStatus(primary.dataDir) === "down");
  shutdownTargets.forEach((x, i) => (results[`smart shutdown -> no MASTER, ${x.key}`] = spread([gone[i]!])));
  const plain = await startReplstatus({ ...primary, url: plainUrl(primary) });
  const targets = [shutdownTargets[0]!, { key: "replstatus, no postmaster.pid", port: plain.port }];
  targets.push(...shutdownTargets.slice(1));

  // Idle while PostgreSQL is down: postmaster.pid watched (TCP), retries at the poll interval
  // over TCP (a refused connect through postgres.js) and over the socket (a stat).
  const onSocket = await startResponder(["--listen", "127.0.0.1:0"], { ...primary.env, PGUSER: PLAIN });
  const idle = [
    { key: "postmaster.pid watched, socket", pid: watching.pid },
    { key: "retry every 50ms over TCP", pid: plain.pid },
    { key: "retry every 50ms over the socket", pid: onSocket.proc.pid },
  ];
  const idleS = 20;
  const before = idle.map((x) => cpuSeconds(x.pid));
  await Bun.sleep(idleS * 1000);
  idle.forEach((x, i) => {
    results[`down, replstatus CPU % of a core (${x.key})`] = Number(
      (((cpuSeconds(x.pid) - before[i]!) / idleS) * 100).toFixed(2),
    );
  });
  await onSocket.stop();

  // Restarts.
  const back: Record<string, number[]> = Object.fromEntries(targets.map((x) => [x.key, []]));
  for (let run = 0; run < RUNS; run++) {
    if (run > 0) {
      await primary.stop("fast");
      await Bun.sleep(DOWN_MS);
    }
    const s = performance.now();
    const [ms] = await Promise.all([
      Promise.all(targets.map((x) => until(x.port, (a) => a === "MASTER", s))),
      primary.start(),
    ]);
    targets.forEach((x, i) => back[x.key]!.push(ms[i]!));
  }
  for (const x of targets) results[`pg_ctl start -> MASTER, ${x.key}`] = spread(back[x.key]!);

  // Warm standby promotion: one trial (each promotion ends the pair).
  const onStandby = [
    { key: "replstatus", r: await startReplstatus(standby) },
    { key: "replstatus, no postmaster.pid", r: await startReplstatus({ ...standby, url: plainUrl(standby) }) },
  ];
  const standbyTargets = [
    ...onStandby.map((x) => ({ key: x.key, port: x.r.port })),
    ...(bgwPort.has("standby") ? [{ key: "C bgw_replstatus", port: bgwPort.get("standby")! }] : []),
  ];
  await waitAnswers(
    onStandby.map((x) => x.r.port),
    "STANDBY",
  );
  await standby.stop("fast");
  appendFileSync(join(standby.dataDir, "postgresql.auto.conf"), "hot_standby = off\n");
  await startNoWait(standby);
  await waitFor("the warm standby", () => readPmStatus(standby.dataDir) === "standby");
  await Bun.sleep(5000);
  for (const x of standbyTargets) results[`warm standby answers, ${x.key}`] = await probe(x.port, 200);
  const p0s = performance.now();
  const [pms] = await Promise.all([
    Promise.all(standbyTargets.map((x) => until(x.port, (a) => a === "MASTER", p0s))),
    standby.promote(),
  ]);
  standbyTargets.forEach((x, i) => (results[`warm standby pg_ctl promote -> MASTER, ${x.key}`] = spread([pms[i]!])));
  for (const x of onStandby) await x.r.stop();
  await watchingR.stop();
  await plain.stop();
} finally {
  await pair.stop();
}

if (values.json) console.log(JSON.stringify({ bgw: bgwInfo.available, runs: RUNS, downMs: DOWN_MS, results }, null, 2));
else {
  if (!bgwInfo.available) console.log(`C bgw_replstatus: not installed (${bgwInfo.install})`);
  for (const [k, v] of Object.entries(results)) {
    console.log(`${k.padEnd(72)} ${typeof v === "object" ? fmtSpread(v, fmtMs) : String(v)}`);
  }
}
