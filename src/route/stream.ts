// One node's GET /events, kept open: reconnects with a capped backoff, and
// takes a stream that has been silent for longer than the heartbeat timeout
// for a lost one (a dead peer, a partition, a SIGSTOPped process), so the
// router never acts on an answer it can no longer confirm. The node's first
// event after each (re)connect is its state then: a resync needs nothing more.
// docs/routing.md, "Failure modes".
import type { PeerTls } from "../cluster/guard.ts";
import { createSseReader } from "./sse.ts";

/** The data of one `event: state` of a node (its /status body, listen/http/events.ts). */
export interface NodeEvent {
  seq: number;
  state: string;
  answer: string;
  reason: string;
  at: string;
  timeline: number | null;
  system_identifier: string | null;
  [field: string]: unknown;
}

export type StreamState = "connecting" | "connected" | "lost";

export interface StreamOptions {
  /** The node's http listener: http://HOST:PORT or https://HOST:PORT. */
  url: string;
  tls: PeerTls | undefined;
  /** A stream silent this long (no event, no heartbeat) is lost. */
  silenceMs: number;
  /** Every event, the first after a (re)connect included. */
  onEvent(event: NodeEvent): void;
  /** Each change of the stream's state, with why. */
  onState(state: StreamState, why: string): void;
}

export interface Stream {
  readonly state: StreamState;
  /** Ends the stream for good. */
  close(): void;
}

export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;

export function openStream(opts: StreamOptions): Stream {
  let state: StreamState = "connecting";
  let closed = false;
  let current: AbortController | undefined;
  let wake: (() => void) | undefined;
  /** Whether the connection now ending delivered an event. */
  let delivered = false;

  function setState(next: StreamState, why: string): void {
    if (next === state && next !== "lost") return;
    state = next;
    opts.onState(next, why);
  }

  /** One connection, until it ends; resolves to why it ended. */
  async function once(): Promise<string> {
    const ac = new AbortController();
    current = ac;
    let heardAt = performance.now();
    const watchdog = setInterval(
      () => {
        if (performance.now() - heardAt > opts.silenceMs) ac.abort(new Error(`silent for ${opts.silenceMs}ms`));
      },
      Math.max(5, opts.silenceMs / 4),
    );
    try {
      const res = await fetch(`${opts.url}/events`, {
        signal: ac.signal,
        redirect: "manual",
        headers: { accept: "text/event-stream" },
        ...(opts.tls && opts.url.startsWith("https:") ? { tls: opts.tls } : {}),
      });
      if (res.status !== 200 || !res.body) return `HTTP ${res.status} from /events`;
      const reader = createSseReader((e) => {
        if (e.event !== "state") return;
        const event = JSON.parse(e.data) as NodeEvent;
        delivered = true;
        setState("connected", "streaming");
        opts.onEvent(event);
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        heardAt = performance.now();
        reader.feed(decoder.decode(chunk, { stream: true }));
      }
      return "the node ended the stream";
    } catch (err) {
      const cause = ac.signal.aborted ? ac.signal.reason : err;
      return cause instanceof Error ? cause.message : String(cause);
    } finally {
      clearInterval(watchdog);
      ac.abort();
    }
  }

  void (async () => {
    let backoffMs = BACKOFF_MIN_MS;
    while (!closed) {
      delivered = false;
      const why = await once();
      if (closed) return;
      // A stream that delivered starts the backoff over.
      if (delivered) backoffMs = BACKOFF_MIN_MS;
      setState("lost", why);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, backoffMs);
      });
      backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
      if (!closed) setState("connecting", "reconnecting");
    }
  })();

  return {
    get state() {
      return state;
    },
    close() {
      closed = true;
      current?.abort(new Error("closed"));
      wake?.();
    },
  };
}
