// The poll loop's connection: one postgres.js connection set up as a monitor
// wants it, LISTEN on a primary, and what is known of the server it is to.
import { existsSync } from "node:fs";
import postgres from "postgres";
import type { DbTarget } from "./target.ts";
import { bunPgSocket, type PgSocketOptions } from "./pgsocket.ts";
import { describe } from "./facts.ts";

/** What a connection needs; read again at each connect, so a reload applies to the next one. */
export interface SessionConfig {
  target: DbTarget;
  connectTimeoutMs: number;
  channel: string;
}

/** What the session tells; `notified` and `lost` only of the current connection. */
export interface SessionEvents {
  notified(): void;
  lost(): void;
  warn(message: string): void;
}

/** A connection as a monitor wants it; `onnotify` and `onclose` are told only while it is current. */
function connect(config: SessionConfig, onnotify: () => void, onclose: () => void): postgres.Sql {
  const { target } = config;
  // onnotify, onclose and socket are read by postgres.js but missing from its types.
  const options: postgres.Options<{}> & { onnotify(): void; onclose(): void } = {
    host: target.host,
    port: target.port,
    user: target.user,
    database: target.database,
    ...(target.password !== undefined && { password: target.password }),
    ...(target.sslmode !== undefined && {
      ssl: target.sslmode === "disable" ? false : (target.sslmode as "require"),
    }),
    max: 1,
    // postgres.js defaults that are wrong for a monitor (ARCHITECTURE.md):
    // no recycling of the connection, no 30 s connect wait, no notices on stdout.
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: config.connectTimeoutMs / 1000,
    fetch_types: false,
    onnotice: () => {},
    onnotify,
    onclose,
    connection: { application_name: "replstatus" },
    // Bun's own sockets under postgres.js, unless TLS is asked for (pgsocket.ts).
    ...((target.sslmode === undefined || target.sslmode === "disable") && {
      socket: (o: PgSocketOptions) => bunPgSocket(o),
    }),
  };
  return postgres(options);
}

/** The one connection and what is known of it. */
export interface Session {
  /** Bumped whenever the connection is dropped, so late events of an old one are recognised and ignored. */
  readonly id: number;
  /** No poll has succeeded on this connection yet. */
  readonly fresh: boolean;
  /** Whether its server has told its system_identifier (POLL_QUERY's $1). */
  readonly knowsSystemId: boolean;
  /** Whether a connection is open (or opening). */
  readonly connected: boolean;
  /**
   * Before a connection is opened to a unix socket: the error it would fail
   * with when the socket file is missing (the server is down), found without
   * a connection (a stat, where a failed connection costs about 1 ms of CPU).
   */
  missingSocket(): Error | undefined;
  /** The connection, opened if there is none. */
  conn(): postgres.Sql;
  /** A poll succeeded on it. */
  polled(inRecovery: boolean): void;
  drop(): void;
  /** Closes it for good: Terminate if it is idle, a poll in flight cut off; never waits on the server. */
  end(): Promise<void>;
}

export function createSession(config: SessionConfig, events: SessionEvents): Session {
  let sql: postgres.Sql | undefined;
  let id = 0;
  let fresh = true;
  let listening = false;
  let knowsSystemId = false;

  // Standbys cannot LISTEN ("cannot execute LISTEN during recovery"), so it is
  // only tried once per connection, on a primary. A NOTIFY only shortens the
  // wait for the next poll; it never sets the state (anyone can NOTIFY).
  function listen(conn: postgres.Sql): void {
    const listenId = id;
    listening = true;
    conn.unsafe(`listen "${config.channel}"`).catch((err: unknown) => {
      if (listenId === id)
        events.warn(`could not LISTEN on channel "${config.channel}": ${describe(err)}; polling only`);
    });
  }

  function forget(): postgres.Sql | undefined {
    id++;
    fresh = true;
    listening = false;
    knowsSystemId = false;
    const old = sql;
    sql = undefined;
    return old;
  }

  return {
    get id() {
      return id;
    },
    get fresh() {
      return fresh;
    },
    get knowsSystemId() {
      return knowsSystemId;
    },
    get connected() {
      return sql !== undefined;
    },
    missingSocket() {
      const { host, port } = config.target;
      const path = `${host}/.s.PGSQL.${port}`;
      if (sql || !host.startsWith("/") || existsSync(path)) return undefined;
      return Object.assign(new Error(`connect ENOENT ${path}`), { code: "ENOENT", address: path });
    },
    conn() {
      if (sql) return sql;
      const mine = ++id;
      fresh = true;
      return (sql = connect(
        config,
        () => mine === id && events.notified(),
        () => mine === id && events.lost(),
      ));
    },
    polled(inRecovery) {
      fresh = false;
      knowsSystemId = true;
      if (!inRecovery && !listening && sql) listen(sql);
    },
    drop() {
      forget()
        ?.end({ timeout: 0 })
        .catch(() => {});
    },
    async end() {
      await forget()
        ?.end({ timeout: 0 })
        .catch(() => {});
    },
  };
}
