// One option table drives the parser, the validation and the --help text, so
// the three cannot drift apart. Precedence: flags, then REPLSTATUS_* environment
// variables, then the --config file, then the defaults below.
import { isIP } from "node:net";
import { buildAllowList, type AllowList } from "../listen/allow.ts";

/** Thrown for a bad flag or value; main.ts prints `message` and exits with 2. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
}

export type ListenMode = "raw" | "http" | "agent";
export const LISTEN_MODES: readonly ListenMode[] = ["raw", "http", "agent"];

/** The role an agent listener reports as "up" (haproxy agent-check). */
export type AgentRole = "primary" | "standby";
export const AGENT_ROLES: readonly AgentRole[] = ["primary", "standby"];

export interface ListenAddress {
  mode: ListenMode;
  /** Literal IP address (IPv6 without brackets). */
  host: string;
  /** 0 asks the kernel for a free port (tests). */
  port: number;
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
  /** postgres:// URL, or undefined for the libpq environment (PGHOST, ...). */
  db: string | undefined;
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
  agent: AgentConfig;
  /**
   * Path of the unix socket that `replstatus drain|maint|ready` talk to;
   * undefined for the default, which depends on the listener's port.
   */
  controlSocket: string | undefined;
  /** listen(2) backlog asked for; the kernel caps it at net.core.somaxconn. */
  backlog: number;
  /** undefined: every peer is answered. */
  allow: AllowList | undefined;
  /** Before the open-file limit is taken into account (see main.ts). */
  maxConnections: number;
  /** Prometheus endpoint; undefined: none. */
  metricsListen: { host: string; port: number } | undefined;
  logFormat: "text" | "json";
  /** Base URLs of the peers' http listeners (no trailing slash); empty: no split-brain guard. */
  peers: string[];
  peerIntervalMs: number;
  /** Deadline of one /status request to a peer. */
  peerTimeoutMs: number;
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
export const MAX_TEXT_BYTES = 64;
export const DEFAULT_AGENT_ROLE: AgentRole = "primary";
export const DEFAULT_AGENT_LAG_FOR_MIN_WEIGHT = "64MB";
export const DEFAULT_PROMOTE_AFTER = "10s";
export const DEFAULT_PEER_INTERVAL = "500ms";
export const DEFAULT_PEER_TIMEOUT = "300ms";

/** The first word of argv when it is one of these; flags follow it. */
export const SUBCOMMANDS = ["drain", "maint", "ready", "demo"] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number];
export const DEFAULT_BACKLOG = 4096;
// High on purpose: the open-file limit is the real bound (main.ts fits this
// 32 below it), and answered sockets stay open until the peer closes (the
// drain), so a slow or busy client fleet holds thousands at a time.
export const DEFAULT_MAX_CONNECTIONS = 65_536;

interface Option {
  /** Flag name without the leading dashes. */
  name: string;
  /** Placeholder shown in --help; absent for boolean flags. */
  arg?: string;
  /** Default as the user would type it; undefined means "none". */
  default?: string;
  repeatable?: boolean;
  /** Only accepted by `replstatus demo` (which accepts nothing else but --help). */
  demo?: true;
  help: string;
}

