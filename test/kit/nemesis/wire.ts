// A PostgreSQL session on a plain Bun socket for the nemesis client: the
// frontend/backend protocol (PostgreSQL documentation, "Message Flow"), trust
// authentication, simple queries only. Each query says how it ended: a row (ok),
// an ErrorResponse (failed: the statement did not commit), or nothing we can
// trust (unknown: the connection went or the deadline passed after the query was
// sent, so it may have committed). A query is never cancelled: a cancel that
// lands while a commit waits for a synchronous standby makes PostgreSQL report
// success for a commit the standby never saw.
import { query, startup, TERMINATE } from "../../../bench/pgwrite.ts";

/** The fields of a DataRow message, as text (null for SQL NULL). */
function dataRow(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.toString("utf8", at, at + len));
      at += len;
    }
  }
  return out;
}

/** SQLSTATE and message of an ErrorResponse. */
function errorFields(body: Buffer): string {
  let code = "";
  let message = "";
  for (let at = 0; at < body.length && body[at] !== 0;) {
    const type = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    const value = body.toString("utf8", at + 1, end);
    if (type === "C") code = value;
    if (type === "M") message = value;
    at = end + 1;
  }
  return `${code} ${message}`;
}

export type Outcome = { ok: true; row: (string | null)[] } | { ok: false; error: string } | { ok: null; error: string };

export interface Session {
  /** Runs one statement; resolves to its outcome, never rejects. */
  query(sql: string, timeoutMs: number): Promise<Outcome>;
  readonly open: boolean;
  close(): void;
}

interface Pending {
  resolve(o: Outcome): void;
  row: (string | null)[] | undefined;
  error: string | undefined;
  timer: Timer;
}

/** Opens a session; rejects (a definite failure: nothing was sent) when it cannot get to ReadyForQuery. */
export function connectSession(
  host: string,
  port: number,
  user: string,
  database: string,
  timeoutMs: number,
): Promise<Session> {
  const { promise, resolve, reject } = Promise.withResolvers<Session>();
  let buffered = Buffer.alloc(0);
  let ready = false;
  let closed = false;
  let startupError = "";
  let pending: Pending | undefined;
  let socket: Bun.Socket | undefined;

  const settle = (o: Outcome) => {
    const p = pending;
    if (!p) return;
    pending = undefined;
    clearTimeout(p.timer);
    p.resolve(o);
  };
  const shut = (why: string) => {
    if (closed) return;
    closed = true;
    clearTimeout(connectTimer);
    socket?.end();
    if (!ready) reject(new Error(startupError || why));
    settle({ ok: null, error: why });
  };
  const connectTimer = setTimeout(() => shut("connect deadline"), timeoutMs);

  const session: Session = {
    get open() {
      return !closed;
    },
    query(sql, ms) {
      if (closed || pending) return Promise.resolve({ ok: false, error: closed ? "closed" : "busy" } as Outcome);
      const { promise: done, resolve: finish } = Promise.withResolvers<Outcome>();
      pending = { resolve: finish, row: undefined, error: undefined, timer: setTimeout(() => shut("deadline"), ms) };
      socket!.write(query(sql));
      return done;
    },
    close() {
      if (!closed && ready) socket?.write(TERMINATE);
      shut("closed");
    },
  };

  const message = (type: number, body: Buffer) => {
    if (type === 0x45) {
      // 'E'
      const e = errorFields(body);
      if (!ready) startupError = e;
      else if (pending) pending.error = e;
    } else if (type === 0x44 && pending)
      pending.row = dataRow(body); // 'D'
    else if (type === 0x5a) {
      // 'Z': ReadyForQuery
      if (!ready) {
        ready = true;
        clearTimeout(connectTimer);
        resolve(session);
      } else if (pending) {
        const p = pending;
        settle(p.error !== undefined ? { ok: false, error: p.error } : { ok: true, row: p.row ?? [] });
      }
    }
  };

  Bun.connect({
    hostname: host,
    port,
    socket: {
      open(s) {
        socket = s;
        s.write(startup(user, database, "nemesis"));
      },
      data(_, chunk) {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : Buffer.from(chunk);
        while (buffered.length >= 5) {
          const len = buffered.readInt32BE(1);
          if (buffered.length < 1 + len) break;
          const type = buffered[0]!;
          const body = buffered.subarray(5, 1 + len);
          buffered = buffered.subarray(1 + len);
          message(type, body);
        }
      },
      close: () => shut("connection closed"),
      error: (_, e) => shut(`socket error: ${e.message}`),
      connectError: (_, e) => shut(`connect failed: ${e.message}`),
    },
  }).catch((e: Error) => shut(`connect failed: ${e.message}`));
  return promise;
}
