// The nemesis's plan: a list of faults drawn from a seeded generator, so a run
// is replayed from its seed. The plan names targets by role ("the leader", "a
// replica"), which the run resolves against the cluster as it is when the fault
// starts; the same seed gives the same kinds, roles, directions and times.
// Pure: no I/O, no clock.

export const FAULT_KINDS = [
  "part-etcd",
  "part-peers",
  "part-lb",
  "part-all",
  "kill-postmaster",
  "kill-patroni",
  "stop-postgres",
  "etcd-lost",
  "switchover",
  "failover",
  "restart-replstatus",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** both: nothing crosses; in: the target receives nothing from the others; out: it sends nothing to them. */
export type Direction = "both" | "in" | "out";

export interface PlannedFault {
  kind: FaultKind;
  /** "leader", or "replica" with `pick` choosing among the replicas (sorted by name). */
  target: "leader" | "replica";
  pick: number;
  direction: Direction;
  /** How long the fault is held before it is healed. */
  holdMs: number;
  /** Quiet time after the cluster recovered, before the next fault. */
  gapMs: number;
}

/** Relative weight, and hold range in ms, of each kind. */
const KINDS: Record<FaultKind, { weight: number; holdMs: [number, number] }> = {
  "part-etcd": { weight: 10, holdMs: [1000, 10_000] },
  "part-peers": { weight: 10, holdMs: [1000, 10_000] },
  "part-lb": { weight: 8, holdMs: [1000, 6000] },
  "part-all": { weight: 10, holdMs: [1000, 10_000] },
  "kill-postmaster": { weight: 9, holdMs: [500, 2000] },
  "kill-patroni": { weight: 12, holdMs: [2000, 14_000] },
  "stop-postgres": { weight: 10, holdMs: [1000, 9000] },
  "etcd-lost": { weight: 8, holdMs: [1000, 6000] },
  switchover: { weight: 9, holdMs: [0, 0] },
  failover: { weight: 6, holdMs: [0, 0] },
  "restart-replstatus": { weight: 8, holdMs: [0, 0] },
};

const GAP_MS: [number, number] = [300, 1000];
/** How often a fault that has a target aims at the leader. */
const LEADER_SHARE = 0.6;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function plan(seed: number, count: number, kinds: readonly FaultKind[] = FAULT_KINDS): PlannedFault[] {
  const next = random(seed);
  const between = ([lo, hi]: [number, number]) => Math.round(lo + (hi - lo) * next());
  const total = kinds.reduce((s, k) => s + KINDS[k].weight, 0);
  const faults: PlannedFault[] = [];
  for (let i = 0; i < count; i++) {
    let r = next() * total;
    const kind = kinds.find((k) => (r -= KINDS[k].weight) < 0) ?? kinds.at(-1)!;
    const target = next() < LEADER_SHARE ? "leader" : "replica";
    const pick = next() < 0.5 ? 0 : 1;
    const d = next();
    const direction: Direction = d < 0.5 ? "both" : d < 0.75 ? "in" : "out";
    faults.push({ kind, target, pick, direction, holdMs: between(KINDS[kind].holdMs), gapMs: between(GAP_MS) });
  }
  return faults;
}

/** A seed for a new run: printed, so the run can be replayed with it. */
export function newSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