export const OPTIONS: readonly Option[] = [
  {
    name: "listen",
    arg: "[MODE:]HOST:PORT",
    repeatable: true,
    help: `address to serve on, repeatable; IPv6 in brackets ([::1]:5400); MODE is ${LISTEN_MODES.join("|")} (default raw). Replaces --port/--bind`,
  },
  {
    name: "port",
    arg: "PORT",
    default: String(DEFAULT_PORT),
    help: "TCP port of the default listener, as bgw_replstatus.port",
  },
  {
    name: "bind",
    arg: "ADDRESS",
    default: DEFAULT_BIND,
    help: "address of the default listener, as bgw_replstatus.bind (0.0.0.0: all IPv4 addresses)",
  },
  {
    name: "db",
    arg: "URL",
    help: "PostgreSQL to watch, as postgres://user:password@host:port/dbname (default: libpq environment PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, else the local socket)",
  },
  {
    name: "poll-interval",
    arg: "DURATION",
    default: DEFAULT_POLL_INTERVAL,
    help: "time between role polls on a standby; a primary, and a standby whose data directory is watched, poll every stale-after / 4 when that is longer",
  },
  {
    name: "stale-after",
    arg: "DURATION",
    default: DEFAULT_STALE_AFTER,
    help: "answer UNKNOWN when the last good poll is older than this; also each poll's deadline",
  },
  {
    name: "connect-timeout",
    arg: "DURATION",
    default: DEFAULT_CONNECT_TIMEOUT,
    help: "deadline for opening the database connection",
  },
  {
    name: "channel",
    arg: "NAME",
    default: DEFAULT_CHANNEL,
    help: "LISTEN channel on a primary; a NOTIFY on it triggers an immediate poll",
  },
  {
    name: "text-primary",
    arg: "TEXT",
    default: DEFAULT_TEXTS.primary,
    help: "raw answer of a primary",
  },
  {
    name: "text-standby",
    arg: "TEXT",
    default: DEFAULT_TEXTS.standby,
    help: "raw answer of a standby",
  },
  {
    name: "text-unknown",
    arg: "TEXT",
    default: DEFAULT_TEXTS.unknown,
    help: "raw answer when the role is not known (PostgreSQL down, hung, refusing)",
  },
  {
    name: "agent-role",
    arg: "ROLE",
    default: DEFAULT_AGENT_ROLE,
    help: `role that agent listeners report as "up ready" (${AGENT_ROLES.join("|")}); any other state is "down"`,
  },
  {
    name: "agent-weight-by-lag",
    help: 'agent listeners add a weight to "up": 100% at no replay lag, falling to 10% at --agent-lag-for-min-weight',
  },
  {
    name: "agent-lag-for-min-weight",
    arg: "SIZE",
    default: DEFAULT_AGENT_LAG_FOR_MIN_WEIGHT,
    help: "replay lag at which the agent weight reaches its floor of 10% (kB, MB, GB or bytes)",
  },
  {
    name: "control-socket",
    arg: "PATH",
    help: "unix socket (mode 0600) for replstatus drain|maint|ready (default: $XDG_RUNTIME_DIR/replstatus-PORT.sock, else /tmp/replstatus-UID/replstatus-PORT.sock, PORT of the first listener)",
  },
  {
    name: "promote-after",
    arg: "DURATION",
    default: DEFAULT_PROMOTE_AFTER,
    demo: true,
    help: "demo: stop the primary and promote the standby this long after start (Enter does it at once)",
  },
  {
    name: "duration",
    arg: "DURATION",
    demo: true,
    help: "demo: clean up and exit after this long (default: run until Ctrl-C)",
  },
  {
    name: "text-lagging",
    arg: "TEXT",
    default: DEFAULT_TEXTS.lagging,
    help: "raw answer of a standby over --max-lag-bytes or --max-lag-seconds",
  },
  {
    name: "text-fenced",
    arg: "TEXT",
    default: DEFAULT_TEXTS.fenced,
    help: "raw answer of a primary fenced by a peer that is primary on a higher timeline (--peer)",
  },
  {
    name: "max-lag-bytes",
    arg: "SIZE",
    help: "a standby whose replay is further behind the primary than this (bytes, or with kB, MB, GB), or whose WAL receiver is not streaming, is lagging (default: no limit)",
  },
  {
    name: "max-lag-seconds",
    arg: "SECONDS",
    help: "a standby with WAL left to replay whose last replayed transaction is older than this is lagging (default: no limit)",
  },
  {
    name: "lag-grace",
    arg: "DURATION",
    default: DEFAULT_LAG_GRACE,
    help: "how long a standby must stay over a lag limit before it turns lagging; it is back to standby as soon as it is under",
  },
  {
    name: "backlog",
    arg: "N",
    default: String(DEFAULT_BACKLOG),
    help: "listen backlog of every listener, capped by net.core.somaxconn (Bun's own is a fixed 512)",
  },
  {
    name: "allow",
    arg: "CIDR",
    repeatable: true,
    help: "answer only peers in this network, repeatable (10.0.0.0/8, ::1/128, a bare address); others are closed without a byte (default: every peer)",
  },
  {
    name: "max-connections",
    arg: "N",
    default: String(DEFAULT_MAX_CONNECTIONS),
    help: "open sockets at most, across listeners; more are closed at once, unanswered; lowered to fit the open-file limit",
  },
  {
    name: "metrics-listen",
    arg: "HOST:PORT",
    help: "serve Prometheus metrics over HTTP at /metrics on this address (default: none)",
  },
  {
    name: "peer",
    arg: "URL",
    repeatable: true,
    help: "http listener of another node's replstatus (http://10.0.0.2:8008), repeatable; this node answers FENCED instead of MASTER while a peer of the same cluster is primary on a higher timeline (default: none)",
  },
  {
    name: "peer-interval",
    arg: "DURATION",
    default: DEFAULT_PEER_INTERVAL,
    help: "time between two requests for a peer's /status",
  },
  {
    name: "peer-timeout",
    arg: "DURATION",
    default: DEFAULT_PEER_TIMEOUT,
    help: "a peer that has not answered within this is unreachable, and no longer counts",
  },
  {
    name: "config",
    arg: "FILE",
    help: 'TOML file of flag names and values (poll-interval = "100ms"), below flags and variables; re-read on SIGHUP (default: none)',
  },
  {
    name: "log-format",
    arg: "FORMAT",
    default: "text",
    help: "text, or json for JSON lines (time, level, msg)",
  },
  { name: "help", help: "print this help and exit" },
  { name: "version", help: "print the version and exit" },
];

