// The http mode, for haproxy's `option httpchk`: one request per connection,
// read strictly and within bounds, answered with `Connection: close`, then the
// write side is shut down and the rest of the input drained, as in raw mode.
//
// Paths are Patroni's (REST API, "Health check endpoints"), so a haproxy
// configuration written for Patroni works. Every check answer is prebuilt per
// state at start-up; only `?lag=` checks and `/status`, which carry live
// numbers, are rendered per request.
//
// Request parsing works on the bytes as they arrive: a whole head in one
// segment (what haproxy sends) is parsed in place without copying; only a head
// that arrives in pieces gets a 4 KiB buffer. Line ends are CRLF or a bare LF
// (RFC 9112 section 2.2 allows a recipient to accept a bare LF).
import type { Socket, SocketHandler } from "bun";
import { parseSizeBytes } from "../../units.ts";
import { DRAIN_LIMIT_BYTES, DRAIN_TIMEOUT_S } from "../gate.ts";
import type { GuardStatus } from "../../cluster/peers.ts";
import type { PollFacts } from "../../poll/poller.ts";
import type { Responses } from "../answers.ts";
import { FENCED, LAGGING, OVERRIDE_NAMES, PRIMARY, STANDBY, STATE_NAMES, UNKNOWN, type Status } from "../../cell.ts";

/** A request head (request line and headers) longer than this gets 431. */
export const HEAD_LIMIT_BYTES = 4096;
/** A request head not complete this long after accept gets 408. */
export const READ_DEADLINE_MS = 2000;
// Bun's socket.timeout() fires on a 4 s grid (usockets' timeout granularity),
// too coarse for a 2 s deadline, so sockets still reading are swept by a timer.
const SWEEP_MS = 250;

// What a path checks. `ok[kind][state]` says whether the answer is 200 or 503.
const CHECK_PRIMARY = 0;
const CHECK_REPLICA = 1;
const CHECK_READ_ONLY = 2;
const CHECK_HEALTH = 3;
const CHECK_LIVENESS = 4;
const CHECK_READINESS = 5;
const CHECK_STATUS = 6;
const CHECK_METRICS = 7;
// A fenced node is a primary that must take no traffic (peers.ts): PostgreSQL
// answers, so /health and /readiness say 200, but no pool may use it.
//                 primary standby unknown lagging fenced
const OK: boolean[][] = [
  [true, false, false, false, false], // primary
  [false, true, false, false, false], // replica: a lagging standby is not a good replica
  [true, true, false, false, false], // read-only: primary or a good replica
  [true, true, false, true, true], // health: PostgreSQL answers
  [true, true, true, true, true], // liveness: this process runs
  [true, true, false, true, true], // readiness: the state is known
];

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
};
const ROUTE_BYTES: [Uint8Array, number][] = Object.entries(ROUTES).map(([path, kind]) => [
  new Uint8Array(Buffer.from(path, "latin1")),
  kind,
]);

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

export interface HttpResponses {
  /** [kind][state]: the answer to GET and OPTIONS. */
  get: Uint8Array[][];
  /** [kind][state]: the same without the body, for HEAD. */
  head: Uint8Array[][];
  badRequest: Uint8Array;
  badLag: Uint8Array;
  notFound: Uint8Array;
  notFoundHead: Uint8Array;
  badMethod: Uint8Array;
  badVersion: Uint8Array;
  timeout: Uint8Array;
  tooLarge: Uint8Array;
}

