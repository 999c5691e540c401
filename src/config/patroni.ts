// The Patroni mode's settings: the node's own patroni.yml (--patroni FILE) with --etcd, --scope, --member,
// --namespace and --tag on top; its etcd3 section read as Patroni 3.0.2 reads it (patroni/dcs/etcd.py
// get_etcd_client: url or proxy, else hosts, else host). Only etcd v3. docs/patroni.md.
import { readFileSync } from "node:fs";
import { ReplstatusError } from "../errors.ts";

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

/** Patroni drops these tags when falsy (patroni/__main__.py). */
const SPECIAL_TAGS = ["clonefrom", "nofailover", "noloadbalance", "nosync"];
const STORES = ["etcd", "consul", "zookeeper", "exhibitor", "kubernetes", "raft"];

export interface PatroniFlags {
  file: string | undefined;
  etcd: string[] | undefined;
  scope: string | undefined;
  member: string | undefined;
  namespace: string | undefined;
}

/** Python's truth of a YAML value. */
function truthy(v: unknown): boolean {
  if (typeof v === "string") return v !== "";
  if (Array.isArray(v)) return v.length > 0;
  if (v !== null && typeof v === "object") return Object.keys(v).length > 0;
  return Boolean(v);
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(err);
    throw new ReplstatusError("CONFIG_INVALID", `could not read ${file} (--patroni): ${why}`);
  }
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch (err) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      `could not parse ${file} (--patroni): ${(err as Error).message.replace(/\s+/g, " ")}`,
    );
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ReplstatusError("CONFIG_INVALID", `could not parse ${file} (--patroni): not a YAML mapping`);
  }
  return doc as Record<string, unknown>;
}

function splitHostPort(text: string, defaultPort: number): [string, number] {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text.trim());
  if (!m)
    throw new ReplstatusError("CONFIG_INVALID", `invalid etcd host ${JSON.stringify(text)} (expected HOST[:PORT])`);
  const host = m[1] ?? m[2]!;
  return [host.includes(":") ? `[${host}]` : host, m[3] ? Number(m[3]) : defaultPort];
}

/** The etcd3 section's URLs, as Patroni 3.0.2 builds them. */
export function etcdUrls(section: Record<string, unknown>): string[] {
  const protocol = typeof section.protocol === "string" ? section.protocol : "http";
  const url = section.proxy ?? section.url ?? section.urls;
  if (url !== undefined) {
    const list = Array.isArray(url) ? url.map(String) : String(url).split(",");
    return list.map((u) => parseEtcdUrl(u.trim(), "url in etcd3"));
  }
  if (section.hosts !== undefined) {
    const port = Number(section.port ?? 2379);
    const hosts = Array.isArray(section.hosts) ? section.hosts.map(String) : String(section.hosts).split(",");
    return hosts.map((h) => {
      const [host, p] = splitHostPort(h, port);
      return `${protocol}://${host}:${p}`;
    });
  }
  if (section.host !== undefined) {
    const [host, p] = splitHostPort(String(section.host), Number(section.port ?? 2379));
    return [`${protocol}://${host}:${p}`];
  }
  if (section.srv !== undefined || section.discovery_srv !== undefined || section.srv_domain !== undefined) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      "DNS SRV discovery of etcd (srv) is not supported; name the hosts (hosts:) or use --etcd URL",
    );
  }
  return [];
}

export const ETCD_URL_EXPECTED = "an etcd client URL such as http://10.0.0.1:2379";

/** http(s)://HOST[:PORT] with no path, as PROTOCOL://HOST:PORT; undefined for anything else. */
export function etcdUrl(text: string): string | undefined {
  let u: URL | undefined;
  try {
    u = new URL(text);
  } catch {}
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:") || (u.pathname !== "/" && u.pathname !== "")) {
    return undefined;
  }
  return `${u.protocol}//${u.hostname}:${u.port || 2379}`;
}

function parseEtcdUrl(text: string, where: string): string {
  const url = etcdUrl(text);
  if (url === undefined) {
    throw new ReplstatusError(
      "CONFIG_INVALID",
      `invalid value for ${where}: ${JSON.stringify(text)} (expected ${ETCD_URL_EXPECTED})`,
    );
  }
  return url;
}

export const TAG_EXPECTED = "KEY=VALUE such as noloadbalance=true or dc=east";

/** A --tag: KEY=VALUE with a key of letters, digits, `_`, `.`, `-`. */
export function isTag(text: string): boolean {
  const eq = text.indexOf("=");
  return eq > 0 && /^[A-Za-z0-9_.-]+$/.test(text.slice(0, eq));
}

function str(v: unknown): string | undefined {
  return v === undefined || v === null ? undefined : String(v);
}