const BY_NAME = new Map(OPTIONS.map((o) => [o.name, o]));

/** REPLSTATUS_POLL_INTERVAL for poll-interval. */
export function envName(name: string): string {
  return "REPLSTATUS_" + name.toUpperCase().replaceAll("-", "_");
}

export type Raw = Map<string, string[]>;

/**
 * Splits argv into flag -> values; only the syntax is checked here. `demo`
 * accepts the demo's flags and --help; everything else the server's flags.
 */
export function parseArgv(argv: readonly string[], scope: "server" | "demo" = "server"): Raw {
  const raw: Raw = new Map();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith("--")) {
      throw new ConfigError(`unexpected argument: "${word}" (see --help)`);
    }
    const eq = word.indexOf("=");
    const name = word.slice(2, eq === -1 ? undefined : eq);
    const option = BY_NAME.get(name);
    if (!option || (option.name !== "help" && (option.demo === true) !== (scope === "demo"))) {
      throw new ConfigError(`unknown flag: --${name}${scope === "demo" ? " for replstatus demo" : ""} (see --help)`);
    }
    let value: string;
    if (!option.arg) {
      if (eq !== -1) throw new ConfigError(`flag --${name} takes no value`);
      value = "";
    } else if (eq !== -1) {
      value = word.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`missing value for --${name} (expected ${option.arg})`);
      value = next;
      i++;
    }
    const values = raw.get(name);
    if (values && !option.repeatable) throw new ConfigError(`flag --${name} given more than once`);
    if (values) values.push(value);
    else raw.set(name, [value]);
  }
  return raw;
}

/** Fills in REPLSTATUS_* variables for flags not given; repeatable ones split on commas. */
export function mergeEnv(raw: Raw, env: Record<string, string | undefined>): Raw {
  const merged: Raw = new Map(raw);
  for (const option of OPTIONS) {
    if (!hasEnv(option) || merged.has(option.name)) continue;
    const value = env[envName(option.name)];
    if (value === undefined || value === "") continue;
    if (!option.arg) {
      // A switch: REPLSTATUS_AGENT_WEIGHT_BY_LAG=1 turns it on.
      if (/^(1|true|yes|on)$/i.test(value)) merged.set(option.name, [""]);
      else if (!/^(0|false|no|off)$/i.test(value)) {
        throw invalid(option.name, value, "1, true, yes, on, 0, false, no or off", true);
      }
      continue;
    }
    merged.set(option.name, option.repeatable ? value.split(",").map((v) => v.trim()) : [value]);
  }
  return merged;
}

