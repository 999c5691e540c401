// The fencing rule on its own, as pure functions of what the peers last said
// and what this node's last poll saw; peers.ts asks the peers and applies it.
//
// A promotion starts a new timeline, so a primary on a lower timeline than a
// peer's is an old primary that came back. The rule only ever looks up: the
// primary on the highest timeline is never fenced, so two old primaries cannot
// fence each other into nothing, and a fenced node still reports its own role
// and timeline truthfully (role primary, state fenced).
import type { PollFacts } from "../poll/facts.ts";

/** What became of the last request to a peer; the `result` label of the peer metrics. */
export const PEER_RESULTS = ["ok", "timeout", "refused", "error", "bad_answer", "other_cluster"] as const;
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

/** The log's reason for raising the fence. */
export function fenceReason(by: PeerView, own: PollFacts): string {
  return `peer ${by.url} is primary on timeline ${by.timeline}, we are on ${own.timeline}`;
}

/** The log's reason for lowering the fence that `was` raised. */
export function liftReason(was: PeerView, own: PollFacts | undefined): string {
  if (!own || own.inRecovery) return "no longer a primary";
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
