// The split-brain guard's rules as pure functions of what the peers last said and what this node's last poll saw:
// the fence (a reachable peer of the same cluster is primary on a higher timeline), when it holds and lifts, and the
// isolation rule (--isolation-after). guard.ts asks the peers and applies them. Invariants: ARCHITECTURE.md, "The
// cluster view"; for users: docs/split-brain.md.
import { formatDuration } from "../units.ts";
import type { PollFacts } from "../poll/facts.ts";

/** What became of the last request to a peer; the `result` label of the peer metrics. */
export const PEER_RESULTS = [
  "ok",
  "timeout",
  "refused",
  "error",
  "bad_answer",
  "other_cluster",
  "bad_certificate",
] as const;
export type PeerResult = (typeof PEER_RESULTS)[number];

/** One peer as last seen; `result` is "pending" before its first answer. */
export interface PeerView {
  url: string;
  result: PeerResult | "pending";
  /** For logs and /status: `connection refused`, `HTTP 404`, ... */
  detail: string;
  /** The peer's PostgreSQL role (null while its state is unknown), state, timeline and cluster. */
  role: "primary" | "standby" | null;
  state: string | null;
  timeline: number | null;
  systemId: string | null;
  /** performance.now() when the request of the last good answer started. */
  answeredAt: number | undefined;
  /** performance.now() when the last finished request (good or not) started. */
  askedAt: number | undefined;
}

/** "off" (no --peer), "active" (a peer counts), "no peer reachable" (own view only). */
export type GuardMode = "off" | "active" | "no peer reachable";

/**
 * A peer's result judged against this node's cluster, when both are known:
 * the first round of answers comes before this node's first poll.
 */
export function standing(p: PeerView, own: PollFacts | undefined): [PeerView["result"], string] {
  if (p.result === "ok" && own?.systemId != null && p.systemId !== null && p.systemId !== own.systemId) {
    return ["other_cluster", `another cluster (system_identifier ${p.systemId} there, ${own.systemId} here)`];
  }
  return [p.result, p.detail];
}

/** Whether a peer's last answer counts: it answered, and is of this cluster or not yet known to be of another. */
export function counts(p: PeerView, own: PollFacts | undefined): boolean {
  return standing(p, own)[0] === "ok";
}

export function guardMode(peers: readonly PeerView[], own: PollFacts | undefined): GuardMode {
  if (peers.length === 0) return "off";
  return peers.some((p) => counts(p, own)) ? "active" : "no peer reachable";
}

/**
 * The peer that fences this node: of the peers that count, the primary on the
 * highest timeline above this node's, while this node is a primary whose
 * timeline and cluster are known. Undefined: no fence.
 */
export function fencingPeer(peers: readonly PeerView[], own: PollFacts | undefined): PeerView | undefined {
  if (!own || own.inRecovery || own.timeline === null || own.systemId === null) return undefined;
  let by: PeerView | undefined;
  for (const p of peers) {
    if (!counts(p, own) || p.role !== "primary" || p.timeline === null || p.timeline <= own.timeline) continue;
    if (!by || p.timeline > by.timeline!) by = p;
  }
  return by;
}

/**
 * The peer that fences this node now: the fencing peer, else the one that
 * fenced it before (`was`) while that one proves nothing either way: its
 * certificate fails, or, with the isolation rule on, it is unreachable.
 */
export function holdingPeer(
  peers: readonly PeerView[],
  own: PollFacts | undefined,
  was: PeerView | undefined,
  isolationOn: boolean,
): PeerView | undefined {
  const by = fencingPeer(peers, own);
  if (by || !was || was.result === "ok" || was.result === "pending") return by;
  if (!own || own.inRecovery || own.timeline === null || own.systemId === null) return undefined;
  return was.result === "bad_certificate" || isolationOn ? was : undefined;
}

/**
 * Until when (performance.now() ms) a promotion of this standby that only
 * the poll worker has seen yet may answer primary (cell.ts, promote): the
 * fence itself comes with the poll, judged on the new timeline, which is
 * higher than the standby's but not known before. So never while a peer that
 * counts is primary on a timeline above the standby's (or the standby's is
 * not known); with the isolation rule on, until it would hold.
 */
export function promotionUntil(
  peers: readonly PeerView[],
  own: PollFacts | undefined,
  reachedAt: number | undefined,
  isolationAfterMs: number | undefined,
): number {
  if (!own) return 0;
  for (const p of peers) {
    if (!counts(p, own) || p.role !== "primary" || p.timeline === null) continue;
    if (own.timeline === null || p.timeline > own.timeline) return 0;
  }
  if (isolationAfterMs === undefined) return Infinity;
  return reachedAt === undefined ? 0 : reachedAt + isolationAfterMs;
}

