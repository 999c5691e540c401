// Flags, then REPLSTATUS_* environment variables, then the --config file, then
// the defaults of options.ts. Each value is parsed by its option's kind; the
// rules here are only those that span several options.
import { buildAllowList, type AllowList } from "../listen/allow.ts";
import { formatBytes, formatDuration, oneLine } from "../units.ts";
import { formatAddress, type ListenAddress } from "../address.ts";
import { buildPatroni, buildTags } from "./patroni.ts";
import {
  BY_NAME,
  envName,
  hasEnv,
  inScope,
  OPTIONS,
  type FieldValues,
  type OptionName,
  type Scope,
  type Values,
} from "./options.ts";
import {
  type Config,
  type DemoConfig,
  type StatusConfig,
  type PeerTlsConfig,
  type RouteConfig,
  type Texts,
  type TlsConfig,
} from "./types.ts";
import { ReplstatusError } from "../errors.ts";

/** Flag name -> its values as given, before parsing. */
export type Raw = Map<string, string[]>;

export interface ConfigFile {
  path: string;
  values: Raw;
}

/**
 * Splits argv into flag -> values; only the syntax is checked here. `demo`
 * accepts the demo's flags and --help; everything else the server's flags.
 */
export function parseArgv(argv: readonly string[], scope: Scope = "server"): Raw {
  const raw: Raw = new Map();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith("--")) {
      throw new ReplstatusError("CONFIG_INVALID", `unexpected argument: "${word}" (see --help)`);
    }
    const eq = word.indexOf("=");
    const name = word.slice(2, eq === -1 ? undefined : eq);
    const option = BY_NAME.get(name);
    if (!option || !inScope(option, scope)) {
      throw new ReplstatusError(
        "CONFIG_INVALID",
        `unknown flag: --${name}${scope === "server" ? "" : ` for replstatus ${scope}`} (see --help)`,
      );
    }
    let value: string;
    if (!option.arg) {
      if (eq !== -1) throw new ReplstatusError("CONFIG_INVALID", `flag --${name} takes no value`);
      value = "";
    } else if (eq !== -1) {
      value = word.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined)
        throw new ReplstatusError("CONFIG_INVALID", `missing value for --${name} (expected ${option.arg})`);
      value = next;
      i++;
    }
    const values = raw.get(name);
    if (values && !option.repeatable)
      throw new ReplstatusError("CONFIG_INVALID", `flag --${name} given more than once`);
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
        throw invalid(envName(option.name), value, "1, true, yes, on, 0, false, no or off");
      }
      continue;
    }
    merged.set(option.name, option.repeatable ? value.split(",").map((v) => v.trim()) : [value]);
  }
  return merged;
}

/** `where`: --flag, REPLSTATUS_FLAG, or `flag in FILE`. */
function invalid(where: string, value: string, expected: string): ReplstatusError {
  return new ReplstatusError(
    "CONFIG_INVALID",
    `invalid value for ${where}: ${JSON.stringify(value)} (expected ${expected})`,
  );
}

/** One option's parsed value; throws CONFIG_INVALID for a bad one. */
type Reader = <K extends OptionName>(name: K) => Values[K];

/**
 * Parses an option's texts with its kind when it is read, so the checks run in
 * the order buildConfig reads them: the texts given in `scope`, else the default.
 */
function reader(merged: Raw, scope: Scope, where: (name: string) => string): Reader {
  return <K extends OptionName>(name: K): Values[K] => {
    const option = BY_NAME.get(name)!;
    const given = inScope(option, scope) ? merged.get(name) : undefined;
    const texts = given ?? (option.default === undefined ? [] : [option.default]);
    const parsed: unknown[] = [];
    for (const text of texts) {
      const value = option.kind.parse(text);
      if (value === undefined) {
        const why = option.kind.why?.(text);
        const expected = why ? `${option.kind.expected}: ${why}` : option.kind.expected;
        throw invalid(where(name), option.kind.show?.(text) ?? text, expected);
      }
      if (option.unique && parsed.includes(value)) {
        throw new ReplstatusError("CONFIG_INVALID", `${option.unique} ${String(value)} given more than once`);
      }
      parsed.push(value);
    }
    return (option.repeatable ? parsed : parsed[0]) as Values[K];
  };
}

