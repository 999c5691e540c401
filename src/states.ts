// The states a node can be in, and the one cell that says which one it is now.
// The poller writes the cell; listeners read it and pick a response that was
// built when the configuration was loaded. Nothing else is shared.
import type { AgentConfig } from "./config.ts";

export const PRIMARY = 0;
export const STANDBY = 1;
export const UNKNOWN = 2;
/** A standby over a configured lag limit (--max-lag-bytes, --max-lag-seconds). */
export const LAGGING = 3;
/**
 * A primary while a reachable peer of the same cluster is primary on a higher
 * timeline (peers.ts): never set by the poller, only laid over its primary.
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

// Slots of Status.cell. Each is written only when something changes, so a
// listener's open() is one read and one table lookup.
/** The state raw and http answers show: the state, or unknown under maint. */
export const STATE_SLOT = 0;
/** Index into Responses.agent, see agentIndex(). */
export const AGENT_SLOT = 1;
/** The override in force. */
export const OVERRIDE_SLOT = 2;
const SLOTS = 3;

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
   * What listeners read, in the slots above (STATE_SLOT is 0). Backed by a
   * SharedArrayBuffer so listeners on other threads can read it with
   * Atomics.load; on the main thread a plain read is enough.
   */
  readonly cell: Int32Array;
  /**
   * The state answered: the poller's, or fenced when the poller says primary
   * and a fence is up. Under maint, cell[STATE_SLOT] says unknown instead.
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
  const publish = () => {
    Atomics.store(cell, OVERRIDE_SLOT, override);
    Atomics.store(cell, AGENT_SLOT, agentIndex(state, override, bucket));
    Atomics.store(cell, STATE_SLOT, override === MAINT ? UNKNOWN : state);
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
  };
}
