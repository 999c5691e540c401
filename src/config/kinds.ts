// The kinds of value an option takes: how its text is parsed, what is
// accepted (as error messages say it) and the placeholder --help shows.
// options.ts gives each option one of these.
import { buildAllowList } from "../listen/allow.ts";
import { isUrl, parseConninfo, redactConninfo } from "../poll/worker/libpq/conninfo.ts";
import { parseClusterName } from "./debian-cluster.ts";
import { ETCD_URL_EXPECTED, etcdUrl as normalEtcdUrl, isTag, TAG_EXPECTED } from "./patroni.ts";
import { formatDuration, parseDurationMs, parseSizeBytes } from "../units.ts";
import { ipVersion, LISTEN_EXPECTED, type ListenAddress, parseListen, parsePeer, parsePort } from "../address.ts";
import { isError } from "../errors.ts";

export interface Kind<T> {
  /** Placeholder shown in --help; undefined for a switch, which takes no value. */
  arg: string | undefined;
  /** What is accepted, as an error message says it. */
  expected: string;
  /** The value, or undefined when the text is not accepted. */
  parse: (text: string) => T | undefined;
  /** The bad value as an error shows it (a URL without its password). */
  show?: (text: string) => string;
  /** Why the text is not accepted, when there is more to say than `expected`. */
  why?: (text: string) => string | undefined;
  /** A parsed value as a log line shows it, when not as JSON (a string as it is). */
  format?(value: T): string;
}

/** A flag without a value (or `REPLSTATUS_X=1`): present or not. */
export const switchKind: Kind<true> = { arg: undefined, expected: "no value", parse: () => true };

/** Any text at all (a file path that is opened later). */
export function anyText(arg: string): Kind<string> {
  return { arg, expected: "any text", parse: (text) => text };
}

export function durationMs(minMs: number, maxMs: number, examples = "250ms or 2s"): Kind<number> {
  return {
    arg: "DURATION",
    expected: `a duration ${formatDuration(minMs)}..${formatDuration(maxMs)} such as ${examples}`,
    format: formatDuration,
    parse: (text) => {
      const ms = parseDurationMs(text);
      return ms !== undefined && ms >= minMs && ms <= maxMs ? ms : undefined;
    },
  };
}

/** `expected` names examples, which differ with what the size is for; `format` how a log line shows one. */
export function sizeBytes(minBytes: number, expected: string, format?: (n: number) => string): Kind<number> {
  return {
    arg: "SIZE",
    expected,
    ...(format && { format }),
    parse: (text) => {
      const n = parseSizeBytes(text);
      return n !== undefined && n >= minBytes ? n : undefined;
    },
  };
}

export function integer(min: number, max: number): Kind<number> {
  return {
    arg: "N",
    expected: `an integer ${min}..${max}`,
    parse: (text) => {
      const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
      return n >= min && n <= max ? n : undefined;
    },
  };
}

export function port(min: number): Kind<number> {
  return { arg: "PORT", expected: `an integer ${min}..65535`, parse: (text) => parsePort(text, min) };
}

/** A positive number of seconds, fractions allowed. */
export function seconds(max: number): Kind<number> {
  return {
    arg: "SECONDS",
    expected: `a number of seconds above 0 and at most ${max}, such as 30 or 2.5`,
    format: (n) => `${n}s`,
    parse: (text) => {
      const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : 0;
      return n > 0 && n <= max ? n : undefined;
    },
  };
}

export function oneOf<T extends string>(arg: string, values: readonly T[]): Kind<T> {
  return {
    arg,
    expected: values.length > 2 ? `${values.slice(0, -1).join(", ")} or ${values.at(-1)}` : values.join(" or "),
    parse: (text) => ((values as readonly string[]).includes(text) ? (text as T) : undefined),
  };
}

/** An answer text: printable ASCII, written as is to every client. */
export function answerText(maxBytes: number): Kind<string> {
  return {
    arg: "TEXT",
    expected: `printable ASCII, 1..${maxBytes} bytes`,
    parse: (text) => (text.length >= 1 && text.length <= maxBytes && /^[\x20-\x7e]+$/.test(text) ? text : undefined),
  };
}

/** A LISTEN channel name that needs no quoting. */
export const identifier: Kind<string> = {
  arg: "NAME",
  expected: "a lowercase identifier of 1..63 characters: a-z, 0-9, _",
  parse: (text) => (/^[a-z_][a-z0-9_$]{0,62}$/.test(text) ? text : undefined),
};

