// Connection rate and bursts, every server measured by the same client (loadgen.ts), with the
// runs interleaved (A B C A B C ...) so that drift on the machine hits all of them alike.
import { readFileSync } from "node:fs";
import { runLoad, type LoadResult } from "./loadgen.ts";
import { spread, type Spread } from "./stats.ts";

export interface Target {
  /** Key in the results: replstatus, bgw, floor, floor-raised. */
  key: string;
  /** For the table: what it is and its listen backlog. */
  label: string;
  port: number;
  /** Process whose resident memory is sampled; 0 for none. */
  pid: number;
}

export interface Memory {
  beforeKb: number;
  peakKb: number;
  afterKb: number;
}

export interface RateCell {
  key: string;
  concurrency: number;
  connsPerS: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  maxMs: Spread;
  /** Sums over the runs. */
  errors: number;
  mismatches: number;
  resets: number;
  listenOverflows: number;
  errorCodes: string[];
  runs: LoadResult[];
}

export interface RateResult {
  durationS: number;
  runsPerCell: number;
  concurrencies: number[];
  cells: RateCell[];
  /** Per target: RSS before the first run, the peak over all runs, after the last. */
  memory: Record<string, Memory | null>;
  /** Most TIME_WAIT sockets seen on the host before a run (from /proc/net/sockstat). */
  maxTimeWait: number | null;
}

/** TIME_WAIT sockets on the host, or null where /proc/net/sockstat cannot be read. */
export function timeWaitCount(): number | null {
  try {
    const m = /^TCP:.*\btw (\d+)/m.exec(readFileSync("/proc/net/sockstat", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function cellOf(key: string, concurrency: number, runs: LoadResult[]): RateCell {
  const sum = (f: (r: LoadResult) => number) => runs.reduce((a, r) => a + f(r), 0);
  return {
    key,
    concurrency,
    connsPerS: spread(runs.map((r) => r.connsPerS)),
    p50Ms: spread(runs.map((r) => r.latencyMs.p50)),
    p99Ms: spread(runs.map((r) => r.latencyMs.p99)),
    p999Ms: spread(runs.map((r) => r.latencyMs.p999)),
    maxMs: spread(runs.map((r) => r.latencyMs.max)),
    errors: sum((r) => r.errors),
    mismatches: sum((r) => r.mismatches),
    resets: sum((r) => r.resets),
    listenOverflows: sum((r) => r.listenOverflows ?? 0),
    errorCodes: [...new Set(runs.flatMap((r) => r.errorCodes))],
    runs,
  };
}

function foldMemory(memory: Record<string, Memory | null>, key: string, r: LoadResult): void {
  const m = r.serverRss;
  if (!m) return;
  const had = memory[key];
  if (!had) memory[key] = { ...m };
  else {
    had.peakKb = Math.max(had.peakKb, m.peakKb);
    had.afterKb = m.afterKb;
  }
}

export interface RateOptions {
  concurrencies: number[];
  runs: number;
  durationS: number;
  log: (line: string) => void;
}

export async function measureRate(targets: Target[], o: RateOptions): Promise<RateResult> {
  const results = new Map<string, LoadResult[]>();
  const memory: Record<string, Memory | null> = {};
  for (const t of targets) memory[t.key] = null;
  let maxTimeWait: number | null = null;
  for (const c of o.concurrencies) {
    for (let run = 0; run < o.runs; run++) {
      for (const t of targets) {
        const tw = timeWaitCount();
        if (tw !== null) maxTimeWait = Math.max(maxTimeWait ?? 0, tw);
        const r = await runLoad({ port: t.port, concurrency: c, durationS: o.durationS, serverPid: t.pid });
        foldMemory(memory, t.key, r);
        const k = `${t.key}/${c}`;
        results.set(k, [...(results.get(k) ?? []), r]);
        const errs = r.errors > 0 ? ` errors=${r.errors} (${r.errorCodes.join(",")})` : "";
        o.log(
          `rate c=${c} run ${run + 1}/${o.runs} ${t.key}: ${r.connsPerS}/s p99=${r.latencyMs.p99}ms ` +
            `max=${r.latencyMs.max}ms${errs}${tw !== null ? ` time-wait=${tw}` : ""}`,
        );
      }
    }
  }
  const cells: RateCell[] = [];
  for (const c of o.concurrencies) for (const t of targets) cells.push(cellOf(t.key, c, results.get(`${t.key}/${c}`)!));
  return { durationS: o.durationS, runsPerCell: o.runs, concurrencies: o.concurrencies, cells, memory, maxTimeWait };
}

export interface BurstCell {
  key: string;
  label: string;
  p50Ms: Spread;
  p999Ms: Spread;
  maxMs: Spread;
  errors: number;
  listenOverflows: number;
  errorCodes: string[];
  runs: LoadResult[];
}

export interface BurstResult {
  conns: number;
  runsPerCell: number;
  cells: BurstCell[];
}

export interface BurstOptions {
  conns: number;
  runs: number;
  log: (line: string) => void;
}

// Four client processes (more than the 2 cores, on purpose) open the 1,000 connections fast
// enough to overflow a 512 queue, as a C client does (see burst.ts).
export async function measureBurst(targets: Target[], o: BurstOptions): Promise<BurstResult> {
  const results = new Map<string, LoadResult[]>();
  for (let run = 0; run < o.runs; run++) {
    for (const t of targets) {
      const r = await runLoad({
        port: t.port,
        serverPid: t.pid,
        concurrency: o.conns,
        procs: 4,
        waves: 1,
        // Long enough to see a second SYN retransmit (1 s + 2 s) rather than cut it off.
        timeoutMs: 10_000,
      });
      results.set(t.key, [...(results.get(t.key) ?? []), r]);
      o.log(
        `burst run ${run + 1}/${o.runs} ${t.key}: p99.9=${r.latencyMs.p999}ms max=${r.latencyMs.max}ms ` +
          `errors=${r.errors} listen-overflows=${r.listenOverflows ?? "?"}`,
      );
      // Let the server close the last sockets before the next burst lands.
      await Bun.sleep(200);
    }
  }
  return {
    conns: o.conns,
    runsPerCell: o.runs,
    cells: targets.map((t) => {
      const runs = results.get(t.key)!;
      return {
        key: t.key,
        label: t.label,
        p50Ms: spread(runs.map((r) => r.latencyMs.p50)),
        p999Ms: spread(runs.map((r) => r.latencyMs.p999)),
        maxMs: spread(runs.map((r) => r.latencyMs.max)),
        errors: runs.reduce((a, r) => a + r.errors, 0),
        listenOverflows: runs.reduce((a, r) => a + (r.listenOverflows ?? 0), 0),
        errorCodes: [...new Set(runs.flatMap((r) => r.errorCodes))],
        runs,
      };
    }),
  };
}
