// What the configuration produces: Config and the parts other modules take. The fields that hold one
// option's value as parsed come from the option table (options.ts, `field`); the rest are built by the
// rules of load.ts.
import type { AllowList } from "../listen/allow.ts";
import type { ListenAddress } from "../address.ts";
import type { AgentRole, ClientCertRule, FieldValues, Texts } from "./options.ts";
import type { NodeTags, PatroniSettings } from "./patroni.ts";

export type { AgentRole, ClientCertRule, NodeTags, PatroniSettings, Texts };

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

export interface Config extends FieldValues {
  /** --listen, else the default listener of --port and --bind. */
  listen: ListenAddress[];
  texts: Texts;
  agent: AgentConfig;
  /** undefined: every peer is answered. */
  allow: AllowList | undefined;
  /** GET /events: --max-event-subscribers, --event-heartbeat. */
  events: { maxSubscribers: number; heartbeatMs: number };
  peerTls: PeerTlsConfig;
  /** undefined when no listener is `tls+`. */
  tls: TlsConfig | undefined;
  /** The Patroni mode (--patroni, --etcd; config/patroni.ts): undefined when off. */
  patroni: PatroniSettings | undefined;
  /** patroni.yml's tags, then --tag: for ?tag_KEY=VALUE and noloadbalance. */
  tags: NodeTags;
}

export interface AgentConfig {
  role: AgentRole;
  /** Report a weight that falls as a standby's replay lag grows. */
  weightByLag: boolean;
  /** Replay lag at (and above) which the weight reaches its floor. */
  lagForMinWeightBytes: number;
}

/** `replstatus route` (src/route/, docs/routing.md). */
export interface RouteConfig {
  haproxySocket: string;
  servers: { backend: string; server: string; url: string }[];
  replicaBackends: string[];
  shutdownSessions: boolean;
  reconcileIntervalMs: number;
  streamTimeoutMs: number;
  peerTls: PeerTlsConfig;
  /** Its own /status and /events; undefined: none. */
  listen: { host: string; port: number } | undefined;
  logFormat: "text" | "json";
}

/** `replstatus status`'s own flags. */
export interface StatusConfig {
  /** Whose /status to read; undefined: the first http listener of this host's configuration. */
  url: string | undefined;
  /** Draw again every second until interrupted. */
  watch: boolean;
  /** One JSON object instead of the table. */
  json: boolean;
}

export interface DemoConfig {
  /** Promote the standby this long after start; undefined: only on Enter. */
  promoteAfterMs: number | undefined;
  /** End by itself after this long; undefined: run until interrupted. */
  durationMs: number | undefined;
}
