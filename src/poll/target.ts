// Where the PostgreSQL to watch is, resolved the way libpq does it: the URL
// first, then PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, then
// the local socket directory. postgres.js alone would default to TCP localhost.
// PGDATA, as pg_ctl reads it, says where postmaster.pid is before a first
// connection has told it (postmaster.ts).
import { existsSync, readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { ConfigError } from "../config/types.ts";
import { clusterEnv, findDebianCluster } from "../config/debian-cluster.ts";

export interface DbTarget {
  /** Hostname, IP address, or a socket directory (starts with "/"). */
  host: string;
  port: number;
  user: string;
  database: string;
  password: string | undefined;
  sslmode: string | undefined;
  /** For logs: never contains the password. */
  display: string;
  /** PGDATA: the data directory, whose postmaster.pid tells a refusing server's state. */
  dataDir?: string;
}

/** libpq's compiled-in socket directories: Debian's first, upstream's second. */
const SOCKET_DIRS = ["/var/run/postgresql", "/tmp"];

export function defaultSocketDir(port: number): string {
  const live = SOCKET_DIRS.find((dir) => existsSync(`${dir}/.s.PGSQL.${port}`));
  return live ?? SOCKET_DIRS.find((dir) => existsSync(dir)) ?? "/tmp";
}

// The modes postgres.js implements (no verify-ca).
const SSLMODES = ["disable", "allow", "prefer", "require", "verify-full"];

type Env = Record<string, string | undefined>;

export function resolveTarget(url: string | undefined, env: Env): DbTarget {
  let host = "";
  let portText = "";
  let user = "";
  let database = "";
  let password: string | undefined;
  let sslmode: string | undefined;
  if (url !== undefined) {
    const u = new URL(url);
    host = decodeURIComponent(u.hostname).replace(/^\[(.*)\]$/, "$1") || (u.searchParams.get("host") ?? "");
    portText = u.port || (u.searchParams.get("port") ?? "");
    user = decodeURIComponent(u.username);
    password = u.password ? decodeURIComponent(u.password) : undefined;
    database = decodeURIComponent(u.pathname.slice(1));
    sslmode = u.searchParams.get("sslmode") ?? undefined;
  }
  portText ||= env.PGPORT || "5432";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new ConfigError(
      `invalid PostgreSQL port: ${JSON.stringify(portText)} (expected an integer 1..65535, from --db or PGPORT)`,
    );
  }
  host ||= env.PGHOST || defaultSocketDir(port);
  user ||= env.PGUSER || osUser();
  database ||= env.PGDATABASE || user;
  password ??= env.PGPASSWORD || undefined;
  sslmode ??= env.PGSSLMODE || undefined;
  if (sslmode !== undefined && !SSLMODES.includes(sslmode)) {
    throw new ConfigError(`invalid sslmode: ${JSON.stringify(sslmode)} (expected one of ${SSLMODES.join(", ")})`);
  }
  const where = host.startsWith("/")
    ? `${host}/.s.PGSQL.${port}`
    : `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const display = `${user}@${where}/${database}`;
  return { host, port, user, database, password, sslmode, display, ...(env.PGDATA && { dataDir: env.PGDATA }) };
}

/**
 * The target of a configuration: --db, then PG* variables, then the --cluster's
 * port and socket directory, then libpq's defaults. Throws ConfigError or
 * ClusterError (an unreadable cluster).
 */
export function configTarget(config: { db: string | undefined; cluster: string | undefined }, env: Env): DbTarget {
  return resolveTarget(config.db, config.cluster ? clusterEnv(findDebianCluster(config.cluster, env), env) : env);
}

/** The OS user name, as libpq takes it from getpwuid(). */
export function osUser(): string {
  const uid = process.getuid?.();
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    if (line) return line.split(":")[0]!;
  } catch {}
  return userInfo().username;
}
