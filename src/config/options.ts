// The option table: the one source of the parser, the validation, --help, the REPLSTATUS_* variables,
// the TOML file's keys, the Config fields that hold a value as parsed, and what a reload does with each
// option. Adding an option is one entry in TABLE: its kind (kinds.ts) says how the value is parsed and
// what is accepted. ARCHITECTURE.md, "The rules that must not break", 4.
import {
  absolutePath,
  answerText,
  anyText,
  cidr,
  debianCluster,
  durationMs,
  etcdUrl,
  hostPort,
  identifier,
  integer,
  ipAddress,
  listenAddress,
  nodeTag,
  oneOf,
  peerUrl,
  port,
  routeServer,
  connInfo,
  seconds,
  sizeBytes,
  socketPath,
  switchKind,
  type Kind,
} from "./kinds.ts";
import { LISTEN_MODES } from "../address.ts";
import { formatBytes } from "../units.ts";

/** The role an agent listener reports as "up" (haproxy agent-check). */
export type AgentRole = "primary" | "standby";
export const AGENT_ROLES: readonly AgentRole[] = ["primary", "standby"];

/** Who must show a client certificate on a TLS listener (none: none is asked for). */
export type ClientCertRule = "none" | "optional" | "required";
export const CLIENT_CERT_RULES: readonly ClientCertRule[] = ["none", "optional", "required"];

/** The raw answer of each state. */
export interface Texts {
  primary: string;
  standby: string;
  unknown: string;
  lagging: string;
  fenced: string;
}

// Defaults, as bgw_replstatus has them where it has them.
export const DEFAULT_PORT = 5400;
export const DEFAULT_BIND = "0.0.0.0";
export const DEFAULT_POLL_INTERVAL = "50ms";
export const DEFAULT_STALE_AFTER = "1s";
export const DEFAULT_CONNECT_TIMEOUT = "2s";
export const DEFAULT_CHANNEL = "replstatus";
export const DEFAULT_TEXTS: Texts = {
  primary: "MASTER",
  standby: "STANDBY",
  unknown: "UNKNOWN",
  lagging: "LAGGING",
  fenced: "FENCED",
};
export const DEFAULT_LAG_GRACE = "1s";
export const DEFAULT_REJOIN_AFTER = "0s";
export const MAX_TEXT_BYTES = 64;
export const DEFAULT_AGENT_ROLE: AgentRole = "primary";
export const DEFAULT_AGENT_LAG_FOR_MIN_WEIGHT = "64MB";
export const DEFAULT_PROMOTE_AFTER = "10s";
export const DEFAULT_PEER_INTERVAL = "500ms";
export const DEFAULT_PEER_TIMEOUT = "300ms";
export const DEFAULT_BACKLOG = 4096;
// High on purpose: the open-file limit is the real bound (ops/limits.ts fits this
// 32 below it), and answered sockets stay open until the peer closes (the
// drain), so a slow or busy client fleet holds thousands at a time.
export const DEFAULT_MAX_CONNECTIONS = 65_536;
export const DEFAULT_LOG_FORMAT = "text";
export const DEFAULT_MAX_EVENT_SUBSCRIBERS = 64;
export const DEFAULT_EVENT_HEARTBEAT = "250ms";
export const DEFAULT_RECONCILE_INTERVAL = "500ms";
export const DEFAULT_STREAM_TIMEOUT = "1s";
/** Longest unix socket path: sun_path (108 bytes on Linux) minus its terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** The first word of argv when it is one of these; flags follow it. */
export const SUBCOMMANDS = ["drain", "maint", "ready", "demo", "route", "status"] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number];

/**
 * What a SIGHUP does with the option (ops/reload.ts): "live" applies a changed value in place and logs
 * the change; "reread" applies the value again at every reload, changed or not, with the files it goes
 * with (the tls+ listeners'); "restart" reports a change as waiting for a restart; "fixed": flags and
 * variables only, which a reload does not read again.
 */
export type Reload = "live" | "reread" | "restart" | "fixed";

