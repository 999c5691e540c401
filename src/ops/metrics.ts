// Plain counters, rendered to Prometheus text on scrape. The hot path only
// increments a slot of a Float64Array; every string is built here, per scrape.
// Format: https://prometheus.io/docs/instrumenting/exposition_formats/
import { PEER_RESULTS, type Guard } from "../cluster/peers.ts";
import type { PollFacts } from "../poll/poller.ts";
import { STATE_NAMES, type State } from "../cell.ts";

/** Results of a connection, the `result` label; slot offsets within a listener's block. */
export const RESULTS = ["answered", "rejected_peer", "over_limit"] as const;
export const ANSWERED = 0;
export const REJECTED_PEER = 1;
export const OVER_LIMIT = 2;

/** Poll error classes, the `reason` label: a fixed set, never free text. */
export const POLL_ERROR_REASONS = [
  "timeout",
  "refused",
  "connection_lost",
  "auth",
  "too_many_connections",
  "starting_or_stopping",
  "other",
] as const;
export type PollErrorReason = (typeof POLL_ERROR_REASONS)[number];

/** Upper bounds of the poll latency buckets, in seconds. */
export const POLL_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Maps a poll failure to its class, by the codes of PostgreSQL (Appendix A) and of postgres.js. */
export function classifyPollError(err: unknown): PollErrorReason {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case "POLL_TIMEOUT":
    case "CONNECT_TIMEOUT":
    case "ETIMEDOUT":
      return "timeout";
    case "ECONNREFUSED":
    case "ENOENT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "refused";
    case "CONNECTION_CLOSED":
    case "CONNECTION_ENDED":
    case "CONNECTION_DESTROYED":
    case "ECONNRESET":
    case "EPIPE":
    case "57P01": // admin_shutdown: pg_terminate_backend(), fast shutdown
    case "57P02": // crash_shutdown
      return "connection_lost";
    case "53300": // too_many_connections
      return "too_many_connections";
    case "57P03": // cannot_connect_now: starting up, shutting down, in recovery without hot standby
      return "starting_or_stopping";
  }
  if (typeof code === "string" && code.startsWith("28")) return "auth"; // invalid_authorization_specification
  return "other";
}

export interface MetricsSources {
  state(): State;
  stateChanges(): number;
  facts(): PollFacts | undefined;
  openConnections(): number;
  maxConnections(): number;
  fdLimit(): number | undefined;
  /** The split-brain guard, when --peer is given. */
  guard?(): Guard | undefined;
}

export interface Metrics {
  /** Per listener, RESULTS.length slots: the slot is listener index * RESULTS.length + result. */
  readonly connections: Float64Array;
  /** `mode address` of each listener, the `listener` label; set once they listen. */
  listenerNames: string[];
  observePoll(durationMs: number): void;
  pollError(err: unknown): void;
  attach(sources: MetricsSources): void;
  /** The Prometheus text exposition, for /metrics. */
  render(): string;
}

