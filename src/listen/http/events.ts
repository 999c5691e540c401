// GET /events on http listeners: this node's answer as Server-Sent Events
// (the current state first, then one event per change, a comment as a
// heartbeat), for `replstatus route` and the status page. The invariant: a
// subscriber costs at most what the kernel holds for its socket; a write the
// socket does not take whole drops the subscriber, nothing is queued here.
// Changes arrive from the main thread's change path (serve.ts); each event is
// rendered once and the same bytes written to every subscriber.
// ARCHITECTURE.md, "The listeners"; docs/routing.md for the stream's format.
import type { Socket } from "bun";
import { bytes, render } from "./answers.ts";
import { setSendBuffer } from "../backlog.ts";

/** How long an EventSource waits before it reconnects (the `retry:` field), ms. */
export const RETRY_MS = 1000;
/**
 * A subscriber's send buffer: about a hundred events. A reader this far
 * behind is dropped; without it the kernel would hold up to 4 MB for it.
 */
export const SEND_BUFFER_BYTES = 64 * 1024;

export interface EventsOptions {
  /** Subscribers at most, across http listeners; more get 503. */
  maxSubscribers: number;
  /** A heartbeat comment this often while anyone subscribes. */
  heartbeatMs: number;
}

export interface EventsSource {
  /** The /status body now. */
  body(): Record<string, unknown>;
  /** The raw listener's text now (MASTER, ...). */
  answer(): string;
}

export interface Events {
  /**
   * Takes `socket` as a subscriber: writes the stream's head and the current
   * state. Returns false, having written nothing, when the bound is reached.
   */
  subscribe(socket: Socket<unknown>): boolean;
  /** The socket closed. */
  leave(socket: Socket<unknown>): void;
  /** The answer changed, for `reason`; changes within one turn of the event loop are one event. */
  changed(reason: string): void;
  readonly subscribers: number;
  /** Subscribers dropped for not reading (their socket did not take a whole write). */
  readonly dropped: number;
  /** The sequence number of the last change. */
  readonly seq: number;
  options: EventsOptions;
  /** Ends every stream (FIN) and the heartbeat. */
  stop(): void;
}

const HEAD = bytes(
  "HTTP/1.1 200 OK\r\n" +
    "Content-Type: text/event-stream\r\n" +
    "Cache-Control: no-store\r\n" +
    "Connection: close\r\n\r\n" +
    `retry: ${RETRY_MS}\n\n`,
);
/** HEAD /events: the head alone, then the connection closes. */
export const EVENTS_HEAD = bytes(
  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
);
/** The answer to a subscriber over the bound. */
export const EVENTS_FULL = bytes(render(503, JSON.stringify({ error: "too many event subscribers" }) + "\n", true));

export function createEvents(source: EventsSource, options: EventsOptions): Events {
  const subscribers = new Set<Socket<unknown>>();
  let seq = 0;
  let reason = "started";
  let at = Date.now();
  let pending = false;
  let dropped = 0;
  let heartbeat: Timer | undefined;

  function event(): Uint8Array {
    const data = { ...source.body(), seq, answer: source.answer(), reason, at: new Date(at).toISOString() };
    return bytes(`id: ${seq}\nevent: state\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes `chunk` whole or drops the subscriber: a slow reader never makes this process hold bytes. */
  function send(socket: Socket<unknown>, chunk: Uint8Array): void {
    if (socket.write(chunk) === chunk.byteLength) return;
    dropped++;
    subscribers.delete(socket);
    socket.terminate();
  }

  function broadcast(chunk: Uint8Array): void {
    for (const socket of subscribers) send(socket, chunk);
    if (subscribers.size === 0 && heartbeat !== undefined) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
  }

  function flush(): void {
    pending = false;
    seq++;
    if (subscribers.size > 0) broadcast(event());
  }

  const beat = () => broadcast(bytes(`: ${Date.now()}\n\n`));

  return {
    subscribe(socket) {
      if (subscribers.size >= options.maxSubscribers) return false;
      subscribers.add(socket);
      // The socket's fd is there at run time but missing from its types.
      const fd = (socket as unknown as { fd?: number }).fd;
      if (typeof fd === "number" && fd >= 0) setSendBuffer(fd, SEND_BUFFER_BYTES);
      if (socket.write(HEAD) !== HEAD.byteLength) {
        subscribers.delete(socket);
        socket.terminate();
        return true;
      }
      send(socket, event());
      heartbeat ??= setInterval(beat, options.heartbeatMs);
      return true;
    },
    leave(socket) {
      subscribers.delete(socket);
    },
    changed(why) {
      reason = why;
      at = Date.now();
      // After the turn: the worker's message is applied and its generation
      // synced (poll/poller.ts), so the word read for the event is settled.
      if (!pending) queueMicrotask(flush);
      pending = true;
    },
    get subscribers() {
      return subscribers.size;
    },
    get dropped() {
      return dropped;
    },
    get seq() {
      return seq;
    },
    options,
    stop() {
      clearInterval(heartbeat);
      heartbeat = undefined;
      for (const socket of subscribers) socket.shutdown();
      subscribers.clear();
    },
  };
}
