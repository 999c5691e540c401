// SIGHUP: read the configuration again and apply in place what a running
// process can change. Addresses, the database and the channel belong to
// sockets and connections made at start, so a change there is reported and
// waits for a restart.
import { buildConfig, readConfigFile, type Raw } from "../config/load.ts";
import { envName } from "../config/options.ts";
import { ConfigError, type Config } from "../config/types.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { buildResponses, type Responses } from "../listen/answers.ts";
import type { Gate } from "../listen/gate.ts";
import { reloadTls, type TlsHandshakes } from "../listen/tls.ts";
import type { TCPSocketListener } from "bun";
import type { Logger } from "../log.ts";
import type { Poller } from "../poll/poller.ts";
import type { LagJudge } from "../poll/lag.ts";
import { ClusterError } from "../config/debian-cluster.ts";
import { configTarget } from "../poll/target.ts";
import { fitFdLimit } from "./limits.ts";

type Env = Record<string, string | undefined>;

/** Flags, then REPLSTATUS_* variables, then the --config file; throws ConfigError. */
export async function loadConfig(raw: Raw, env: Env): Promise<Config> {
  const path = raw.get("config")?.[0] ?? (env[envName("config")] || undefined);
  return buildConfig(raw, env, path === undefined ? undefined : await readConfigFile(path));
}

/** Reads the configuration again (the file; flags and variables cannot change); undefined when rejected. */
export async function reloadConfig(load: () => Promise<Config>, env: Env, log: Logger): Promise<Config | undefined> {
  try {
    const next = await load();
    configTarget(next, env);
    return next;
  } catch (err) {
    if (!(err instanceof ConfigError || err instanceof ClusterError)) throw err;
    log.error(`SIGHUP: reload rejected, keeping the running configuration: ${err.message}`);
    return undefined;
  }
}

/** The running parts a reload changes in place: listeners hold the same Responses and Gate. */
export interface Reloadable {
  responses: Responses;
  gate: Gate;
  poller: Poller;
  /** The lag rule, whose limits a reload changes from the next poll on. */
  lag: LagJudge;
  log: Logger;
  fdLimit: number | undefined;
  /** The tls+ listeners, whose certificate, key, CA and rule are read again; undefined: none. */
  tls: { handshakes: TlsHandshakes; servers: TCPSocketListener<unknown>[] } | undefined;
}

/**
 * Applies `next` over `old` and logs what changed, and what differs from `started` (the
 * configuration the process started with) and so waits for a restart.
 */
export function apply(old: Config, next: Config, live: Reloadable, started: Config): void {
  // --agent-weight-by-lag waits for a restart (restartOnly): the weight word stays as it was.
  const agent = { ...next.agent, weightByLag: live.responses.agentConfig.weightByLag };
  Object.assign(live.responses, buildResponses(next.texts, agent));
  live.gate.allow = next.allow;
  live.gate.maxConnections = fitFdLimit(next.maxConnections, live.fdLimit);
  live.poller.retime(next);
  live.lag.retune(next);
  live.log.format = next.logFormat;

  const changed = changes(old, next);
  live.log.info(`SIGHUP: reloaded; ${changed.length ? changed.join(", ") : "nothing changed"}`);
  const restart = restartOnly(started, next);
  if (restart.length) {
    live.log.warning(`SIGHUP: ${restart.join(", ")} changed but only take effect after a restart`);
  }
  if (next.tls && live.tls) reloadTls(next.tls, live.tls.servers, live.tls.handshakes, live.log);
}

function changes(old: Config, next: Config): string[] {
  const changed: string[] = [];
  const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
  const note = (name: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) changed.push(`${name} ${show(a)} -> ${show(b)}`);
  };
  for (const state of Object.keys(next.texts) as (keyof Config["texts"])[]) {
    note(`text-${state}`, old.texts[state], next.texts[state]);
  }
  note("allow", old.allow?.cidrs ?? "every peer", next.allow?.cidrs ?? "every peer");
  note("max-connections", old.maxConnections, next.maxConnections);
  note("poll-interval", formatDuration(old.pollIntervalMs), formatDuration(next.pollIntervalMs));
  note("stale-after", formatDuration(old.staleAfterMs), formatDuration(next.staleAfterMs));
  note("connect-timeout", formatDuration(old.connectTimeoutMs), formatDuration(next.connectTimeoutMs));
  note("log-format", old.logFormat, next.logFormat);
  note("agent-role", old.agent.role, next.agent.role);
  note("agent-lag-for-min-weight", old.agent.lagForMinWeightBytes, next.agent.lagForMinWeightBytes);
  const size = (n: number | undefined) => (n === undefined ? "none" : formatBytes(n));
  const secs = (n: number | undefined) => (n === undefined ? "none" : `${n}s`);
  note("max-lag-bytes", size(old.maxLagBytes), size(next.maxLagBytes));
  note("max-lag-seconds", secs(old.maxLagSeconds), secs(next.maxLagSeconds));
  note("lag-grace", formatDuration(old.lagGraceMs), formatDuration(next.lagGraceMs));
  note("rejoin-lag-bytes", size(old.rejoinLagBytes), size(next.rejoinLagBytes));
  note("rejoin-lag-seconds", secs(old.rejoinLagSeconds), secs(next.rejoinLagSeconds));
  note("rejoin-after", formatDuration(old.rejoinAfterMs), formatDuration(next.rejoinAfterMs));
  return changed;
}

function restartOnly(old: Config, next: Config): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const restart: string[] = [];
  if (!same(old.listen, next.listen)) restart.push("listen/port/bind");
  if (old.db !== next.db || old.cluster !== next.cluster) restart.push("db/cluster");
  if (old.channel !== next.channel) restart.push("channel");
  if (old.backlog !== next.backlog) restart.push("backlog");
  if (!same(old.events, next.events)) restart.push("max-event-subscribers/event-heartbeat");
  if (!same(old.metricsListen, next.metricsListen)) restart.push("metrics-listen");
  if (old.controlSocket !== next.controlSocket) restart.push("control-socket");
  if (old.stateDir !== next.stateDir) restart.push("state-dir");
  if (old.agent.weightByLag !== next.agent.weightByLag) restart.push("agent-weight-by-lag");
  if (
    !same(old.peers, next.peers) ||
    old.peerIntervalMs !== next.peerIntervalMs ||
    old.peerTimeoutMs !== next.peerTimeoutMs ||
    !same(old.peerTls, next.peerTls) ||
    old.isolationAfterMs !== next.isolationAfterMs
  ) {
    restart.push("peer/peer-interval/peer-timeout/peer-ca/peer-cert/peer-key/isolation-after");
  }
  if (!same([old.patroni, old.tags], [next.patroni, next.tags]))
    restart.push("patroni/etcd/scope/member/namespace/tag");
  return restart;
}