/** The log's reason for raising the fence. */
export function fenceReason(by: PeerView, own: PollFacts): string {
  return `peer ${by.url} is primary on timeline ${by.timeline}, we are on ${own.timeline}`;
}

/** The log's reason for lowering the fence that `was` raised; undefined: the isolation rule raised it. */
export function liftReason(was: PeerView | undefined, own: PollFacts | undefined): string {
  if (!own || own.inRecovery) return "no longer a primary";
  if (!was) return "a peer answers again, isolation over";
  const [result, detail] = standing(was, own);
  if (result === "ok") {
    const on = was.timeline === null ? "" : ` on timeline ${was.timeline}`;
    return `peer ${was.url} is ${was.role ?? "unknown"}${on}, we are on ${own.timeline}`;
  }
  const gone =
    result === "bad_answer"
      ? `answered garbage (${detail})`
      : result === "other_cluster"
        ? `belongs to ${detail}`
        : `unreachable (${detail})`;
  return `peer ${was.url} ${gone}, no reachable peer is primary on a higher timeline`;
}

// The isolation rule.

export interface IsolationFacts {
  /** --isolation-after; undefined: the rule is off. */
  isolationAfterMs: number | undefined;
  /** Time since the last request that reached a peer started; undefined: none has since start. */
  sinceReachedMs: number | undefined;
  /** The rule held at the previous check. */
  wasIsolated: boolean;
  /** Since a peer was first reached again, every peer has been asked anew and answered or failed. */
  roundSinceReached: boolean;
}

/** True when the rule says a primary must answer FENCED now. */
export function isolated(f: IsolationFacts): boolean {
  if (f.isolationAfterMs === undefined) return false;
  if (f.sinceReachedMs === undefined || f.sinceReachedMs >= f.isolationAfterMs) return true;
  return f.wasIsolated && !f.roundSinceReached;
}

/** Why, for the log, /status and the fence: `no peer reached for 2.1s (--isolation-after 2s)`. */
export function isolationReason(f: IsolationFacts): string {
  const after = `(--isolation-after ${formatDuration(f.isolationAfterMs ?? 0)})`;
  if (f.sinceReachedMs === undefined) return `no peer reached since start ${after}`;
  if (f.sinceReachedMs < (f.isolationAfterMs ?? 0))
    return `a peer answers again, waiting for every peer's next answer ${after}`;
  return `no peer reached for ${(f.sinceReachedMs / 1000).toFixed(1)}s ${after}`;
}

/** What the rule needs of a peer. */
export type PeerSeen = Pick<PeerView, "answeredAt" | "askedAt" | "systemId">;

export interface IsolationMemory {
  /** Applies the rule to the peers as seen now; call after every change. */
  check(peers: readonly PeerSeen[], ownSystemId: string | null | undefined, nowMs: number): IsolationFacts;
  readonly isolated: boolean;
  /** performance.now() of the last request that reached a peer, as of the last check. */
  readonly reachedAt: number | undefined;
}

/** The rule's memory between checks: whether it held, and since when a peer answers again. */
export function createIsolationMemory(isolationAfterMs: number | undefined): IsolationMemory {
  let was = false;
  let reachedAgainAt: number | undefined;
  let reachedAt: number | undefined;
  return {
    check(peers, ownSystemId, nowMs) {
      let at: number | undefined;
      for (const p of peers) {
        if (p.answeredAt === undefined) continue;
        // A peer of another cluster says nothing about this one's network.
        if (ownSystemId != null && p.systemId !== null && p.systemId !== ownSystemId) continue;
        if (at === undefined || p.answeredAt > at) at = p.answeredAt;
      }
      reachedAt = at;
      const sinceReachedMs = at === undefined ? undefined : nowMs - at;
      const cut =
        isolationAfterMs !== undefined && (sinceReachedMs === undefined || sinceReachedMs >= isolationAfterMs);
      if (!was || cut) reachedAgainAt = undefined;
      else reachedAgainAt ??= nowMs;
      const since = reachedAgainAt;
      const roundSinceReached =
        since !== undefined && peers.every((p) => p.askedAt !== undefined && p.askedAt >= since);
      const facts = { isolationAfterMs, sinceReachedMs, wasIsolated: was, roundSinceReached };
      // No verdict before every peer was asked once: a node does not poll its
      // own PostgreSQL before that (guard.ts), so this only spares a start-up.
      was = peers.every((p) => p.askedAt !== undefined) && isolated(facts);
      return facts;
    },
    get isolated() {
      return was;
    },
    get reachedAt() {
      return reachedAt;
    },
  };
}
