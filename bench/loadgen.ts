// The connection-rate load client. It spreads `concurrency` slots over `procs` worker
// processes (load-worker.ts), each slot looping connect -> read to EOF -> check the bytes ->
// close, and merges their histograms into one result. With a server pid it also samples the
// server's resident memory before, during and after the run.
//
//   bun bench/loadgen.ts [--port N] [-c 64] [--duration 5] [--max-conns 2000000] [--procs 2]
//                        [--expect MASTER] [--spread 16] [--server-pid PID] [--json]
//
// Without --port it starts bench/floor.ts itself and measures that.
//
// Source addresses rotate over 127.0.0.2 .. 127.0.0.(spread+1) when the target is on IPv4
// loopback: the server closes first, so its TIME_WAIT entries pile up per 4-tuple, and one
// source address alone would run out of distinct tuples in a long run.
import { parseArgs } from "node:util";
import { track, untrack } from "../src/demo/cleanup.ts";
import { createHistogram, mergeSparse, quantileUs } from "./histogram.ts";
import type { WorkerConfig, WorkerReport } from "./load-worker.ts";
import { floorCommand, startServer } from "./server.ts";

export interface LoadOptions {
  host: string;
  port: number;
  /** Concurrent connections (slots), over all worker processes. */
  concurrency: number;
  /** Run length in seconds. */
  durationS: number;
  /** Most connections over the whole run; 0 = no limit. */
  maxConns: number;
  procs: number;
  expect: string;
  /** How many 127.0.0.x source addresses to rotate through (0 = the kernel's choice). */
  spread: number;
  /** Per-connection time-out in ms. */
  timeoutMs: number;
  /** Server process whose VmRSS to sample; 0 = none. */
  serverPid: number;
  /** Burst mode: every slot makes one connection per wave; 0 = closed loop. */
  waves: number;
  waveGapMs: number;
}

export const DEFAULTS: LoadOptions = {
  host: "127.0.0.1",
  port: 0,
  concurrency: 16,
  durationS: 5,
  maxConns: 2_000_000,
  procs: 2,
  expect: "MASTER",
  spread: 16,
  timeoutMs: 10_000,
  serverPid: 0,
  waves: 0,
  waveGapMs: 3000,
};

export interface MemorySample {
  beforeKb: number;
  peakKb: number;
  afterKb: number;
}

export interface LoadResult {
  concurrency: number;
  /** Burst waves; 0 for a closed-loop run (then connsPerS is the figure to read). */
  waves: number;
  procs: number;
  conns: number;
  elapsedS: number;
  connsPerS: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number };
  errors: number;
  errRefused: number;
  errTimeout: number;
  errConnect: number;
  errRead: number;
  errorCodes: string[];
  mismatches: number;
  resets: number;
  /** Connections the kernel dropped on a full accept queue during the run (system-wide). */
  listenOverflows: number | null;
  /** Server VmRSS in kB; null without a pid or /proc. */
  serverRss: MemorySample | null;
}

const WORKER = new URL("./load-worker.ts", import.meta.url).pathname;
/** Time allowed for the workers to start before they all begin together. */
const START_DELAY_MS = 500;
const RSS_SAMPLE_MS = 20;
/** After the run, let the server finish closing sockets before the last RSS sample. */
const RSS_SETTLE_MS = 200;

/** VmRSS of a process in kB, or null when it cannot be read. */
export async function readRssKb(pid: number): Promise<number | null> {
  try {
    const status = await Bun.file(`/proc/${pid}/status`).text();
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * The kernel's count of connections dropped because a listen queue was full
 * (TcpExt ListenOverflows in /proc/net/netstat), or null where it cannot be read. It is
 * system-wide: read it as a delta over a run on an otherwise quiet loopback.
 */
export async function readListenOverflows(): Promise<number | null> {
  try {
    const lines = (await Bun.file("/proc/net/netstat").text()).split("\n");
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!lines[i]!.startsWith("TcpExt:")) continue;
      const names = lines[i]!.split(/\s+/);
      const nums = lines[i + 1]!.split(/\s+/);
      const k = names.indexOf("ListenOverflows");
      return k > 0 ? Number(nums[k]) : null;
    }
    return null;
  } catch {
    return null;
  }
}

function sourceAddresses(host: string, spread: number): string[] {
  if (spread <= 0 || !/^127\.\d+\.\d+\.\d+$/.test(host)) return [];
  const out: string[] = [];
  for (let i = 0; i < spread; i++) {
    const n = 2 + i;
    out.push(`127.0.${n >> 8}.${n & 255}`);
  }
  return out;
}

