// One option table drives the parser, the validation and the --help text, so
// the three cannot drift apart. Precedence: flags, then REPLSTATUS_* environment
// variables, then the --config file, then the defaults below.
import { isIP } from "node:net";
import { buildAllowList, type AllowList } from "./allow.ts";

/** Thrown for a bad flag or value; main.ts prints `message` and exits with 2. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
}

export type ListenMode = "raw";
export const LISTEN_MODES: readonly ListenMode[] = ["raw"];

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
  /** listen(2) backlog asked for; the kernel caps it at net.core.somaxconn. */
  backlog: number;
  /** undefined: every peer is answered. */
  allow: AllowList | undefined;
  /** Before the open-file limit is taken into account (see main.ts). */
  maxConnections: number;
  /** Prometheus endpoint; undefined: none. */
  metricsListen: { host: string; port: number } | undefined;
  logFormat: "text" | "json";
}

// Defaults, as bgw_replstatus has them where it has them.
export const DEFAULT_PORT = 5400;
export const DEFAULT_BIND = "0.0.0.0";
export const DEFAULT_POLL_INTERVAL = "50ms";
export const DEFAULT_STALE_AFTER = "1s";
export const DEFAULT_CONNECT_TIMEOUT = "2s";
export const DEFAULT_CHANNEL = "replstatus";
export const DEFAULT_TEXTS: Texts = { primary: "MASTER", standby: "STANDBY", unknown: "UNKNOWN" };
export const MAX_TEXT_BYTES = 64;
export const DEFAULT_BACKLOG = 4096;
export const DEFAULT_MAX_CONNECTIONS = 10_000;

interface Option {
  /** Flag name without the leading dashes. */
  name: string;
  /** Placeholder shown in --help; absent for boolean flags. */
  arg?: string;
  /** Default as the user would type it; undefined means "none". */
  default?: string;
  repeatable?: boolean;
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
    help: "time between role polls",
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

/** Splits argv into flag -> values; only the syntax is checked here. */
export function parseArgv(argv: readonly string[]): Raw {
  const raw: Raw = new Map();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith("--")) {
      throw new ConfigError(`unexpected argument: "${word}" (see --help)`);
    }
    const eq = word.indexOf("=");
    const name = word.slice(2, eq === -1 ? undefined : eq);
    const option = BY_NAME.get(name);
    if (!option) throw new ConfigError(`unknown flag: --${name} (see --help)`);
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
    if (!option.arg || merged.has(option.name)) continue;
    const value = env[envName(option.name)];
    if (value === undefined || value === "") continue;
    merged.set(option.name, option.repeatable ? value.split(",").map((v) => v.trim()) : [value]);
  }
  return merged;
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

function parsePort(text: string, min: number): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= 65535 ? n : undefined;
}

/** `[raw:]HOST:PORT`, IPv6 in brackets. Returns an error text on failure. */
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

  const texts = { primary: "", standby: "", unknown: "" } as Texts;
  for (const state of Object.keys(texts) as (keyof Texts)[]) {
    const name = "text-" + state;
    const text = value(name)!;
    if (!validText(text)) throw invalid(name, text, `printable ASCII, 1..${MAX_TEXT_BYTES} bytes`, fromEnv(name));
    texts[state] = text;
  }
  const clash = textClash({ ...texts });
  if (clash) throw new ConfigError(`${clash}; haproxy's "expect string" would match both`);

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
  };
}

export function formatAddress(l: { host: string; port: number }): string {
  return isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** Hides the password of a connection URL, for logs and errors. */
export function redactUrl(text: string): string {
  return text.replace(/^(\w+:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}

export function helpText(version: string): string {
  const rows = OPTIONS.map((o) => {
    const left = `  --${o.name}${o.arg ? " " + o.arg : ""}`;
    const def = o.default !== undefined ? ` (default: ${o.default === "" ? '""' : o.default})` : "";
    const env = o.arg ? ` [${envName(o.name)}]` : "";
    return `${left.padEnd(34)} ${o.help}${def}${env}`;
  });
  return [
    `replstatus ${version}: tells a load balancer whether this PostgreSQL node is the primary`,
    "",
    "Usage: replstatus [flags]",
    "",
    "Every connection gets the current state's text, then the server closes:",
    `${DEFAULT_TEXTS.primary} (primary), ${DEFAULT_TEXTS.standby} (standby) or ${DEFAULT_TEXTS.unknown} (no fresh answer from PostgreSQL).`,
    "",
    "Flags (environment variable in brackets; durations as 250ms, 2s, or milliseconds):",
    ...rows,
    "",
  ].join("\n");
}
