// Plain counters, rendered to Prometheus text on scrape. The hot path only
// increments a slot of a Float64Array; every string is built here, per scrape.
// Format: https://prometheus.io/docs/instrumenting/exposition_formats/
import { PEER_RESULTS } from "../cluster/guard-rules.ts";
import { listenError, REJECTED_PEER, RESULTS } from "../listen/gate.ts";
import type { Guard } from "../cluster/guard.ts";
import { TLS_FAILURES, type TlsHandshakes } from "../listen/tls.ts";
import { classifyPollError, POLL_ERROR_REASONS, type PollFacts } from "../poll/facts.ts";
import { STATE_NAMES, type State } from "../cell.ts";

/** Upper bounds of the poll latency buckets, in seconds. */
export const POLL_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface MetricsSources {
  state(): State;
  stateChanges(): number;
  facts(): PollFacts | undefined;
  openConnections(): number;
  maxConnections(): number;
  fdLimit(): number | undefined;
  /** The split-brain guard, when --peer is given. */
  guard?(): Guard | undefined;
  /** Handshake failures of tls+ listeners, when there is one. */
  tls?(): TlsHandshakes | undefined;
  /** GET /events streams open now, and those dropped for not reading (listen/http/events.ts). */
  events?(): { subscribers: number; dropped: number };
  /** More families, already in the text format (the Patroni mode's, src/cluster/patroni-view.ts). */
  extra?(): string;
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
  const poll: PollCounters = {
    buckets: new Float64Array(POLL_BUCKETS_S.length + 1),
    sumS: 0,
    count: 0,
    errors: new Float64Array(POLL_ERROR_REASONS.length),
  };
  let sources: MetricsSources | undefined;
  const metrics: Metrics = {
    connections,
    listenerNames: [],
    observePoll(durationMs) {
      const s = durationMs / 1000;
      let i = 0;
      while (i < POLL_BUCKETS_S.length && s > POLL_BUCKETS_S[i]!) i++;
      poll.buckets[i]!++;
      poll.sumS += s;
      poll.count++;
    },
    pollError(err) {
      poll.errors[POLL_ERROR_REASONS.indexOf(classifyPollError(err))]!++;
    },
    attach(s) {
      sources = s;
    },
    render() {
      const out: string[] = [];
      if (sources) renderState(out, sources);
      renderConnections(out, metrics.listenerNames, connections);
      const tls = sources?.tls?.();
      if (tls) renderTls(out, metrics.listenerNames, tls);
      if (sources) renderLimits(out, sources);
      renderPolls(out, poll);
      if (sources) renderFacts(out, sources.facts());
      const guard = sources?.guard?.();
      if (guard) renderGuard(out, guard);
      return out.join("\n") + "\n" + (sources?.extra?.() ?? "");
    },
  };
  return metrics;
}

interface PollCounters {
  /** Per bucket of POLL_BUCKETS_S, then +Inf: polls that took up to its bound and more than the one before. */
  buckets: Float64Array;
  sumS: number;
  count: number;
  /** Per POLL_ERROR_REASONS. */
  errors: Float64Array;
}

function family(out: string[], name: string, type: string, help: string): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

function renderState(out: string[], sources: MetricsSources): void {
  const state = sources.state();
  family(out, "replstatus_state", "gauge", "1 for the current state, 0 for the others");
  STATE_NAMES.forEach((name, i) => out.push(`replstatus_state{state="${name}"} ${i === state ? 1 : 0}`));
  family(out, "replstatus_state_changes_total", "counter", "State changes since start");
  out.push(`replstatus_state_changes_total ${sources.stateChanges()}`);
}

function renderConnections(out: string[], listenerNames: string[], connections: Float64Array): void {
  family(
    out,
    "replstatus_connections_total",
    "counter",
    "Connections accepted, by listener and result (on a tls+ listener, answered counts before the handshake)",
  );
  listenerNames.forEach((listener, l) => {
    RESULTS.forEach((result, r) => {
      out.push(
        `replstatus_connections_total{listener="${label(listener)}",result="${result}"} ${connections[l * RESULTS.length + r]}`,
      );
    });
  });
  family(out, "replstatus_rejected_peers_total", "counter", "Connections closed unanswered: peer outside --allow");
  let rejected = 0;
  for (let l = 0; l < listenerNames.length; l++) rejected += connections[l * RESULTS.length + REJECTED_PEER]!;
  out.push(`replstatus_rejected_peers_total ${rejected}`);
}

function renderTls(out: string[], listenerNames: string[], tls: TlsHandshakes): void {
  family(
    out,
    "replstatus_tls_handshake_failures_total",
    "counter",
    "Connections to a tls+ listener closed unanswered: failed handshake or client certificate, by reason",
  );
  listenerNames.forEach((listener, l) => {
    if (!listener.startsWith("tls+")) return;
    TLS_FAILURES.forEach((reason, r) => {
      out.push(
        `replstatus_tls_handshake_failures_total{listener="${label(listener)}",reason="${reason}"} ${tls.failures[l * TLS_FAILURES.length + r]}`,
      );
    });
  });
}

