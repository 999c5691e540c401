import { ReplstatusError } from "../../../errors.ts";
// Connection strings as libpq reads them (PostgreSQL docs, "Connection
// Strings"): a URL postgresql://user:password@host:port/dbname?key=value, or
// keyword/value pairs `host=db1 port=5432 password='it''s'` with single quotes
// and backslash escapes. Both become one record of libpq keywords. Pure: no
// files, no environment.

/** libpq keywords by their libpq name; values are text, as in libpq. */
export type Conninfo = Partial<Record<Keyword, string>>;

/** The keywords replstatus reads. */
export const KEYWORDS = [
  "host",
  "hostaddr",
  "port",
  "dbname",
  "user",
  "password",
  "passfile",
  "service",
  "connect_timeout",
  "application_name",
  "fallback_application_name",
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "sslcrl",
  "sslpassword",
  "sslsni",
  "target_session_attrs",
] as const;
export type Keyword = (typeof KEYWORDS)[number];

// Keywords libpq knows that replstatus does not implement: refused by name
// rather than silently ignored, since some (requirepeer, channel_binding,
// require_auth) are security settings a DBA counts on.
const UNSUPPORTED = new Set([
  "options",
  "client_encoding",
  "keepalives",
  "keepalives_idle",
  "keepalives_interval",
  "keepalives_count",
  "tcp_user_timeout",
  "replication",
  "gssencmode",
  "gsslib",
  "gssdelegation",
  "krbsrvname",
  "requirepeer",
  "require_auth",
  "channel_binding",
  "sslcompression",
  "sslcrldir",
  "sslcertmode",
  "sslnegotiation",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  "load_balance_hosts",
]);

const IS_KEYWORD = new Set<string>(KEYWORDS);

/** Checks one keyword; `where` names the source for the message (a URL, a service file line). */
export function checkKeyword(key: string, where: string, code?: "CONNINFO_INVALID" | "CONNINFO_FILE"): Keyword {
  if (IS_KEYWORD.has(key)) return key as Keyword;
  if (UNSUPPORTED.has(key))
    throw new ReplstatusError(code ?? "CONNINFO_INVALID", `${where}: connection option "${key}" is not supported`);
  throw new ReplstatusError(code ?? "CONNINFO_INVALID", `${where}: invalid connection option "${key}"`);
}

/** A URL when it starts with postgresql:// or postgres://, else keyword/value pairs. */
export function parseConninfo(text: string): Conninfo {
  return /^postgres(ql)?:\/\//.test(text) ? parseUrl(text) : parsePairs(text);
}

/** True when `text` is a URL rather than keyword/value pairs. */
export function isUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//.test(text);
}

// `key = value` pairs; a value is up to the next blank, or single-quoted; a
// backslash takes the next character literally in either form.
function parsePairs(text: string): Conninfo {
  const out: Conninfo = {};
  let i = 0;
  const blank = (c: string | undefined) => c !== undefined && /\s/.test(c);
  while (i < text.length) {
    while (blank(text[i])) i++;
    if (i >= text.length) break;
    const keyStart = i;
    while (i < text.length && text[i] !== "=" && !blank(text[i])) i++;
    const key = text.slice(keyStart, i);
    while (blank(text[i])) i++;
    // Not quoted back: a stray word may be a password.
    if (text[i] !== "=")
      throw new ReplstatusError(
        "CONNINFO_INVALID",
        `missing "=" after the word at offset ${keyStart} of the connection string`,
      );
    i++;
    while (blank(text[i])) i++;
    let value = "";
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length)
          throw new ReplstatusError("CONNINFO_INVALID", `unterminated quoted string in connection string`);
        const c = text[i++]!;
        if (c === "'") break;
        if (c === "\\" && i < text.length) value += text[i++];
        else value += c;
      }
    } else {
      while (i < text.length && !blank(text[i])) {
        const c = text[i++]!;
        if (c === "\\" && i < text.length) value += text[i++];
        else value += c;
      }
    }
    out[checkKeyword(key, "connection string")] = value;
  }
  return out;
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ReplstatusError("CONNINFO_INVALID", `invalid percent-encoded ${what} in URL`);
  }
}

// postgresql://[user[:password]@][host][:port][/dbname][?key=value&...].
// Hand-parsed: WHATWG URL would lower-case and punycode the host, and reject
// a percent-encoded socket directory (postgresql://%2Fvar%2Frun%2Fpostgresql).
function parseUrl(text: string): Conninfo {
  const out: Conninfo = {};
  let rest = text.replace(/^postgres(ql)?:\/\//, "");
  const q = rest.indexOf("?");
  const query = q >= 0 ? rest.slice(q + 1) : "";
  if (q >= 0) rest = rest.slice(0, q);
  const slash = rest.indexOf("/");
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  if (slash >= 0 && slash < rest.length - 1) out.dbname = decode(rest.slice(slash + 1), "database name");
  const at = authority.lastIndexOf("@");
  let hostPort = authority;
  if (at >= 0) {
    const userInfo = authority.slice(0, at);
    hostPort = authority.slice(at + 1);
    const colon = userInfo.indexOf(":");
    const user = colon >= 0 ? userInfo.slice(0, colon) : userInfo;
    if (user !== "") out.user = decode(user, "user name");
    if (colon >= 0) out.password = decode(userInfo.slice(colon + 1), "password");
  }
  if (hostPort.includes(","))
    throw new ReplstatusError("CONNINFO_INVALID", "a URL with several hosts: replstatus watches one server");
  let host = hostPort;
  let port = "";
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]");
    if (close < 0) throw new ReplstatusError("CONNINFO_INVALID", `missing "]" in IPv6 host address in URL`);
    host = hostPort.slice(1, close);
    const after = hostPort.slice(close + 1);
    if (after !== "" && !after.startsWith(":"))
      throw new ReplstatusError("CONNINFO_INVALID", `unexpected "${after}" after IPv6 host in URL`);
    port = after.slice(1);
  } else {
    const colon = hostPort.lastIndexOf(":");
    if (colon >= 0) {
      host = hostPort.slice(0, colon);
      port = hostPort.slice(colon + 1);
    }
    host = decode(host, "host");
  }
  if (host !== "") out.host = host;
  if (port !== "") out.port = port;
  for (const pair of query === "" ? [] : query.split("&")) {
    const eq = pair.indexOf("=");
    if (eq < 0) throw new ReplstatusError("CONNINFO_INVALID", `missing "=" in a URL query parameter`);
    const key = decode(pair.slice(0, eq), "query parameter");
    const value = decode(pair.slice(eq + 1), "query parameter");
    // JDBC's spelling, which libpq accepts too.
    if (key === "ssl" && value === "true") out.sslmode = "require";
    else out[checkKeyword(key, "URL")] = value;
  }
  return out;
}

/** The string with any password replaced by ***, for error messages. */
export function redactConninfo(text: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    return text
      .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@?]*:)[^/?]*@/i, "$1***@")
      .replace(/([?&](?:ssl)?password=)[^&]*/g, "$1***");
  }
  return text.replace(/((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/g, "$1***");
}
