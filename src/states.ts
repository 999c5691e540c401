// The states a node can be in, and the one cell that says which one it is now.
// The poller writes the cell; listeners read it and pick a response that was
// built when the configuration was loaded. Nothing else is shared.
import type { AgentConfig } from "./config.ts";

export const PRIMARY = 0;
export const STANDBY = 1;
export const UNKNOWN = 2;
/** A standby over a configured lag limit (--max-lag-bytes, --max-lag-seconds). */
export const LAGGING = 3;
export type State = typeof PRIMARY | typeof STANDBY | typeof UNKNOWN | typeof LAGGING;

export const STATE_NAMES = ["primary", "standby", "unknown", "lagging"] as const satisfies Record<State, string>;
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
  /** The state as the poller saw it; under maint, cell[STATE_SLOT] says unknown instead. */
  readonly state: State;
  readonly override: Override;
  /** Date.now() of the last change. */
  readonly changedAt: number;
  readonly changes: number;
  /** Sets the state; logs and counts a change, does nothing if unchanged. */
  set(state: State, reason: string): void;
  /** Sets the operator override; returns whether it changed. */
  setOverride(override: Override): boolean;
  /** Sets the agent weight bucket (0..WEIGHT_BUCKETS-1), from the last poll's lag. */
  setWeightBucket(bucket: number): void;
}

export function createStatus(onChange: (from: State, to: State, reason: string) => void): Status {
  const cell = new Int32Array(new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT));
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
  return {
    cell,
    get state() {
      return state;
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
      const from = state;
      if (from === to) return;
      state = to;
      publish();
      changedAt = Date.now();
      changes++;
      onChange(from, to, reason);
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
