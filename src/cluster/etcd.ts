// A mirror of one etcd v3 key prefix, kept through etcd's v3 JSON gateway with fetch (the gateway Patroni 3.0 talks
// to): range, then the watch stream, with a lease heartbeat that notices a partitioned etcd. Never patched across a
// gap: a failure starts over with a fresh range. ARCHITECTURE.md, "The cluster view".
import type { Logger } from "../log.ts";
import { ReplstatusError } from "../errors.ts";

export interface EtcdTls {
  /** PEM contents, read once at start. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface EtcdClientOptions {
  /** Base URLs, http(s)://host:port; tried in turn. */
  urls: string[];
  username?: string;
  password?: string;
  tls?: EtcdTls;
}

export interface KeyValue {
  value: string;
  modRevision: number;
  /** Lease id as etcd prints it (a 64-bit decimal), "0" for none. */
  lease: string;
}

export interface MirrorOptions extends EtcdClientOptions {
  /** The prefix mirrored, ending in "/". */
  prefix: string;
  /** Key (under the prefix) whose lease is asked for its time to live: "leader". */
  leaseKey: string;
  heartbeatMs: number;
  /** Deadline of a range, an authentication or a heartbeat. */
  timeoutMs: number;
  log: Logger;
  /** After every change of the mirror, and of contact. */
  onChange(): void;
}

export interface Mirror {
  /** Keys below the prefix, without it. Valid as of the last contact. */
  readonly kvs: ReadonlyMap<string, KeyValue>;
  /** Date.now() of the last answer from etcd; 0 before the first. */
  readonly contactAt: number;
  /** Whether the watch stream is up now. */
  readonly connected: boolean;
  /** Seconds the lease of leaseKey had left at contactAt (undefined: no such key or not asked yet). */
  readonly leaseTtlS: number | undefined;
  /** Why it is not connected, when it is not. */
  readonly reason: string;
  /** The URL in use, or last tried. */
  readonly url: string;
  stop(): void;
}

export const ETCD_BACKOFF_MIN_MS = 100;
export const ETCD_BACKOFF_MAX_MS = 2000;

const enc = (text: string) => Buffer.from(text, "utf8").toString("base64");
const dec = (text: string | undefined) => (text === undefined ? "" : Buffer.from(text, "base64").toString("utf8"));

/** The key just past every key with this prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, "utf8");
  b[b.length - 1]!++;
  return b.toString("base64");
}

interface RawKv {
  key?: string;
  value?: string;
  mod_revision?: string;
  lease?: string;
}

/** One etcd as a session talks to it: the URL in use, the auth token, TLS, a call's deadline. */
interface Endpoint {
  url: string;
  token: string | undefined;
  tls: EtcdTls | undefined;
  timeoutMs: number;
}

function post(ep: Endpoint, path: string, body: unknown, signal: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (ep.token) headers.authorization = ep.token;
  return fetch(`${ep.url}/v3/${path}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal,
    ...(ep.tls && { tls: ep.tls }),
  });
}

async function call(ep: Endpoint, path: string, body: unknown, signal: AbortSignal): Promise<Record<string, unknown>> {
  const res = await post(ep, path, body, AbortSignal.any([signal, AbortSignal.timeout(ep.timeoutMs)]));
  const text = await res.text();
  if (!res.ok) throw new ReplstatusError("ETCD_REQUEST", `${path}: HTTP ${res.status}: ${oneLine(text).slice(0, 200)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

interface WatchResult {
  canceled?: boolean;
  compact_revision?: string;
  events?: { type?: string; kv?: RawKv }[];
}

/**
 * The watch stream: newline-separated JSON objects, each {result} or
 * {error}. `onResult` returns why to stop, or undefined to go on; the
 * promise resolves to why the stream ended.
 */
async function readWatch(
  body: ReadableStream<Uint8Array>,
  onResult: (r: WatchResult) => string | undefined,
): Promise<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === "") continue;
      const msg = JSON.parse(line) as { result?: WatchResult; error?: { message?: string } };
      if (msg.error) return `watch: ${msg.error.message ?? "error"}`;
      const stop = msg.result && onResult(msg.result);
      if (stop !== undefined) return stop;
    }
  }
  return "watch stream closed by etcd";
}

/** The mirrored keys and what is known of etcd, shared by the sessions of one mirror. */
interface MirrorState {
  kvs: Map<string, KeyValue>;
  contactAt: number;
  leaseTtlS: number | undefined;
}

function apply(state: MirrorState, opts: MirrorOptions, kv: RawKv, deleted: boolean): void {
  const key = dec(kv.key);
  if (!key.startsWith(opts.prefix)) return;
  const name = key.slice(opts.prefix.length);
  if (deleted) state.kvs.delete(name);
  else state.kvs.set(name, { value: dec(kv.value), modRevision: Number(kv.mod_revision ?? 0), lease: kv.lease ?? "0" });
  if (name === opts.leaseKey) state.leaseTtlS = undefined;
}

