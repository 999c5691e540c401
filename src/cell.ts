// The states, the operator override, and the cell: the word every listener reads, packed so that one atomic write
// changes all of it, and all the two threads share. Who writes what, under which guard: ARCHITECTURE.md, "Two
// threads and one word" (the invariants cited below by number).
import type { AgentConfig } from "./config/types.ts";

export const PRIMARY = 0;
export const STANDBY = 1;
export const UNKNOWN = 2;
/** A standby over a configured lag limit (--max-lag-bytes, --max-lag-seconds). */
export const LAGGING = 3;
/**
 * A primary while a reachable peer of the same cluster is primary on a higher
 * timeline (src/cluster/): never set by the poller, only laid over its primary.
 */
export const FENCED = 4;
export type State = typeof PRIMARY | typeof STANDBY | typeof UNKNOWN | typeof LAGGING | typeof FENCED;

export const STATE_NAMES = ["primary", "standby", "unknown", "lagging", "fenced"] as const satisfies Record<
  State,
  string
>;
export const STATE_COUNT = STATE_NAMES.length;

// The operator override (`replstatus drain|maint|ready`), on top of the state.
// drain: haproxy agent checks stop sending new sessions; raw and http keep the
// role, since tcp-check and httpchk have no notion of draining. maint: every
// protocol says the node is out (raw answers the unknown text).
export const READY = 0;
export const DRAIN = 1;
export const MAINT = 2;
export type Override = typeof READY | typeof DRAIN | typeof MAINT;
export const OVERRIDE_NAMES = ["ready", "drain", "maint"] as const satisfies Record<Override, string>;
export const OVERRIDE_COUNT = OVERRIDE_NAMES.length;

/** Agent weights are prebuilt per bucket: bucket b is a weight of 100 - 10 * b percent (100%..10%). */
export const WEIGHT_BUCKETS = 10;
/**
 * A lagging standby's line carries no weight; its bucket says why it lags:
 * this one, its WAL receiver is gone or not streaming (agent `down`); bucket
 * 0, it is only too far behind (agent `drain`: running sessions stay).
 */
export const CUT_OFF_BUCKET = 1;

// Cell.slots. The word: bits 0-7 the state raw and http show (unknown under maint), bits 8-15 the agent line's
// index (agentIndex()), bits 16-30 a generation, bit 31 the permit for promote().
export const WORD_SLOT = 0;
/** The override in force. */
export const OVERRIDE_SLOT = 1;
/** Slots 2-3, as one BigInt64 (byte 8): the permit's deadline, epoch ms (performance.timeOrigin + now). */
const DEADLINE_BYTE = 8;
const SLOTS = 4;
const PERMIT = 1 << 31;
/** A deadline that never comes (a safe integer, as a BigInt64). */
const NEVER_MS = 2 ** 52;

/** The state raw and http answers show. */
export function shownState(word: number): State {
  return (word & 0xff) as State;
}

/** The agent line shown: an agentIndex(), into Responses.agent. */
export function shownAgent(word: number): number {
  return (word >> 8) & 0xff;
}

/** The state behind the word, before maint hides it: the one its agent line was picked for. */
export function wordState(word: number): State {
  return (Math.floor(shownAgent(word) / WEIGHT_BUCKETS) % STATE_COUNT) as State;
}

/** Whether the word carries the permit for promote(). */
export function permitted(word: number): boolean {
  return (word & PERMIT) !== 0;
}

// The listeners' reads of the word (invariant 1): Atomics.load, since the poll worker writes it too.

/** The state raw and http answer with now. */
export function currentState(slots: Int32Array): State {
  return (Atomics.load(slots, WORD_SLOT) & 0xff) as State;
}

/** The agent line to answer with now. */
export function currentAgent(slots: Int32Array): number {
  return (Atomics.load(slots, WORD_SLOT) >> 8) & 0xff;
}

export function generation(word: number): number {
  return (word >>> 16) & 0x7fff;
}