function rotate<T>(list: T[], by: number): T[] {
  const k = list.length === 0 ? 0 : by % list.length;
  return list.slice(k).concat(list.slice(0, k));
}

function share(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

/** Samples a process's VmRSS while a run lasts: the peak, and the value after the run settles. */
interface RssSampler {
  /** Stops sampling; resolves to before/peak/after, or null without a pid or /proc. */
  finish(): Promise<MemorySample | null>;
}

async function sampleRss(pid: number): Promise<RssSampler> {
  const before = pid > 0 ? await readRssKb(pid) : null;
  if (before === null) return { finish: async () => null };
  const r: MemorySample = { beforeKb: before, peakKb: before, afterKb: before };
  const sampler = setInterval(async () => {
    const kb = await readRssKb(pid);
    if (kb !== null && kb > r.peakKb) r.peakKb = kb;
  }, RSS_SAMPLE_MS);
  return {
    async finish() {
      clearInterval(sampler);
      await Bun.sleep(RSS_SETTLE_MS);
      const after = await readRssKb(pid);
      if (after !== null) {
        r.afterKb = after;
        if (after > r.peakKb) r.peakKb = after;
      }
      return r;
    },
  };
}

/** Starts the worker processes, each with its share of the slots, and returns their reports. */
async function runWorkers(o: LoadOptions, procs: number, durationMs: number): Promise<WorkerReport[]> {
  const startAtMs = Date.now() + START_DELAY_MS;
  const sources = sourceAddresses(o.host, o.spread);
  const workers: Bun.Subprocess<"ignore", "pipe", "inherit">[] = [];
  for (let i = 0; i < procs; i++) {
    const config: WorkerConfig = {
      host: o.host,
      port: o.port,
      slots: share(o.concurrency, procs, i),
      maxConns: o.maxConns > 0 ? Math.max(1, share(o.maxConns, procs, i)) : 0,
      startAtMs,
      durationMs,
      expect: o.expect,
      // Each worker starts its rotation at a different address.
      sources: rotate(sources, i),
      timeoutMs: o.timeoutMs,
      waves: o.waves,
      waveGapMs: o.waveGapMs,
    };
    const worker = Bun.spawn([process.execPath, WORKER, JSON.stringify(config)], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    });
    track(worker.pid);
    workers.push(worker);
  }

  // A worker that overruns its deadline by far is killed, so a run is always bounded.
  const hardStop = setTimeout(
    () => {
      for (const w of workers) w.kill("SIGKILL");
    },
    START_DELAY_MS + durationMs + 15_000,
  );
  const reports: WorkerReport[] = [];
  try {
    for (const w of workers) {
      const out = await new Response(w.stdout).text();
      const code = await w.exited;
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{")) {
        throw new Error(`load worker ${w.pid} failed (exit ${code}): ${out.slice(0, 200)}`);
      }
      reports.push(JSON.parse(line) as WorkerReport);
    }
  } finally {
    clearTimeout(hardStop);
    for (const w of workers) {
      w.kill("SIGKILL");
      untrack(w.pid);
    }
  }
  return reports;
}