async function heartbeat(ep: Endpoint, state: MirrorState, opts: MirrorOptions, signal: AbortSignal): Promise<void> {
  const lease = state.kvs.get(opts.leaseKey)?.lease;
  if (lease && lease !== "0") {
    const r = (await call(ep, "lease/timetolive", { ID: lease }, signal)) as { TTL?: string };
    state.leaseTtlS = Math.max(0, Number(r.TTL ?? -1));
  } else {
    await call(ep, "kv/range", { key: enc(opts.prefix + opts.leaseKey), count_only: true }, signal);
    state.leaseTtlS = undefined;
  }
  state.contactAt = Date.now();
}

/**
 * One session on one etcd: (authenticate,) range, then the watch stream
 * under a heartbeat. `up` is called once the range is in. Resolves to why it
 * ended; throws on a failed call.
 */
async function session(
  ep: Endpoint,
  state: MirrorState,
  opts: MirrorOptions,
  ctl: AbortController,
  up: () => void,
): Promise<string> {
  const { signal } = ctl;
  const { prefix } = opts;
  if (opts.username !== undefined && opts.password !== undefined) {
    ep.token = undefined;
    const auth = await call(ep, "auth/authenticate", { name: opts.username, password: opts.password }, signal);
    ep.token = auth.token as string | undefined;
  }
  const r = (await call(ep, "kv/range", { key: enc(prefix), range_end: prefixEnd(prefix) }, signal)) as {
    header?: { revision?: string };
    kvs?: RawKv[];
  };
  state.kvs.clear();
  for (const kv of r.kvs ?? []) apply(state, opts, kv, false);
  await heartbeat(ep, state, opts, signal);
  up();
  // The heartbeat ends the session by aborting the stream.
  let beatError = "";
  const beats = setInterval(() => {
    heartbeat(ep, state, opts, signal).catch((err: unknown) => {
      if (signal.aborted) return;
      beatError = `no answer to a heartbeat: ${describe(err)}`;
      ctl.abort();
    });
  }, opts.heartbeatMs);
  try {
    const start = String(Number(r.header?.revision ?? 0) + 1);
    const res = await post(
      ep,
      "watch",
      { create_request: { key: enc(prefix), range_end: prefixEnd(prefix), start_revision: start } },
      signal,
    );
    if (!res.ok || !res.body) return `watch: HTTP ${res.status}`;
    return await readWatch(res.body, (result) => {
      state.contactAt = Date.now();
      if (result.canceled) return `watch canceled${result.compact_revision ? " (compacted)" : ""}`;
      if (!result.events?.length) return undefined;
      for (const e of result.events) if (e.kv) apply(state, opts, e.kv, e.type === "DELETE");
      opts.onChange();
      return undefined;
    });
  } catch (err) {
    if (beatError) return beatError;
    throw err;
  } finally {
    clearInterval(beats);
    ctl.abort();
  }
}

export function startMirror(opts: MirrorOptions): Mirror {
  const state: MirrorState = { kvs: new Map(), contactAt: 0, leaseTtlS: undefined };
  let connected = false;
  let reason = "not connected yet";
  let logged = "";
  let urlIndex = 0;
  let failures = 0;
  let stopped = false;
  let current: AbortController | undefined;
  let wake: (() => void) | undefined;
  const { prefix, log } = opts;
  const tls = opts.tls && (opts.tls.ca || opts.tls.cert) ? opts.tls : undefined;
  const url = () => opts.urls[urlIndex % opts.urls.length]!;

  function up(): void {
    connected = true;
    failures = 0;
    if (logged !== "") log.info(`etcd: watching ${prefix} on ${url()} again`);
    logged = "";
    reason = "";
    opts.onChange();
  }

  function backoffMs(): number {
    const base = Math.min(ETCD_BACKOFF_MAX_MS, ETCD_BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
    return base * (0.8 + Math.random() * 0.4);
  }

  // Sessions one after the other, each on the next URL after a failure.
  async function run(): Promise<void> {
    while (!stopped) {
      let why: string;
      const ep: Endpoint = { url: url(), token: undefined, tls, timeoutMs: opts.timeoutMs };
      try {
        why = await session(ep, state, opts, (current = new AbortController()), up);
      } catch (err) {
        why = describe(err);
      }
      if (stopped) break;
      connected = false;
      reason = `${url()}: ${why}`;
      // Logged once per change of reason, not per retry.
      if (why !== logged) {
        logged = why;
        log.warning(
          `etcd: lost the watch on ${prefix} at ${url()}: ${why} (retrying across ${opts.urls.length} host(s) every ${ETCD_BACKOFF_MIN_MS}ms..${ETCD_BACKOFF_MAX_MS}ms)`,
        );
      }
      opts.onChange();
      failures++;
      urlIndex++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoffMs());
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  void run();

  return {
    kvs: state.kvs,
    get contactAt() {
      return state.contactAt;
    },
    get connected() {
      return connected;
    },
    get leaseTtlS() {
      return state.leaseTtlS;
    },
    get reason() {
      return reason;
    },
    get url() {
      return url();
    },
    stop() {
      stopped = true;
      current?.abort();
      wake?.();
    },
  };
}

function describe(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === "TimeoutError") return "timed out";
  if (e.code === "ConnectionRefused" || e.code === "ECONNREFUSED") return "connection refused";
  if (e.code === "ECONNRESET" || e.code === "ConnectionClosed") return "connection lost";
  return oneLine(e.message ?? String(err));
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
