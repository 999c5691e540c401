// The nemesis checker: from the client's writes, the leader key's history, the
// raw answers sampled from every replstatus, haproxy's view and the final
// primary's table, it finds
//   (a) writes acknowledged by a node that did not hold the leader key at any
//       moment between sending and acknowledgement, and the stale-primary window:
//       how long after a node lost the key its last such write came;
//   (b) acknowledged writes missing from the final primary;
//   (c) write unavailability per fault kind: the longest gap between two
//       acknowledged new-connection writes, from a fault's start to the next's;
//   (d) MASTER answered by a node the key did not name for a tolerance before
//       the probe and all through it.
// Pure: times are epoch ms from one clock; no I/O.

export interface Write {
  id: number;
  /** "new" (a connection of its own) or "poolN" (a session that stays open). */
  kind: string;
  sent: number;
  done: number;
  /** true: acknowledged; false: refused (did not commit); null: unknown. */
  ok: boolean | null;
  /** Member name of the node that acknowledged it. */
  node?: string;
  sysid?: string;
  tli?: number;
}

/** The leader key from `at` on: the member it names, or undefined when there is none. */
export interface KeyEvent {
  at: number;
  holder: string | undefined;
}

export interface Sample {
  node: string;
  from: number;
  to: number;
  text: string;
}

/** haproxy's operational view of one server from `at` on. */
export interface ViewEvent {
  at: number;
  server: string;
  up: boolean;
}

export interface FaultRecord {
  kind: string;
  start: number;
}

export interface CheckInput {
  writes: Write[];
  keys: KeyEvent[];
  samples: Sample[];
  view: ViewEvent[];
  faults: FaultRecord[];
  /** When the run stopped writing. */
  end: number;
  /** Ids in the final primary's table; undefined when it could not be read. */
  finalIds: Set<number> | undefined;
  /** (a): a stale write later than this after the key loss breaks the bound. */
  boundMs: number;
  /** (d): how long a MASTER may outlive the key (the store's watch and the probe's own latency). */
  toleranceMs: number;
}

export interface StaleEpisode {
  node: string;
  /** When the key stopped naming the node (undefined: it never named it). */
  lostAt: number | undefined;
  writes: number;
  pooled: number;
  /** From lostAt to the last stale write's acknowledgement. */
  windowMs: number;
  /** Stale writes acknowledged after haproxy had marked the server down. */
  afterMarkedDown: number;
}

export interface Gaps {
  kind: string;
  faults: number;
  p50Ms: number;
  maxMs: number;
}

export interface CheckResult {
  writes: { sent: number; acked: number; refused: number; unknown: number };
  a: { stale: number; pooled: number; beyondBound: number; windowMs: number; episodes: StaleEpisode[] };
  b: { lost: number; ids: number[]; checked: boolean };
  c: Gaps[];
  d: { samples: number; masters: number; contradictions: number; maxLagMs: number; examples: Sample[] };
  leaderChanges: number;
}