/** Every server flag has a REPLSTATUS_* variable, but --help, --version and the demo's flags. */
function hasEnv(option: Option): boolean {
  return !option.demo && option.name !== "help" && option.name !== "version";
}

/** `source`: false for a flag, true for its variable, or where in a file it was found. */
function invalid(name: string, value: string, expected: string, source: boolean | string): ConfigError {
  const where = source === true ? envName(name) : source === false ? "--" + name : source;
  return new ConfigError(`invalid value for ${where}: ${JSON.stringify(value)} (expected ${expected})`);
}

/** `250ms`, `2s`, `1.5s` or a bare integer of milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (m[2] !== "s" && !Number.isInteger(n)) return undefined;
  return Math.round(n);
}

export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/**
 * `16MB`, `512kB`, `1GB` or a bare number of bytes; units are 1024-based as in
 * PostgreSQL's settings and taken in any case. Used by --max-lag-bytes and `?lag=`.
 */
export function parseSizeBytes(text: string): number | undefined {
  const m = /^(\d{1,15})\s?([kmgt]?b)?$/i.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]) * SIZE_UNITS[(m[2] ?? "b").toLowerCase()]!;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `20 MB`, `1.5 GB`, `512 bytes`: for log lines. */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1024) return `${n} bytes`;
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < 4) {
    n /= 1024;
    unit++;
  }
  return `${Math.round(n * 10) / 10} ${["bytes", "kB", "MB", "GB", "TB"][unit]}`;
}

/** Longest unix socket path: sun_path (108 bytes on Linux) minus its terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

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

function parsePort(text: string, min: number): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= 65535 ? n : undefined;
}

/** `[MODE:]HOST:PORT`, IPv6 in brackets. Returns an error text on failure. */
export function parseListen(text: string): ListenAddress | string {
  const expected = `[${LISTEN_MODES.join("|")}:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535`;
  let rest = text;
  let mode: ListenMode = "raw";
  const colon = rest.indexOf(":");
  const head = colon === -1 ? "" : rest.slice(0, colon);
  if (/^[a-z]+$/.test(head) && !/^[0-9a-f]+$/.test(head)) {
    if (!(LISTEN_MODES as readonly string[]).includes(head)) return expected;
    mode = head as ListenMode;
    rest = rest.slice(colon + 1);
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(rest);
  if (!m) return expected;
  const host = (m[1] ?? m[2])!;
  const port = parsePort(m[3]!, 0);
  if (port === undefined) return expected;
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) !== 4) return expected;
  return { mode, host, port };
}

/** A configured text must be printable ASCII, 1..64 bytes. */
function validText(text: string): boolean {
  return text.length >= 1 && text.length <= MAX_TEXT_BYTES && /^[\x20-\x7e]+$/.test(text);
}

/**
 * haproxy's `tcp-check expect string` is a substring match, so no state's
 * text may contain another's (DESIGN.md section 2).
 */
export function textClash(texts: Record<string, string>): string | undefined {
  const entries = Object.entries(texts);
  for (const [a, ta] of entries) {
    for (const [b, tb] of entries) {
      if (a !== b && ta.includes(tb))
        return `the ${a} text ${JSON.stringify(ta)} contains the ${b} text ${JSON.stringify(tb)}`;
    }
  }
  return undefined;
}

export interface ConfigFile {
  path: string;
  values: Raw;
}

/**
 * Reads a TOML file whose keys are flag names (`poll-interval = "100ms"`,
 * `allow = ["10.0.0.0/8"]`); throws ConfigError naming the file.
 */