interface Common<T> {
  kind: Kind<T>;
  /** Placeholder shown in --help, where the kind's own is too vague. */
  arg?: string;
  /** Default as the user would type it; absent means "none". */
  default?: string;
  repeatable?: true;
  /** Repeatable only: a value given twice (once parsed) is an error that calls it this. */
  unique?: string;
  /** The Config field that holds the value as parsed (Config's type has it from here). */
  field?: string;
  /** Where the value ends up in Config when a rule of load.ts builds it ("texts.primary"). */
  part?: string;
  /** Restart options that restart together: reported once, as all of their names ("db/cluster"). */
  group?: string;
  /** How a change log line shows the value when there is none ("every peer"). */
  unset?: string;
  help: string;
}

/**
 * Every server option says what a reload does with it. The demo's options (demo: true) are accepted
 * only by `replstatus demo`, which accepts nothing else but --help, and are not reloaded.
 */
type Spec<T> = Common<T> &
  (
    | { demo: true; route?: never; status?: never; reload?: never }
    | { route: true; demo?: never; status?: never; reload?: never }
    | { status: true; demo?: never; route?: never; reload?: never }
    | { demo?: never; route?: "also"; status?: never; reload: Reload }
  );

// In --help order.
const TABLE = {
  listen: {
    kind: listenAddress,
    route: "also",
    reload: "restart",
    part: "listen",
    group: "listen",
    repeatable: true,
    help: `address to serve on, repeatable; IPv6 in brackets ([::1]:5400); MODE is ${LISTEN_MODES.join("|")} (default raw), or tls+MODE for the same inside TLS (tls: alone is tls+raw; see --tls-cert). Replaces --port/--bind`,
  },
  port: {
    kind: port(1025),
    reload: "restart",
    part: "listen",
    group: "listen",
    default: String(DEFAULT_PORT),
    help: "TCP port of the default listener, as bgw_replstatus.port",
  },
  bind: {
    kind: ipAddress(DEFAULT_BIND),
    reload: "restart",
    part: "listen",
    group: "listen",
    default: DEFAULT_BIND,
    help: "address of the default listener, as bgw_replstatus.bind (0.0.0.0: all IPv4 addresses)",
  },
  db: {
    kind: connInfo,
    reload: "restart",
    field: "db",
    group: "db",
    help: 'PostgreSQL to watch, as libpq takes it: a URL postgres://user@host:port/dbname?sslmode=verify-full or keyword/value pairs "service=main sslmode=verify-full"; what it leaves unset comes from the service file, the PG* environment, ~/.pgpass and ~/.postgresql/, else the local socket; keep passwords out of it (.pgpass)',
  },
  cluster: {
    kind: debianCluster,
    reload: "restart",
    field: "cluster",
    group: "db",
    help: "Debian cluster (15-main) whose port and socket directory, read from /etc/postgresql/VERSION/NAME/postgresql.conf as pg_lsclusters does, replace the defaults of --db and PGHOST/PGPORT (default: none)",
  },
  "poll-interval": {
    kind: durationMs(1, 60_000),
    reload: "live",
    field: "pollIntervalMs",
    default: DEFAULT_POLL_INTERVAL,
    help: "time between role polls on a standby; a primary, and a standby whose data directory is watched, poll every stale-after / 4 when that is longer",
  },
  "stale-after": {
    kind: durationMs(10, 3_600_000),
    reload: "live",
    field: "staleAfterMs",
    default: DEFAULT_STALE_AFTER,
    help: "answer UNKNOWN when the last good poll is older than this; also each poll's deadline",
  },
  "connect-timeout": {
    kind: durationMs(10, 600_000),
    reload: "live",
    field: "connectTimeoutMs",
    default: DEFAULT_CONNECT_TIMEOUT,
    help: "deadline for opening the database connection, unless connect_timeout (--db, a service) or PGCONNECT_TIMEOUT sets one",
  },
  channel: {
    kind: identifier,
    reload: "restart",
    field: "channel",
    default: DEFAULT_CHANNEL,
    help: "LISTEN channel on a primary; a NOTIFY on it triggers an immediate poll",
  },
  "text-primary": {
    kind: answerText(MAX_TEXT_BYTES),
    reload: "live",
    part: "texts.primary",
    default: DEFAULT_TEXTS.primary,
    help: "raw answer of a primary",
  },
  "text-standby": {
    kind: answerText(MAX_TEXT_BYTES),
    reload: "live",
    part: "texts.standby",
    default: DEFAULT_TEXTS.standby,
    help: "raw answer of a standby",
  },
  "text-unknown": {
    kind: answerText(MAX_TEXT_BYTES),
    reload: "live",
    part: "texts.unknown",
    default: DEFAULT_TEXTS.unknown,
    help: "raw answer when the role is not known (PostgreSQL down, hung, refusing)",
  },
  "agent-role": {
    kind: oneOf("ROLE", AGENT_ROLES),
    reload: "live",
    part: "agent.role",
    default: DEFAULT_AGENT_ROLE,
    help: `role that agent listeners report as "up ready" (${AGENT_ROLES.join("|")}); any other state is "down"`,
  },
  "agent-weight-by-lag": {
    kind: switchKind,
    reload: "restart",
    part: "agent.weightByLag",
    help: 'agent listeners add a weight to "up": 100% at no replay lag, falling to 10% at --agent-lag-for-min-weight',
  },
  "agent-lag-for-min-weight": {
    kind: sizeBytes(1, "a size of at least 1 byte such as 512kB, 64MB or 1GB"),
    reload: "live",
    part: "agent.lagForMinWeightBytes",
    default: DEFAULT_AGENT_LAG_FOR_MIN_WEIGHT,
    help: "replay lag at which the agent weight reaches its floor of 10% (kB, MB, GB or bytes)",
  },
  "control-socket": {
    kind: socketPath(MAX_SOCKET_PATH_BYTES),
    reload: "restart",
    field: "controlSocket",
    help: "unix socket (mode 0600) for replstatus drain|maint|ready (default: $XDG_RUNTIME_DIR/replstatus-PORT.sock, else /tmp/replstatus-UID/replstatus-PORT.sock, PORT of the first listener)",
  },
  "state-dir": {
    kind: absolutePath,
    reload: "restart",
    field: "stateDir",
    help: "directory of the file that keeps a drain or maint across restarts, replstatus-PORT.override (default: the control socket's directory)",
  },
  "promote-after": {
    kind: durationMs(0, 86_400_000, "500ms or 10s"),
    default: DEFAULT_PROMOTE_AFTER,
    demo: true,
    help: "demo: stop the primary and promote the standby this long after start (Enter does it at once)",
  },
  duration: {
    kind: durationMs(0, 86_400_000, "500ms or 10s"),
    demo: true,
    help: "demo: clean up and exit after this long (default: run until Ctrl-C)",
  },
  url: {
    kind: { ...peerUrl, expected: "an http or https URL of a replstatus http listener, such as http://10.0.0.2:8008" },
    status: true,
    help: "status: read this replstatus's /status (a node's http listener, or replstatus route's --listen) instead of the first http --listen of this host's configuration",
  },
  watch: {
    kind: switchKind,
    status: true,
    help: "status: draw the table again every second until Ctrl-C",
  },
  json: {
    kind: switchKind,
    status: true,
    help: "status: print the nodes and the disagreements as one JSON object",
  },
  "text-lagging": {
    kind: answerText(MAX_TEXT_BYTES),
    reload: "live",
    part: "texts.lagging",
    default: DEFAULT_TEXTS.lagging,
    help: "raw answer of a standby over --max-lag-bytes or --max-lag-seconds",
  },
  "text-fenced": {
    kind: answerText(MAX_TEXT_BYTES),
    reload: "live",
    part: "texts.fenced",
    default: DEFAULT_TEXTS.fenced,
    help: "raw answer of a fenced primary: a --peer is primary on a higher timeline, the isolation rule holds, or (Patroni) it does not hold the leader key; /status says which",
  },
  "max-lag-bytes": {
    kind: sizeBytes(0, "a size in bytes such as 1048576, 512kB, 16MB or 1GB", formatBytes),
    reload: "live",
    field: "maxLagBytes",
    unset: "none",
    help: "a standby whose replay is further behind the primary than this (bytes, or with kB, MB, GB), or whose WAL receiver is not streaming, is lagging (default: no limit)",
  },
  "max-lag-seconds": {
    kind: seconds(86_400),
    reload: "live",
    field: "maxLagSeconds",
    unset: "none",
    help: "a standby with WAL left to replay whose last replayed transaction is older than this is lagging (default: no limit)",
  },
  "lag-grace": {
    kind: durationMs(0, 3_600_000),
    reload: "live",
    field: "lagGraceMs",
    default: DEFAULT_LAG_GRACE,
    help: "how long a standby must stay over a lag limit before it turns lagging",
  },
  "rejoin-lag-bytes": {
    kind: sizeBytes(0, "a size in bytes such as 1048576, 512kB, 16MB or 1GB, at most --max-lag-bytes", formatBytes),
    reload: "live",
    field: "rejoinLagBytes",
    unset: "none",
    help: "a lagging standby rejoins only at most this far behind (bytes, or with kB, MB, GB); below --max-lag-bytes, it keeps a replica near the limit from flapping (default: --max-lag-bytes)",
  },
  "rejoin-lag-seconds": {
    kind: seconds(86_400),
    reload: "live",
    field: "rejoinLagSeconds",
    unset: "none",
    help: "as --max-lag-seconds, for rejoining; at most --max-lag-seconds (default: --max-lag-seconds)",
  },
  "rejoin-after": {
    kind: durationMs(0, 3_600_000, "5s or 30s"),
    reload: "live",
    field: "rejoinAfterMs",
    default: DEFAULT_REJOIN_AFTER,
    help: "how long a lagging standby must stay under the rejoin limits before it is a standby again (0s: at the first poll under them)",
  },
  backlog: {
    kind: integer(1, 65535),
    reload: "restart",
    field: "backlog",
    default: String(DEFAULT_BACKLOG),
    help: "listen backlog of every listener, capped by net.core.somaxconn (Bun's own is a fixed 512)",
  },
  allow: {
    kind: cidr,
    reload: "live",
    part: "allow.cidrs",
    unset: "every peer",
    repeatable: true,
    help: "answer only peers in this network, repeatable (10.0.0.0/8, ::1/128, a bare address); others are closed without a byte (default: every peer)",
  },
  "max-connections": {
    kind: integer(1, 1_000_000),
    reload: "live",
    field: "maxConnections",
    default: String(DEFAULT_MAX_CONNECTIONS),
    help: "open sockets at most, across listeners; more are closed at once, unanswered; lowered to fit the open-file limit",
  },
  "max-event-subscribers": {
    kind: integer(0, 100_000),
    reload: "restart",
    part: "events.maxSubscribers",
    group: "max-event-subscribers",
    default: String(DEFAULT_MAX_EVENT_SUBSCRIBERS),
    help: "open GET /events streams at most, across http listeners; more get 503, and 0 turns the stream off; a subscriber that does not read what it is sent is dropped",
  },
  "event-heartbeat": {
    kind: durationMs(10, 60_000),
    reload: "restart",
    part: "events.heartbeatMs",
    group: "max-event-subscribers",
    default: DEFAULT_EVENT_HEARTBEAT,
    help: "time between two heartbeat comments on every GET /events stream, by which a subscriber tells a live stream from a dead one",
  },
  "metrics-listen": {
    kind: hostPort,
    reload: "restart",
    field: "metricsListen",
    help: "serve Prometheus metrics over HTTP at /metrics on this address (default: none)",
  },
  peer: {
    kind: peerUrl,
    reload: "restart",
    field: "peers",
    group: "peer",
    repeatable: true,
    unique: "peer",
    help: "http listener of another node's replstatus (http://10.0.0.2:8008, or https:// for a tls+http one), repeatable; this node answers FENCED instead of MASTER while a peer of the same cluster is primary on a higher timeline (default: none)",
  },
  "peer-interval": {
    kind: durationMs(10, 60_000),
    reload: "restart",
    field: "peerIntervalMs",
    group: "peer",
    default: DEFAULT_PEER_INTERVAL,
    help: "time between two requests for a peer's /status",
  },
  "peer-timeout": {
    kind: durationMs(10, 60_000),
    reload: "restart",
    field: "peerTimeoutMs",
    group: "peer",
    default: DEFAULT_PEER_TIMEOUT,
    help: "a peer that has not answered within this is unreachable, and no longer counts",
  },
  "haproxy-socket": {
    kind: socketPath(MAX_SOCKET_PATH_BYTES),
    route: true,
    help: "route: haproxy's stats socket with level admin (stats socket /run/haproxy/admin.sock mode 660 level admin), kept on this host",
  },
  server: {
    kind: routeServer,
    repeatable: true,
    route: true,
    help: "route: a haproxy server and the http listener of the replstatus beside its PostgreSQL, repeatable (pg/node1=https://10.0.0.1:8008)",
  },
  "replica-backend": {
    kind: anyText("BACKEND"),
    repeatable: true,
    route: true,
    help: "route: a backend whose servers follow STANDBY (a lagging one drained) instead of MASTER, repeatable (default: every backend is a primary backend)",
  },
  "shutdown-sessions": {
    kind: switchKind,
    route: true,
    help: "route: also shut a server's sessions when it is taken out (the server line's on-marked-down shutdown-sessions does it without this)",
  },
  "reconcile-interval": {
    kind: durationMs(10, 60_000),
    default: DEFAULT_RECONCILE_INTERVAL,
    route: true,
    help: "route: time between two comparisons of every backend with the streams, which push again what haproxy's checks undid",
  },
  "stream-timeout": {
    kind: durationMs(50, 60_000),
    default: DEFAULT_STREAM_TIMEOUT,
    route: true,
    help: "route: a node stream silent this long (no event, no heartbeat) is lost, and its server left to haproxy's checks",
  },
  "peer-ca": {
    kind: anyText("FILE"),
    route: "also",
    reload: "restart",
    part: "peerTls.caFile",
    group: "peer",
    help: "CA bundle (PEM) an https --peer's certificate must chain to; a peer that fails is not counted (default: the system's CAs)",
  },
  "peer-cert": {
    kind: anyText("FILE"),
    route: "also",
    reload: "restart",
    part: "peerTls.certFile",
    group: "peer",
    help: "client certificate (PEM) shown to https peers, with --peer-key (default: none)",
  },
  "peer-key": {
    kind: anyText("FILE"),
    route: "also",
    reload: "restart",
    part: "peerTls.keyFile",
    group: "peer",
    help: "private key (PEM) of --peer-cert (default: none)",
  },
  "isolation-after": {
    kind: durationMs(10, 3_600_000),
    reload: "restart",
    field: "isolationAfterMs",
    group: "peer",
    help: "a primary that has reached none of its --peer for this long answers FENCED until it reaches one again; with all peers down it fences too (default: off)",
  },
  "tls-cert": {
    kind: anyText("FILE"),
    reload: "reread",
    part: "tls.certFile",
    help: "certificate chain (PEM) of every tls+ listener; re-read on SIGHUP (default: none)",
  },
  "tls-key": {
    kind: anyText("FILE"),
    reload: "reread",
    part: "tls.keyFile",
    help: "private key (PEM) of --tls-cert; re-read on SIGHUP (default: none)",
  },
  "tls-ca": {
    kind: anyText("FILE"),
    reload: "reread",
    part: "tls.caFile",
    help: "CA bundle (PEM) that client certificates of tls+ listeners must chain to; re-read on SIGHUP (default: none)",
  },
  "tls-client-cert": {
    kind: oneOf("RULE", CLIENT_CERT_RULES),
    reload: "reread",
    part: "tls.clientCert",
    default: "none",
    help: `client certificates on tls+ listeners (${CLIENT_CERT_RULES.join("|")}): optional answers clients without one but closes those with a bad one; optional and required need --tls-ca`,
  },
  patroni: {
    kind: anyText("FILE"),
    reload: "restart",
    part: "patroni",
    group: "patroni",
    help: "Patroni mode: read scope, namespace, member name, the etcd3 section and tags from this patroni.yml, watch the cluster in etcd and answer Patroni's REST paths on http listeners (default: off)",
  },
  etcd: {
    kind: etcdUrl,
    reload: "restart",
    part: "patroni",
    group: "patroni",
    repeatable: true,
    help: "etcd v3 client URL (http://10.0.0.1:2379), repeatable; replaces patroni.yml's etcd3 hosts, or turns the Patroni mode on without a file",
  },
  scope: {
    reload: "restart",
    part: "patroni",
    group: "patroni",
    kind: anyText("NAME"),
    help: "Patroni cluster name (default: patroni.yml's scope)",
  },
  member: {
    reload: "restart",
    part: "patroni",
    group: "patroni",
    kind: anyText("NAME"),
    help: "this node's Patroni member name (default: patroni.yml's name)",
  },
  namespace: {
    kind: anyText("PATH"),
    reload: "restart",
    part: "patroni",
    group: "patroni",
    help: "Patroni namespace (default: patroni.yml's namespace, else /service/)",
  },
  tag: {
    kind: nodeTag,
    reload: "restart",
    part: "tags",
    group: "patroni",
    repeatable: true,
    help: "a node tag for ?tag_KEY=VALUE and noloadbalance on http listeners, repeatable; added to patroni.yml's tags",
  },
  config: {
    kind: anyText("FILE"),
    route: "also",
    reload: "fixed",
    help: 'TOML file of flag names and values (poll-interval = "100ms"), below flags and variables; re-read on SIGHUP (default: none)',
  },
  "log-format": {
    kind: oneOf("FORMAT", ["text", "json"] as const),
    route: "also",
    reload: "live",
    field: "logFormat",
    default: DEFAULT_LOG_FORMAT,
    help: "text, or json for JSON lines (time, level, msg)",
  },
  help: { reload: "fixed", kind: switchKind, help: "print this help and exit" },
  version: { reload: "fixed", kind: switchKind, help: "print the version and exit" },
} as const satisfies Record<string, Spec<unknown>>;

