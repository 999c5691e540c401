// The Patroni mode's rules as pure functions: the store's keys in, the view out; the view and this node's last poll
// in, the fence and every Patroni REST path's status code out (Patroni 3.0.2's patroni/api.py do_GET, with a fresh
// poll for "running" and the leader key for "is_leader"). Where it is stricter than Patroni, and the rejoin_lag= and
// rejoin_after= it adds: docs/patroni.md.
import type { PollFacts } from "../poll/facts.ts";
import { parseDurationMs } from "../units.ts";
import { LAGGING, PRIMARY, STANDBY, UNKNOWN, type State } from "../cell.ts";

/** The memory of ?lag= checks with rejoin_lag= or rejoin_after= (listen/http/holds.ts). */
export interface LagHolds {
  look(key: string, over: boolean, under: boolean, holdMs: number, nowMs: number): boolean;
  fail(key: string, nowMs: number): void;
}

/** The longest rejoin_after= honoured; a longer one is ignored, as a bad value. */
const MAX_REJOIN_AFTER_MS = 3_600_000;

/** One member's key (members/NAME): what Patroni wrote there. */
export interface MemberData {
  state?: string;
  role?: string;
  api_url?: string;
  conn_url?: string;
  xlog_location?: number;
  timeline?: number;
  tags?: Record<string, unknown>;
  pending_restart?: boolean;
  scheduled_restart?: unknown;
}

/** The cluster as the store holds it (Patroni's Cluster), as of the last contact. */
export interface StoreView {
  /** The leader key's value: a member name. */
  leader: string | undefined;
  members: Map<string, MemberData>;
  /** The sync key's sync_standby, split on commas. */
  syncStandbys: string[];
  config: {
    ttlS: number;
    synchronousMode: boolean;
    failsafeMode: boolean;
    paused: boolean;
    standbyCluster: boolean;
    /** The config key's JSON, for /config. */
    data: Record<string, unknown> | undefined;
  };
  /** The status key's optime (or the legacy optime/leader), 0 if none. */
  leaderOptime: number;
  /** The history key's JSON list. */
  history: unknown[];
}

/** Patroni's default ttl, when the config key has none. */
export const DEFAULT_TTL_S = 30;

function json(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Patroni's is_standby_cluster(): a standby_cluster section with host, port or restore_command. */
function standbyCluster(v: unknown): boolean {
  return isObject(v) && ["host", "port", "restore_command"].some((k) => v[k]);
}

/** The view from the keys under the scope's prefix (names without the prefix). */
export function viewOf(kvs: ReadonlyMap<string, { value: string }>): StoreView {
  const members = new Map<string, MemberData>();
  for (const [key, kv] of kvs) {
    if (!key.startsWith("members/") || key.indexOf("/", 8) >= 0) continue;
    const data = json(kv.value);
    members.set(key.slice(8), isObject(data) ? (data as MemberData) : {});
  }
  const config = json(kvs.get("config")?.value);
  const c = isObject(config) ? config : undefined;
  const sync = json(kvs.get("sync")?.value);
  const syncText = isObject(sync) && typeof sync.sync_standby === "string" ? sync.sync_standby : "";
  const status = json(kvs.get("status")?.value);
  const optime = isObject(status) ? status.optime : kvs.get("optime/leader")?.value;
  const history = json(kvs.get("history")?.value);
  const ttl = Number(c?.ttl);
  return {
    leader: kvs.get("leader")?.value,
    members,
    syncStandbys: syncText === "" ? [] : syncText.split(","),
    config: {
      ttlS: Number.isFinite(ttl) && ttl > 0 ? ttl : DEFAULT_TTL_S,
      synchronousMode: c?.synchronous_mode === true || c?.synchronous_mode === "on",
      failsafeMode: c?.failsafe_mode === true,
      paused: c?.pause === true,
      standbyCluster: standbyCluster(c?.standby_cluster),
      data: c,
    },
    leaderOptime: Number.isFinite(Number(optime)) ? Number(optime) : 0,
    history: Array.isArray(history) ? history : [],
  };
}

/** How current the last view is: etcd's contact and what it means for the leader key. */
export interface Contact {
  connected: boolean;
  /** Date.now() of the last answer from etcd; 0: never. */
  contactAt: number;
  /** The leader key's lease's time to live at contactAt, when known. */
  leaseTtlS: number | undefined;
}

/**
 * The view as Patroni would hold it now. Connected: the mirror. Cut off: the
 * last view while it would still be Patroni's (dcs.cluster is valid for ttl
 * after the last good read), and the leader key only until its lease would
 * have run out; after that no view (undefined), unless failsafe_mode, where a
 * leader that cannot reach the store stays leader: then the leader is kept.
 */
export function currentView(
  view: StoreView | undefined,
  contact: Contact,
  nowMs: number,
): { view: StoreView | undefined; why: string } {
  if (!view || contact.contactAt === 0) return { view: undefined, why: "no answer from etcd yet" };
  if (contact.connected) return { view, why: "" };
  const ageMs = nowMs - contact.contactAt;
  const ttlMs = view.config.ttlS * 1000;
  const leaseMs = contact.leaseTtlS !== undefined ? contact.leaseTtlS * 1000 : ttlMs;
  if (view.config.failsafeMode && ageMs < ttlMs) return { view, why: "etcd unreachable (failsafe_mode)" };
  if (view.config.failsafeMode) return { view, why: "etcd unreachable past the ttl; failsafe_mode keeps the leader" };
  if (ageMs >= ttlMs)
    return { view: undefined, why: `etcd unreachable for longer than the ttl (${view.config.ttlS} s)` };
  if (view.leader !== undefined && ageMs >= leaseMs) {
    return { view: { ...view, leader: undefined }, why: "etcd unreachable past the leader key's lease" };
  }
  return { view, why: "etcd unreachable, within the ttl" };
}

/**
 * Why a local primary must not say MASTER (raw FENCED), or undefined when it
 * may: this member holds the leader key.
 */
export function fenceReason(view: StoreView | undefined, why: string, member: string): string | undefined {
  if (!view) return `no view of the leader key (${why})`;
  if (view.config.standbyCluster) return "a standby cluster: no member is a primary";
  if (view.leader === member) return undefined;
  if (view.leader === undefined) return `no member holds the leader key${why ? ` (${why})` : ""}`;
  return `member ${view.leader} holds the leader key`;
}

/** This node's facts, as the REST rules need them. */
export interface LocalNode {
  member: string;
  /** The poller's state (never FENCED): UNKNOWN is "not running". */
  polled: State;
  facts: PollFacts | undefined;
  tags: { values: Record<string, string>; noloadbalance: boolean };
}

/** Patroni's parse_int(value, 'B'): bytes, or with kB, MB, GB, TB (1024-based); undefined when bad. */
export function parseLag(text: string): number | undefined {
  const m = /^\s*(\d+)\s*(B|kB|MB|GB|TB)?\s*$/.exec(text);
  if (!m) return undefined;
  const unit = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] ?? "B"]!;
  return Number(m[1]) * unit;
}