export async function readConfigFile(path: string): Promise<ConfigFile> {
  let table: Record<string, unknown>;
  try {
    table = Bun.TOML.parse(await Bun.file(path).text()) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error & { code?: string };
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : oneLine(e.message);
    throw new ConfigError(`could not read config file ${path}: ${why}`);
  }
  const values: Raw = new Map();
  for (const [key, value] of Object.entries(table)) {
    const option = BY_NAME.get(key);
    if (!option || !option.arg || key === "config") {
      throw new ConfigError(`unknown key "${key}" in ${path} (keys are flag names without dashes, see --help)`);
    }
    const list = Array.isArray(value) ? value : [value];
    if (
      (Array.isArray(value) && !option.repeatable) ||
      list.some((v) => typeof v !== "string" && typeof v !== "number")
    ) {
      throw new ConfigError(
        `invalid value for ${key} in ${path}: ${JSON.stringify(value)} (expected ${option.repeatable ? "a string or a list of strings" : "a string or a number"})`,
      );
    }
    values.set(key, list.map(String));
  }
  return { path, values };
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** Turns argv, the environment and the config file into a validated Config; throws ConfigError. */
export function buildConfig(raw: Raw, env: Record<string, string | undefined>, file?: ConfigFile): Config {
  const withEnv = mergeEnv(raw, env);
  const merged: Raw = new Map(withEnv);
  for (const [name, values] of file?.values ?? []) if (!merged.has(name)) merged.set(name, values);
  const fromEnv = (name: string): boolean | string =>
    raw.has(name) ? false : withEnv.has(name) ? true : merged.has(name) ? `${name} in ${file!.path}` : false;
  const value = (name: string): string | undefined => merged.get(name)?.[0] ?? BY_NAME.get(name)!.default;

  const duration = (name: string, minMs: number, maxMs: number): number => {
    const text = value(name)!;
    const ms = parseDurationMs(text);
    if (ms === undefined || ms < minMs || ms > maxMs) {
      throw invalid(
        name,
        text,
        `a duration ${formatDuration(minMs)}..${formatDuration(maxMs)} such as 250ms or 2s`,
        fromEnv(name),
      );
    }
    return ms;
  };

  const listen: ListenAddress[] = [];
  for (const text of merged.get("listen") ?? []) {
    const parsed = parseListen(text);
    if (typeof parsed === "string") throw invalid("listen", text, parsed, fromEnv("listen"));
    listen.push(parsed);
  }
  if (listen.length > 0 && (merged.has("port") || merged.has("bind"))) {
    throw new ConfigError(
      "--port and --bind set the default listener and cannot be combined with --listen; add that address to --listen instead",
    );
  }
  if (listen.length === 0) {
    const portText = value("port")!;
    const port = parsePort(portText, 1025);
    if (port === undefined) throw invalid("port", portText, "an integer 1025..65535", fromEnv("port"));
    const bindText = value("bind")!;
    const host = bindText === "" ? DEFAULT_BIND : bindText.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) === 0) throw invalid("bind", bindText, "an IPv4 or IPv6 address", fromEnv("bind"));
    listen.push({ mode: "raw", host, port });
  }
  const seen = new Set<string>();
  for (const l of listen) {
    const key = `${l.host}:${l.port}`;
    if (l.port !== 0 && seen.has(key)) throw new ConfigError(`address ${formatAddress(l)} given more than once`);
    seen.add(key);
  }

  const db = value("db");
  if (db !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(db);
    } catch {}
    if (!url || (url.protocol !== "postgres:" && url.protocol !== "postgresql:")) {
      throw invalid("db", redactUrl(db), "a URL postgres://[user[:password]@][host][:port][/dbname]", fromEnv("db"));
    }
  }

  const pollIntervalMs = duration("poll-interval", 1, 60_000);
  const staleAfterMs = duration("stale-after", 10, 3_600_000);
  if (staleAfterMs <= pollIntervalMs) {
    throw new ConfigError(
      `--stale-after (${formatDuration(staleAfterMs)}) must be longer than --poll-interval (${formatDuration(pollIntervalMs)}), or every answer would be UNKNOWN`,
    );
  }
  const connectTimeoutMs = duration("connect-timeout", 10, 600_000);

  const channel = value("channel")!;
  if (!/^[a-z_][a-z0-9_$]{0,62}$/.test(channel)) {
    throw invalid("channel", channel, "a lowercase identifier of 1..63 characters: a-z, 0-9, _", fromEnv("channel"));
  }

  const texts = { primary: "", standby: "", unknown: "", lagging: "", fenced: "" } as Texts;
  for (const state of Object.keys(texts) as (keyof Texts)[]) {
    const name = "text-" + state;
    const text = value(name)!;
    if (!validText(text)) throw invalid(name, text, `printable ASCII, 1..${MAX_TEXT_BYTES} bytes`, fromEnv(name));
    texts[state] = text;
  }
  const clash = textClash({ ...texts });
  if (clash) throw new ConfigError(`${clash}; haproxy's "expect string" would match both`);

  let maxLagBytes: number | undefined;
  const maxLagBytesText = value("max-lag-bytes");
  if (maxLagBytesText !== undefined) {
    maxLagBytes = parseSizeBytes(maxLagBytesText);
    if (maxLagBytes === undefined) {
      throw invalid(
        "max-lag-bytes",
        maxLagBytesText,
        "a size in bytes such as 1048576, 512kB, 16MB or 1GB",
        fromEnv("max-lag-bytes"),
      );
    }
  }
  let maxLagSeconds: number | undefined;
  const maxLagSecondsText = value("max-lag-seconds");
  if (maxLagSecondsText !== undefined) {
    maxLagSeconds = /^\d+(\.\d+)?$/.test(maxLagSecondsText) ? Number(maxLagSecondsText) : undefined;
    if (maxLagSeconds === undefined || maxLagSeconds <= 0 || maxLagSeconds > 86_400) {
      throw invalid(
        "max-lag-seconds",
        maxLagSecondsText,
        "a number of seconds above 0 and at most 86400, such as 30 or 2.5",
        fromEnv("max-lag-seconds"),
      );
    }
  }
  const lagGraceMs = duration("lag-grace", 0, 3_600_000);

  const roleText = value("agent-role")!;
  if (!(AGENT_ROLES as readonly string[]).includes(roleText)) {
    throw invalid("agent-role", roleText, AGENT_ROLES.join(" or "), fromEnv("agent-role"));
  }
  const lagText = value("agent-lag-for-min-weight")!;
  const lagForMinWeightBytes = parseSizeBytes(lagText);
  if (lagForMinWeightBytes === undefined || lagForMinWeightBytes < 1) {
    throw invalid(
      "agent-lag-for-min-weight",
      lagText,
      "a size of at least 1 byte such as 512kB, 64MB or 1GB",
      fromEnv("agent-lag-for-min-weight"),
    );
  }
  const agent: AgentConfig = {
    role: roleText as AgentRole,
    weightByLag: merged.has("agent-weight-by-lag"),
    lagForMinWeightBytes,
  };

  const controlSocket = value("control-socket");
  if (
    controlSocket !== undefined &&
    (!controlSocket.startsWith("/") || Buffer.byteLength(controlSocket) > MAX_SOCKET_PATH_BYTES)
  ) {
    throw invalid(
      "control-socket",
      controlSocket,
      `an absolute path of at most ${MAX_SOCKET_PATH_BYTES} bytes`,
      fromEnv("control-socket"),
    );
  }

  const integer = (name: string, min: number, max: number): number => {
    const text = value(name)!;
    const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
    if (!(n >= min && n <= max)) throw invalid(name, text, `an integer ${min}..${max}`, fromEnv(name));
    return n;
  };
  const backlog = integer("backlog", 1, 65535);
  const maxConnections = integer("max-connections", 1, 1_000_000);

  let allow: AllowList | undefined;
  const allowTexts = merged.get("allow");
  if (allowTexts !== undefined) {
    const list = buildAllowList(allowTexts);
    if ("bad" in list) {
      throw invalid(
        "allow",
        list.bad,
        "an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8, or an address",
        fromEnv("allow"),
      );
    }
    allow = list;
  }

  let metricsListen: Config["metricsListen"];
  const metricsText = value("metrics-listen");
  if (metricsText !== undefined) {
    const parsed = parseListen(metricsText);
    if (typeof parsed === "string" || parsed.mode !== "raw" || metricsText.startsWith("raw:")) {
      throw invalid(
        "metrics-listen",
        metricsText,
        "HOST:PORT with an IP address, IPv6 in brackets, port 0..65535",
        fromEnv("metrics-listen"),
      );
    }
    metricsListen = { host: parsed.host, port: parsed.port };
  }

  const peers: string[] = [];
  for (const text of merged.get("peer") ?? []) {
    const url = parsePeer(text);
    if (url === undefined) {
      throw invalid(
        "peer",
        text,
        "an http URL of another node's replstatus http listener, such as http://10.0.0.2:8008",
        fromEnv("peer"),
      );
    }
    if (peers.includes(url)) throw new ConfigError(`peer ${url} given more than once`);
    peers.push(url);
  }
  const peerIntervalMs = duration("peer-interval", 10, 60_000);
  const peerTimeoutMs = duration("peer-timeout", 10, 60_000);

  const logFormat = value("log-format")!;
  if (logFormat !== "text" && logFormat !== "json") {
    throw invalid("log-format", logFormat, "text or json", fromEnv("log-format"));
  }

  return {
    logFormat,
    listen,
    db,
    pollIntervalMs,
    staleAfterMs,
    connectTimeoutMs,
    channel,
    texts,
    backlog,
    allow,
    maxConnections,
    metricsListen,
    maxLagBytes,
    maxLagSeconds,
    lagGraceMs,
    agent,
    controlSocket,
    peers,
    peerIntervalMs,
    peerTimeoutMs,
  };
}

