// The split-brain guard: asks the peers' replstatus for /status every --peer-interval (each under --peer-timeout,
// each peer on its own) and sets this node's fence and permit in one step from the rules of guard-rules.ts. A peer
// whose certificate fails counts for nothing. ARCHITECTURE.md, "The cluster view".
import { formatDuration, oneLine } from "../units.ts";
import type { Logger } from "../log.ts";
import type { PollFacts } from "../poll/facts.ts";
import { FENCED, STATE_NAMES, type Cell } from "../cell.ts";
import {
  counts,
  createIsolationMemory,
  fenceReason,
  guardMode,
  holdingPeer,
  isolationReason,
  liftReason,
  PEER_RESULTS,
  promotionUntil,
  standing,
  type GuardMode,
  type IsolationFacts,
  type IsolationMemory,
  type PeerResult,
  type PeerView,
} from "./guard-rules.ts";

/** What /status shows of the guard. */
export interface GuardStatus {
  guard: GuardMode;
  fenced_by: { peer: string; timeline: number | null } | null;
  /** With --isolation-after: the rule's inputs and verdict; null when it is off. */
  isolation: { after_ms: number; since_reached_ms: number | null; isolated: boolean } | null;
  peers: {
    url: string;
    result: string;
    detail: string;
    role: string | null;
    state: string | null;
    timeline: number | null;
    system_identifier: string | null;
    age_ms: number | null;
    /** The rest of the peer's last good /status, for the status page (src/ui/). */
    node: PeerNode | null;
  }[];
}

/** What the guard keeps of a peer's /status beyond its rule's inputs: the fields the status page shows. */
export type PeerNode = Record<(typeof NODE_FIELDS)[number], unknown>;

const NODE_FIELDS = [
  "role",
  "state",
  "polled",
  "override",
  "timeline",
  "system_identifier",
  "lag_bytes",
  "replay_age_seconds",
  "receiver",
  "changed_at",
  "fence",
  "guard",
  "transitions",
] as const;

function nodeOf(body: Record<string, unknown>): PeerNode {
  const node = {} as PeerNode;
  for (const key of NODE_FIELDS) node[key] = body[key] ?? null;
  return node;
}

export interface GuardOptions {
  peers: string[];
  intervalMs: number;
  timeoutMs: number;
  cell: Cell;
  /** This node's last successful poll. */
  facts(): PollFacts | undefined;
  log: Logger;
  /** PEM text for https peers (--peer-ca, --peer-cert, --peer-key); undefined: the system's CAs, no client certificate. */
  tls?: PeerTls;
  /** --isolation-after; undefined: off. */
  isolationAfterMs?: number;
}

/** What fetch's `tls` takes for an https peer. */
export interface PeerTls {
  ca?: string;
  cert?: string;
  key?: string;
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
  /** The isolation rule's verdict at the last evaluate(). */
  isolated(): boolean;
  status(): GuardStatus;
  stop(): void;
}

/** A peer's /status body: anything else is a bad answer. */
interface PeerAnswer {
  role: "primary" | "standby" | null;
  state: string;
  timeline: number | null;
  system_identifier: string | null;
  node: PeerNode;
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
  return { ...(b as unknown as PeerAnswer), node: nodeOf(b) };
}

function failure(err: unknown, timeoutMs: number): [PeerResult, string] {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === "TimeoutError" || e.name === "AbortError")
    return ["timeout", `no answer within ${formatDuration(timeoutMs)}`];
  if (e.code === "ConnectionRefused" || e.code === "ECONNREFUSED") return ["refused", "connection refused"];
  if (typeof e.code === "string" && /CERT|SELF_SIGNED|UNABLE_TO|VERIFY|ALTNAME|HOSTNAME|EPROTO/.test(e.code))
    return ["bad_certificate", `TLS: ${oneLine(e.message ?? "")} (${e.code})`];
  return ["error", oneLine(e.message ?? String(err))];
}

/** One request for a peer's /status, under `signal`. */
async function askPeer(
  url: string,
  signal: AbortSignal,
  timeoutMs: number,
  tls: PeerTls | undefined,
): Promise<{ result: PeerResult; detail: string; answer?: PeerAnswer }> {
  try {
    const res = await fetch(`${url}/status`, {
      signal,
      redirect: "manual",
      headers: { accept: "application/json" },
      ...(tls && url.startsWith("https:") ? { tls } : {}),
    });
    const text = await res.text();
    const parsed = res.status === 200 ? parseAnswer(text) : `HTTP ${res.status} from /status`;
    if (typeof parsed === "string") return { result: "bad_answer", detail: parsed };
    return { result: "ok", detail: "answering", answer: parsed };
  } catch (err) {
    const [result, detail] = failure(err, timeoutMs);
    return { result, detail };
  }
}

