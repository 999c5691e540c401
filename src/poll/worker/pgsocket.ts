// The poller's transport: a Bun.connect socket dressed as the small part of node:net's Socket that postgres.js uses,
// so the driver does the protocol and Bun's native sockets carry the bytes; TLS still goes through node:tls.
// ARCHITECTURE.md, "The poll".
import type { Socket } from "bun";

/** An event callback; `listener` is the original of a once() wrapper, as in node:events. */
type EventFn = ((...args: any[]) => void) & { listener?: EventFn };

/** What postgres.js calls on a socket (postgres 3.4's src/connection.js). */
export interface PgSocket {
  readyState: "opening" | "open" | "closed";
  write(data: Uint8Array, callback?: () => void): boolean;
  end(data?: Uint8Array): void;
  destroy(error?: Error): void;
  setKeepAlive(enable?: boolean, initialDelayMs?: number): void;
  pause(): void;
  resume(): void;
  on(event: string, fn: EventFn): PgSocket;
  once(event: string, fn: EventFn): PgSocket;
  removeListener(event: string, fn: EventFn): PgSocket;
  removeAllListeners(event?: string): PgSocket;
}

/** The parsed options postgres.js passes to its `socket` factory. */
export interface PgSocketOptions {
  host: string[];
  port: number[];
  /** The unix socket file, when the host is a directory. */
  path?: string | false;
}

/** The little of node:events that postgres.js uses. */
function events() {
  const listeners = new Map<string, EventFn[]>();
  const off = (event: string, fn: EventFn) => {
    const fns = listeners.get(event);
    const i = fns ? fns.findIndex((f) => f === fn || f.listener === fn) : -1;
    if (i >= 0) fns!.splice(i, 1);
  };
  const on = (event: string, fn: EventFn) => {
    const fns = listeners.get(event);
    if (fns) fns.push(fn);
    else listeners.set(event, [fn]);
  };
  return {
    on,
    off,
    once(event: string, fn: EventFn): void {
      const wrapper: EventFn = (...args) => {
        off(event, wrapper);
        fn(...args);
      };
      wrapper.listener = fn;
      on(event, wrapper);
    },
    clear(event?: string): void {
      if (event === undefined) listeners.clear();
      else listeners.delete(event);
    },
    emit(event: string, ...args: unknown[]): void {
      const fns = listeners.get(event);
      if (!fns) return;
      for (const fn of fns.slice()) fn(...args);
    },
  };
}

// Bun's write is unbuffered: what the kernel does not take now is kept and
// written on drain, in order, as node:net would.
function outbox() {
  let pending: Uint8Array[] = [];
  let endAfterFlush = false;
  return {
    push(data: Uint8Array): void {
      pending.push(data);
    },
    /** Ends the socket once everything is written. */
    endAfterFlush(): void {
      endAfterFlush = true;
    },
    clear(): void {
      pending = [];
    },
    /** Writes what the kernel takes; whether everything went. */
    flush(socket: Socket<undefined>): boolean {
      while (pending.length > 0) {
        const chunk = pending[0]!;
        const n = socket.write(chunk);
        if (n < chunk.byteLength) {
          pending[0] = chunk.subarray(Math.max(0, n));
          return false;
        }
        pending.shift();
      }
      if (endAfterFlush) socket.end();
      return true;
    },
  };
}

// Bun says only "Failed to connect"; the logs want node's "connect ECONNREFUSED 127.0.0.1:5432".
function connectFailure(error: Error, host: string, port: number, path: string | false | undefined): Error {
  const code = (error as { code?: string }).code ?? "ECONNECT";
  const where = path || `${host}:${port}`;
  return Object.assign(new Error(`connect ${code} ${where}`), {
    code,
    syscall: "connect",
    address: path || host,
    ...(!path && { port }),
  });
}

/**
 * postgres.js takes a socket from this factory already connecting: it writes
 * its startup message at once, which waits here until the connection is open.
 */
export function bunPgSocket(options: PgSocketOptions): PgSocket {
  const ev = events();
  const out = outbox();
  const host = options.host[0] ?? "localhost";
  const port = options.port[0] ?? 5432;
  let socket: Socket<undefined> | undefined;
  let closed = false;

  // Told on later turns of the event loop, as node:net does: a failed connect
  // can be known before postgres.js has attached its listeners (it does so
  // after the factory returns), and "close" must come after the queries that
  // "error" rejected have been told, or the error's text would be lost.
  function close(error?: Error): void {
    if (closed) return;
    closed = true;
    self.readyState = "closed";
    setImmediate(() => {
      if (error) ev.emit("error", error);
      setImmediate(() => ev.emit("close", error !== undefined));
    });
  }

  const handler = {
    open(s: Socket<undefined>) {
      socket = s;
      self.readyState = "open";
      out.flush(s);
      ev.emit("connect");
    },
    data: (_s: Socket<undefined>, chunk: Buffer) => ev.emit("data", chunk),
    drain(s: Socket<undefined>) {
      if (out.flush(s)) ev.emit("drain");
    },
    close: (_s: Socket<undefined>, error?: Error) => close(error),
    end(s: Socket<undefined>) {
      // The server closed its side (after a FATAL, or at shutdown): so do we.
      s.end();
    },
    error: (_s: Socket<undefined>, error: Error) => close(error),
    connectError(_s: Socket<undefined>, error: Error) {
      close(connectFailure(error, host, port, options.path));
    },
  };

  const self: PgSocket = {
    readyState: "opening",
    write(data, callback) {
      out.push(data);
      const done = socket ? out.flush(socket) : false;
      callback?.();
      return done;
    },
    end(data) {
      if (data) out.push(data);
      out.endAfterFlush();
      if (socket) out.flush(socket);
    },
    destroy(error) {
      out.clear();
      socket?.terminate();
      close(error);
    },
    setKeepAlive(enable, initialDelayMs) {
      socket?.setKeepAlive(enable, initialDelayMs);
    },
    pause() {
      socket?.pause();
    },
    resume() {
      socket?.resume();
    },
    on(event, fn) {
      ev.on(event, fn);
      return self;
    },
    once(event, fn) {
      ev.once(event, fn);
      return self;
    },
    removeListener(event, fn) {
      ev.off(event, fn);
      return self;
    },
    removeAllListeners(event) {
      ev.clear(event);
      return self;
    },
  };
  const target = options.path ? { unix: options.path, socket: handler } : { hostname: host, port, socket: handler };
  Bun.connect(target as Parameters<typeof Bun.connect>[0]).catch((error: Error) =>
    close(connectFailure(error, host, port, options.path)),
  );
  return self;
}
