// Idle cost: CPU time of a process over a window with no client traffic, as a percentage of
// one core, from utime + stime in /proc/PID/stat; and its resident memory at the end. All the
// processes run side by side over the same window:
// - replstatus at its default settings against a live primary, and another against the standby,
//   each with the CPU time of its PostgreSQL backend beside it (found by application_name);
// - a bare Bun.listen with an empty 50 ms timer (the least a polling Bun process costs);
// - the poll query every 50 ms through postgres.js, nothing else (idle-pg.ts);
// - the same query every 50 ms as raw protocol bytes on a plain Bun socket (idle-pg.ts --client raw).
// For each replstatus the log also splits its CPU by thread (schedstat's run time, in ns), to show
// where an idle responder's time goes: the main thread, the poll worker, the JIT, the GC, the
// allocator's purge thread.
import { readdirSync, readFileSync } from "node:fs";
import { cpuSeconds } from "./cpu.ts";
import { readRssKb } from "./loadgen.ts";
import { floorCommand, startServer, type ServerProcess } from "./server.ts";
import type { PgNode } from "./targets.ts";
import { startReplstatus, waitFor } from "./targets.ts";

export interface IdleRow {
  key: string;
  label: string;
  cpuPercent: number;
  rssKb: number;
  /** replstatus only: % of a core by thread group (THREAD_GROUPS), from live threads' run time. */
  threads?: Record<string, number>;
}

export interface IdleResult {
  windowS: number;
  /** How many windows ran back to back; rows are the last one's. */
  windows: number;
  rows: IdleRow[];
  /** With windows > 1: the first window's rows, which hold the warm-up. */
  firstRows?: IdleRow[];
}

/**
 * Bun's and JavaScriptCore's thread names as groups (comm keeps the last 15 characters: "Heap
 * Collector Thread" is "ollector Thread"). The process's first thread is "main"; a Worker's, "Worker".
 */
const THREAD_GROUPS: [RegExp, string][] = [
  [/^Worker$/, "poll worker"],
  [/^JITWorker$|^JSCWarmUp$/, "jit"],
  [/^HeapHelper$|ollector Thread$/, "gc"],
  [/^mi-scavenger$/, "allocator purge"],
];

const GROUP_ORDER = ["main", ...THREAD_GROUPS.map(([, group]) => group), "other"];

/** Run time in ns of each live thread of pid (schedstat), keyed by tid; empty where unreadable. */
function threadNs(pid: number): Map<string, { group: string; ns: number }> {
  const out = new Map<string, { group: string; ns: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      const group = tid === String(pid) ? "main" : (THREAD_GROUPS.find(([re]) => re.test(comm))?.[1] ?? "other");
      if (Number.isFinite(ns)) out.set(tid, { group, ns });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** % of a core by group between two threadNs() samples; a thread that exited meanwhile is not counted. */
function threadPercent(
  before: Map<string, { group: string; ns: number }>,
  after: Map<string, { group: string; ns: number }>,
  wallS: number,
): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(GROUP_ORDER.map((g) => [g, 0]));
  for (const [tid, t] of after)
    out[t.group] = (out[t.group] ?? 0) + (100 * (t.ns - (before.get(tid)?.ns ?? 0))) / 1e9 / wallS;
  return out;
}

const IDLE_PG = new URL("./idle-pg.ts", import.meta.url).pathname;

/** The pid of the backend serving the replstatus connection on `node`. */
async function backendPid(node: PgNode): Promise<number> {
  const q =
    "select pid from pg_stat_activity where application_name = 'replstatus' order by backend_start desc limit 1";
  return Number(await waitFor(`replstatus's backend on ${node.name}`, async () => await node.sql(q), 10_000));
}

/** CPU over one window of `windowS` for each process, split by thread for ours. */
async function measureWindow(
  procs: { key: string; label: string; pid: number }[],
  windowS: number,
  ours: (key: string) => boolean,
): Promise<IdleRow[]> {
  const t0 = performance.now();
  const before = procs.map((p) => cpuSeconds(p.pid));
  const threadsBefore = procs.map((p) => (ours(p.key) ? threadNs(p.pid) : undefined));
  await Bun.sleep(windowS * 1000);
  const wallS = (performance.now() - t0) / 1000;
  const rows: IdleRow[] = [];
  for (const [i, p] of procs.entries()) {
    const cpu = cpuSeconds(p.pid) - before[i]!;
    const threadsAt = threadsBefore[i];
    const threads = threadsAt && threadPercent(threadsAt, threadNs(p.pid), wallS);
    rows.push({
      key: p.key,
      label: p.label,
      cpuPercent: (100 * cpu) / wallS,
      rssKb: (await readRssKb(p.pid)) ?? Number.NaN,
      ...(threads && { threads }),
    });
  }
  return rows;
}

export async function measureIdle(
  primary: PgNode,
  standby: PgNode,
  windowS: number,
  log: (line: string) => void,
  windows = 1,
): Promise<IdleResult> {
  await using replstatus = await startReplstatus(primary);
  await using onStandby = await startReplstatus(standby);
  const others: { key: string; label: string; server: ServerProcess }[] = [];
  try {
    others.push({
      key: "bun-timer",
      label: "bare Bun.listen + 50 ms empty timer",
      server: await startServer(floorCommand("--tick-ms", "50")),
    });
    others.push({
      key: "postgres-js-loop",
      label: "poll query every 50 ms via postgres.js only",
      server: await startServer([process.execPath, IDLE_PG, "--db", primary.url]),
    });
    others.push({
      key: "raw-protocol-loop",
      label: "poll query every 50 ms, raw protocol on a Bun socket",
      server: await startServer([process.execPath, IDLE_PG, "--db", primary.url, "--client", "raw"]),
    });
    const procs = [
      { key: "replstatus", label: "replstatus on the primary, default settings", pid: replstatus.pid },
      { key: "replstatus-backend", label: "its PostgreSQL backend", pid: await backendPid(primary) },
      { key: "replstatus-standby", label: "replstatus on the standby, default settings", pid: onStandby.pid },
      { key: "replstatus-standby-backend", label: "its PostgreSQL backend", pid: await backendPid(standby) },
      ...others.map((o) => ({ key: o.key, label: o.label, pid: o.server.pid })),
    ];
    // Start-up (module loading, connecting) is not idle time. The first window still holds the
    // warm-up (JIT tier-up, Bun's GC timer); with windows = 2 the second one is the steady cost.
    await Bun.sleep(2000);
    const ours = (key: string) => key.startsWith("replstatus") && !key.endsWith("-backend");
    const measured: IdleRow[][] = [];
    for (let w = 0; w < windows; w++) {
      log(`idle: measuring ${procs.length} processes for ${windowS} s (window ${w + 1} of ${windows})`);
      measured.push(await measureWindow(procs, windowS, ours));
    }
    for (const [w, rows] of measured.entries()) {
      for (const r of rows) {
        const split = r.threads
          ? ` (${Object.entries(r.threads)
              .map(([group, pct]) => `${group} ${pct.toFixed(3)}`)
              .join(", ")})`
          : "";
        log(
          `idle ${r.key}, window ${w + 1}: ${r.cpuPercent.toFixed(2)}% of a core${split}, ${(r.rssKb / 1024).toFixed(1)} MB`,
        );
      }
    }
    const rows = measured.at(-1)!;
    return { windowS, windows, rows, ...(windows > 1 && { firstRows: measured[0]! }) };
  } finally {
    await Promise.all(others.map((o) => o.server.stop()));
  }
}
