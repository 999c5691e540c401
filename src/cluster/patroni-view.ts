// The Patroni mode at run time: the etcd mirror of the scope's keys, the view Patroni would hold now, and its fence
// (FENCED instead of MASTER while this member does not hold the leader key), re-applied after every change in etcd,
// every poll, and on a timer while etcd is out of reach. Loaded only in this mode. ARCHITECTURE.md, "The cluster view".
import { readFileSync } from "node:fs";
import type { PatroniSettings } from "../config/types.ts";
import type { Logger } from "../log.ts";
import type { PollFacts } from "../poll/facts.ts";
import { FENCED, type Cell } from "../cell.ts";
import { startMirror, type EtcdTls, type Mirror } from "./etcd.ts";
import { currentView, fenceReason, viewOf, type StoreView } from "./patroni-rules.ts";
import { ReplstatusError } from "../errors.ts";

/** How often the view is re-judged while etcd is out of reach. */
const EXPIRY_CHECK_MS = 50;
export const HEARTBEAT_MS = 1000;
export const ETCD_TIMEOUT_MS = 1000;

export interface PatroniView {
  /** The view as Patroni would hold it now (undefined: none), and why it is not the live one. */
  current(): { view: StoreView | undefined; why: string };
  /**
   * Resolves at the first answer from etcd or the first failure to get one:
   * serve.ts waits for it (bounded) before the first poll, so a restarted
   * replstatus beside the primary says MASTER from its first answer.
   */
  readonly ready: Promise<void>;
  /** Re-applies the fence: after each poll. */
  evaluate(): void;
  /** For /status. */
  status(): Record<string, unknown>;
  /** Prometheus text of the mode's metrics. */
  metrics(): string;
  stop(): void;
}

export interface PatroniViewOptions {
  settings: PatroniSettings;
  cell: Cell;
  facts(): PollFacts | undefined;
  log: Logger;
  /** The leader key's holder changed (GET /events streams it). */
  onLeader?(leader: string | null): void;
}

function readTls(settings: PatroniSettings): EtcdTls | undefined {
  const { cacert, cert, key } = settings.etcd;
  if (!cacert && !cert) return undefined;
  const read = (path: string | undefined, what: string) => {
    if (!path) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new ReplstatusError(
        "ETCD_TLS",
        `could not read the etcd ${what} ${path}: ${code === "ENOENT" ? "no such file" : code}`,
      );
    }
  };
  return { ca: read(cacert, "CA certificate"), cert: read(cert, "certificate"), key: read(key, "key") };
}

/**
 * The members as their keys say, for /status and the status page (src/ui/);
 * lag as `patronictl list` shows it: the leader's optime less the member's
 * xlog_location (Patroni's cluster_as_json), null where either is missing.
 */
function membersOf(v: StoreView) {
  return [...v.members].map(([name, m]) => ({
    name,
    role: m.role ?? null,
    state: m.state ?? null,
    timeline: m.timeline ?? null,
    lag_bytes:
      name !== v.leader && v.leaderOptime > 0 && typeof m.xlog_location === "number"
        ? Math.max(0, v.leaderOptime - m.xlog_location)
        : null,
    api_url: m.api_url ?? null,
  }));
}

export function startPatroniView(opts: PatroniViewOptions): PatroniView {
  const { settings, cell, log } = opts;
  let view: StoreView | undefined;
  let expiryTimer: Timer | undefined;
  let changes = 0;
  const { promise: ready, resolve: isReady } = Promise.withResolvers<void>();

  function current() {
    return currentView(view, mirror, Date.now());
  }

  function evaluate(): void {
    const { view: v, why } = current();
    const reason = fenceReason(v, why, settings.member);
    // Cut off from etcd the view expires with time alone: the worker's
    // promotion waits for this thread's judgement then (cell.ts, promote).
    // The fence and the permit in one step (cell.ts, setGuard).
    cell.setGuard(reason, `member ${settings.member} holds the leader key`, mirror.connected ? Infinity : 0);
  }

  function onChange(): void {
    changes++;
    if (mirror.contactAt > 0 || mirror.reason !== "not connected yet") isReady();
    const leader = view?.leader ?? null;
    view = mirror.contactAt === 0 ? undefined : viewOf(mirror.kvs);
    evaluate();
    if ((view?.leader ?? null) !== leader) opts.onLeader?.(view?.leader ?? null);
    // Out of reach: the view expires with time alone.
    if (!mirror.connected && expiryTimer === undefined) expiryTimer = setInterval(evaluate, EXPIRY_CHECK_MS);
    else if (mirror.connected && expiryTimer !== undefined) {
      clearInterval(expiryTimer);
      expiryTimer = undefined;
    }
  }

  const mirror: Mirror = startMirror({
    urls: settings.etcd.urls,
    username: settings.etcd.username,
    password: settings.etcd.password,
    tls: readTls(settings),
    prefix: settings.prefix,
    leaseKey: "leader",
    heartbeatMs: HEARTBEAT_MS,
    timeoutMs: ETCD_TIMEOUT_MS,
    log,
    onChange,
  });
  onChange();

  return {
    ready,
    current,
    evaluate,
    status() {
      const { view: v, why } = current();
      return {
        patroni: {
          scope: settings.scope,
          member: settings.member,
          etcd: mirror.connected ? "connected" : "unreachable",
          etcd_url: mirror.url,
          etcd_reason: mirror.connected ? null : mirror.reason,
          contact_age_ms: mirror.contactAt === 0 ? null : Date.now() - mirror.contactAt,
          view: v ? (why === "" ? "live" : "kept") : "none",
          view_reason: why || null,
          leader: v?.leader ?? null,
          leader_lease_ttl_s: mirror.leaseTtlS ?? null,
          fenced_by: cell.state === FENCED ? (cell.fence ?? null) : null,
          members: v ? membersOf(v) : [],
        },
      };
    },
    metrics() {
      const { view: v } = current();
      const lines = [
        "# HELP replstatus_patroni_etcd_up 1 while the watch on etcd is up",
        "# TYPE replstatus_patroni_etcd_up gauge",
        `replstatus_patroni_etcd_up ${mirror.connected ? 1 : 0}`,
        "# HELP replstatus_patroni_etcd_contact_age_seconds Seconds since etcd last answered",
        "# TYPE replstatus_patroni_etcd_contact_age_seconds gauge",
        `replstatus_patroni_etcd_contact_age_seconds ${mirror.contactAt === 0 ? "NaN" : (Date.now() - mirror.contactAt) / 1000}`,
        "# HELP replstatus_patroni_view_valid 1 while the cluster view is live or kept within Patroni's ttl, 0 when there is none",
        "# TYPE replstatus_patroni_view_valid gauge",
        `replstatus_patroni_view_valid ${v ? 1 : 0}`,
        "# HELP replstatus_patroni_leader 1 while this member holds the leader key (as far as the view goes)",
        "# TYPE replstatus_patroni_leader gauge",
        `replstatus_patroni_leader ${v?.leader === settings.member ? 1 : 0}`,
        "# HELP replstatus_patroni_store_changes_total Changes seen in etcd (and of contact with it)",
        "# TYPE replstatus_patroni_store_changes_total counter",
        `replstatus_patroni_store_changes_total ${changes}`,
      ];
      return lines.join("\n") + "\n";
    },
    stop() {
      clearInterval(expiryTimer);
      mirror.stop();
    },
  };
}
