// The poller as the rest of the process sees it. The loop runs in the poll
// worker (worker/entry.ts), which writes UNKNOWN into the cell itself on a
// failure or when the last poll goes stale; here its results become states,
// with the lag judge, the logs and the metrics. It never says primary unless a
// poll that started less than staleAfterMs ago saw pg_is_in_recovery() false.
import type { Logger } from "../log.ts";
import { formatDuration } from "../units.ts";
import { cutOff, type LagJudge } from "./lag.ts";
import { decodeFacts, type PollFacts } from "./facts.ts";
import type { LoopConfig, LoopTimings } from "./worker/loop.ts";
import type { WorkerCommand, WorkerMessage } from "./worker/entry.ts";
import { WORD_SLOT, forceUnknown, generation, LAGGING, PRIMARY, STANDBY, UNKNOWN, type Cell } from "../cell.ts";

export interface PollerOptions extends LoopConfig {
  cell: Cell;
  lag: LagJudge;
  log: Logger;
  /** Called with every successful poll's facts, before the state is set. */
  onFacts?: (facts: PollFacts) => void;
  /** The poll worker died: nothing would make a stale answer UNKNOWN any more. */
  onWorkerDeath(message: string): void;
  /** Told of every poll's duration and of every failure (ops/metrics.ts). */
  observer?: { observePoll(durationMs: number): void; pollError(err: unknown): void };
}

export interface Poller {
  readonly facts: PollFacts | undefined;
  /** Applies new timings from the next poll on (a reload). */
  retime(timings: LoopTimings): void;
  stop(): Promise<void>;
}

/**
 * The worker's entry. In an executable from `bun build --compile` every
 * module's import.meta.url is the executable itself, at the root where src/
 * was, so the path is written from there (package.json's build names the file).
 */
const WORKER_ENTRY = import.meta.url.startsWith("file:///$bunfs/")
  ? new URL("./poll/worker/entry.ts", import.meta.url).href
  : new URL("./worker/entry.ts", import.meta.url).href;

/** The worker's messages as states, logs and metrics; `gen` checks are the caller's. */
function createResults(opts: PollerOptions) {
  const { cell, log } = opts;
  // Reasons already logged in this outage: a flapping reason is logged once.
  const logged = new Set<string>();
  let facts: PollFacts | undefined;
  /** Of the server this connection is to; read once per connection (facts.ts, POLL_QUERY). */
  let systemId: string | null = null;

  function ok(row: Record<string, unknown>, startedAt: number, durationsMs: number[]): void {
    systemId ??= (row.system_id as string | null) ?? null;
    facts = decodeFacts(row, systemId, startedAt, durationsMs.at(-1) ?? 0);
    for (const ms of durationsMs) opts.observer?.observePoll(ms);
    logged.clear();
    opts.onFacts?.(facts);
    const from = cell.polled;
    if (facts.inRecovery) return judge(facts);
    clearTimeout(recheck);
    opts.lag.reset();
    cell.set(PRIMARY, from === STANDBY || from === LAGGING ? "promoted" : "poll ok");
  }

  // A grace or a hold that ends while the polls bring nothing new (the
  // worker sends a row that did not change at most once a second) is judged
  // again when it ends, on the same facts, unless the word moved on since.
  let recheck: Timer | undefined;
  function judge(f: PollFacts): void {
    clearTimeout(recheck);
    const from = cell.polled;
    const verdict = opts.lag.judge(f, Date.now());
    if (verdict.lagging) cell.set(LAGGING, verdict.reason, cutOff(f));
    else cell.set(STANDBY, from === PRIMARY ? "now in recovery" : from === LAGGING ? verdict.reason : "poll ok");
    if (verdict.untilMs === undefined) return;
    const gen = generation(Atomics.load(cell.slots, WORD_SLOT));
    recheck = setTimeout(() => {
      if (facts === f && generation(Atomics.load(cell.slots, WORD_SLOT)) === gen) judge(f);
    }, verdict.untilMs - Date.now());
  }

  function fail(reason: string, code: string | undefined, retry: string): void {
    systemId = null;
    opts.observer?.pollError({ code });
    clearTimeout(recheck);
    opts.lag.interrupt();
    cell.set(UNKNOWN, reason);
    if (logged.has(reason)) return;
    logged.add(reason);
    log.warning(`poll failed: ${reason} (${retry})`);
  }

  function stale(): void {
    clearTimeout(recheck);
    opts.lag.interrupt();
    cell.set(UNKNOWN, `no successful poll for ${formatDuration(opts.staleAfterMs)}`);
  }

  return { ok, fail, stale, facts: () => facts, stop: () => clearTimeout(recheck) };
}

