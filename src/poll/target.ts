// Where the PostgreSQL to poll is, resolved as libpq does it (poll/worker/libpq/): --db, then the service, then PG*,
// then a --cluster's port and socket directory, then the local socket directory; checked at start, read again by
// the worker at every connection attempt. ARCHITECTURE.md, "The poll".
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { clusterEnv, findDebianCluster } from "../config/debian-cluster.ts";
import { parseConninfo, type Conninfo } from "./worker/libpq/conninfo.ts";
import { ENV_OF, resolveSettings, type Io, type Settings } from "./worker/libpq/settings.ts";
import { ReplstatusError, isError } from "../errors.ts";

/** Plain data: it is sent to the poll worker. Never printed whole (it may hold a password). */
export interface DbTarget {
  /** The settings given in --db. */
  conninfo: Conninfo;
  /** The PG* variables libpq reads, and HOME, as they were at start. */
  env: Record<string, string | undefined>;
  /** For logs: never contains the password. */
  display: string;
  /** --db carries a password. */
  passwordInDb: boolean;
  /** PGDATA: the data directory, whose postmaster.pid tells a refusing server's state. */
  dataDir?: string;
}

/** libpq's compiled-in socket directories: Debian's first, upstream's second. */
const SOCKET_DIRS = ["/var/run/postgresql", "/tmp"];

export function defaultSocketDir(port: number): string {
  const live = SOCKET_DIRS.find((dir) => existsSync(`${dir}/.s.PGSQL.${port}`));
  return live ?? SOCKET_DIRS.find((dir) => existsSync(dir)) ?? "/tmp";
}

const ENV_READ = [...Object.values(ENV_OF), "PGSERVICEFILE", "PGSYSCONFDIR", "HOME"];

type Env = Record<string, string | undefined>;

/**
 * Checks --db and the environment; throws CONFIG_INVALID for a setting that can
 * never work. A bad file is not an error here: the poller reports it and
 * keeps trying, since it may be fixed while replstatus runs.
 */
export function resolveTarget(db: string | undefined, env: Env): DbTarget {
  const snapshot: Record<string, string | undefined> = {};
  for (const key of ENV_READ) if (env[key] !== undefined) snapshot[key] = env[key];
  let conninfo: Conninfo = {};
  let display: string;
  try {
    if (db !== undefined) conninfo = parseConninfo(db);
    display = describeSettings(connectSettings({ conninfo, env: snapshot }));
  } catch (err) {
    if (!isError(err, "CONNINFO_INVALID", "CONNINFO_FILE")) throw err;
    if (err.code !== "CONNINFO_FILE") throw new ReplstatusError("CONFIG_INVALID", err.message);
    display = `service ${conninfo.service || env.PGSERVICE} (not usable yet: ${err.message})`;
  }
  const passwordInDb = conninfo.password !== undefined;
  return { conninfo, env: snapshot, display, passwordInDb, ...(env.PGDATA && { dataDir: env.PGDATA }) };
}

/**
 * The target of a configuration: --db, then a service, then PG* variables,
 * then the --cluster's port and socket directory, else (the Patroni mode)
 * patroni.yml's (as PGHOST and PGPORT where the environment has none), then
 * libpq's defaults. Throws CONFIG_INVALID or CLUSTER_INVALID (an unreadable cluster).
 */
export function configTarget(
  config: { db: string | undefined; cluster: string | undefined; patroni?: { pgEnv: Record<string, string> } },
  env: Env,
): DbTarget {
  if (config.cluster) return resolveTarget(config.db, clusterEnv(findDebianCluster(config.cluster, env), env));
  const below = config.patroni?.pgEnv ?? {};
  return resolveTarget(config.db, { ...env, PGHOST: env.PGHOST || below.PGHOST, PGPORT: env.PGPORT || below.PGPORT });
}

/** The settings of the next connection attempt; throws CONNINFO_INVALID or CONNINFO_FILE. */
export function connectSettings(target: Pick<DbTarget, "conninfo" | "env">): Settings {
  return resolveSettings(target.conninfo, target.env, nodeIo(target.env));
}

/** user@host:port/dbname, or user@/socket/dir/.s.PGSQL.port/dbname. */
export function describeSettings(s: Settings): string {
  const where = s.unixSocket
    ? `${s.connectHost}/.s.PGSQL.${s.port}`
    : `${s.connectHost.includes(":") ? `[${s.connectHost}]` : s.connectHost}:${s.port}`;
  return `${s.user}@${where}/${s.dbname}${s.service ? ` (service ${s.service})` : ""}`;
}

export function nodeIo(env: Env): Io {
  return {
    home: env.HOME || homedir(),
    readText: (path) => readFileSync(path, "utf8"),
    stat(path) {
      try {
        const st = statSync(path);
        return { mode: st.mode, uid: st.uid };
      } catch (err) {
        if ((err as { code?: string }).code === "ENOENT") return undefined;
        throw err;
      }
    },
    defaultSocketDir,
    socketDirs: SOCKET_DIRS,
    osUser,
    uid: process.getuid?.() ?? -1,
  };
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