/**
 * `http://HOST:PORT` with an optional `/`, as the base of a peer's /status;
 * undefined when it is not one. No credentials, path, query or fragment: the
 * peer is a replstatus http listener, which has nothing else.
 */
export function parsePeer(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" || url.hostname === "" || url.username || url.password) return undefined;
  if (url.pathname !== "/" || url.search || url.hash) return undefined;
  return `http://${url.host}`;
}

/** The flags of `replstatus demo`; throws ConfigError. */
export function buildDemoConfig(raw: Raw): DemoConfig {
  const duration = (name: string): number | undefined => {
    const text = raw.get(name)?.[0] ?? BY_NAME.get(name)!.default;
    if (text === undefined) return undefined;
    const ms = parseDurationMs(text);
    if (ms === undefined || ms > 86_400_000) {
      throw invalid(name, text, "a duration 0s..86400s such as 500ms or 10s", false);
    }
    return ms;
  };
  return { promoteAfterMs: duration("promote-after"), durationMs: duration("duration") };
}

export function formatAddress(l: { host: string; port: number }): string {
  return isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** Hides the password of a connection URL, for logs and errors. */
export function redactUrl(text: string): string {
  return text.replace(/^(\w+:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}

export function helpText(version: string): string {
  const row = (o: Option) => {
    const left = `  --${o.name}${o.arg ? " " + o.arg : ""}`;
    const def = o.default !== undefined ? ` (default: ${o.default === "" ? '""' : o.default})` : "";
    const env = hasEnv(o) ? ` [${envName(o.name)}${o.arg ? "" : "=1"}]` : "";
    return `${left.padEnd(34)} ${o.help}${def}${env}`;
  };
  return [
    `replstatus ${version}: tells a load balancer whether this PostgreSQL node is the primary`,
    "",
    "Usage: replstatus [flags]                    serve (the default)",
    "       replstatus drain|maint|ready [flags]  set the override of the replstatus started with the same",
    "                                             --port/--listen/--control-socket; ready clears it",
    "       replstatus demo [demo flags]          a throwaway primary + standby (+ haproxy) and a failover",
    "",
    "Every connection gets the current state's text, then the server closes:",
    `${DEFAULT_TEXTS.primary} (primary), ${DEFAULT_TEXTS.standby} (standby), ${DEFAULT_TEXTS.unknown} (no fresh answer from PostgreSQL),`,
    `${DEFAULT_TEXTS.lagging} for a standby over a lag limit, or ${DEFAULT_TEXTS.fenced} for a primary while a --peer of the same`,
    "cluster is primary on a higher timeline. An http listener answers haproxy's option httpchk on /primary,",
    "/replica[?lag=16MB], /read-only, /health, /liveness, /readiness, /status and /metrics (see README.md).",
    "",
    "Flags (environment variable in brackets; durations as 250ms, 2s, or milliseconds):",
    ...OPTIONS.filter((o) => !o.demo).map(row),
    "",
    "Flags of replstatus demo:",
    ...OPTIONS.filter((o) => o.demo).map(row),
    "",
  ].join("\n");
}
