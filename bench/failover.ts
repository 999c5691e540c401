// Role changes, timed from the outside with a probe every millisecond:
// - promotion: from the start of `pg_ctl promote` on the standby until a responder answers
//   MASTER; after each trial the old primary is rebuilt as a standby of the new one, so every
//   trial promotes a fresh standby;
// - failure: from the start of `pg_ctl stop -m fast`, or of a SIGKILL to the postmaster,
//   until it stops answering MASTER; the node is started again after each trial.
// - promote-c64, stop-fast-c64, kill-9-c64: each again, while a load client keeps 64 connections
//   at a time open against replstatus (default interval) and another 64 against the C worker of
//   that node.
// One role change is watched by every responder at once: replstatus at the default poll
// interval, replstatus at --poll-interval 10ms, and the C bgw_replstatus of that node.
// Fresh replstatus processes are started for each trial, so no reconnect backoff from an
// earlier trial carries over.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { processesUnder, releaseSharedMemory, signal } from "../src/demo/proc.ts";
import { runLoad } from "./loadgen.ts";
import { spread, type Spread } from "./stats.ts";
import { probe, rebuildAsStandby, startReplstatus, waitAnswers, waitFor, type Pair, type PgNode } from "./targets.ts";

export const FAST_POLL = "10ms";
/** Concurrent connections of the load during promote-c64, per loaded responder. */
export const LOAD_C = 64;
const LOAD_S = 3;
/** The load client starts its slots this long after it is spawned (loadgen.ts), plus a margin. */
const LOAD_WARMUP_MS = 900;

export interface FailoverCell {
  /** promote | stop-fast | kill-9, each also with -c64 (under load) */
  event: string;
  /** replstatus | replstatus-10ms | bgw */
  key: string;
  ms: Spread;
}

export interface FailoverResult {
  trials: number;
  /** LOAD_C: the concurrency of the load in the -c events. */
  loadC: number;
  /** Each cell's runs are in trial order, so trial i of two keys timed the same event. */
  cells: FailoverCell[];
}

interface Watched {
  key: string;
  port: number;
}

const PROBE_EVERY_MS = 1;
const TRIAL_DEADLINE_MS = 15_000;

/**
 * Probes `port` every millisecond until `done(answer)` holds, and resolves to the time from
 * `t0()` (read when it holds) to the answer, or NaN at the deadline.
 */
async function watch(port: number, done: (answer: string) => boolean, t0: () => number): Promise<number> {
  const deadline = performance.now() + TRIAL_DEADLINE_MS;
  while (performance.now() < deadline) {
    const answer = await probe(port, 200);
    if (done(answer)) return performance.now() - t0();
    await Bun.sleep(PROBE_EVERY_MS);
  }
  return Number.NaN;
}

async function responders(pair: Pair, node: PgNode) {
  const normal = await startReplstatus(node);
  const fast = await startReplstatus(node, ["--poll-interval", FAST_POLL]);
  const watched: Watched[] = [
    { key: "replstatus", port: normal.port },
    { key: "replstatus-10ms", port: fast.port },
  ];
  const bgw = pair.bgwPort.get(node.name);
  if (bgw) watched.push({ key: "bgw", port: bgw });
  return {
    watched,
    async stop() {
      await Promise.all([normal.stop(), fast.stop()]);
    },
  };
}

/**
 * Times one event on `node`: `act` starts it, `done` says when a responder has seen it. With
 * `loaded`, a load of LOAD_C connections runs against replstatus (default interval) and the C
 * worker throughout.
 */