type Table = typeof TABLE;
export type OptionName = keyof Table;
type ValueOf<S> = S extends { kind: Kind<infer T> }
  ? S extends { repeatable: true }
    ? T[]
    : S extends { default: string }
      ? T
      : T | undefined
  : never;
/** Every option's parsed value: a list when repeatable, undefined when absent without a default. */
export type Values = { -readonly [K in OptionName]: ValueOf<Table[K]> };

type FieldOf<S> = S extends { field: infer F extends string } ? F : never;
/** The Config fields that hold an option's value as parsed (`field` in the table), typed from it. */
export type FieldValues = { -readonly [K in OptionName as FieldOf<Table[K]>]: Values[K] };

export type Option = Spec<unknown> & {
  /** Flag name without the leading dashes; also the TOML key. */
  name: string;
  /** Placeholder shown in --help; undefined for a switch. */
  arg: string | undefined;
};

export const OPTIONS: readonly Option[] = Object.entries(TABLE).map(([name, spec]: [string, Spec<unknown>]) => ({
  ...spec,
  name,
  arg: spec.arg ?? spec.kind.arg,
}));

export const BY_NAME: ReadonlyMap<string, Option> = new Map(OPTIONS.map((o) => [o.name, o]));

/**
 * Which command accepts an option: the server, `replstatus demo`, `replstatus route`, or
 * `replstatus status` (its own, and the server's, which say where this host's http listener is).
 */