/** Checks every option's own value, in table order, whether buildConfig uses it or not. */
function checkAll(read: Reader): void {
  for (const option of OPTIONS) read(option.name as OptionName);
}

/**
 * Reads a TOML file whose keys are flag names (`poll-interval = "100ms"`,
 * `allow = ["10.0.0.0/8"]`); throws CONFIG_INVALID naming the file.
 */
export async function readConfigFile(path: string): Promise<ConfigFile> {
  let table: Record<string, unknown>;
  try {
    table = Bun.TOML.parse(await Bun.file(path).text()) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error & { code?: string };
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : oneLine(e.message);
    throw new ReplstatusError("CONFIG_INVALID", `could not read config file ${path}: ${why}`);
  }
  const values: Raw = new Map();
  for (const [key, value] of Object.entries(table)) {
    const option = BY_NAME.get(key);
    if (!option || !option.arg || key === "config") {
      throw new ReplstatusError(
        "CONFIG_INVALID",
        `unknown key "${key}" in ${path} (keys are flag names without dashes, see --help)`,
      );
    }
    const list = Array.isArray(value) ? value : [value];
    if (
      (Array.isArray(value) && !option.repeatable) ||
      list.some((v) => typeof v !== "string" && typeof v !== "number")
    ) {
      throw new ReplstatusError(
        "CONFIG_INVALID",
        `invalid value for ${key} in ${path}: ${JSON.stringify(value)} (expected ${option.repeatable ? "a string or a list of strings" : "a string or a number"})`,
      );
    }
    values.set(key, list.map(String));
  }
  return { path, values };
}

/** haproxy's `tcp-check expect string` is a substring match, so no state's text may contain another's. */
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

/** Flags over variables over the file; `where` names the source of a value for errors. */
function mergeSources(raw: Raw, env: Record<string, string | undefined>, file: ConfigFile | undefined) {
  const withEnv = mergeEnv(raw, env);
  const merged: Raw = new Map(withEnv);
  for (const [name, values] of file?.values ?? []) if (!merged.has(name)) merged.set(name, values);
  const where = (name: string): string => {
    if (raw.has(name) || !merged.has(name)) return `--${name}`;
    return withEnv.has(name) ? envName(name) : `${name} in ${file!.path}`;
  };
  return { merged, where };
}

/** --listen, else the default listener of --port and --bind, each address once. */
function listenAddresses(read: Reader, merged: Raw): ListenAddress[] {
  const listen = read("listen");
  if (listen.length > 0 && (merged.has("port") || merged.has("bind"))) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      "--port and --bind set the default listener and cannot be combined with --listen; add that address to --listen instead",
    );
  }
  if (listen.length === 0) listen.push({ mode: "raw", host: read("bind"), port: read("port") });
  const seen = new Set<string>();
  for (const l of listen) {
    const key = `${l.host}:${l.port}`;
    if (l.port !== 0 && seen.has(key))
      throw new ReplstatusError("CONFIG_INVALID", `address ${formatAddress(l)} given more than once`);
    seen.add(key);
  }
  return listen;
}

function answerTexts(read: Reader): Texts {
  const texts: Texts = {
    primary: read("text-primary"),
    standby: read("text-standby"),
    unknown: read("text-unknown"),
    lagging: read("text-lagging"),
    fenced: read("text-fenced"),
  };
  const clash = textClash({ ...texts });
  if (clash) throw new ReplstatusError("CONFIG_INVALID", `${clash}; haproxy's "expect string" would match both`);
  return texts;
}

/** --peer-ca, --peer-cert, --peer-key: the last two go together. */
function peerTlsConfig(read: Reader): PeerTlsConfig {
  const peerTls = { caFile: read("peer-ca"), certFile: read("peer-cert"), keyFile: read("peer-key") };
  if ((peerTls.certFile === undefined) !== (peerTls.keyFile === undefined)) {
    throw new ReplstatusError("CONFIG_INVALID", "--peer-cert and --peer-key go together: give both or neither");
  }
  return peerTls;
}

