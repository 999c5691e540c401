// The split-brain guard (DESIGN.md section 8): ask the other nodes' replstatus
// for their /status, and fence this node while PostgreSQL says it is a primary
// but a reachable peer of the same cluster is primary on a higher timeline.
//
// A promotion starts a new timeline, so a primary on a lower timeline than a
// peer's is an old primary that came back. The rule only ever looks up: the
// primary on the highest timeline is never fenced, so two old primaries cannot
// fence each other into nothing, and a fenced node still reports its own role
// and timeline truthfully (role primary, state fenced).
//
// Timing. A peer is asked every --peer-interval, each request under a
// --peer-timeout deadline. A peer's answer counts until its next request
// fails: a peer that stops answering is unreachable one timeout after its next
// request starts, and then it no longer counts. With no peer left to say
// otherwise the node answers from its own view: availability over fencing.
// A peer's answer is never older than one interval plus one timeout, and the
// peer itself only says primary while its own last poll is fresh
// (--stale-after). The first round of requests is awaited (at most one
// timeout) before the node's own first poll, so a restarted old primary is
// fenced from its first answer, not one interval later.
//
// XXX: no quorum, no consensus: a node that can reach no peer, or whose peers
// cannot see the new primary, answers from its own view (README.md,
// "Split-brain guard").
import { formatDuration } from "../units.ts";
import type { Logger } from "../log.ts";
import type { PollFacts } from "../poll/poller.ts";
import { FENCED, STATE_NAMES, type Status } from "../cell.ts";

/** What became of the last request to a peer; the `reason` label of the peer metrics. */
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

/** What /status shows of the guard. */
export interface GuardStatus {
  /** "off" (no --peer), "active" (a peer answers), "no peer reachable" (own view only). */
  guard: "off" | "active" | "no peer reachable";
  fenced_by: { peer: string; timeline: number | null } | null;
  peers: {
    url: string;
    result: string;
    detail: string;
    role: string | null;
    state: string | null;
    timeline: number | null;
    system_identifier: string | null;
    age_ms: number | null;
  }[];
}

export interface GuardOptions {
  peers: string[];
  intervalMs: number;
  timeoutMs: number;
  status: Status;
  /** This node's last successful poll. */
  facts(): PollFacts | undefined;
  log: Logger;
}

export interface Guard {
  readonly peers: readonly PeerView[];
  /** Per peer, PEER_RESULTS.length slots: requests by result. */
  readonly results: Float64Array;
  /** Peers answering, of this cluster or not yet known to be of another. */
  reachable(): number;
  /** Resolves once every peer has answered or failed once. */
  readonly firstRound: Promise<void>;
  /** Re-applies the rule: after each of this node's polls (and each peer answer). */
  evaluate(): void;
  status(): GuardStatus;
  stop(): void;
}

/** A peer's /status body: anything else is a bad answer. */
interface PeerAnswer {
  role: "primary" | "standby" | null;
  state: string;
  timeline: number | null;
  system_identifier: string | null;
}

function parseAnswer(text: string): PeerAnswer | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (typeof body !== "object" || body === null) return "not a JSON object";
  const b = body as Record<string, unknown>;
  if (b.role !== "primary" && b.role !== "standby" && b.role !== null) return "no role";
  if (typeof b.state !== "string" || !(STATE_NAMES as readonly string[]).includes(b.state)) return "no state";
  if (!("timeline" in b) || !(b.timeline === null || (Number.isSafeInteger(b.timeline) && (b.timeline as number) > 0)))
    return "no timeline (not a replstatus with the split-brain guard?)";
  if (!(
    b.system_identifier === null ||
    (typeof b.system_identifier === "string" && /^-?\d+$/.test(b.system_identifier))
  ))
    return "no system_identifier";
  return b as unknown as PeerAnswer;
}

function failure(err: unknown, timeoutMs: number): [PeerResult, string] {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === "TimeoutError" || e.name === "AbortError")
    return ["timeout", `no answer within ${formatDuration(timeoutMs)}`];
  if (e.code === "ConnectionRefused" || e.code === "ECONNREFUSED") return ["refused", "connection refused"];
  return ["error", (e.message ?? String(err)).replace(/\s+/g, " ").trim()];
}

