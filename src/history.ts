// The last changes of this node's answer (and of its override), with times and
// reasons, for /status and the status page (ARCHITECTURE.md, "The status
// page"). A ring of a fixed size, written only when the answer changes, never
// per connection.

/** How many changes /status carries. */
export const HISTORY_SIZE = 10;

export interface Transition {
  /** ISO time of the change. */
  at: string;
  /** A state name (cell.ts STATE_NAMES) or, for the override, "ready", "drain", "maint". */
  from: string;
  to: string;
  reason: string;
}

export interface History {
  push(from: string, to: string, reason: string, atMs?: number): void;
  /** Oldest first. */
  list(): Transition[];
}

export function createHistory(size = HISTORY_SIZE): History {
  const ring: Transition[] = [];
  let next = 0;
  const list = () => (ring.length < size ? ring.slice() : [...ring.slice(next), ...ring.slice(0, next)]);
  return {
    push(from, to, reason, atMs = Date.now()) {
      const t = { at: new Date(atMs).toISOString(), from, to, reason };
      if (ring.length < size) ring.push(t);
      else ring[next] = t;
      next = (next + 1) % size;
    },
    list,
  };
}