function render(code: number, body: string, withBody: boolean, extra = "", type = "application/json"): string {
  return (
    `HTTP/1.1 ${code} ${REASONS[code]}\r\n` +
    `Content-Type: ${type}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    "Cache-Control: no-store\r\n" +
    extra +
    "Connection: close\r\n\r\n" +
    (withBody ? body : "")
  );
}

function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "latin1"));
}

/** PostgreSQL's role: a fenced node is still a primary, and says so to its peers. */
function roleOf(state: number): string | null {
  return state === PRIMARY || state === FENCED ? "primary" : state === UNKNOWN ? null : "standby";
}

/** Why a fenced node answers 503; /status says which peer. */
const FENCED_REASON = "a peer of the same cluster is primary on a higher timeline, see /status";

export function buildHttpResponses(): HttpResponses {
  const table = (withBody: boolean) =>
    OK.map((row) =>
      row.map((ok, state) => {
        const reason = state === FENCED ? { reason: FENCED_REASON } : {};
        const body = JSON.stringify({ role: roleOf(state), state: STATE_NAMES[state], ...reason }) + "\n";
        return bytes(render(ok ? 200 : 503, body, withBody));
      }),
    );
  const error = (code: number, message: string, withBody = true, extra = "") =>
    bytes(render(code, JSON.stringify({ error: message }) + "\n", withBody, extra));
  return {
    get: table(true),
    head: table(false),
    badRequest: error(400, "bad request"),
    badLag: error(400, "bad lag: expected ?lag=N with N in bytes, or with kB, MB, GB such as 16MB"),
    notFound: error(404, "not found"),
    notFoundHead: error(404, "not found", false),
    badMethod: error(405, "method not allowed", true, "Allow: GET, HEAD, OPTIONS\r\n"),
    badVersion: error(505, "http version not supported"),
    timeout: error(408, "request timeout"),
    tooLarge: error(431, "request header fields too large"),
  };
}

/**
 * Per-socket state, a number where it can be, so accept allocates nothing:
 * >= 0 while waiting for the first bytes (performance.now() at accept), an
 * object while a head arrives in pieces, < 0 once answered (-1 - bytes drained).
 */
type HttpData = number | Partial;
interface Partial {
  startedAt: number;
  buf: Uint8Array;
  len: number;
}

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const COLON = 58;
const QUESTION = 63;
const VERSION_10 = bytes("HTTP/1.0");
const VERSION_11 = bytes("HTTP/1.1");
const HTTP_SLASH = bytes("HTTP/");
const GET = bytes("GET");
const HEAD = bytes("HEAD");
const OPTIONS = bytes("OPTIONS");

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
function headEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to - 1; i++) {
    if (buf[i] !== LF) continue;
    if (buf[i + 1] === LF) return i + 2;
    if (buf[i + 1] === CR && i + 2 < to && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

/** End of the line starting at `from` without its CR, and where the next line starts. */
function lineAt(buf: Uint8Array, from: number, to: number): [end: number, next: number] {
  const lf = indexOf(buf, LF, from, to);
  const end = lf > from && buf[lf - 1] === CR ? lf - 1 : lf;
  return [end, lf + 1];
}

/** The live part of the answer: lag facts and ages, for /status and `?lag=` checks. */
export interface HttpContext {
  status: Status;
  /** The last successful poll's facts, or undefined before the first one. */
  facts(): PollFacts | undefined;
  /** Prometheus text for /metrics (metrics.ts); without it /metrics is 404. */
  metrics?(): string;
  /** The split-brain guard's view, for /status (peers.ts). */
  guard?(): GuardStatus;
}

export function httpHandler(ctx: HttpContext, responses: Responses): SocketHandler<HttpData> {
  const { status } = ctx;
  const cell = status.cell;
  const pending = new Set<Socket<HttpData>>();
  let sweeper: Timer | undefined;

  function sweep(): void {
    const now = performance.now();
    for (const socket of pending) {
      const d = socket.data;
      const startedAt = typeof d === "number" ? d : d.startedAt;
      if (now - startedAt >= READ_DEADLINE_MS) reply(socket, responses.http.timeout);
    }
    if (pending.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }

  function reply(socket: Socket<HttpData>, response: Uint8Array): void {
    pending.delete(socket);
    socket.data = -1;
    socket.write(response);
    socket.shutdown();
    socket.timeout(DRAIN_TIMEOUT_S);
  }

  // timeline and system_identifier are what peers read (peers.ts): shown only
  // while the state is known, so a peer never counts an old answer.
  function live(code: number, withBody: boolean): Uint8Array {
    const state = Atomics.load(cell, 0) & 0xff;
    const facts = state === UNKNOWN ? undefined : ctx.facts();
    const standby = facts?.inRecovery === true;
    const body =
      JSON.stringify({
        role: roleOf(state),
        state: STATE_NAMES[state],
        override: OVERRIDE_NAMES[status.override],
        timeline: facts?.timeline ?? null,
        system_identifier: facts?.systemId ?? null,
        lag_bytes: standby ? facts.lagBytes : null,
        replay_age_seconds: standby ? facts.replayAgeSeconds : null,
        receiver: standby ? facts.receiverStatus : null,
        since_change_ms: Date.now() - status.changedAt,
        changed_at: new Date(status.changedAt).toISOString(),
        poll_age_ms: facts ? Math.round(performance.now() - facts.startedAt) : null,
        ...ctx.guard?.(),
      }) + "\n";
    return bytes(render(code, body, withBody));
  }

  // `?lag=N`: like /replica, and the replay at most N bytes behind the
  // primary. Unknown lag (no grants, receiver not streaming) is not "at most N".
  function lagCheck(query: string, withBody: boolean): Uint8Array {
    let maxBytes: number | undefined;
    for (const pair of query.split("&")) {
      const eq = pair.indexOf("=");
      const key = eq === -1 ? pair : pair.slice(0, eq);
      if (key !== "lag") continue;
      if (maxBytes !== undefined) return responses.http.badLag;
      maxBytes = parseSizeBytes(pair.slice(eq + 1));
      if (eq === -1 || maxBytes === undefined) return responses.http.badLag;
    }
    const state = Atomics.load(cell, 0) & 0xff;
    if (maxBytes === undefined) return (withBody ? responses.http.get : responses.http.head)[CHECK_REPLICA]![state]!;
    const facts = ctx.facts();
    const ok =
      (state === STANDBY || state === LAGGING) &&
      facts?.receiverStatus === "streaming" &&
      facts.lagBytes !== null &&
      facts.lagBytes <= maxBytes;
    return live(ok ? 200 : 503, withBody);
  }

  // The request line strictly (RFC 9112 section 3), the header lines only as
  // far as needed to refuse garbage; their values are not used.
  function answer(buf: Uint8Array, end: number): Uint8Array {
    const r = responses.http;
    const [lineEnd, next] = lineAt(buf, 0, end);
    const sp1 = indexOf(buf, SP, 0, lineEnd);
    const sp2 = sp1 < 0 ? -1 : indexOf(buf, SP, sp1 + 1, lineEnd);
    if (sp1 <= 0 || sp2 < 0 || !tokens(buf, 0, sp1)) return r.badRequest;
    const target = sp1 + 1;
    if (sp2 === target || buf[target] !== 0x2f) return r.badRequest;
    for (let i = target; i < sp2; i++) if (buf[i]! < 0x21 || buf[i]! > 0x7e) return r.badRequest;
    if (!same(buf, sp2 + 1, lineEnd, VERSION_11) && !same(buf, sp2 + 1, lineEnd, VERSION_10)) {
      const v = sp2 + 1;
      const looksLikeVersion =
        lineEnd - v === 8 &&
        same(buf, v, v + 5, HTTP_SLASH) &&
        buf[v + 5]! >= 0x30 &&
        buf[v + 5]! <= 0x39 &&
        buf[v + 6] === 0x2e &&
        buf[v + 7]! >= 0x30 &&
        buf[v + 7]! <= 0x39;
      return looksLikeVersion ? r.badVersion : r.badRequest;
    }
    for (let at = next; ;) {
      const [e, n] = lineAt(buf, at, end);
      if (e === at) break;
      const colon = indexOf(buf, COLON, at, e);
      if (colon < 0 || !tokens(buf, at, colon)) return r.badRequest;
      for (let i = colon + 1; i < e; i++) if ((buf[i]! < 0x20 && buf[i] !== HT) || buf[i] === 0x7f) return r.badRequest;
      at = n;
    }
    const isHead = same(buf, 0, sp1, HEAD);
    if (!isHead && !same(buf, 0, sp1, GET) && !same(buf, 0, sp1, OPTIONS)) return r.badMethod;
    const q = indexOf(buf, QUESTION, target, sp2);
    const pathEnd = q < 0 ? sp2 : q;
    let kind = -1;
    for (const [path, k] of ROUTE_BYTES) {
      if (same(buf, target, pathEnd, path)) {
        kind = k;
        break;
      }
    }
    if (kind < 0) return isHead ? r.notFoundHead : r.notFound;
    if (kind === CHECK_STATUS) return live(200, !isHead);
    if (kind === CHECK_METRICS) {
      if (!ctx.metrics) return isHead ? r.notFoundHead : r.notFound;
      return bytes(render(200, ctx.metrics(), !isHead, "", "text/plain; version=0.0.4"));
    }
    if (kind === CHECK_REPLICA && q >= 0)
      return lagCheck(Buffer.from(buf.subarray(q + 1, sp2)).toString("latin1"), !isHead);
    return (isHead ? r.head : r.get)[kind]![Atomics.load(cell, 0) & 0xff]!;
  }

  return {
    open(socket) {
      socket.data = performance.now();
      pending.add(socket);
      sweeper ??= setInterval(sweep, SWEEP_MS);
    },
    data(socket, chunk) {
      const d = socket.data;
      if (typeof d === "number") {
        if (d < 0) {
          // Answered: drain, as the raw handler does, so the reply ends with a FIN.
          socket.data = d - chunk.byteLength;
          if (-1 - socket.data > DRAIN_LIMIT_BYTES) socket.terminate();
          return;
        }
        const end = headEnd(chunk, 0, Math.min(chunk.byteLength, HEAD_LIMIT_BYTES));
        if (end >= 0) return reply(socket, answer(chunk, end));
        if (chunk.byteLength >= HEAD_LIMIT_BYTES) return reply(socket, responses.http.tooLarge);
        const partial: Partial = { startedAt: d, buf: new Uint8Array(HEAD_LIMIT_BYTES), len: chunk.byteLength };
        partial.buf.set(chunk);
        socket.data = partial;
        return;
      }
      const n = Math.min(HEAD_LIMIT_BYTES - d.len, chunk.byteLength);
      d.buf.set(n === chunk.byteLength ? chunk : chunk.subarray(0, n), d.len);
      const from = Math.max(0, d.len - 2);
      d.len += n;
      const end = headEnd(d.buf, from, d.len);
      if (end >= 0) reply(socket, answer(d.buf, end));
      else if (d.len >= HEAD_LIMIT_BYTES) reply(socket, responses.http.tooLarge);
    },
    // The client closed its side before the head was complete: it will send no more.
    end(socket) {
      if (typeof socket.data !== "number" || socket.data >= 0) reply(socket, responses.http.badRequest);
    },
    close(socket) {
      pending.delete(socket);
    },
    // Only reached while draining: the 2 s read deadline is the sweeper's.
    timeout(socket) {
      socket.terminate();
    },
    error() {},
  };
}