/** The workers' reports as one result. */
function mergeReports(
  o: LoadOptions,
  procs: number,
  reports: WorkerReport[],
  listenOverflows: number | null,
  serverRss: MemorySample | null,
): LoadResult {
  const hist = createHistogram();
  const sum = (f: (r: WorkerReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  for (const r of reports) mergeSparse(hist, r.hist);
  const conns = sum((r) => r.conns);
  const elapsedS = Math.max(...reports.map((r) => r.elapsedMs)) / 1000;
  const errRefused = sum((r) => r.errRefused);
  const errTimeout = sum((r) => r.errTimeout);
  const errConnect = sum((r) => r.errConnect);
  const errRead = sum((r) => r.errRead);
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    concurrency: o.concurrency,
    waves: o.waves,
    procs,
    conns,
    elapsedS,
    connsPerS: elapsedS > 0 ? Math.round(conns / elapsedS) : 0,
    latencyMs: {
      p50: ms(quantileUs(hist, 0.5)),
      p99: ms(quantileUs(hist, 0.99)),
      p999: ms(quantileUs(hist, 0.999)),
      max: ms(hist.maxUs),
    },
    errors: errRefused + errTimeout + errConnect + errRead,
    errRefused,
    errTimeout,
    errConnect,
    errRead,
    errorCodes: [...new Set(reports.flatMap((r) => r.errorCodes))],
    mismatches: sum((r) => r.mismatches),
    resets: sum((r) => r.resets),
    listenOverflows,
    serverRss,
  };
}

/** Run one load against host:port and return the merged result. */
export async function runLoad(partial: Partial<LoadOptions>): Promise<LoadResult> {
  const o: LoadOptions = { ...DEFAULTS, ...partial };
  const procs = Math.max(1, Math.min(o.procs, o.concurrency));
  const durationMs = o.waves > 0 ? (o.waves - 1) * o.waveGapMs + o.timeoutMs : o.durationS * 1000;
  const rss = await sampleRss(o.serverPid);
  const overflowsBefore = await readListenOverflows();
  let reports: WorkerReport[];
  try {
    reports = await runWorkers(o, procs, durationMs);
  } catch (err) {
    await rss.finish();
    throw err;
  }
  const overflowsAfter = await readListenOverflows();
  const serverRss = await rss.finish();
  const overflows = overflowsBefore === null || overflowsAfter === null ? null : overflowsAfter - overflowsBefore;
  return mergeReports(o, procs, reports, overflows, serverRss);
}

function fmtRate(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : String(n);
}

function fmtMs(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** One human-readable line for a result. */
export function formatResult(r: LoadResult): string {
  const l = r.latencyMs;
  const rate = r.waves > 0 ? `waves=${r.waves}` : `rate=${fmtRate(r.connsPerS)}/s`;
  let line =
    `c=${r.concurrency} procs=${r.procs} conns=${r.conns} ${rate} ` +
    `p50=${fmtMs(l.p50)}ms p99=${fmtMs(l.p99)}ms p99.9=${fmtMs(l.p999)}ms max=${fmtMs(l.max)}ms ` +
    `errors=${r.errors} (refused ${r.errRefused}, timeout ${r.errTimeout}, connect ${r.errConnect}, read ${r.errRead}) ` +
    `mismatches=${r.mismatches} resets=${r.resets}`;
  if (r.listenOverflows) line += ` listen-overflows=${r.listenOverflows}`;
  if (r.errorCodes.length > 0) line += ` codes=${r.errorCodes.join(",")}`;
  if (r.serverRss) {
    const mb = (kb: number) => (kb / 1024).toFixed(1);
    const m = r.serverRss;
    line += ` rss=${mb(m.beforeKb)}/${mb(m.peakKb)}/${mb(m.afterKb)}MB(before/peak/after)`;
  }
  return line;
}

const FLAGS = {
  host: { type: "string", default: DEFAULTS.host },
  port: { type: "string", default: "0" },
  concurrency: { type: "string", short: "c", default: String(DEFAULTS.concurrency) },
  duration: { type: "string", short: "d", default: String(DEFAULTS.durationS) },
  "max-conns": { type: "string", default: String(DEFAULTS.maxConns) },
  procs: { type: "string", default: String(DEFAULTS.procs) },
  expect: { type: "string", default: DEFAULTS.expect },
  spread: { type: "string", default: String(DEFAULTS.spread) },
  "timeout-ms": { type: "string", default: String(DEFAULTS.timeoutMs) },
  "server-pid": { type: "string", default: "0" },
  json: { type: "boolean", default: false },
} as const;

function intFlag(values: Record<string, unknown>, name: string, min: number, max: number): number {
  const raw = String(values[name]);
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || n < min || n > max) {
    throw new Error(`invalid value for --${name}: "${raw}" (expected a number ${min}..${max})`);
  }
  return n;
}

/** Parse loadgen's flags into options (shared with burst.ts). */
export function parseLoadFlags(argv: string[]): { options: LoadOptions; json: boolean } {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true });
  return {
    options: {
      ...DEFAULTS,
      host: values.host,
      port: intFlag(values, "port", 0, 65535),
      concurrency: intFlag(values, "concurrency", 1, 100_000),
      durationS: intFlag(values, "duration", 0.1, 3600),
      maxConns: intFlag(values, "max-conns", 0, 1e12),
      procs: intFlag(values, "procs", 1, 64),
      expect: values.expect,
      spread: intFlag(values, "spread", 0, 65_000),
      timeoutMs: intFlag(values, "timeout-ms", 1, 600_000),
      serverPid: intFlag(values, "server-pid", 0, 2 ** 31),
    },
    json: values.json,
  };
}

if (import.meta.main) {
  let parsed: ReturnType<typeof parseLoadFlags>;
  try {
    parsed = parseLoadFlags(process.argv.slice(2));
  } catch (e) {
    console.error(`loadgen: ${(e as Error).message}`);
    process.exit(1);
  }
  const { options, json } = parsed;
  let result: LoadResult;
  if (options.port === 0) {
    await using floor = await startServer(floorCommand("--host", options.host, "--text", options.expect));
    result = await runLoad({ ...options, port: floor.port, serverPid: floor.pid });
  } else {
    result = await runLoad(options);
  }
  console.log(json ? JSON.stringify(result) : formatResult(result));
}