function pack(gen: number, state: State, override: Override, bucket: number, permit: boolean): number {
  const shown = override === MAINT ? UNKNOWN : state;
  return (permit ? PERMIT : 0) | ((gen & 0x7fff) << 16) | (agentIndex(state, override, bucket) << 8) | shown;
}

/** The permit's deadline in `slots`' buffer; one view per thread, made once. */
export function permitDeadline(slots: Int32Array): BigInt64Array {
  return new BigInt64Array(slots.buffer, DEADLINE_BYTE, 1);
}

/** The poll worker's UNKNOWN, whatever this thread published (invariant 2); returns the new generation. */
export function forceUnknown(slots: Int32Array): number {
  for (;;) {
    const old = Atomics.load(slots, WORD_SLOT);
    const gen = (generation(old) + 1) & 0x7fff;
    const override = Atomics.load(slots, OVERRIDE_SLOT) as Override;
    const next = pack(gen, UNKNOWN, override, 0, permitted(old));
    if (Atomics.compareExchange(slots, WORD_SLOT, old, next) === old) return gen;
  }
}

/**
 * The poll worker's primary for a poll that saw pg_is_in_recovery() false, only over a standby's word that carries
 * the permit before its `deadline` (invariant 3); returns the new generation, or undefined when it wrote nothing.
 */
export function promote(slots: Int32Array, deadline: BigInt64Array, nowEpochMs: number): number | undefined {
  for (;;) {
    const old = Atomics.load(slots, WORD_SLOT);
    const was = wordState(old);
    if (!permitted(old) || (was !== STANDBY && was !== LAGGING)) return undefined;
    if (nowEpochMs >= Number(Atomics.load(deadline, 0))) return undefined;
    const gen = (generation(old) + 1) & 0x7fff;
    const override = Math.floor(shownAgent(old) / (WEIGHT_BUCKETS * STATE_COUNT)) as Override;
    if (Atomics.compareExchange(slots, WORD_SLOT, old, pack(gen, PRIMARY, override, 0, true)) === old) return gen;
  }
}

/** This thread's write over a word of a generation it has not heard of yet: never raises the state (invariant 4). */
function lowered(old: number, override: Override, permit: boolean): number {
  const agent = shownAgent(old);
  const was = wordState(old);
  const state = was === PRIMARY && !permit ? FENCED : was;
  return pack(generation(old), state, override, agent % WEIGHT_BUCKETS, permit);
}

export function agentIndex(state: State, override: Override, bucket: number): number {
  return (override * STATE_COUNT + state) * WEIGHT_BUCKETS + bucket;
}

/**
 * One haproxy agent-check line (configuration manual, "agent-check"): words
 * separated by spaces, ended by a newline, which haproxy requires. "ready" is
 * in every line but maint's because only the agent can undo its own "drain"
 * or "maint"; a weight is in every "up" line when weighting is on, because
 * haproxy keeps the last weight it was told.
 */
export function agentLine(agent: AgentConfig, state: State, override: Override, bucket: number): string {
  if (override === MAINT) return "maint\n";
  // A replica only too far behind is drained, not downed (ARCHITECTURE.md, "Lag without flapping").
  const drained = state === LAGGING && agent.role === "standby" && bucket !== CUT_OFF_BUCKET;
  const up = STATE_NAMES[state] === agent.role || drained;
  const words = [up ? "up" : "down", override === DRAIN || drained ? "drain" : "ready"];
  if (up && !drained && override === READY && agent.weightByLag) words.push(`${100 - 10 * bucket}%`);
  if (!up || drained) words.push(`#${STATE_NAMES[state]}`);
  return words.join(" ") + "\n";
}

