// The states a node can be in, and the one cell that says which one it is now.
// The poller writes the cell; listeners read it and pick a response that was
// built when the configuration was loaded. Nothing else is shared.
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

// Status.cell, shared with the poll worker (poll/worker.ts) and readable from
// any thread. Slot 0 is what listeners read, packed into one word so that one
// atomic write changes all of it: bits 0-7 the state raw and http show (the
// state, unknown under maint), bits 8-15 the agent line's index (agentIndex()),
// bits 16-30 a generation. The poll worker, whose timers run on their own
// thread and are not held up by a flood of connections on this one, writes
// UNKNOWN there itself the moment the last good poll goes stale or the
// connection fails, and bumps the generation; this thread writes only with a
// compare-and-swap against the generation it has heard of, so a poll result
// that was overtaken by such a write can never bring MASTER back.
export const ANSWER_SLOT = 0;
/** The override in force. */
export const OVERRIDE_SLOT = 1;
const SLOTS = 2;

/** The state raw and http answers show. */
export function shownState(word: number): State {
  return (word & 0xff) as State;
}

/** The agent line shown: an agentIndex(), into Responses.agent. */
export function shownAgent(word: number): number {
  return (word >> 8) & 0xff;
}

// The listeners' reads of the answer word. The poll worker writes it from
// another thread, hence Atomics.load (bench/micro.ts: a few ns against under
// one for a plain read; the call itself is inlined).

/** The state raw and http answer with now. */
export function currentState(cell: Int32Array): State {
  return (Atomics.load(cell, ANSWER_SLOT) & 0xff) as State;
}

/** The agent line to answer with now. */
export function currentAgent(cell: Int32Array): number {
  return (Atomics.load(cell, ANSWER_SLOT) >> 8) & 0xff;
}

export function generation(word: number): number {
  return (word >>> 16) & 0x7fff;
}

function pack(gen: number, shown: State, agent: number): number {
  return ((gen & 0x7fff) << 16) | (agent << 8) | shown;
}

/**
 * The poll worker's write: UNKNOWN in every protocol, whatever this thread
 * last published, and a new generation, which it returns.
 */
export function forceUnknown(cell: Int32Array): number {
  for (;;) {
    const old = Atomics.load(cell, ANSWER_SLOT);
    const gen = (generation(old) + 1) & 0x7fff;
    const override = Atomics.load(cell, OVERRIDE_SLOT) as Override;
    const next = pack(gen, UNKNOWN, agentIndex(UNKNOWN, override, 0));
    if (Atomics.compareExchange(cell, ANSWER_SLOT, old, next) === old) return gen;
  }
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
  const up = STATE_NAMES[state] === agent.role;
  const words = [up ? "up" : "down", override === DRAIN ? "drain" : "ready"];
  if (up && override === READY && agent.weightByLag) words.push(`${100 - 10 * bucket}%`);
  if (!up) words.push(`#${STATE_NAMES[state]}`);
  return words.join(" ") + "\n";
}

export interface Status {
  /**
   * What listeners read, in the slots above. Backed by a SharedArrayBuffer:
   * the poll worker writes it too.
   */
  readonly cell: Int32Array;
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
  /** Sets the poller's state; logs and counts a change of the answered state, does nothing if unchanged. */
  set(state: State, reason: string): void;
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
  /** The generation of the poll worker's last forced UNKNOWN that this thread has heard of. */
  sync(gen: number): void;
}

export function createStatus(onChange: (from: State, to: State, reason: string) => void): Status {
  const cell = new Int32Array(new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT));
  let polled: State = UNKNOWN;
  let fence: string | undefined;
  let state: State = UNKNOWN;
  let override: Override = READY;
  let bucket = 0;
  let changedAt = Date.now();
  let changes = 0;
  let gen = 0;
  // Skipped when the worker forced UNKNOWN since: its message, on the way,
  // brings this thread up to date and publishes again.
  const publish = () => {
    Atomics.store(cell, OVERRIDE_SLOT, override);
    const old = Atomics.load(cell, ANSWER_SLOT);
    if (generation(old) !== gen) return;
    const next = pack(gen, override === MAINT ? UNKNOWN : state, agentIndex(state, override, bucket));
    Atomics.compareExchange(cell, ANSWER_SLOT, old, next);
  };
  publish();
  function update(reason: string): void {
    const from = state;
    const to = polled === PRIMARY && fence !== undefined ? FENCED : polled;
    if (from === to) return;
    state = to;
    publish();
    changedAt = Date.now();
    changes++;
    onChange(from, to, to === FENCED ? fence! : reason);
  }
  return {
    cell,
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
    set(to, reason) {
      polled = to;
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
    sync(to) {
      gen = to;
      publish();
    },
  };
}