function lagging(local: LocalNode, view: StoreView | undefined, maxLagBytes: number | undefined): boolean {
  if (maxLagBytes === undefined) return false;
  const f = local.facts;
  const optime = view?.leaderOptime ?? 0;
  if (optime > 0 && f?.replayLsn != null && optime > f.replayLsn + maxLagBytes) return true;
  return f?.lagBytes != null && f.lagBytes > maxLagBytes;
}

/**
 * Not over ?lag= (true without one, or with a bad one, as Patroni); with
 * rejoin_lag= or rejoin_after= and `holds`, the remembered answer to this
 * path's question, stepped by this look.
 */
function lagOk(
  path: string,
  query: Map<string, string>,
  local: LocalNode,
  view: StoreView | undefined,
  holds: LagHolds | undefined,
  nowMs: number,
): boolean {
  const lagText = query.get("lag");
  const maxLag = lagText === undefined ? undefined : parseLag(lagText);
  if (maxLag === undefined) return true;
  const rejoinText = query.get("rejoin_lag");
  const afterText = query.get("rejoin_after");
  const rejoin = rejoinText === undefined ? undefined : parseLag(rejoinText);
  const after = afterText === undefined ? undefined : parseDurationMs(afterText);
  const holdMs = after !== undefined && after <= MAX_REJOIN_AFTER_MS ? after : undefined;
  if (holds === undefined || (rejoin === undefined && holdMs === undefined)) return !lagging(local, view, maxLag);
  const rejoinLag = Math.min(rejoin ?? maxLag, maxLag);
  const key = `${path} ${maxLag} ${rejoinLag} ${holdMs ?? 0}`;
  if (local.polled !== STANDBY && local.polled !== LAGGING) {
    holds.fail(key, nowMs);
    return false;
  }
  const over = lagging(local, view, maxLag);
  return holds.look(key, over, !over && !lagging(local, view, rejoinLag), holdMs ?? 0, nowMs);
}

/** The first value of each query parameter, as Python's parse_qs()[k][0]. */
export function parseQuery(query: string): Map<string, string> {
  const out = new Map<string, string>();
  if (query === "") return out;
  for (const pair of query.split(/[&;]/)) {
    const eq = pair.indexOf("=");
    if (eq <= 0 || eq === pair.length - 1) continue;
    let k: string;
    let v: string;
    try {
      k = decodeURIComponent(pair.slice(0, eq).replaceAll("+", " "));
      v = decodeURIComponent(pair.slice(eq + 1).replaceAll("+", " "));
    } catch {
      continue;
    }
    if (!out.has(k)) out.set(k, v);
  }
  return out;
}

/**
 * The status code Patroni 3.0.2 answers GET `path` with (do_GET's rules, path
 * matched by substring as Patroni does), from the store view and the local
 * poll. /liveness, /readiness and the JSON paths are handled by pathStatus.
 */
