// One write as a client would make it, on a connection of its own: the PostgreSQL
// frontend/backend protocol (PostgreSQL documentation, "Message Flow") over a plain
// Bun socket, trust authentication only. postgres.js would do, but a full client per
// attempt costs the shared cores more than the backend it talks to; this costs a
// few buffers. A write succeeds only on a primary: a standby refuses it (25006).

const PROTOCOL_3 = 196608;

/** The StartupMessage of protocol 3.0. */
export function startup(user: string, database: string, applicationName = "downtime"): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0application_name\0${applicationName}\0\0`);
  const msg = Buffer.alloc(8 + body.length);
  msg.writeInt32BE(msg.length, 0);
  msg.writeInt32BE(PROTOCOL_3, 4);
  body.copy(msg, 8);
  return msg;
}

/** A simple Query message. */
export function query(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`);
  const msg = Buffer.alloc(5 + body.length);
  msg.write("Q", 0);
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}

/** The Terminate message. */
export const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

export interface WriteTarget {
  port: number;
  user: string;
  database: string;
  /** One statement that writes, e.g. an insert. */
  sql: string;
}

/**
 * Connects to 127.0.0.1:port, runs target.sql and resolves to whether it committed; false on
 * any error, a close, or timeoutMs. Never rejects.
 */
export function writeOnce(target: WriteTarget, timeoutMs: number): Promise<boolean> {
  return writeReturning(target, timeoutMs).then((value) => value !== undefined);
}

/**
 * writeOnce, resolving to the first column of the first row the statement
 * returned ("" without one) when it committed, undefined otherwise: with
 * `RETURNING current_setting('port')` it says which node took the write.
 */
export function writeReturning(target: WriteTarget, timeoutMs: number): Promise<string | undefined> {
  const { promise, resolve: settle } = Promise.withResolvers<string | undefined>();
  let value = "";
  const resolve = (ok: boolean) => settle(ok ? value : undefined);
  let buffered = Buffer.alloc(0);
  let ready = 0;
  let failed = false;
  let settled = false;
  const finish = (ok: boolean, socket?: { end(): void }) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket?.end();
    resolve(ok);
  };
  const timer = setTimeout(() => {
    finish(false);
    conn.then((s) => s.end()).catch(() => {});
  }, timeoutMs);
  const conn = Bun.connect({
    hostname: "127.0.0.1",
    port: target.port,
    socket: {
      open(s) {
        s.write(startup(target.user, target.database));
      },
      data(s, chunk) {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : Buffer.from(chunk);
        while (buffered.length >= 5) {
          const len = buffered.readInt32BE(1);
          if (buffered.length < 1 + len) break;
          const type = buffered[0];
          // 'D': DataRow, Int16 columns, then per column Int32 length and the bytes.
          if (type === 0x44 && value === "" && buffered.readInt16BE(5) > 0) {
            const n = buffered.readInt32BE(7);
            if (n > 0) value = buffered.subarray(11, 11 + n).toString("utf8");
          }
          buffered = buffered.subarray(1 + len);
          if (type === 0x45) failed = true; // 'E': ErrorResponse
          if (type !== 0x5a) continue; // 'Z': ReadyForQuery
          if (failed) return finish(false, s);
          if (++ready === 1) s.write(query(target.sql));
          else {
            s.write(TERMINATE);
            return finish(true, s);
          }
        }
        // An error before authentication ends with a close, not a ReadyForQuery.
        if (failed && ready === 0) finish(false, s);
      },
      close() {
        finish(false);
      },
      error() {
        finish(false);
      },
      connectError() {
        finish(false);
      },
    },
  });
  conn.catch(() => finish(false));
  return promise;
}
