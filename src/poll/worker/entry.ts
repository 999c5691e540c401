// The poll worker's entry: the poll loop on a thread of its own, whose timers the listeners' load cannot delay. It
// writes a failure or a stale poll into the cell's word at once (forceUnknown), and a promotion the main thread
// permitted (promote). ARCHITECTURE.md, "Two threads and one word", invariants 2, 3, 8 and 9.
import { pollLoop, type Loop, type LoopConfig, type LoopTimings } from "./loop.ts";
import { WORD_SLOT, forceUnknown, generation, permitDeadline, promote } from "../../cell.ts";

/** What the main thread (poller.ts) sends. */
export type WorkerCommand =
  | { t: "start"; config: LoopConfig; slots: Int32Array; lastPoll: Float64Array; sentEpochMs: number }
  | { t: "retime"; timings: LoopTimings }
  | { t: "stop" };

/** What this thread sends back; `gen` is the cell word's generation (cell.ts). */
export type WorkerMessage =
  | { t: "ok"; row: Record<string, unknown>; startedEpochMs: number; durationsMs: number[]; gen: number }
  | { t: "fail"; reason: string; code: string | undefined; retry: string; gen: number }
  | { t: "stale"; gen: number }
  | { t: "warn"; message: string }
  | { t: "note"; message: string }
  | { t: "stopped" };

declare const self: Worker;

// The connection settings come from the environment as it was at start
// (target.ts); postgres.js would read PG* again where our options leave a gap
// (PGTARGETSESSIONATTRS, PGSSLNEGOTIATION, PGPASSWORD), so this thread's own
// copy of the environment goes without them.
for (const key of Object.keys(process.env)) if (key.startsWith("PG")) delete process.env[key];

let loop: Loop | undefined;
let slots: Int32Array;
let deadline: BigInt64Array;
/** Slot 0: the epoch ms (epochMs()) of the last good poll's start, for the main thread's ages. */
let lastPoll: Float64Array;
// Epoch ms in the main thread's terms, corrected by the start command's time of sending (invariant 8).
let clockBehindMs = 0;
const epochMs = (t: number) => performance.timeOrigin + t + clockBehindMs;
/** The connection's system identifier, which only its first poll reads; sent with every poll. */
let systemId: unknown = null;

// A poll that saw what the last one saw is not sent on (the main thread wakes
// for each message, which at 20 polls a second costs more than the poll):
// only changes in these columns, and one message a second at least, carrying
// the durations. Not compared: replay_age_s, which grows by itself and matters
// only when it crosses a limit (checked at least every QUIET_MS), and
// system_id, which only a connection's first poll reads.
const QUIET_MS = 1000;
const FIELDS = ["in_recovery", "receiver_pid", "receiver_status", "lag_bytes", "timeline"];
let last: Record<string, unknown> | undefined;
let lastSentAt = 0;
let durations: number[] = [];

function changed(row: Record<string, unknown>): boolean {
  return last === undefined || FIELDS.some((f) => row[f] !== last![f]);
}

const send = (m: WorkerMessage) => self.postMessage(m);

function ok(row: Record<string, unknown>, startedAt: number, durationMs: number): void {
  const now = performance.now();
  // Every message carries it: the main thread may drop the first one (invariant 9).
  if (row.system_id != null) systemId = row.system_id;
  else row.system_id = systemId;
  lastPoll[0] = epochMs(startedAt);
  durations.push(durationMs);
  // The listeners' thread may be busy with connections for a while before
  // it reads the message below: a promotion it permitted is shown now.
  const promoted = row.in_recovery === false && promote(slots, deadline, epochMs(now)) !== undefined;
  if (!promoted && !changed(row) && now - lastSentAt < QUIET_MS) return;
  send({
    t: "ok",
    row,
    startedEpochMs: epochMs(startedAt),
    durationsMs: durations,
    gen: generation(Atomics.load(slots, WORD_SLOT)),
  });
  last = row;
  lastSentAt = now;
  durations = [];
}

self.onmessage = async (event: MessageEvent<WorkerCommand>) => {
  const m = event.data;
  if (m.t === "start") {
    clockBehindMs = Math.max(0, m.sentEpochMs - (performance.timeOrigin + performance.now()));
    slots = m.slots;
    deadline = permitDeadline(slots);
    lastPoll = m.lastPoll;
    loop = pollLoop(m.config, {
      ok,
      fail: (reason, code, retry) => {
        last = undefined;
        systemId = null;
        send({ t: "fail", reason, code, retry, gen: forceUnknown(slots) });
      },
      stale: () => {
        last = undefined;
        send({ t: "stale", gen: forceUnknown(slots) });
      },
      warn: (message) => send({ t: "warn", message }),
      note: (message) => send({ t: "note", message }),
    });
  } else if (m.t === "retime") {
    loop?.retime(m.timings);
  } else if (m.t === "stop") {
    await loop?.stop();
    send({ t: "stopped" });
  }
};