export function checkStatus(
  path: string,
  query: Map<string, string>,
  local: LocalNode,
  view: StoreView | undefined,
  holds?: LagHolds,
  nowMs = Date.now(),
): number {
  const p = path === "/" ? "/primary" : path;
  const running = local.polled !== UNKNOWN;
  const role =
    local.polled === PRIMARY ? "master" : local.polled === STANDBY || local.polled === LAGGING ? "replica" : "";
  const replicaOk =
    !local.tags.noloadbalance &&
    lagOk(p, query, local, view, holds, nowMs) &&
    role === "replica" &&
    running &&
    (query.get("replication_state") !== "streaming" || local.facts?.receiverStatus === "streaming");
  const holdsKey = view?.leader === local.member;
  let leader = false;
  let primary = false;
  let standbyLeader = false;
  if (view?.config.standbyCluster) {
    // A standby cluster's leader is a replica that streams from elsewhere.
    leader = standbyLeader = holdsKey && role === "replica";
  } else {
    leader = primary = holdsKey && role === "master";
  }
  const code = (ok: boolean) => (ok ? 200 : 503);
  let status = 503;
  let ignoreTags = false;
  if (p.includes("standby_leader") || p.includes("standby-leader")) {
    status = code(standbyLeader);
    ignoreTags = true;
  } else if (p.includes("leader")) {
    status = code(leader);
    ignoreTags = true;
  } else if (p.includes("master") || p.includes("primary") || p.includes("read-write")) {
    status = code(primary);
    ignoreTags = true;
  } else if (p.includes("replica")) {
    status = code(replicaOk && !(view?.config.standbyCluster && holdsKey));
  } else if (p.includes("read-only") && !p.includes("sync")) {
    status = primary || standbyLeader ? 200 : code(replicaOk);
  } else if (p.includes("health")) {
    status = code(running);
  } else if (view) {
    const sync = role === "replica" && view.config.synchronousMode && view.syncStandbys.includes(local.member);
    if ((p === "/sync" || p === "/synchronous") && sync) status = code(replicaOk);
    else if ((p === "/async" || p === "/asynchronous") && !sync) status = code(replicaOk);
    else if (p === "/read-only-sync" || p === "/read-only-synchronous") {
      if (primary || standbyLeader) status = 200;
      else if (sync) status = code(replicaOk);
    }
  }
  return !ignoreTags && status === 200 && !tagsMatch(query, local) ? 503 : status;
}

/** ?tag_KEY=VALUE: every tag asked for is the node's. */
function tagsMatch(query: Map<string, string>, local: LocalNode): boolean {
  for (const [k, v] of query) if (k.startsWith("tag_") && local.tags.values[k.slice(4)] !== v) return false;
  return true;
}

/**
 * /readiness: 200 for the leader, for a running node while there is a view
 * of the cluster; with ?lag= (as later Patroni versions do) a replica over it
 * is not ready.
 */
export function readinessStatus(
  query: Map<string, string>,
  local: LocalNode,
  view: StoreView | undefined,
  holds?: LagHolds,
  nowMs = Date.now(),
): number {
  const holdsKey = view?.leader === local.member;
  const leader = holdsKey && (view?.config.standbyCluster ? local.polled !== PRIMARY : local.polled === PRIMARY);
  if (leader) return 200;
  if (local.polled === UNKNOWN || !view) return 503;
  if (local.polled !== PRIMARY && !lagOk("/readiness", query, local, view, holds, nowMs)) return 503;
  return 200;
}

/** GET /cluster: cluster_as_json() of Patroni 3.0.2. */
export function clusterJson(view: StoreView | undefined): Record<string, unknown> {
  if (!view) return { members: [] };
  const members = [...view.members].map(([name, m]) => {
    const role =
      name === view.leader
        ? view.config.standbyCluster
          ? "standby_leader"
          : "leader"
        : view.syncStandbys.includes(name)
          ? "sync_standby"
          : "replica";
    const out: Record<string, unknown> = { name, role, state: m.state ?? "", api_url: m.api_url };
    const conn = connOf(m.conn_url);
    if (conn.host) {
      out.host = conn.host;
      if (conn.port) out.port = conn.port;
    }
    for (const k of ["timeline", "pending_restart", "scheduled_restart", "tags"] as const) if (k in m) out[k] = m[k];
    if (name !== view.leader) {
      const lsn = m.xlog_location;
      out.lag = lsn === undefined ? "unknown" : view.leaderOptime >= lsn ? view.leaderOptime - lsn : 0;
    }
    return out;
  });
  members.sort((a, b) => (String(a.name) < String(b.name) ? -1 : 1));
  return view.config.paused ? { members, pause: true } : { members };
}

function connOf(url: string | undefined): { host?: string; port?: number } {
  if (!url) return {};
  try {
    const u = new URL(url);
    return { host: u.hostname || undefined, port: u.port ? Number(u.port) : undefined };
  } catch {
    return {};
  }
}
