// The http mode, for haproxy's `option httpchk`: one request per connection, read strictly and within bounds
// (parse.ts), answered with `Connection: close` from prebuilt answers per path and state (answers.ts; queries,
// /status and /metrics rendered per request; /ui built on its first request), then the write side shut down and
// the input drained as in raw mode. Paths are Patroni's. ARCHITECTURE.md, "The listeners".
import type { Socket, SocketHandler } from "bun";
import { DRAIN_LIMIT_BYTES, DRAIN_TIMEOUT_S } from "../raw.ts";
import type { Responses } from "../answers.ts";
import { bytes, render, type HttpResponses } from "./answers.ts";
import {
  BAD_METHOD,
  BAD_VERSION,
  CHECK_EVENTS,
  CHECK_METRICS,
  CHECK_STATUS,
  CHECK_UI,
  HEAD_LIMIT_BYTES,
  headEnd,
  NOT_FOUND,
  parseHead,
  type RequestHead,
} from "./parse.ts";
import { asksQuery, queryAnswer, statusAnswer, type HttpContext } from "./status.ts";
import { currentState } from "../../cell.ts";
import { uiResponse } from "../../ui/page.ts";
import { EVENTS_FULL, EVENTS_HEAD } from "./events.ts";

/** A request head not complete this long after accept gets 408. */
export const READ_DEADLINE_MS = 2000;
// Bun's socket.timeout() fires on a 4 s grid (usockets' timeout granularity),
// too coarse for a 2 s deadline, so sockets still reading are swept by a timer.
export const SWEEP_MS = 250;

/** A head that arrived in pieces, gathered here. */
interface PartialHead {
  startedAt: number;
  buf: Uint8Array;
  len: number;
}

/**
 * Per-socket state, a number where it can be, so accept allocates nothing:
 * >= 0 while waiting for the first bytes (performance.now() at accept), a
 * PartialHead while a head arrives in pieces, < 0 once answered (-1 - bytes
 * drained), SUBSCRIBED for an /events stream.
 */
type HttpData = number | PartialHead;
const SUBSCRIBED = -Infinity;
/** answerHead()'s answer to GET /events: keep the socket as a subscriber. */
const SUBSCRIBE = new Uint8Array(0);

function latin1(buf: Uint8Array, from: number, to: number): string {
  return from < 0 ? "" : Buffer.from(buf.subarray(from, to)).toString("latin1");
}

/** The answer to the head in buf[0, end); `req` is the handler's one RequestHead, rewritten here. */
function answerHead(ctx: HttpContext, r: HttpResponses, req: RequestHead, buf: Uint8Array, end: number): Uint8Array {
  parseHead(buf, end, req);
  const withBody = !req.head;
  // The Patroni mode answers every path of a good request but /status and /metrics.
  if (ctx.patroni && (req.kind === NOT_FOUND || (req.kind >= 0 && req.kind < CHECK_STATUS))) {
    return ctx.patroni(latin1(buf, req.pathFrom, req.pathTo), latin1(buf, req.queryFrom, req.queryTo), req.head);
  }
  switch (req.kind) {
    case NOT_FOUND:
      return withBody ? r.notFound : r.notFoundHead;
    case BAD_METHOD:
      return r.badMethod;
    case BAD_VERSION:
      return r.badVersion;
    case CHECK_STATUS:
      return statusAnswer(ctx, 200, withBody);
    case CHECK_METRICS:
      if (!ctx.metrics) return withBody ? r.notFound : r.notFoundHead;
      return bytes(render(200, ctx.metrics(), withBody, "", "text/plain; version=0.0.4"));
    case CHECK_EVENTS:
      if (!ctx.events) return withBody ? r.notFound : r.notFoundHead;
      return withBody ? SUBSCRIBE : EVENTS_HEAD;
    case CHECK_UI:
      return uiResponse(withBody);
  }
  if (req.kind < 0) return r.badRequest;
  if (asksQuery(ctx, req.kind, req.queryFrom >= 0)) {
    return queryAnswer(ctx, r, req.kind, latin1(buf, req.queryFrom, req.queryTo), withBody);
  }
  return (withBody ? r.get : r.head)[req.kind]![currentState(ctx.cell.slots)]!;
}

export function httpHandler(ctx: HttpContext, responses: Responses): SocketHandler<HttpData> {
  const pending = new Set<Socket<HttpData>>();
  const req: RequestHead = { kind: 0, head: false, queryFrom: -1, queryTo: -1, pathFrom: -1, pathTo: -1 };
  const answer = (socket: Socket<HttpData>, buf: Uint8Array, end: number) => {
    const response = answerHead(ctx, responses.http, req, buf, end);
    if (response === SUBSCRIBE) subscribe(socket);
    else reply(socket, response);
  };
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

  function subscribe(socket: Socket<HttpData>): void {
    pending.delete(socket);
    if (!ctx.events!.subscribe(socket as Socket<unknown>)) return reply(socket, EVENTS_FULL);
    socket.data = SUBSCRIBED;
    // A tls+ listener's handshake deadline (tls.ts) must not end the stream.
    socket.timeout(0);
  }

  // A head in one chunk is answered from the chunk; else it is gathered in a PartialHead.
  function first(socket: Socket<HttpData>, startedAt: number, chunk: Uint8Array): void {
    const end = headEnd(chunk, 0, Math.min(chunk.byteLength, HEAD_LIMIT_BYTES));
    if (end >= 0) return answer(socket, chunk, end);
    if (chunk.byteLength >= HEAD_LIMIT_BYTES) return reply(socket, responses.http.tooLarge);
    const partial: PartialHead = { startedAt, buf: new Uint8Array(HEAD_LIMIT_BYTES), len: chunk.byteLength };
    partial.buf.set(chunk);
    socket.data = partial;
  }

  function more(socket: Socket<HttpData>, d: PartialHead, chunk: Uint8Array): void {
    const n = Math.min(HEAD_LIMIT_BYTES - d.len, chunk.byteLength);
    d.buf.set(n === chunk.byteLength ? chunk : chunk.subarray(0, n), d.len);
    const from = Math.max(0, d.len - 2);
    d.len += n;
    const end = headEnd(d.buf, from, d.len);
    if (end >= 0) answer(socket, d.buf, end);
    else if (d.len >= HEAD_LIMIT_BYTES) reply(socket, responses.http.tooLarge);
  }

  return {
    open(socket) {
      socket.data = performance.now();
      pending.add(socket);
      sweeper ??= setInterval(sweep, SWEEP_MS);
    },
    data(socket, chunk) {
      const d = socket.data;
      if (typeof d !== "number") return more(socket, d, chunk);
      if (d >= 0) return first(socket, d, chunk);
      // A subscriber has nothing more to say: its input is dropped as it comes.
      if (d === SUBSCRIBED) return;
      // Answered: drain, as the raw handler does, so the reply ends with a FIN.
      socket.data = d - chunk.byteLength;
      if (-1 - socket.data > DRAIN_LIMIT_BYTES) socket.terminate();
    },
    // The client closed its side before the head was complete: it will send no more.
    end(socket) {
      if (typeof socket.data !== "number" || socket.data >= 0) reply(socket, responses.http.badRequest);
    },
    close(socket) {
      pending.delete(socket);
      if (socket.data === SUBSCRIBED) ctx.events!.leave(socket as Socket<unknown>);
    },
    // Only reached while draining: the 2 s read deadline is the sweeper's.
    timeout(socket) {
      socket.terminate();
    },
    error() {},
  };
}