async function trial(
  pair: Pair,
  node: PgNode,
  before: string,
  done: (answer: string) => boolean,
  act: () => Promise<void>,
  loaded = false,
): Promise<Map<string, number>> {
  const r = await responders(pair, node);
  let loads: Promise<unknown>[] = [];
  try {
    await waitAnswers(
      r.watched.map((w) => w.port),
      before,
    );
    if (loaded) {
      const ports = r.watched.filter((w) => w.key !== "replstatus-10ms").map((w) => w.port);
      // The answer changes during the run: the load checks nothing but that a reply comes.
      loads = ports.map((port) => runLoad({ port, concurrency: LOAD_C, durationS: LOAD_S, procs: 1, expect: "" }));
      await Bun.sleep(LOAD_WARMUP_MS);
    }
    let t0 = Number.NaN;
    const started = () => t0;
    // The probes start before the event, so the first one after it is at most 1 ms late.
    let armed = false;
    const timings = r.watched.map((w) => watch(w.port, (a) => armed && done(a), started));
    await Bun.sleep(5);
    t0 = performance.now();
    armed = true;
    await act();
    const ms = await Promise.all(timings);
    return new Map(r.watched.map((w, i) => [w.key, ms[i]!]));
  } finally {
    await Promise.allSettled(loads);
    await r.stop();
  }
}

// Whether a pid is gone or a zombie nobody has reaped yet (dead all the same).
function dead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

async function restartAfterKill(node: PgNode, postmaster: number): Promise<void> {
  // A killed postmaster leaves its children (found by their cwd, the data dir) to notice and
  // exit; all of them must be gone before it can start again.
  await waitFor(`the processes of ${node.name} to exit`, () => {
    signal(processesUnder(node.dataDir), "SIGKILL");
    return processesUnder(node.dataDir).length === 0 && dead(postmaster);
  });
  // A killed postmaster that is not reaped yet still has its pid, and PostgreSQL refuses to
  // start while the pid in postmaster.pid (or in the socket's lock file) exists. Everything is
  // dead: drop both lock files, and the shared memory segment postmaster.pid names (line 7:
  // key and shmid), which would otherwise leak.
  const pidFile = join(node.dataDir, "postmaster.pid");
  if (existsSync(pidFile)) {
    releaseSharedMemory(pidFile);
    rmSync(pidFile, { force: true });
  }
  rmSync(join(node.socketDir, `.s.PGSQL.${node.port}.lock`), { force: true });
  await node.start();
}

export async function measureFailover(
  pair: Pair,
  trials: number,
  log: (line: string) => void,
): Promise<FailoverResult> {
  const times = new Map<string, number[]>();
  const note = (event: string, m: Map<string, number>) => {
    for (const [key, ms] of m) times.set(`${event}/${key}`, [...(times.get(`${event}/${key}`) ?? []), ms]);
    log(`failover ${event}: ${[...m].map(([k, ms]) => `${k} ${ms.toFixed(1)}ms`).join(", ")}`);
  };

  let primary = pair.pair.primary;
  let standby = pair.pair.standby;
  for (const event of ["promote", `promote-c${LOAD_C}`]) {
    for (let i = 0; i < trials; i++) {
      const promoted = standby;
      note(
        event,
        await trial(
          pair,
          promoted,
          "STANDBY",
          (a) => a === "MASTER",
          () => promoted.promote(),
          event !== "promote",
        ),
      );
      await promoted.waitPrimary();
      await rebuildAsStandby(primary, promoted);
      standby = primary;
      primary = promoted;
    }
  }

  const node = primary;
  for (const loaded of [false, true]) {
    const under = loaded ? `-c${LOAD_C}` : "";
    for (let i = 0; i < trials; i++) {
      note(
        `stop-fast${under}`,
        await trial(
          pair,
          node,
          "MASTER",
          (a) => a !== "MASTER",
          () => node.stop("fast"),
          loaded,
        ),
      );
      await node.start();
    }
    let postmaster = 0;
    for (let i = 0; i < trials; i++) {
      note(
        `kill-9${under}`,
        await trial(
          pair,
          node,
          "MASTER",
          (a) => a !== "MASTER",
          async () => {
            postmaster = node.pid();
            process.kill(postmaster, "SIGKILL");
          },
          loaded,
        ),
      );
      await restartAfterKill(node, postmaster);
    }
  }

  const cells: FailoverCell[] = [];
  for (const [k, ms] of times) {
    const [event, key] = k.split("/") as [string, string];
    cells.push({ event, key, ms: spread(ms) });
  }
  return { trials, loadC: LOAD_C, cells };
}