export function buildPatroni(flags: PatroniFlags): PatroniSettings | undefined {
  if (flags.file === undefined && flags.etcd === undefined) return undefined;
  const doc = flags.file === undefined ? {} : readYaml(flags.file);
  const where = flags.file ?? "the command line";
  let section = doc.etcd3 as Record<string, unknown> | undefined;
  if (flags.file !== undefined && section === undefined && flags.etcd === undefined) {
    const other = STORES.find((s) => s in doc);
    throw new ReplstatusError(
      "CONFIG_INVALID",
      other
        ? `could not use ${where}: its store is "${other}:", and only etcd v3 (an "etcd3:" section) is supported`
        : `could not use ${where}: no "etcd3:" section (only etcd v3 is supported; or give --etcd URL)`,
    );
  }
  section ??= {};
  if (typeof section !== "object")
    throw new ReplstatusError("CONFIG_INVALID", `could not use ${where}: "etcd3:" is not a mapping`);
  // --etcd URLs passed their kind (etcdUrl) already.
  const urls = flags.etcd ?? etcdUrls(section);
  if (urls.length === 0)
    throw new ReplstatusError("CONFIG_INVALID", `could not use ${where}: its "etcd3:" section names no host`);
  // The credentials of a url: are those of its first entry (a comma list, or a YAML list).
  const firstUrl = section.url === undefined ? undefined : String([section.url].flat()[0]).split(",")[0]!.trim();
  const fromUrl = firstUrl !== undefined && flags.etcd === undefined ? (URL.parse(firstUrl) ?? undefined) : undefined;
  const scope = flags.scope ?? str(doc.scope);
  const member = flags.member ?? str(doc.name);
  if (!scope) throw new ReplstatusError("CONFIG_INVALID", `missing scope: give --scope or a scope: in ${where}`);
  if (!member) throw new ReplstatusError("CONFIG_INVALID", `missing member name: give --member or a name: in ${where}`);
  const namespace = flags.namespace ?? str(doc.namespace) ?? "/service/";
  return {
    pgEnv: pgEnvOf(doc.postgresql),
    file: flags.file,
    scope,
    namespace,
    member,
    prefix: `/${namespace}/${scope}/`.replace(/\/+/g, "/"),
    etcd: {
      urls,
      username: str(section.username) ?? (fromUrl?.username ? decodeURIComponent(fromUrl.username) : undefined),
      password: str(section.password) ?? (fromUrl?.password ? decodeURIComponent(fromUrl.password) : undefined),
      cacert: str(section.cacert),
      cert: str(section.cert),
      key: str(section.key),
    },
  };
}

function pgEnvOf(section: unknown): Record<string, string> {
  if (typeof section !== "object" || section === null) return {};
  const pg = section as { listen?: unknown; parameters?: { unix_socket_directories?: unknown } };
  const env: Record<string, string> = {};
  // listen: "0.0.0.0:5432" or "127.0.0.1,10.0.0.1:5432": the port after the last colon.
  const port = typeof pg.listen === "string" ? /:(\d{1,5})\s*$/.exec(pg.listen)?.[1] : undefined;
  if (port) env.PGPORT = port;
  const dirs = pg.parameters?.unix_socket_directories;
  const dir = typeof dirs === "string" ? dirs.split(",")[0]!.trim() : undefined;
  if (dir?.startsWith("/")) env.PGHOST = dir;
  return env;
}

/** The tags of patroni.yml (when given), then --tag KEY=VALUE on top. */
export function buildTags(file: string | undefined, flags: string[]): NodeTags {
  const raw: Record<string, unknown> = {};
  if (file !== undefined) {
    const tags = readYaml(file).tags;
    if (tags !== undefined && tags !== null) {
      if (typeof tags !== "object" || Array.isArray(tags))
        throw new ReplstatusError("CONFIG_INVALID", `"tags:" in ${file} is not a mapping`);
      Object.assign(raw, tags);
    }
  }
  // Each passed isTag (the option's kind).
  for (const text of flags) {
    const eq = text.indexOf("=");
    const value = text.slice(eq + 1);
    // On the command line "false", "0" and "" are false, as YAML would read them.
    raw[text.slice(0, eq)] = /^(false|0|no|off)?$/i.test(value) ? false : /^(true|yes|on)$/i.test(value) ? true : value;
  }
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (SPECIAL_TAGS.includes(k) && !truthy(v)) continue;
    values[k] = typeof v === "string" ? v : pythonStr(v).toLowerCase();
  }
  return { values, noloadbalance: truthy(raw.noloadbalance) };
}

/** str() of a YAML scalar as Python prints it (True, 1.5, None). */
function pythonStr(v: unknown): string {
  if (v === true) return "True";
  if (v === false) return "False";
  if (v === null) return "None";
  return String(v);
}