export interface Cell {
  /**
   * What listeners read, in the slots above. Backed by a SharedArrayBuffer:
   * the poll worker writes it too.
   */
  readonly slots: Int32Array;
  /**
   * The state answered: the poller's, or fenced when the poller says primary
   * and a fence is up. Under maint, the cell says unknown instead.
   */
  readonly state: State;
  /** The state as the poller last set it (never fenced). */
  readonly polled: State;
  /** Why the node is fenced when it is a primary; undefined: no fence. */
  readonly fence: string | undefined;
  readonly override: Override;
  /** Date.now() of the last change. */
  readonly changedAt: number;
  readonly changes: number;
  /**
   * Sets the poller's state; logs and counts a change of the answered state.
   * `cutOff`: a lagging standby's WAL receiver is gone or not streaming.
   */
  set(state: State, reason: string, cutOff?: boolean): void;
  /**
   * Raises (a reason) or lowers (undefined) the fence; `reason` is also the
   * log's when lowering. Only a primary is fenced, but the fence stays up
   * across other states, so a primary that comes back is fenced at once.
   */
  setFence(fence: string | undefined, reason: string): void;
  /** Sets the operator override; returns whether it changed. */
  setOverride(override: Override): boolean;
  /** Sets the agent weight bucket (0..WEIGHT_BUCKETS-1), from the last poll's lag. */
  setWeightBucket(bucket: number): void;
  /** The permit's deadline (performance.now() ms; 0 not now, Infinity the default); invariant 5. */
  setPermit(untilMs: number): void;
  /** A guard's verdict, the fence (as setFence) and the permit's deadline (as setPermit), in one CAS (invariant 5). */
  setGuard(fence: string | undefined, reason: string, permitUntilMs: number): void;
  /** Publishes this thread's state under the generation of a worker's write whose message it applied (invariant 4). */
  sync(gen: number): void;
}

export function createCell(onChange: (from: State, to: State, reason: string) => void): Cell {
  const slots = new Int32Array(new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT));
  let polled: State = UNKNOWN;
  let fence: string | undefined;
  let state: State = UNKNOWN;
  let override: Override = READY;
  let bucket = 0;
  let cut = false;
  let changedAt = Date.now();
  let changes = 0;
  let gen = 0;
  let permitUntilMs = Infinity;
  const deadline = permitDeadline(slots);
  // One CAS loop for every change of this thread's inputs (invariant 4).
  const publish = () => {
    Atomics.store(slots, OVERRIDE_SLOT, override);
    const permit = fence === undefined && permitUntilMs > performance.now();
    const untilEpochMs = Math.min(NEVER_MS, Math.floor(performance.timeOrigin + permitUntilMs));
    Atomics.store(deadline, 0, permit ? BigInt(untilEpochMs) : 0n);
    for (;;) {
      const old = Atomics.load(slots, WORD_SLOT);
      const next =
        generation(old) === gen ? pack(gen, state, override, detail(), permit) : lowered(old, override, permit);
      if (next === old || Atomics.compareExchange(slots, WORD_SLOT, old, next) === old) return;
    }
  };
  publish();
  function detail(): number {
    return state !== LAGGING ? bucket : cut ? CUT_OFF_BUCKET : 0;
  }
  function update(reason: string): void {
    const from = state;
    const to = polled === PRIMARY && fence !== undefined ? FENCED : polled;
    state = to;
    publish();
    if (from === to) return;
    changedAt = Date.now();
    changes++;
    onChange(from, to, to === FENCED ? fence! : reason);
  }
  return {
    slots,
    get state() {
      return state;
    },
    get polled() {
      return polled;
    },
    get fence() {
      return fence;
    },
    get override() {
      return override;
    },
    get changedAt() {
      return changedAt;
    },
    get changes() {
      return changes;
    },
    set(to, reason, cutOff = false) {
      polled = to;
      cut = cutOff;
      update(reason);
    },
    setFence(to, reason) {
      fence = to;
      update(to ?? reason);
    },
    setOverride(to) {
      if (to === override) return false;
      override = to;
      publish();
      return true;
    },
    setWeightBucket(to) {
      if (to === bucket) return;
      bucket = to;
      publish();
    },
    setPermit(untilMs) {
      if (untilMs === permitUntilMs) return;
      permitUntilMs = untilMs;
      publish();
    },
    setGuard(to, reason, untilMs) {
      permitUntilMs = untilMs;
      if (to === fence) return publish();
      fence = to;
      update(to ?? reason);
    },
    sync(to) {
      gen = to;
      publish();
    },
  };
}
