// One connection's settings, resolved as libpq resolves them (PostgreSQL docs, "Connection Strings", "Environment
// Variables", "The Password File", "The Connection Service File", "SSL Support"): the connection string, the service,
// PG*, the defaults. Files are read at every connection attempt, so a fixed one is picked up without a restart.
import { type Conninfo, type Keyword } from "./conninfo.ts";
import { lookupPassword, passFileProblem, type PassKey } from "./pgpass.ts";
import { findService, serviceFiles } from "./service.ts";
import { ReplstatusError } from "../../../errors.ts";

export const SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSLMODES)[number];

/** The environment variable of each keyword (libpq's table). */
export const ENV_OF: Partial<Record<Keyword, string>> = {
  host: "PGHOST",
  hostaddr: "PGHOSTADDR",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  service: "PGSERVICE",
  connect_timeout: "PGCONNECT_TIMEOUT",
  application_name: "PGAPPNAME",
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslcrl: "PGSSLCRL",
  sslsni: "PGSSLSNI",
  target_session_attrs: "PGTARGETSESSIONATTRS",
};

/** The files and facts the resolver needs from the machine; tests pass their own. */
export interface Io {
  home: string;
  /** Throws a node error (with `code`) when the file cannot be read. */
  readText(path: string): string;
  /** undefined when there is no such file; throws on other errors. */
  stat(path: string): { mode: number; uid: number } | undefined;
  /** The socket directory used when no host is set. */
  defaultSocketDir(port: number): string;
  /** Directories that count as "the default socket directory" for .pgpass's localhost. */
  socketDirs: readonly string[];
  osUser(): string;
  /** process.getuid(); the owner a private key may have besides root. */
  uid: number;
}

/** Where the TLS files are, once the server has agreed to TLS. */
export interface TlsPaths {
  /** "system" for the system's trusted roots. */
  rootcert: string;
  cert: string;
  key: string;
  crl: string;
  passphrase: string | undefined;
}

export interface Settings {
  /** What is dialled: hostaddr when set, else host; a directory for a unix socket. */
  connectHost: string;
  /** The host setting: the name the server's certificate must carry, and the one .pgpass matches. */
  host: string;
  port: number;
  /** true when connectHost is a socket directory: TLS is never used there, as in libpq. */
  unixSocket: boolean;
  user: string;
  dbname: string;
  password: string | undefined;
  /** Where the password came from, for the hint of a failed login: "PGPASSWORD", `password file "..."`, ... */
  passwordFrom: string | undefined;
  sslmode: SslMode;
  /** Send the host name in TLS's SNI (sslsni, default on). */
  sni: boolean;
  tls: TlsPaths;
  /** connect_timeout, when set and above 0 (libpq waits at least 2 s); else undefined. */
  connectTimeoutMs: number | undefined;
  applicationName: string;
  /** The service whose settings were used, if any. */
  service: string | undefined;
  /** Why a file was skipped: logged once each. */
  warnings: string[];
}

/** Each keyword's value in libpq's order (--db, the service, PG*), where it came from, and its error. */
interface Lookup {
  from(k: Keyword): string | undefined;
  source(k: Keyword): string;
  bad(k: Keyword, message: string): ReplstatusError;
  explicit: Conninfo;
  serviceName: string | undefined;
  service: Conninfo;
}

function lookup(explicit: Conninfo, env: Record<string, string | undefined>, io: Io): Lookup {
  const serviceName = explicit.service || env.PGSERVICE || undefined;
  const service = serviceName === undefined ? {} : readService(serviceName, env, io);
  return {
    from: (k) => explicit[k] || service[k] || (ENV_OF[k] && env[ENV_OF[k]!]) || undefined,
    source: (k) => (explicit[k] ? `${k} in --db` : service[k] ? `${k} in service "${serviceName}"` : ENV_OF[k]!),
    // A bad value in a service file is that file's fault, and can be fixed while running.
    bad: (k, message) =>
      new ReplstatusError(!explicit[k] && service[k] ? "CONNINFO_FILE" : "CONNINFO_INVALID", message),
    explicit,
    serviceName,
    service,
  };
}

/** Where to connect: host (or hostaddr, else the default socket directory) and port, one server only. */
function serverOf({ from, source, bad }: Lookup, io: Io) {
  const tsa = from("target_session_attrs");
  if (tsa !== undefined && tsa !== "any") {
    throw bad(
      "target_session_attrs",
      `could not use ${source("target_session_attrs")} "${tsa}": replstatus reports on the one server it connects to and must not be redirected to another (only "any" is accepted)`,
    );
  }
  const portText = from("port") ?? "5432";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw bad(
      "port",
      `invalid value for ${source("port")}: ${JSON.stringify(portText)} (expected an integer 1..65535)`,
    );
  }
  const hostaddr = from("hostaddr");
  const host = from("host") ?? (hostaddr === undefined ? io.defaultSocketDir(port) : "");
  const connectHost = hostaddr ?? host;
  if (connectHost.includes(",")) {
    const k = hostaddr ? "hostaddr" : "host";
    throw bad(
      k,
      `could not use ${source(k)} "${connectHost}": it names several hosts, and replstatus watches one server`,
    );
  }
  return { connectHost, host: host || connectHost, port, unixSocket: connectHost.startsWith("/") };
}