/** An IP address, IPv6 with or without brackets; the empty text means `whenEmpty`. */
export function ipAddress(whenEmpty: string): Kind<string> {
  return {
    arg: "ADDRESS",
    expected: "an IPv4 or IPv6 address",
    parse: (text) => {
      const host = text === "" ? whenEmpty : text.replace(/^\[(.*)\]$/, "$1");
      return ipVersion(host) === 0 ? undefined : host;
    },
  };
}

export const listenAddress: Kind<ListenAddress> = {
  arg: "[MODE:]HOST:PORT",
  expected: LISTEN_EXPECTED,
  parse: (text) => {
    const parsed = parseListen(text);
    return typeof parsed === "string" ? undefined : parsed;
  },
};

/** HOST:PORT without a listener mode. */
export const hostPort: Kind<{ host: string; port: number }> = {
  arg: "HOST:PORT",
  expected: "HOST:PORT with an IP address, IPv6 in brackets, port 0..65535",
  parse: (text) => {
    const parsed = parseListen(text);
    if (typeof parsed === "string" || parsed.mode !== "raw" || parsed.tls || text.startsWith("raw:")) return undefined;
    return { host: parsed.host, port: parsed.port };
  },
};

/** A libpq connection string, kept as given: poll/target.ts resolves it; checked here so a typo fails at start. */
export const connInfo: Kind<string> = {
  arg: "CONNINFO",
  expected: "a URL postgres://[user[:password]@][host][:port][/dbname] or keyword/value pairs host=... port=...",
  parse: (text) => (connInfo.why!(text) === undefined ? text : undefined),
  show: redactConninfo,
  why(text) {
    // Another scheme (mysql://) would read as one bad keyword: the expected forms say it better.
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !isUrl(text)) return "";
    try {
      parseConninfo(text);
      return undefined;
    } catch (err) {
      if (isError(err, "CONNINFO_INVALID", "CONNINFO_FILE")) return err.message;
      throw err;
    }
  },
};

/** `BACKEND/SERVER=URL` of `replstatus route --server`: a haproxy server and its node's http listener. */
export const routeServer: Kind<{ backend: string; server: string; url: string }> = {
  arg: "BACKEND/SERVER=URL",
  expected:
    "a haproxy backend and server, then = and the node's replstatus http listener, such as pg/node1=http://10.0.0.1:8008",
  parse: (text) => {
    const m = /^([A-Za-z0-9_.:-]+)\/([A-Za-z0-9_.:-]+)=(.+)$/.exec(text);
    const url = m && parsePeer(m[3]!);
    return url ? { backend: m[1]!, server: m[2]!, url } : undefined;
  },
};

export const peerUrl: Kind<string> = {
  arg: "URL",
  expected: "an http or https URL of another node's replstatus http listener, such as http://10.0.0.2:8008",
  parse: parsePeer,
};

/** One --allow entry, kept as text: buildAllowList compiles the whole list. */
export const cidr: Kind<string> = {
  arg: "CIDR",
  expected: "an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8, or an address",
  parse: (text) => ("bad" in buildAllowList([text]) ? undefined : text),
};

export function socketPath(maxBytes: number): Kind<string> {
  return {
    arg: "PATH",
    expected: `an absolute path of at most ${maxBytes} bytes`,
    parse: (text) => (text.startsWith("/") && Buffer.byteLength(text) <= maxBytes ? text : undefined),
  };
}

export const absolutePath: Kind<string> = {
  arg: "DIR",
  expected: "an absolute path",
  parse: (text) => (text.startsWith("/") ? text : undefined),
};

export const debianCluster: Kind<string> = {
  arg: "VERSION-NAME",
  expected: "VERSION-NAME of a Debian cluster, such as 15-main",
  parse: (text) => (parseClusterName(text) ? text : undefined),
};

/** An etcd v3 client URL, kept as PROTOCOL://HOST:PORT (port 2379 when none is given). */
export const etcdUrl: Kind<string> = { arg: "URL", expected: ETCD_URL_EXPECTED, parse: normalEtcdUrl };

/** A node tag, KEY=VALUE, kept as text: config/patroni.ts buildTags reads the list. */
export const nodeTag: Kind<string> = {
  arg: "KEY=VALUE",
  expected: TAG_EXPECTED,
  parse: (text) => (isTag(text) ? text : undefined),
};