export function startGuard(opts: GuardOptions): Guard {
  const { status, log } = opts;
  const peers: PeerView[] = opts.peers.map((url) => ({
    url,
    result: "pending",
    detail: "not asked yet",
    role: null,
    state: null,
    timeline: null,
    systemId: null,
    answeredAt: undefined,
  }));
  const results = new Float64Array(peers.length * PEER_RESULTS.length);
  const controller = new AbortController();
  let stopped = false;
  let fencer: PeerView | undefined;
  // Per peer, the detail last logged: each change is logged once.
  const logged = peers.map(() => "");
  let guardLogged: GuardStatus["guard"] | undefined;

  // A peer's answer is judged against this node's cluster when both are known:
  // the first round of answers comes before this node's first poll.
  function standing(p: PeerView, own: PollFacts | undefined): [PeerView["result"], string] {
    if (p.result === "ok" && own?.systemId != null && p.systemId !== null && p.systemId !== own.systemId) {
      return ["other_cluster", `another cluster (system_identifier ${p.systemId} there, ${own.systemId} here)`];
    }
    return [p.result, p.detail];
  }

  function counts(p: PeerView, own: PollFacts | undefined): boolean {
    return standing(p, own)[0] === "ok";
  }

  function reachable(): number {
    const own = opts.facts();
    return peers.filter((p) => counts(p, own)).length;
  }

  function logPeer(i: number, own: PollFacts | undefined): void {
    const p = peers[i]!;
    const [result, detail] = standing(p, own);
    const key = result === "ok" ? "ok" : detail;
    if (logged[i] === key) return;
    const first = logged[i] === "";
    logged[i] = key;
    const fields = { peer: p.url, result };
    if (result === "other_cluster") log.warning(`peer ${p.url} belongs to ${detail}: ignored`, fields);
    else if (result === "bad_answer")
      log.warning(`peer ${p.url} answered garbage: ${detail}; it does not count`, fields);
    else if (result === "ok") {
      if (!first) log.info(`peer ${p.url} answers again`, fields);
    } else if (result !== "pending") log.warning(`peer ${p.url} unreachable: ${detail}; it does not count`, fields);
  }

  function evaluate(): void {
    const own = opts.facts();
    let by: PeerView | undefined;
    if (own && !own.inRecovery && own.timeline !== null && own.systemId !== null) {
      for (const p of peers) {
        if (!counts(p, own) || p.role !== "primary" || p.timeline === null || p.timeline <= own.timeline) continue;
        if (!by || p.timeline > by.timeline!) by = p;
      }
    }
    if (by) {
      status.setFence(`peer ${by.url} is primary on timeline ${by.timeline}, we are on ${own!.timeline}`, "");
    } else if (status.fence !== undefined) {
      const was = fencer!;
      const [result, detail] = standing(was, own);
      const gone =
        result === "bad_answer"
          ? `answered garbage (${detail})`
          : result === "other_cluster"
            ? `belongs to ${detail}`
            : `unreachable (${detail})`;
      const why =
        !own || own.inRecovery
          ? "no longer a primary"
          : result !== "ok"
            ? `peer ${was.url} ${gone}, no reachable peer is primary on a higher timeline`
            : `peer ${was.url} is ${was.role ?? "unknown"}${was.timeline === null ? "" : ` on timeline ${was.timeline}`}, we are on ${own.timeline}`;
      status.setFence(undefined, why);
    }
    fencer = by;
    for (let i = 0; i < peers.length; i++) logPeer(i, own);
    const guard = peers.length === 0 ? "off" : peers.some((p) => counts(p, own)) ? "active" : "no peer reachable";
    if (peers.length > 0 && peers.every((p) => p.result !== "pending") && guard !== guardLogged) {
      if (guard === "no peer reachable") {
        log.warning("split-brain guard: no peer reachable, answering from this node's own view", { guard });
      } else if (guardLogged !== undefined) {
        log.info("split-brain guard: a peer answers again", { guard });
      }
      guardLogged = guard;
    }
  }

  async function ask(i: number): Promise<void> {
    const p = peers[i]!;
    const startedAt = performance.now();
    let result: PeerResult;
    let detail = "answering";
    let answer: PeerAnswer | undefined;
    try {
      const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(opts.timeoutMs)]);
      const res = await fetch(`${p.url}/status`, {
        signal,
        redirect: "manual",
        headers: { accept: "application/json" },
      });
      const text = await res.text();
      const parsed = res.status === 200 ? parseAnswer(text) : `HTTP ${res.status} from /status`;
      if (typeof parsed === "string") {
        result = "bad_answer";
        detail = parsed;
      } else {
        result = "ok";
        answer = parsed;
      }
    } catch (err) {
      [result, detail] = failure(err, opts.timeoutMs);
    }
    if (stopped) return;
    p.result = result;
    p.detail = detail;
    if (answer) {
      p.role = answer.role;
      p.state = answer.state;
      p.timeline = answer.timeline;
      p.systemId = answer.system_identifier;
      p.answeredAt = startedAt;
    }
    results[i * PEER_RESULTS.length + PEER_RESULTS.indexOf(standing(p, opts.facts())[0] as PeerResult)]!++;
  }

  // One loop per peer, so a slow peer delays no other: ask, apply, wait for
  // the rest of the interval (at once if the request took longer).
  async function run(i: number, first: () => void): Promise<void> {
    while (!stopped) {
      const startedAt = performance.now();
      await ask(i);
      if (stopped) break;
      evaluate();
      first();
      const waitMs = startedAt + opts.intervalMs - performance.now();
      if (waitMs > 0) await nap(waitMs);
    }
    first();
  }

  const timers = new Set<Timer>();
  function nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
  }

  const firstRound = Promise.all(
    peers.map((_, i) => {
      const { promise, resolve } = Promise.withResolvers<void>();
      void run(i, resolve);
      return promise;
    }),
  ).then(() => {});

  return {
    peers,
    results,
    reachable,
    firstRound,
    evaluate,
    status() {
      const own = opts.facts();
      const now = performance.now();
      return {
        guard: peers.length === 0 ? "off" : reachable() > 0 ? "active" : "no peer reachable",
        fenced_by: status.state === FENCED && fencer ? { peer: fencer.url, timeline: fencer.timeline } : null,
        peers: peers.map((p) => ({
          url: p.url,
          result: standing(p, own)[0],
          detail: standing(p, own)[1],
          role: p.role,
          state: p.state,
          timeline: p.timeline,
          system_identifier: p.systemId,
          age_ms: p.answeredAt === undefined ? null : Math.round(now - p.answeredAt),
        })),
      };
    },
    stop() {
      stopped = true;
      controller.abort();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
