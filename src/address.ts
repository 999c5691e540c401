// Addresses: listen addresses (`[[tls+]MODE:]HOST:PORT`), ports, IP literals
// and peer URLs, parsed from the text a user types and formatted back; URL
// passwords hidden for logs.

export type ListenMode = "raw" | "http" | "agent";
export const LISTEN_MODES: readonly ListenMode[] = ["raw", "http", "agent"];

export interface ListenAddress {
  mode: ListenMode;
  /** Literal IP address (IPv6 without brackets). */
  host: string;
  /** 0 asks the kernel for a free port (tests). */
  port: number;
  /** A `tls+MODE:` listener: the protocol inside TLS (--tls-cert, --tls-key, --tls-client-cert). */
  tls?: true;
}

/** A TCP port `min`..65535 in decimal. */
export function parsePort(text: string, min: number): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= 65535 ? n : undefined;
}

const IPV4_PART = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const IPV6_ZONE = /%[0-9a-zA-Z.:-]+$/;

function isIpv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => IPV4_PART.test(p));
}

/** The 16-bit groups of one side of "::", a dotted IPv4 counting two; -1 when one is not a group. */
function ipv6Groups(side: string, last: boolean): number {
  if (side === "") return 0;
  const groups = side.split(":");
  const tail = groups.at(-1)!;
  const v4 = last && tail.includes(".");
  if (v4 && !isIpv4(tail)) return -1;
  const hex = v4 ? groups.slice(0, -1) : groups;
  return hex.every((g) => IPV6_GROUP.test(g)) ? groups.length + (v4 ? 1 : 0) : -1;
}

function isIpv6(text: string): boolean {
  const halves = text.replace(IPV6_ZONE, "").split("::");
  if (halves.length > 2) return false;
  const left = ipv6Groups(halves[0]!, halves.length === 1);
  if (halves.length === 1) return left === 8;
  const right = ipv6Groups(halves[1]!, true);
  return left >= 0 && right >= 0 && left + right <= 7;
}

/**
 * 4 or 6 for an IP address literal, else 0: what node:net's isIP answers
 * (dotted IPv4 without leading zeros; IPv6 text forms of RFC 4291 section 2.2
 * with an optional %zone), without loading node:net into the listeners' thread.
 */
export function ipVersion(text: string): 0 | 4 | 6 {
  if (isIpv4(text)) return 4;
  return text.includes(":") && isIpv6(text) ? 6 : 0;
}

export const LISTEN_EXPECTED = `[[tls+]${LISTEN_MODES.join("|")}:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535`;

/** `[[tls+]MODE:]HOST:PORT`, IPv6 in brackets; `tls:` alone is tls+raw. Returns an error text on failure. */
export function parseListen(text: string): ListenAddress | string {
  let rest = text;
  let mode: ListenMode = "raw";
  let tls = false;
  const colon = rest.indexOf(":");
  let head = colon === -1 ? "" : rest.slice(0, colon);
  if (/^[a-z+]+$/.test(head) && !/^[0-9a-f]+$/.test(head)) {
    if (head === "tls" || head.startsWith("tls+")) {
      tls = true;
      head = head === "tls" ? "raw" : head.slice(4);
    }
    if (!(LISTEN_MODES as readonly string[]).includes(head)) return LISTEN_EXPECTED;
    mode = head as ListenMode;
    rest = rest.slice(colon + 1);
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(rest);
  if (!m) return LISTEN_EXPECTED;
  const host = (m[1] ?? m[2])!;
  const port = parsePort(m[3]!, 0);
  if (port === undefined) return LISTEN_EXPECTED;
  if (m[1] !== undefined ? ipVersion(host) !== 6 : ipVersion(host) !== 4) return LISTEN_EXPECTED;
  return tls ? { mode, host, port, tls } : { mode, host, port };
}

export function formatAddress(l: { host: string; port: number }): string {
  return ipVersion(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/**
 * `http://HOST:PORT` or `https://HOST:PORT` with an optional `/`, as the base of a peer's /status;
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
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.hostname === "" || url.username || url.password) return undefined;
  if (url.pathname !== "/" || url.search || url.hash) return undefined;
  return `${url.protocol}//${url.host}`;
}

/** Hides the password of a connection URL, for logs and errors. */
export function redactUrl(text: string): string {
  return text.replace(/^(\w+:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}
