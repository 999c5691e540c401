// A Debian cluster (`15-main`) to its port and socket directory, as postgresql-common's pg_lsclusters finds them:
// postgresql.conf under /etc/postgresql/VERSION/NAME with its includes, then postgresql.auto.conf; the last setting
// wins. XXX: pg_lsclusters falls back to /tmp for a cluster not owned by the owner of /var/run/postgresql; this does
// not (no such clusters on Debian's layout).
import { readdirSync, readFileSync } from "node:fs";
import { ReplstatusError } from "../errors.ts";

export const DEFAULT_CLUSTER_CONF_ROOT = "/etc/postgresql";
export const DEFAULT_CLUSTER_PORT = 5432;
export const DEFAULT_CLUSTER_SOCKET_DIR = "/var/run/postgresql";
/** PostgreSQL's own limit on nested configuration files (guc-file.l). */
const MAX_INCLUDE_DEPTH = 10;

export interface DebianCluster {
  /** `15-main` */
  name: string;
  version: string;
  cluster: string;
  /** The postgresql.conf read. */
  confFile: string;
  port: number;
  /** First of unix_socket_directories; undefined when that is empty (no socket: TCP to localhost). */
  socketDir: string | undefined;
}

/** The file system, as far as reading configuration needs it; undefined for a missing file. */
export interface ConfReader {
  readText(path: string): string | undefined;
  listDir(path: string): string[] | undefined;
}

/** `VERSION-NAME` as in `postgresql@15-main`: version digits (9.6 or 15), name without `/`. */
export function parseClusterName(text: string): { version: string; cluster: string } | undefined {
  const m = /^(\d+(?:\.\d+)?)-([A-Za-z0-9_][A-Za-z0-9_.-]*)$/.exec(text);
  return m ? { version: m[1]!, cluster: m[2]! } : undefined;
}

/** One configuration line: a setting, an include, or nothing (blank, comment, unparseable). */
export type ConfLine =
  | { kind: "set"; name: string; value: string }
  | { kind: "include" | "include_if_exists" | "include_dir"; path: string }
  | undefined;

// postgresql.conf syntax (PostgreSQL docs, 20.1.2): `name = value` or
// `name value`, the value a quoted string ('' or \' for a quote) or a bare
// word; `#` starts a comment outside quotes.
export function parseConfLine(line: string): ConfLine {
  const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*('(?:[^'\\]|''|\\.)*'|[^\s#']+)?\s*(?:#.*)?$/.exec(line);
  if (!m || m[2] === undefined) return undefined;
  const name = m[1]!.toLowerCase();
  const raw = m[2];
  const value = raw.startsWith("'") ? raw.slice(1, -1).replace(/''/g, "'").replace(/\\(.)/g, "$1") : raw;
  if (name === "include" || name === "include_if_exists" || name === "include_dir") return { kind: name, path: value };
  return { kind: "set", name, value };
}

const nodeReader: ConfReader = {
  readText(path) {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  },
  listDir(path) {
    try {
      return readdirSync(path);
    } catch {
      return undefined;
    }
  },
};

function resolvePath(path: string, from: string): string {
  return path.startsWith("/") ? path : from.slice(0, from.lastIndexOf("/") + 1) + path;
}

/** The settings of a file and what it includes, later ones over earlier ones. */
export function readConf(path: string, reader: ConfReader = nodeReader, depth = 0): Map<string, string> {
  const settings = new Map<string, string>();
  const text = reader.readText(path);
  if (text === undefined || depth > MAX_INCLUDE_DEPTH) return settings;
  const merge = (more: Map<string, string>) => {
    for (const [k, v] of more) settings.set(k, v);
  };
  for (const line of text.split("\n")) {
    const parsed = parseConfLine(line);
    if (parsed === undefined) continue;
    if (parsed.kind === "set") settings.set(parsed.name, parsed.value);
    else if (parsed.kind === "include_dir") {
      const dir = resolvePath(parsed.path, path);
      // Files ending in .conf, not starting with a dot, in C-locale order (PostgreSQL docs, 20.1.5).
      const names = (reader.listDir(dir) ?? []).filter((n) => n.endsWith(".conf") && !n.startsWith(".")).sort();
      for (const name of names) merge(readConf(`${dir}/${name}`, reader, depth + 1));
    } else merge(readConf(resolvePath(parsed.path, path), reader, depth + 1));
  }
  return settings;
}

/**
 * The cluster's port and socket directory; throws CLUSTER_INVALID when its
 * postgresql.conf cannot be read or names a port that is not one.
 */
export function findDebianCluster(
  name: string,
  env: Record<string, string | undefined>,
  reader: ConfReader = nodeReader,
): DebianCluster {
  const parsed = parseClusterName(name);
  if (!parsed)
    throw new ReplstatusError(
      "CLUSTER_INVALID",
      `invalid cluster name: ${JSON.stringify(name)} (expected VERSION-NAME, e.g. 15-main)`,
    );
  const root = env.PG_CLUSTER_CONF_ROOT || DEFAULT_CLUSTER_CONF_ROOT;
  const confFile = `${root}/${parsed.version}/${parsed.cluster}/postgresql.conf`;
  if (reader.readText(confFile) === undefined) {
    throw new ReplstatusError(
      "CLUSTER_INVALID",
      `could not read cluster ${name}: no readable ${confFile}`,
      "pg_lsclusters lists the clusters of this host; PG_CLUSTER_CONF_ROOT moves /etc/postgresql",
    );
  }
  const settings = readConf(confFile, reader);
  const dataDir = settings.get("data_directory");
  if (dataDir) {
    // Usually unreadable (mode 0700, owned by postgres): then only postgresql.conf counts.
    for (const [k, v] of readConf(`${dataDir}/postgresql.auto.conf`, reader))
      if (k !== "data_directory") settings.set(k, v);
  }
  const portText = settings.get("port");
  const port = portText === undefined ? DEFAULT_CLUSTER_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ReplstatusError(
      "CLUSTER_INVALID",
      `could not read cluster ${name}: port ${JSON.stringify(portText)} in ${confFile} is not an integer 1..65535`,
    );
  }
  const dirs = settings.get("unix_socket_directories");
  // An explicit '' means no unix socket at all; pg_lsclusters would still say /var/run/postgresql.
  const first =
    dirs === undefined
      ? DEFAULT_CLUSTER_SOCKET_DIR
      : dirs
          .split(",")[0]!
          .trim()
          .replace(/^"(.*)"$/, "$1");
  return { name, ...parsed, confFile, port, socketDir: first === "" ? undefined : first };
}

/**
 * The libpq environment with the cluster's socket directory and port as
 * PGHOST and PGPORT, unless the environment sets them already.
 */
export function clusterEnv(
  cluster: DebianCluster,
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  return {
    ...env,
    PGHOST: env.PGHOST || (cluster.socketDir ?? "localhost"),
    PGPORT: env.PGPORT || String(cluster.port),
  };
}