/** The key's history as a lookup: who held it at t, and when did `node` last lose it at or before t. */
export function keyTimeline(keys: KeyEvent[]) {
  const events = [...keys].sort((x, y) => x.at - y.at);
  const indexAt = (t: number) => {
    let lo = 0;
    let hi = events.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (events[mid]!.at <= t) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
  return {
    holderAt(t: number): string | undefined {
      const i = indexAt(t);
      return i < 0 ? undefined : events[i]!.holder;
    },
    /** Whether the key named `node` at some moment of [from, to]. */
    heldDuring(node: string, from: number, to: number): boolean {
      let i = indexAt(from);
      if (i >= 0 && events[i]!.holder === node) return true;
      for (i = i + 1; i < events.length && events[i]!.at <= to; i++) if (events[i]!.holder === node) return true;
      return false;
    },
    /** The last time at or before t when the key stopped naming `node`. */
    lostAt(node: string, t: number): number | undefined {
      for (let i = indexAt(t); i > 0; i--) {
        if (events[i - 1]!.holder === node && events[i]!.holder !== node) return events[i]!.at;
      }
      return undefined;
    },
    changes: events.filter((e, i) => i > 0 && e.holder !== events[i - 1]!.holder && e.holder !== undefined).length,
    /** When the history starts. */
    since: events[0]?.at ?? Number.NEGATIVE_INFINITY,
  };
}

/** Whether haproxy's view had `server` up at t (up before its first event). */
function viewLookup(view: ViewEvent[]) {
  const by = new Map<string, ViewEvent[]>();
  for (const e of [...view].sort((x, y) => x.at - y.at)) by.set(e.server, [...(by.get(e.server) ?? []), e]);
  return (server: string, t: number) => {
    let up = true;
    for (const e of by.get(server) ?? []) {
      if (e.at > t) break;
      up = e.up;
    }
    return up;
  };
}

export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function staleWrites(input: CheckInput, key: ReturnType<typeof keyTimeline>): CheckResult["a"] {
  const upAt = viewLookup(input.view);
  const episodes = new Map<string, StaleEpisode>();
  let stale = 0;
  let pooled = 0;
  let beyondBound = 0;
  for (const w of input.writes) {
    if (w.ok !== true || w.node === undefined || w.sent < key.since) continue;
    if (key.heldDuring(w.node, w.sent, w.done)) continue;
    stale++;
    if (w.kind !== "new") pooled++;
    const lostAt = key.lostAt(w.node, w.sent);
    const windowMs = lostAt === undefined ? Number.POSITIVE_INFINITY : w.done - lostAt;
    if (windowMs > input.boundMs) beyondBound++;
    const k = `${w.node}@${lostAt ?? "never"}`;
    const e = episodes.get(k) ?? { node: w.node, lostAt, writes: 0, pooled: 0, windowMs: 0, afterMarkedDown: 0 };
    e.writes++;
    if (w.kind !== "new") e.pooled++;
    e.windowMs = Math.max(e.windowMs, windowMs);
    if (!upAt(w.node, w.sent)) e.afterMarkedDown++;
    episodes.set(k, e);
  }
  const list = [...episodes.values()].sort((x, y) => (x.lostAt ?? 0) - (y.lostAt ?? 0));
  return { stale, pooled, beyondBound, windowMs: Math.max(0, ...list.map((e) => e.windowMs)), episodes: list };
}

function lostWrites(input: CheckInput): CheckResult["b"] {
  if (!input.finalIds) return { lost: 0, ids: [], checked: false };
  const ids = input.writes.filter((w) => w.ok === true && !input.finalIds!.has(w.id)).map((w) => w.id);
  return { lost: ids.length, ids: ids.slice(0, 20), checked: true };
}

/** The longest time without an acknowledged new-connection write, per fault, grouped by kind. */
export function gapsByKind(writes: Write[], faults: FaultRecord[], end: number): Gaps[] {
  const acks = writes
    .filter((w) => w.ok === true && w.kind === "new")
    .map((w) => w.done)
    .sort((x, y) => x - y);
  const sorted = [...faults].sort((x, y) => x.start - y.start);
  const per = new Map<string, number[]>();
  let i = 0;
  sorted.forEach((f, k) => {
    const until = sorted[k + 1]?.start ?? end;
    while (i < acks.length && acks[i]! < f.start) i++;
    let prev = i > 0 ? acks[i - 1]! : f.start;
    let gap = 0;
    for (let j = i; j < acks.length && acks[j]! < until; j++) {
      gap = Math.max(gap, acks[j]! - prev);
      prev = acks[j]!;
    }
    // Up to the next fault's start: a gap that spans two faults is split between them.
    gap = Math.max(gap, until - prev);
    per.set(f.kind, [...(per.get(f.kind) ?? []), gap]);
  });
  return [...per]
    .map(([kind, gaps]) => ({ kind, faults: gaps.length, p50Ms: quantile(gaps, 0.5), maxMs: Math.max(...gaps) }))
    .sort((x, y) => x.kind.localeCompare(y.kind));
}

function contradictions(input: CheckInput, key: ReturnType<typeof keyTimeline>): CheckResult["d"] {
  // Before the history's first entry (the watch's first read) nothing is known of the key.
  const masters = input.samples.filter((s) => s.text === "MASTER" && s.from >= key.since);
  const bad = masters.filter((s) => !key.heldDuring(s.node, s.from - input.toleranceMs, s.to));
  const lag = (s: Sample) => s.from - (key.lostAt(s.node, s.from) ?? key.since);
  return {
    samples: input.samples.length,
    masters: masters.length,
    contradictions: bad.length,
    maxLagMs: Math.max(0, ...bad.map(lag)),
    examples: bad.slice(0, 5),
  };
}

export function check(input: CheckInput): CheckResult {
  const key = keyTimeline(input.keys);
  const count = (ok: boolean | null) => input.writes.filter((w) => w.ok === ok).length;
  return {
    writes: { sent: input.writes.length, acked: count(true), refused: count(false), unknown: count(null) },
    a: staleWrites(input, key),
    b: lostWrites(input),
    c: gapsByKind(input.writes, input.faults, input.end),
    d: contradictions(input, key),
    leaderChanges: key.changes,
  };
}