/** --tls-*: required by a tls+ listener, refused without one, so a typo cannot leave a listener in plain text. */
function tlsConfig(read: Reader, listen: ListenAddress[]): TlsConfig | undefined {
  const clientCert = read("tls-client-cert");
  const certFile = read("tls-cert");
  const keyFile = read("tls-key");
  const caFile = read("tls-ca");
  if (!listen.some((l) => l.tls)) {
    if (certFile !== undefined || keyFile !== undefined || caFile !== undefined || clientCert !== "none") {
      throw new ReplstatusError(
        "CONFIG_INVALID",
        "--tls-cert, --tls-key, --tls-ca and --tls-client-cert apply to tls+ listeners, and no --listen is one (e.g. --listen tls+http:0.0.0.0:8443)",
      );
    }
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new ReplstatusError("CONFIG_INVALID", "a tls+ listener needs --tls-cert and --tls-key");
  }
  if (clientCert !== "none" && caFile === undefined) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      `--tls-client-cert ${clientCert} needs --tls-ca, the CA that client certificates must chain to`,
    );
  }
  return { certFile, keyFile, caFile, clientCert };
}

/** --patroni and --etcd turn the Patroni mode on; --tag works without it. */
function patroniConfig(read: Reader, merged: Raw, peers: string[]): Pick<Config, "patroni" | "tags"> {
  const file = read("patroni");
  const patroni = buildPatroni({
    file,
    etcd: merged.has("etcd") ? read("etcd") : undefined,
    scope: read("scope"),
    member: read("member"),
    namespace: read("namespace"),
  });
  if (patroni && peers.length > 0) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      "--peer cannot be combined with the Patroni mode: the leader key in etcd is the fence there",
    );
  }
  return { patroni, tags: buildTags(file, read("tag")) };
}

/** The options whose value Config holds as parsed (`field` in the table). */
function readFields(read: Reader): FieldValues {
  const fields: Record<string, unknown> = {};
  for (const option of OPTIONS) if (option.field) fields[option.field] = read(option.name as OptionName);
  return fields as FieldValues;
}

/** --rejoin-lag-bytes and --rejoin-lag-seconds: each below the leave limit it eases, which must be set. */
function checkRejoinLimits(f: FieldValues): void {
  const check = (name: string, value: number | undefined, max: number | undefined, show: (n: number) => string) => {
    if (value === undefined) return;
    if (max === undefined)
      throw new ReplstatusError("CONFIG_INVALID", `--rejoin-${name} needs --max-${name}, the limit it is below`);
    if (value > max) {
      throw new ReplstatusError(
        "CONFIG_INVALID",
        `--rejoin-${name} (${show(value)}) must be at most --max-${name} (${show(max)}): a standby rejoins below the limit it leaves at`,
      );
    }
  };
  check("lag-bytes", f.rejoinLagBytes, f.maxLagBytes, formatBytes);
  check("lag-seconds", f.rejoinLagSeconds, f.maxLagSeconds, (n) => `${n} s`);
}

/**
 * Turns argv, the environment and the config file into a validated Config; throws CONFIG_INVALID.
 * Each option's own value is checked first, in table order, then the rules that span several.
 */