/** The password and where it came from: --db, the service, PGPASSWORD, else the password file. */
function passwordOf(l: Lookup, key: PassKey, io: Io, warnings: string[]) {
  const password = l.from("password");
  if (password !== undefined) {
    const passwordFrom = l.explicit.password
      ? "--db"
      : l.service.password
        ? `service "${l.serviceName}"`
        : "PGPASSWORD";
    return { password, passwordFrom };
  }
  const passfile = l.from("passfile") ?? `${io.home}/.pgpass`;
  const fromFile = passwordFromFile(passfile, key, io, warnings);
  return { password: fromFile, passwordFrom: fromFile === undefined ? undefined : `password file "${passfile}"` };
}

/** The connection's settings; throws CONNINFO_INVALID or CONNINFO_FILE naming the file or setting at fault. */
export function resolveSettings(explicit: Conninfo, env: Record<string, string | undefined>, io: Io): Settings {
  const warnings: string[] = [];
  const l = lookup(explicit, env, io);
  const { from, source, bad } = l;
  const server = serverOf(l, io);
  const user = from("user") ?? io.osUser();
  const dbname = from("dbname") ?? user;
  const sslmode = sslMode(from("sslmode"), from("sslrootcert"), source, bad);
  const timeoutText = from("connect_timeout");
  const connectTimeoutMs = timeoutText === undefined ? undefined : parseConnectTimeoutMs(timeoutText);
  if (connectTimeoutMs === null) {
    throw bad(
      "connect_timeout",
      `invalid value for ${source("connect_timeout")}: ${JSON.stringify(timeoutText)} (expected whole seconds)`,
    );
  }
  // .pgpass matches the host setting, else hostaddr, else localhost (host "" does).
  const key = { host: from("host") ?? from("hostaddr") ?? "", port: String(server.port), dbname, user };
  const dir = `${io.home}/.postgresql`;
  return {
    ...server,
    user,
    dbname,
    ...passwordOf(l, key, io, warnings),
    sslmode,
    sni: from("sslsni") !== "0",
    tls: {
      rootcert: from("sslrootcert") ?? `${dir}/root.crt`,
      cert: from("sslcert") ?? `${dir}/postgresql.crt`,
      key: from("sslkey") ?? `${dir}/postgresql.key`,
      crl: from("sslcrl") ?? `${dir}/root.crl`,
      passphrase: from("sslpassword"),
    },
    connectTimeoutMs,
    applicationName: from("application_name") ?? from("fallback_application_name") ?? "replstatus",
    service: l.serviceName,
    warnings,
  };
}

/** libpq's connect_timeout: whole seconds, at least 2; 0 or less is none (undefined); null when not a number. */
function parseConnectTimeoutMs(text: string): number | undefined | null {
  if (!/^\s*-?\d+\s*$/.test(text)) return null;
  const s = Number(text);
  return s <= 0 ? undefined : Math.max(2, s) * 1000;
}

// sslrootcert=system asks for the system's roots, which anyone can get a
// certificate from for a name they own: libpq 16 then makes verify-full the
// default and refuses weaker modes.
function sslMode(
  text: string | undefined,
  rootcert: string | undefined,
  source: (k: Keyword) => string,
  bad: (k: Keyword, message: string) => ReplstatusError,
): SslMode {
  if (text !== undefined && !(SSLMODES as readonly string[]).includes(text)) {
    throw bad(
      "sslmode",
      `invalid value for ${source("sslmode")}: ${JSON.stringify(text)} (expected one of ${SSLMODES.join(", ")})`,
    );
  }
  if (rootcert === "system") {
    if (text !== undefined && text !== "verify-full") {
      throw bad("sslmode", `weak sslmode "${text}" may not be used with sslrootcert=system (use "verify-full")`);
    }
    return "verify-full";
  }
  return (text as SslMode | undefined) ?? "prefer";
}

function readService(name: string, env: Record<string, string | undefined>, io: Io): Conninfo {
  const files = serviceFiles(env, io.home);
  for (const path of files) {
    let text: string;
    try {
      text = io.readText(path);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") continue;
      throw new ReplstatusError("CONNINFO_FILE", `could not read service file "${path}": ${fileCause(err)}`);
    }
    const found = findService(text, path, name);
    if (found) return found;
  }
  throw new ReplstatusError(
    "CONNINFO_FILE",
    `definition of service "${name}" not found (looked in ${files.join(", ")})`,
  );
}

function passwordFromFile(
  path: string,
  key: { host: string; port: string; dbname: string; user: string },
  io: Io,
  warnings: string[],
): string | undefined {
  let text: string;
  try {
    const st = io.stat(path);
    if (st === undefined) return undefined;
    const problem = passFileProblem(path, st.mode);
    if (problem) {
      warnings.push(`${problem}; it is ignored`);
      return undefined;
    }
    text = io.readText(path);
  } catch (err) {
    warnings.push(`could not read password file "${path}": ${fileCause(err)}; it is ignored`);
    return undefined;
  }
  return lookupPassword(text, key, io.socketDirs);
}

/** A node file error as the few words libpq's strerror would print. */
export function fileCause(err: unknown): string {
  const code = (err as { code?: string }).code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return err instanceof Error ? err.message : String(err);
  }
}