/** How long stop() lets the worker say goodbye to PostgreSQL before ending it. */
const STOP_GRACE_MS = 50;

export function startPoller(opts: PollerOptions): Poller {
  const { cell, log } = opts;
  const slots = cell.slots;
  const results = createResults(opts);
  let stopped: (() => void) | undefined;
  /** Written by the worker at every good poll (it sends only changes). */
  const lastPoll = new Float64Array(new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT));
  const worker = new Worker(WORKER_ENTRY);
  const command = (m: WorkerCommand) => worker.postMessage(m);

  worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
    const m = event.data;
    switch (m.t) {
      // Each message is applied before its generation is synced: until
      // then this thread's writes leave the worker's state as it is (a
      // promotion the worker published is not taken back to standby) or
      // lower it (cell.ts, lowered()); the sync publishes the outcome.
      case "ok":
        // Overtaken by a forced UNKNOWN (the poll went stale, or the
        // connection failed, before this thread got to it) or by the
        // worker's own promotion, whose message follows: dropped.
        if (m.gen !== generation(Atomics.load(slots, WORD_SLOT))) return;
        results.ok(m.row, m.startedEpochMs - performance.timeOrigin, m.durationsMs);
        return cell.sync(m.gen);
      case "fail":
        results.fail(m.reason, m.code, m.retry);
        return cell.sync(m.gen);
      case "stale":
        results.stale();
        return cell.sync(m.gen);
      case "warn":
        return log.warning(m.message);
      case "note":
        return log.info(m.message);
      case "stopped":
        return stopped?.();
    }
  };
  // Without the worker nothing turns a stale answer into UNKNOWN: answer
  // UNKNOWN now and let the caller end the process (a service manager
  // restarts it), rather than serve a frozen MASTER.
  let ending = false;
  const died = (message: string) => {
    if (ending) return;
    const gen = forceUnknown(slots);
    cell.set(UNKNOWN, "poll worker stopped");
    cell.sync(gen);
    opts.onWorkerDeath(message);
  };
  worker.addEventListener("error", (event) => died((event as ErrorEvent).message || "error"));
  worker.addEventListener("close", () => died("exited"));
  const { target, pollIntervalMs, staleAfterMs, connectTimeoutMs, channel } = opts;
  const config = { target, pollIntervalMs, staleAfterMs, connectTimeoutMs, channel };
  command({ t: "start", config, slots, lastPoll, sentEpochMs: performance.timeOrigin + performance.now() });

  return {
    get facts() {
      // The worker sends a poll that saw nothing new at most once a second;
      // the start of the last good poll is kept up to date in shared memory.
      const facts = results.facts();
      if (facts && lastPoll[0]! > 0) facts.startedAt = Math.max(facts.startedAt, lastPoll[0]! - performance.timeOrigin);
      return facts;
    },
    retime(timings) {
      opts.pollIntervalMs = timings.pollIntervalMs;
      opts.staleAfterMs = timings.staleAfterMs;
      opts.connectTimeoutMs = timings.connectTimeoutMs;
      command({ t: "retime", timings });
    },
    async stop() {
      ending = true;
      results.stop();
      const done = new Promise<void>((resolve) => (stopped = resolve));
      command({ t: "stop" });
      await Promise.race([done, Bun.sleep(STOP_GRACE_MS)]);
      worker.terminate();
    },
  };
}
