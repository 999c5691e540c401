// The states a node can be in, and the one cell that says which one it is now.
// The poller writes the cell; listeners read it and pick a response that was
// built when the configuration was loaded. Nothing else is shared.
import type { Texts } from "./config.ts";
import { buildHttpResponses, type HttpResponses } from "./http.ts";

export const PRIMARY = 0;
export const STANDBY = 1;
export const UNKNOWN = 2;
/** A standby over a configured lag limit (--max-lag-bytes, --max-lag-seconds). */
export const LAGGING = 3;
export type State = typeof PRIMARY | typeof STANDBY | typeof UNKNOWN | typeof LAGGING;

export const STATE_NAMES = ["primary", "standby", "unknown", "lagging"] as const satisfies Record<State, string>;
export const STATE_COUNT = STATE_NAMES.length;

/**
 * Every prebuilt answer, per protocol, indexed by state. Built from the
 * configuration; a reload replaces the fields of the same object, so
 * listeners holding it see the new answers on their next connection.
 */
export interface Responses {
  raw: Uint8Array[];
  http: HttpResponses;
}

export function buildResponses(texts: Texts): Responses {
  const encode = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));
  return {
    raw: [encode(texts.primary), encode(texts.standby), encode(texts.unknown), encode(texts.lagging)],
    http: buildHttpResponses(),
  };
}

export interface Status {
  /**
   * The current state in slot 0. Backed by a SharedArrayBuffer so listeners on
   * other threads can read it with Atomics.load; on the main thread a plain
   * read is enough.
   */
  readonly cell: Int32Array;
  readonly state: State;
  /** Date.now() of the last change. */
  readonly changedAt: number;
  readonly changes: number;
  /** Sets the state; logs and counts a change, does nothing if unchanged. */
  set(state: State, reason: string): void;
}

export function createStatus(onChange: (from: State, to: State, reason: string) => void): Status {
  const cell = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  cell[0] = UNKNOWN;
  let changedAt = Date.now();
  let changes = 0;
  return {
    cell,
    get state() {
      return cell[0] as State;
    },
    get changedAt() {
      return changedAt;
    },
    get changes() {
      return changes;
    },
    set(state, reason) {
      const from = cell[0] as State;
      if (from === state) return;
      Atomics.store(cell, 0, state);
      changedAt = Date.now();
      changes++;
      onChange(from, state, reason);
    },
  };
}