export function buildConfig(raw: Raw, env: Record<string, string | undefined>, file?: ConfigFile): Config {
  const { merged, where } = mergeSources(raw, env, file);
  const read = reader(merged, "server", where);
  checkAll(read);
  const fields = readFields(read);
  const listen = listenAddresses(read, merged);
  const { pollIntervalMs, staleAfterMs, peers } = fields;
  if (staleAfterMs <= pollIntervalMs) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      `--stale-after (${formatDuration(staleAfterMs)}) must be longer than --poll-interval (${formatDuration(pollIntervalMs)}), or every answer would be UNKNOWN`,
    );
  }
  const texts = answerTexts(read);
  checkRejoinLimits(fields);
  const peerTls = peerTlsConfig(read);
  if (fields.isolationAfterMs !== undefined && peers.length === 0) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      "--isolation-after needs at least one --peer: it counts the time since a peer last answered",
    );
  }
  const tls = tlsConfig(read, listen);
  const { patroni, tags } = patroniConfig(read, merged, peers);
  const agent = {
    role: read("agent-role"),
    weightByLag: read("agent-weight-by-lag") === true,
    lagForMinWeightBytes: read("agent-lag-for-min-weight"),
  };
  // Each entry passed its kind's check, so the list compiles.
  const allow = merged.has("allow") ? (buildAllowList(read("allow")) as AllowList) : undefined;
  const events = { maxSubscribers: read("max-event-subscribers"), heartbeatMs: read("event-heartbeat") };
  return { ...fields, listen, texts, agent, allow, events, peerTls, tls, patroni, tags };
}

/** The flags of `replstatus demo`; throws CONFIG_INVALID. */
export function buildDemoConfig(raw: Raw): DemoConfig {
  const read = reader(raw, "demo", (name) => `--${name}`);
  return { promoteAfterMs: read("promote-after"), durationMs: read("duration") };
}

/** `replstatus status`'s own flags; the server's flags in `raw` say where this host's listener is. */
export function buildStatusConfig(raw: Raw): StatusConfig {
  const read = reader(raw, "status", (name) => `--${name}`);
  return { url: read("url"), watch: read("watch") === true, json: read("json") === true };
}

/** Flags, then REPLSTATUS_* variables, then the --config file; throws CONFIG_INVALID. */
export async function loadConfig(raw: Raw, env: Record<string, string | undefined>): Promise<Config> {
  const path = raw.get("config")?.[0] ?? (env[envName("config")] || undefined);
  return buildConfig(raw, env, path === undefined ? undefined : await readConfigFile(path));
}

/** The flags of `replstatus route`, with variables and the --config file below them; throws CONFIG_INVALID. */
export function buildRouteConfig(raw: Raw, env: Record<string, string | undefined>, file?: ConfigFile): RouteConfig {
  const { merged, where } = mergeSources(raw, env, file);
  const read = reader(merged, "route", where);
  const invalid = (message: string) => new ReplstatusError("CONFIG_INVALID", message);
  const haproxySocket = read("haproxy-socket");
  if (haproxySocket === undefined) {
    throw invalid("replstatus route needs --haproxy-socket PATH: haproxy's stats socket with level admin");
  }
  const servers = read("server");
  if (servers.length === 0) throw invalid("replstatus route needs at least one --server BACKEND/SERVER=URL");
  const seen = new Set<string>();
  for (const s of servers) {
    const name = `${s.backend}/${s.server}`;
    if (seen.has(name)) throw invalid(`--server ${name} given more than once`);
    seen.add(name);
  }
  const listen = read("listen");
  if (listen.length > 1 || listen.some((l) => l.mode !== "http" || l.tls)) {
    throw invalid("replstatus route serves its /status and /events on one --listen http:HOST:PORT at most");
  }
  const config: RouteConfig = {
    haproxySocket,
    servers,
    replicaBackends: read("replica-backend"),
    shutdownSessions: read("shutdown-sessions") === true,
    reconcileIntervalMs: read("reconcile-interval"),
    streamTimeoutMs: read("stream-timeout"),
    peerTls: peerTlsConfig(read),
    listen: listen[0] && { host: listen[0].host, port: listen[0].port },
    logFormat: read("log-format"),
  };
  for (const option of OPTIONS) if (inScope(option, "route")) read(option.name as OptionName);
  return config;
}

/** buildRouteConfig with the --config file (REPLSTATUS_CONFIG) read. */
export async function loadRouteConfig(raw: Raw, env: Record<string, string | undefined>): Promise<RouteConfig> {
  const path = raw.get("config")?.[0] ?? (env[envName("config")] || undefined);
  return buildRouteConfig(raw, env, path === undefined ? undefined : await readConfigFile(path));
}