export type Scope = "server" | "demo" | "route" | "status";

export function inScope(option: Option, scope: Scope): boolean {
  if (option.name === "help" || option.name === "version") return true;
  if (scope === "demo") return option.demo === true;
  if (scope === "route") return option.route !== undefined;
  const server = option.demo !== true && option.route !== true && option.status !== true;
  return scope === "status" ? server || option.status === true : server;
}

/** Every server flag has a REPLSTATUS_* variable, but --help, --version and the sub-commands' own flags. */
export function hasEnv(option: Option): boolean {
  return !option.demo && !option.status && option.name !== "help" && option.name !== "version";
}

/** REPLSTATUS_POLL_INTERVAL for poll-interval. */
export function envName(name: string): string {
  return "REPLSTATUS_" + name.toUpperCase().replaceAll("-", "_");
}

/**
 * Where the control socket is when --control-socket is not given: the
 * user's runtime dir (systemd's per-user 0700 tmpfs), else a 0700 dir of
 * this user's under /tmp. One socket per listener port, so several
 * responders on one host (one per PostgreSQL instance) do not collide.
 */
export function defaultControlSocket(port: number, env: Record<string, string | undefined>): string {
  const runtimeDir = env.XDG_RUNTIME_DIR;
  if (runtimeDir && runtimeDir.startsWith("/")) return `${runtimeDir}/replstatus-${port}.sock`;
  return `/tmp/replstatus-${process.getuid?.() ?? 0}/replstatus-${port}.sock`;
}