/** The guard's log: each change of a peer's standing, of the guard's mode and of isolation, once. */
function guardLog(log: Logger, peers: readonly PeerView[], isolationAfterMs: number | undefined) {
  // Per peer, the detail last logged.
  const logged = peers.map(() => "");
  let modeLogged: GuardMode | undefined;
  let isolationLogged = false;

  function peer(i: number, own: PollFacts | undefined): void {
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
    else if (result === "bad_certificate")
      log.warning(`peer ${p.url} failed TLS verification: ${detail}; it does not count`, fields);
    else if (result === "ok") {
      if (!first) log.info(`peer ${p.url} answers again`, fields);
    } else if (result !== "pending") log.warning(`peer ${p.url} unreachable: ${detail}; it does not count`, fields);
  }

  // Logged from the end of the first round on, as the guard's mode below.
  function isolation(isolated: boolean, facts: IsolationFacts): void {
    if (isolationAfterMs === undefined || isolated === isolationLogged) return;
    isolationLogged = isolated;
    if (isolated) log.warning(`split-brain guard: isolated, ${isolationReason(facts)}: a primary answers FENCED`);
    else log.info("split-brain guard: a peer answers again, isolation over");
  }

  return (own: PollFacts | undefined, isolated: boolean, facts: IsolationFacts): void => {
    const asked = peers.every((p) => p.result !== "pending");
    if (asked) isolation(isolated, facts);
    for (let i = 0; i < peers.length; i++) peer(i, own);
    const mode = guardMode(peers, own);
    if (peers.length === 0 || !asked || mode === modeLogged) return;
    if (mode === "no peer reachable") {
      log.warning(
        isolationAfterMs === undefined
          ? "split-brain guard: no peer reachable, answering from this node's own view"
          : `split-brain guard: no peer reachable; a primary answers FENCED ${formatDuration(isolationAfterMs)} after the last answer`,
        { guard: mode },
      );
    } else if (modeLogged !== undefined) {
      log.info("split-brain guard: a peer answers again", { guard: mode });
    }
    modeLogged = mode;
  };
}

function guardStatus(
  peers: readonly PeerView[],
  nodes: readonly (PeerNode | null)[],
  own: PollFacts | undefined,
  fencedBy: PeerView | undefined,
  isolationAfterMs: number | undefined,
  isolation: IsolationMemory,
): GuardStatus {
  const now = performance.now();
  const since = isolation.reachedAt;
  return {
    guard: guardMode(peers, own),
    fenced_by: fencedBy ? { peer: fencedBy.url, timeline: fencedBy.timeline } : null,
    isolation:
      isolationAfterMs === undefined
        ? null
        : {
            after_ms: isolationAfterMs,
            since_reached_ms: since === undefined ? null : Math.round(now - since),
            isolated: isolation.isolated,
          },
    peers: peers.map((p, i) => ({
      url: p.url,
      result: standing(p, own)[0],
      detail: standing(p, own)[1],
      role: p.role,
      state: p.state,
      timeline: p.timeline,
      system_identifier: p.systemId,
      age_ms: p.answeredAt === undefined ? null : Math.round(now - p.answeredAt),
      node: nodes[i] ?? null,
    })),
  };
}

/** A peer before its first answer. */
function newPeer(url: string): PeerView {
  return {
    url,
    result: "pending",
    detail: "not asked yet",
    role: null,
    state: null,
    timeline: null,
    systemId: null,
    answeredAt: undefined,
    askedAt: undefined,
  };
}

export function startGuard(opts: GuardOptions): Guard {
  const { cell } = opts;
  const peers = opts.peers.map(newPeer);
  const nodes: (PeerNode | null)[] = peers.map(() => null);
  const results = new Float64Array(peers.length * PEER_RESULTS.length);
  const controller = new AbortController();
  const logChanges = guardLog(opts.log, peers, opts.isolationAfterMs);
  const isolation = createIsolationMemory(opts.isolationAfterMs);
  const timers = new Set<Timer>();
  let stopped = false;
  let fencer: PeerView | undefined;

  function evaluate(): void {
    const own = opts.facts();
    const by = holdingPeer(peers, own, fencer, opts.isolationAfterMs !== undefined);
    const facts = isolation.check(peers, own?.systemId, performance.now());
    const fence = by ? fenceReason(by, own!) : isolation.isolated ? `isolated: ${isolationReason(facts)}` : undefined;
    const lift = fence === undefined && cell.fence !== undefined ? liftReason(fencer, own) : "";
    // The fence and the permit in one step (cell.ts, setGuard).
    cell.setGuard(fence, lift, promotionUntil(peers, own, isolation.reachedAt, opts.isolationAfterMs));
    fencer = by;
    logChanges(own, isolation.isolated, facts);
  }

  async function ask(i: number): Promise<void> {
    const p = peers[i]!;
    const startedAt = performance.now();
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(opts.timeoutMs)]);
    const { result, detail, answer } = await askPeer(p.url, signal, opts.timeoutMs, opts.tls);
    if (stopped) return;
    p.result = result;
    p.detail = detail;
    p.askedAt = startedAt;
    if (answer) {
      p.role = answer.role;
      p.state = answer.state;
      p.timeline = answer.timeline;
      p.systemId = answer.system_identifier;
      p.answeredAt = startedAt;
      nodes[i] = answer.node;
    }
    results[i * PEER_RESULTS.length + PEER_RESULTS.indexOf(standing(p, opts.facts())[0] as PeerResult)]!++;
  }

  function nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
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
    reachable: () => peers.filter((p) => counts(p, opts.facts())).length,
    firstRound,
    evaluate,
    isolated: () => isolation.isolated,
    status: () =>
      guardStatus(
        peers,
        nodes,
        opts.facts(),
        cell.state === FENCED ? fencer : undefined,
        opts.isolationAfterMs,
        isolation,
      ),
    stop() {
      stopped = true;
      controller.abort();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