export function createMetrics(listenerCount: number): Metrics {
  const connections = new Float64Array(listenerCount * RESULTS.length);
  const buckets = new Float64Array(POLL_BUCKETS_S.length + 1);
  let pollSumS = 0;
  let pollCount = 0;
  const pollErrors = new Float64Array(POLL_ERROR_REASONS.length);
  let sources: MetricsSources | undefined;
  const metrics: Metrics = {
    connections,
    listenerNames: [],
    observePoll(durationMs) {
      const s = durationMs / 1000;
      let i = 0;
      while (i < POLL_BUCKETS_S.length && s > POLL_BUCKETS_S[i]!) i++;
      buckets[i]!++;
      pollSumS += s;
      pollCount++;
    },
    pollError(err) {
      pollErrors[POLL_ERROR_REASONS.indexOf(classifyPollError(err))]!++;
    },
    attach(s) {
      sources = s;
    },
    render() {
      const out: string[] = [];
      const family = (name: string, type: string, help: string) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      };
      if (sources) {
        const state = sources.state();
        family("replstatus_state", "gauge", "1 for the current state, 0 for the others");
        STATE_NAMES.forEach((name, i) => out.push(`replstatus_state{state="${name}"} ${i === state ? 1 : 0}`));
        family("replstatus_state_changes_total", "counter", "State changes since start");
        out.push(`replstatus_state_changes_total ${sources.stateChanges()}`);
      }
      family("replstatus_connections_total", "counter", "Connections accepted, by listener and result");
      metrics.listenerNames.forEach((listener, l) => {
        RESULTS.forEach((result, r) => {
          out.push(
            `replstatus_connections_total{listener="${label(listener)}",result="${result}"} ${connections[l * RESULTS.length + r]}`,
          );
        });
      });
      family("replstatus_rejected_peers_total", "counter", "Connections closed unanswered: peer outside --allow");
      let rejected = 0;
      for (let l = 0; l < metrics.listenerNames.length; l++)
        rejected += connections[l * RESULTS.length + REJECTED_PEER]!;
      out.push(`replstatus_rejected_peers_total ${rejected}`);
      if (sources) {
        family("replstatus_open_connections", "gauge", "Sockets open now, across listeners");
        out.push(`replstatus_open_connections ${sources.openConnections()}`);
        family("replstatus_max_connections", "gauge", "Effective --max-connections");
        out.push(`replstatus_max_connections ${sources.maxConnections()}`);
        const fdLimit = sources.fdLimit();
        if (fdLimit !== undefined) {
          family("replstatus_open_files_limit", "gauge", "Soft RLIMIT_NOFILE of the process");
          out.push(`replstatus_open_files_limit ${fdLimit}`);
        }
      }
      family("replstatus_poll_duration_seconds", "histogram", "Duration of successful role polls");
      let cumulative = 0;
      POLL_BUCKETS_S.forEach((le, i) => {
        cumulative += buckets[i]!;
        out.push(`replstatus_poll_duration_seconds_bucket{le="${le}"} ${cumulative}`);
      });
      out.push(`replstatus_poll_duration_seconds_bucket{le="+Inf"} ${pollCount}`);
      out.push(`replstatus_poll_duration_seconds_sum ${pollSumS}`);
      out.push(`replstatus_poll_duration_seconds_count ${pollCount}`);
      family("replstatus_poll_errors_total", "counter", "Failed polls and lost connections, by reason class");
      POLL_ERROR_REASONS.forEach((reason, i) => {
        out.push(`replstatus_poll_errors_total{reason="${reason}"} ${pollErrors[i]}`);
      });
      if (sources) {
        const facts = sources.facts();
        family(
          "replstatus_last_poll_age_seconds",
          "gauge",
          "Seconds since the last successful poll started (+Inf before the first)",
        );
        out.push(
          `replstatus_last_poll_age_seconds ${facts ? Math.max(0, (performance.now() - facts.startedAt) / 1000) : "+Inf"}`,
        );
        family("replstatus_standby_lag_bytes", "gauge", "Replay lag behind the primary's last reported position");
        out.push(`replstatus_standby_lag_bytes ${number(facts?.lagBytes)}`);
        family("replstatus_timeline", "gauge", "Timeline of this node's PostgreSQL as of the last successful poll");
        out.push(`replstatus_timeline ${number(facts?.timeline)}`);
        family(
          "replstatus_standby_replay_age_seconds",
          "gauge",
          "Seconds since the last replayed transaction's commit",
        );
        out.push(`replstatus_standby_replay_age_seconds ${number(facts?.replayAgeSeconds)}`);
        // Which cluster the node is of, for rules that join on it (two primaries of one cluster).
        if (facts?.systemId) {
          family("replstatus_cluster_info", "gauge", "1, labelled with the system_identifier of this node's cluster");
          out.push(`replstatus_cluster_info{system_identifier="${label(facts.systemId)}"} 1`);
        }
      }
      const guard = sources?.guard?.();
      if (guard) {
        const view = guard.status();
        family(
          "replstatus_guard_active",
          "gauge",
          "1 while a peer answers, 0 while answering from this node's own view (no peer reachable)",
        );
        out.push(`replstatus_guard_active ${view.guard === "active" ? 1 : 0}`);
        family("replstatus_peers_reachable", "gauge", "Peers of this cluster that answered their last request");
        out.push(`replstatus_peers_reachable ${guard.reachable()}`);
        family("replstatus_peer_up", "gauge", "1 when the peer's last answer counts, 0 otherwise");
        for (const p of view.peers) out.push(`replstatus_peer_up{peer="${label(p.url)}"} ${p.result === "ok" ? 1 : 0}`);
        family("replstatus_peer_timeline", "gauge", "Timeline in the peer's last answer");
        for (const p of view.peers) out.push(`replstatus_peer_timeline{peer="${label(p.url)}"} ${number(p.timeline)}`);
        family("replstatus_peer_requests_total", "counter", "Requests for a peer's /status, by result");
        guard.peers.forEach((p, i) => {
          PEER_RESULTS.forEach((result, r) => {
            out.push(
              `replstatus_peer_requests_total{peer="${label(p.url)}",result="${result}"} ${guard.results[i * PEER_RESULTS.length + r]}`,
            );
          });
        });
      }
      return out.join("\n") + "\n";
    },
  };
  return metrics;
}

// Lag is unknown on a primary or without pg_read_all_stats: NaN says "no value".
function number(value: number | null | undefined): string {
  return value === null || value === undefined ? "NaN" : String(value);
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
