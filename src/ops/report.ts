// The start-up report: what this process serves and with which limits, logged
// once everything is in place. Tests and scripts take the "serving" line as
// "ready", so its wording is part of the interface.
import { type Config } from "../config/types.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { formatAddress, redactUrl } from "../address.ts";
import type { Listener } from "../listen/gate.ts";
import type { Logger } from "../log.ts";
import type { Guard } from "../cluster/guard.ts";
import type { TlsMaterial } from "../listen/tls.ts";

/** What start-up ended with, beside the configuration. */
export interface Started {
  version: string;
  listeners: Listener[];
  /** Listeners on a socket passed by the service manager (listen/inherit.ts). */
  inherited: Listener[];
  /** The database as shown to a person (a URL may still hold a password: redacted here). */
  database: string;
  controlPath: string;
  /** The metrics server's port, when --metrics-listen is set. */
  metricsPort: number | undefined;
  /** The listen(2) backlog in force: --backlog capped by net.core.somaxconn. */
  backlog: number;
  maxConnections: number;
  fdLimit: number | undefined;
  splitBrain: Guard | undefined;
  /** The tls+ listeners' material as read at start; undefined: none. */
  tls: TlsMaterial | undefined;
}

/** `raw 0.0.0.0:5400`, `tls+http [::]:8443`: the start line's and the metrics' name of a listener. */
export function listenerName(l: Listener): string {
  return `${l.address.tls ? "tls+" : ""}${l.address.mode} ${formatAddress(l.address)}`;
}

export function reportStart(log: Logger, config: Config, s: Started): void {
  log.info(
    `replstatus ${s.version} serving ${s.listeners.map(listenerName).join(", ")}; ` +
      `database ${redactUrl(s.database)}; poll every ${formatDuration(config.pollIntervalMs)}, ` +
      `stale after ${formatDuration(config.staleAfterMs)}` +
      lagLimits(config) +
      `; control socket ${s.controlPath}` +
      (config.metricsListen && s.metricsPort !== undefined
        ? `; metrics http ${formatAddress({ host: config.metricsListen.host, port: s.metricsPort })}/metrics`
        : ""),
  );
  log.info(
    `listen backlog ${s.backlog}` +
      (s.backlog < config.backlog ? ` (--backlog ${config.backlog} capped by net.core.somaxconn)` : "") +
      `; max connections ${s.maxConnections}` +
      (s.maxConnections < config.maxConnections ? ` (--max-connections ${config.maxConnections} lowered to fit)` : "") +
      `; open-file limit ${s.fdLimit ?? "unknown"}` +
      (config.allow ? `; answering only ${config.allow.cidrs.join(", ")}` : ""),
  );
  if (s.inherited.length) {
    log.info(`socket activation: ${s.inherited.map(listenerName).join(", ")} passed by the service manager`);
  }
  if (s.tls) {
    log.info(`tls+ listeners: ${s.tls.summary}`);
    if (s.tls.expired)
      log.warning(`the certificate ${config.tls!.certFile} has expired: clients that verify it refuse it`);
  }
  if (s.splitBrain) reportSplitBrain(log, config, s.splitBrain);
  if (config.patroni) reportPatroni(log, config);
  for (const l of s.listeners) {
    if (l.backlogError) {
      log.warning(
        `could not set the listen backlog of ${formatAddress(l.address)}: ${l.backlogError}; it stays at 512`,
      );
    }
  }
}

function reportSplitBrain(log: Logger, config: Config, splitBrain: Guard): void {
  log.info(
    `split-brain guard: asking ${config.peers.join(", ")} every ${formatDuration(config.peerIntervalMs)} ` +
      `(timeout ${formatDuration(config.peerTimeoutMs)}); ${splitBrain.reachable()} of ${config.peers.length} answered` +
      (config.isolationAfterMs === undefined
        ? ""
        : `; isolation rule: FENCED after ${formatDuration(config.isolationAfterMs)} without a peer`),
  );
  if (!config.listen.some((l) => l.mode === "http")) {
    log.warning(
      "split-brain guard: this node has no http listener, so its peers cannot see its timeline; add --listen http:HOST:PORT and name it in their --peer",
    );
  }
}

function reportPatroni(log: Logger, config: Config): void {
  const p = config.patroni!;
  log.info(
    `patroni mode: member ${p.member} of ${p.scope}, watching ${p.prefix} on ${p.etcd.urls.map(redactUrl).join(", ")}`,
  );
  if (!config.listen.some((l) => l.mode === "http")) {
    log.warning("patroni mode: no http listener, so Patroni's REST paths are not served; add --listen http:HOST:PORT");
  }
}

function lagLimits(config: Config): string {
  const limits = [
    config.maxLagBytes !== undefined && formatBytes(config.maxLagBytes),
    config.maxLagSeconds !== undefined && `${config.maxLagSeconds} s`,
  ].filter(Boolean);
  return limits.length ? `; lagging over ${limits.join(" or ")} for ${formatDuration(config.lagGraceMs)}` : "";
}
