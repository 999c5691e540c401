// What the configuration produces: Config and the parts other modules take.
import type { AllowList } from "../listen/allow.ts";
import type { ListenAddress } from "../address.ts";

/** Thrown for a bad flag or value; main.ts prints `message` and exits with 2. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
}

/** The role an agent listener reports as "up" (haproxy agent-check). */
export type AgentRole = "primary" | "standby";
export const AGENT_ROLES: readonly AgentRole[] = ["primary", "standby"];

/** Who must show a client certificate on a TLS listener (none: none is asked for). */
export type ClientCertRule = "none" | "optional" | "required";
export const CLIENT_CERT_RULES: readonly ClientCertRule[] = ["none", "optional", "required"];

/** The TLS material of every `tls+` listener; paths, read at start and on SIGHUP. */
export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** CA bundle that client certificates are verified against; undefined: none. */
  caFile: string | undefined;
  clientCert: ClientCertRule;
}

/** How this node talks to https peers; every field undefined for plain http peers. */
export interface PeerTlsConfig {
  /** CA bundle a peer's certificate must chain to; undefined: the system's CAs. */
  caFile: string | undefined;
  /** Client certificate and key shown to peers that ask for one. */
  certFile: string | undefined;
  keyFile: string | undefined;
}

export interface Texts {
  primary: string;
  standby: string;
  unknown: string;
  lagging: string;
  fenced: string;
}

export interface Config {
  listen: ListenAddress[];
  /** A postgres:// URL or libpq keyword/value pairs; undefined for the libpq environment (PGHOST, ...). */
  db: string | undefined;
  /** Debian cluster (`15-main`) whose port and socket directory are the target's defaults. */
  cluster: string | undefined;
  pollIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  channel: string;
  texts: Texts;
  /** Replay lag over which a standby turns lagging; undefined: no limit. */
  maxLagBytes: number | undefined;
  /** Seconds since the last replayed transaction, counted only while there is WAL to replay. */
  maxLagSeconds: number | undefined;
  /** How long a standby must stay over a limit before it turns lagging. */
  lagGraceMs: number;
  /** A lagging standby rejoins at most this far behind; undefined: maxLagBytes. */
  rejoinLagBytes: number | undefined;
  /** As maxLagSeconds, for rejoining; undefined: maxLagSeconds. */
  rejoinLagSeconds: number | undefined;
  /** How long a lagging standby must stay under the rejoin limits before it rejoins. */
  rejoinAfterMs: number;
  agent: AgentConfig;
  /**
   * Path of the unix socket that `replstatus drain|maint|ready` talk to;
   * undefined for the default, which depends on the listener's port.
   */
  controlSocket: string | undefined;
  /** Directory of the override file kept across restarts; undefined: the control socket's. */
  stateDir: string | undefined;
  /** listen(2) backlog asked for; the kernel caps it at net.core.somaxconn. */
  backlog: number;
  /** undefined: every peer is answered. */
  allow: AllowList | undefined;
  /** Before the open-file limit is taken into account (see main.ts). */
  maxConnections: number;
  /** GET /events: --max-event-subscribers, --event-heartbeat. */
  events: { maxSubscribers: number; heartbeatMs: number };
  /** Prometheus endpoint; undefined: none. */
  metricsListen: { host: string; port: number } | undefined;
  logFormat: "text" | "json";
  /** Base URLs of the peers' http listeners (no trailing slash); empty: no split-brain guard. */
  peers: string[];
  peerIntervalMs: number;
  /** Deadline of one /status request to a peer. */
  peerTimeoutMs: number;
  peerTls: PeerTlsConfig;
  /** A primary that reaches no peer for this long answers FENCED; undefined: never. */
  isolationAfterMs: number | undefined;
  /** undefined when no listener is `tls+`. */
  tls: TlsConfig | undefined;
  /** The Patroni mode (--patroni, --etcd; config/patroni.ts): undefined when off. */
  patroni: PatroniSettings | undefined;
  /** patroni.yml's tags, then --tag: for ?tag_KEY=VALUE and noloadbalance. */
  tags: NodeTags;
}

export interface PatroniSettings {
  /** patroni.yml, when given. */
  file: string | undefined;
  scope: string;
  /** Patroni's namespace, default "/service/". */
  namespace: string;
  /** This node's member name (patroni.yml's name). */
  member: string;
  /** The key prefix watched: /<namespace>/<scope>/, slashes collapsed as Patroni does. */
  prefix: string;
  /**
   * PGHOST and PGPORT of the local PostgreSQL from patroni.yml's postgresql
   * section (unix_socket_directories' first entry, listen's port): defaults
   * below --db, the service and the PG* environment (poll/target.ts).
   */
  pgEnv: Record<string, string>;
  etcd: {
    urls: string[];
    username: string | undefined;
    password: string | undefined;
    /** PEM files. */
    cacert: string | undefined;
    cert: string | undefined;
    key: string | undefined;
  };
}

/** A node's tags as Patroni's ?tag_KEY=VALUE compares them: strings, or lowercased str() of other values. */
export interface NodeTags {
  values: Record<string, string>;
  /** Patroni's bool(tags.get("noloadbalance")). */
  noloadbalance: boolean;
}

export interface AgentConfig {
  role: AgentRole;
  /** Report a weight that falls as a standby's replay lag grows. */
  weightByLag: boolean;
  /** Replay lag at (and above) which the weight reaches its floor. */
  lagForMinWeightBytes: number;
}

export interface DemoConfig {
  /** Promote the standby this long after start; undefined: only on Enter. */
  promoteAfterMs: number | undefined;
  /** End by itself after this long; undefined: run until interrupted. */
  durationMs: number | undefined;
}