function renderLimits(out: string[], sources: MetricsSources): void {
  family(out, "replstatus_open_connections", "gauge", "Sockets open now, across listeners");
  out.push(`replstatus_open_connections ${sources.openConnections()}`);
  family(out, "replstatus_max_connections", "gauge", "Effective --max-connections");
  out.push(`replstatus_max_connections ${sources.maxConnections()}`);
  const fdLimit = sources.fdLimit();
  if (fdLimit !== undefined) {
    family(out, "replstatus_open_files_limit", "gauge", "Soft RLIMIT_NOFILE of the process");
    out.push(`replstatus_open_files_limit ${fdLimit}`);
  }
  const events = sources.events?.();
  if (!events) return;
  family(out, "replstatus_event_subscribers", "gauge", "GET /events streams open now");
  out.push(`replstatus_event_subscribers ${events.subscribers}`);
  family(
    out,
    "replstatus_event_subscribers_dropped_total",
    "counter",
    "GET /events streams dropped because the subscriber did not read what it was sent",
  );
  out.push(`replstatus_event_subscribers_dropped_total ${events.dropped}`);
}

function renderPolls(out: string[], poll: PollCounters): void {
  family(out, "replstatus_poll_duration_seconds", "histogram", "Duration of successful role polls");
  let cumulative = 0;
  POLL_BUCKETS_S.forEach((le, i) => {
    cumulative += poll.buckets[i]!;
    out.push(`replstatus_poll_duration_seconds_bucket{le="${le}"} ${cumulative}`);
  });
  out.push(`replstatus_poll_duration_seconds_bucket{le="+Inf"} ${poll.count}`);
  out.push(`replstatus_poll_duration_seconds_sum ${poll.sumS}`);
  out.push(`replstatus_poll_duration_seconds_count ${poll.count}`);
  family(out, "replstatus_poll_errors_total", "counter", "Failed polls and lost connections, by reason class");
  POLL_ERROR_REASONS.forEach((reason, i) => {
    out.push(`replstatus_poll_errors_total{reason="${reason}"} ${poll.errors[i]}`);
  });
}

function renderFacts(out: string[], facts: PollFacts | undefined): void {
  family(
    out,
    "replstatus_last_poll_age_seconds",
    "gauge",
    "Seconds since the last successful poll started (+Inf before the first)",
  );
  out.push(
    `replstatus_last_poll_age_seconds ${facts ? Math.max(0, (performance.now() - facts.startedAt) / 1000) : "+Inf"}`,
  );
  family(out, "replstatus_standby_lag_bytes", "gauge", "Replay lag behind the primary's last reported position");
  out.push(`replstatus_standby_lag_bytes ${number(facts?.lagBytes)}`);
  family(out, "replstatus_timeline", "gauge", "Timeline of this node's PostgreSQL as of the last successful poll");
  out.push(`replstatus_timeline ${number(facts?.timeline)}`);
  family(out, "replstatus_standby_replay_age_seconds", "gauge", "Seconds since the last replayed transaction's commit");
  out.push(`replstatus_standby_replay_age_seconds ${number(facts?.replayAgeSeconds)}`);
  // Which cluster the node is of, for rules that join on it (two primaries of one cluster).
  if (facts?.systemId) {
    family(out, "replstatus_cluster_info", "gauge", "1, labelled with the system_identifier of this node's cluster");
    out.push(`replstatus_cluster_info{system_identifier="${label(facts.systemId)}"} 1`);
  }
}

function renderGuard(out: string[], guard: Guard): void {
  const view = guard.status();
  family(
    out,
    "replstatus_guard_active",
    "gauge",
    "1 while a peer answers, 0 while answering from this node's own view (no peer reachable)",
  );
  out.push(`replstatus_guard_active ${view.guard === "active" ? 1 : 0}`);
  if (view.isolation) {
    family(
      out,
      "replstatus_isolated",
      "gauge",
      "1 while the isolation rule holds (no peer reached for --isolation-after)",
    );
    out.push(`replstatus_isolated ${view.isolation.isolated ? 1 : 0}`);
  }
  family(out, "replstatus_peers_reachable", "gauge", "Peers of this cluster that answered their last request");
  out.push(`replstatus_peers_reachable ${guard.reachable()}`);
  family(out, "replstatus_peer_up", "gauge", "1 when the peer's last answer counts, 0 otherwise");
  for (const p of view.peers) out.push(`replstatus_peer_up{peer="${label(p.url)}"} ${p.result === "ok" ? 1 : 0}`);
  family(out, "replstatus_peer_timeline", "gauge", "Timeline in the peer's last answer");
  for (const p of view.peers) out.push(`replstatus_peer_timeline{peer="${label(p.url)}"} ${number(p.timeline)}`);
  family(out, "replstatus_peer_requests_total", "counter", "Requests for a peer's /status, by result");
  guard.peers.forEach((p, i) => {
    PEER_RESULTS.forEach((result, r) => {
      out.push(
        `replstatus_peer_requests_total{peer="${label(p.url)}",result="${result}"} ${guard.results[i * PEER_RESULTS.length + r]}`,
      );
    });
  });
}

// Lag is unknown on a primary or without pg_read_all_stats: NaN says "no value".
function number(value: number | null | undefined): string {
  return value === null || value === undefined ? "NaN" : String(value);
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** --metrics-listen: /metrics alone, on its own address; throws LISTEN_FAILED. */
export function serveMetrics(address: { host: string; port: number }, metrics: Metrics) {
  try {
    return Bun.serve({
      hostname: address.host,
      port: address.port,
      fetch: (req) =>
        new URL(req.url).pathname === "/metrics"
          ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } })
          : new Response("not found\n", { status: 404 }),
    });
  } catch (err) {
    throw listenError(address, err);
  }
}
