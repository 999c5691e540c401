// Request-head parsing on the bytes as they arrive, without copying or
// allocating: the request line strictly (RFC 9112 section 3), the header lines
// only as far as needed to refuse garbage; their values are not used. Line
// ends are CRLF or a bare LF (RFC 9112 section 2.2 allows a recipient to
// accept a bare LF).

/** A request head (request line and headers) longer than this gets 431. */
export const HEAD_LIMIT_BYTES = 4096;

// What a path checks (Patroni's REST API, "Health check endpoints"); the
// checks 0..5 index the 200/503 table of answers.ts.
export const CHECK_PRIMARY = 0;
export const CHECK_REPLICA = 1;
export const CHECK_READ_ONLY = 2;
export const CHECK_HEALTH = 3;
export const CHECK_LIVENESS = 4;
export const CHECK_READINESS = 5;
export const CHECK_STATUS = 6;
export const CHECK_METRICS = 7;
export const CHECK_EVENTS = 8;
/** The status page (src/ui/page.ts). */
export const CHECK_UI = 9;
// What a head that asks for no check gets.
export const BAD_REQUEST = -1;
export const BAD_VERSION = -2;
export const BAD_METHOD = -3;
export const NOT_FOUND = -4;

const ROUTES: Record<string, number> = {
  "/": CHECK_PRIMARY,
  "/primary": CHECK_PRIMARY,
  "/master": CHECK_PRIMARY,
  "/leader": CHECK_PRIMARY,
  "/read-write": CHECK_PRIMARY,
  "/replica": CHECK_REPLICA,
  "/standby": CHECK_REPLICA,
  "/read-only": CHECK_READ_ONLY,
  "/health": CHECK_HEALTH,
  "/liveness": CHECK_LIVENESS,
  "/readiness": CHECK_READINESS,
  "/status": CHECK_STATUS,
  "/metrics": CHECK_METRICS,
  "/events": CHECK_EVENTS,
  "/ui": CHECK_UI,
};

/** What a head asks; one per handler, rewritten by each parse. */
export interface RequestHead {
  /** A CHECK_* for a good request, else one of the errors above. */
  kind: number;
  /** HEAD: the answer without its body. */
  head: boolean;
  /** The query's bytes, after the `?`, or -1 without one. */
  queryFrom: number;
  queryTo: number;
  /** The path's bytes, without the query (the Patroni mode reads paths of its own). */
  pathFrom: number;
  pathTo: number;
}

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const COLON = 58;
const QUESTION = 63;
const SLASH = 0x2f;
const latin1 = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));
const VERSION_10 = latin1("HTTP/1.0");
const VERSION_11 = latin1("HTTP/1.1");
const HTTP_SLASH = latin1("HTTP/");
const GET = latin1("GET");
const HEAD = latin1("HEAD");
const OPTIONS = latin1("OPTIONS");
const ROUTE_BYTES: [Uint8Array, number][] = Object.entries(ROUTES).map(([path, kind]) => [latin1(path), kind]);

// RFC 9110 section 5.6.2: tchar.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;

function same(buf: Uint8Array, from: number, to: number, word: Uint8Array): boolean {
  if (to - from !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[from + i] !== word[i]) return false;
  return true;
}

function indexOf(buf: Uint8Array, byte: number, from: number, to: number): number {
  for (let i = from; i < to; i++) if (buf[i] === byte) return i;
  return -1;
}

function tokens(buf: Uint8Array, from: number, to: number): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) if (TCHAR[buf[i]!] !== 1) return false;
  return true;
}

/** Index just past the blank line that ends the head, or -1. */
export function headEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to - 1; i++) {
    if (buf[i] !== LF) continue;
    if (buf[i + 1] === LF) return i + 2;
    if (buf[i + 1] === CR && i + 2 < to && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

/** End of the line starting at `from` without its CR; the next line starts after the LF. */
function lineEnd(buf: Uint8Array, from: number, to: number): number {
  const lf = indexOf(buf, LF, from, to);
  return lf > from && buf[lf - 1] === CR ? lf - 1 : lf;
}

/** A version other than 1.0 and 1.1: 505 if it looks like one (`HTTP/d.d`), else 400. */
function version(buf: Uint8Array, v: number, end: number): number {
  if (same(buf, v, end, VERSION_11) || same(buf, v, end, VERSION_10)) return 0;
  const digit = (i: number) => buf[i]! >= 0x30 && buf[i]! <= 0x39;
  const looksLikeVersion =
    end - v === 8 && same(buf, v, v + 5, HTTP_SLASH) && digit(v + 5) && buf[v + 6] === 0x2e && digit(v + 7);
  return looksLikeVersion ? BAD_VERSION : BAD_REQUEST;
}

/** Whether every header line from `at` to the blank line is `token: printable`. */
function headers(buf: Uint8Array, at: number, end: number): boolean {
  for (;;) {
    const e = lineEnd(buf, at, end);
    if (e === at) return true;
    const colon = indexOf(buf, COLON, at, e);
    if (colon < 0 || !tokens(buf, at, colon)) return false;
    for (let i = colon + 1; i < e; i++) if ((buf[i]! < 0x20 && buf[i] !== HT) || buf[i] === 0x7f) return false;
    at = indexOf(buf, LF, e, end) + 1;
  }
}

function route(buf: Uint8Array, from: number, to: number): number {
  for (const [path, kind] of ROUTE_BYTES) if (same(buf, from, to, path)) return kind;
  return NOT_FOUND;
}

/** Parses the head in buf[0, end) (end from headEnd()) into `out`. */
export function parseHead(buf: Uint8Array, end: number, out: RequestHead): void {
  out.head = false;
  out.queryFrom = out.queryTo = out.pathFrom = out.pathTo = -1;
  out.kind = requestLine(buf, end, out);
}

function requestLine(buf: Uint8Array, end: number, out: RequestHead): number {
  const lineTo = lineEnd(buf, 0, end);
  const sp1 = indexOf(buf, SP, 0, lineTo);
  const sp2 = sp1 < 0 ? -1 : indexOf(buf, SP, sp1 + 1, lineTo);
  if (sp1 <= 0 || sp2 < 0 || !tokens(buf, 0, sp1)) return BAD_REQUEST;
  const target = sp1 + 1;
  if (sp2 === target || buf[target] !== SLASH) return BAD_REQUEST;
  for (let i = target; i < sp2; i++) if (buf[i]! < 0x21 || buf[i]! > 0x7e) return BAD_REQUEST;
  const bad = version(buf, sp2 + 1, lineTo);
  if (bad !== 0) return bad;
  if (!headers(buf, indexOf(buf, LF, lineTo, end) + 1, end)) return BAD_REQUEST;
  out.head = same(buf, 0, sp1, HEAD);
  if (!out.head && !same(buf, 0, sp1, GET) && !same(buf, 0, sp1, OPTIONS)) return BAD_METHOD;
  const q = indexOf(buf, QUESTION, target, sp2);
  if (q >= 0) {
    out.queryFrom = q + 1;
    out.queryTo = sp2;
  }
  out.pathFrom = target;
  out.pathTo = q < 0 ? sp2 : q;
  return route(buf, target, q < 0 ? sp2 : q);
}
