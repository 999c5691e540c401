// The poll loop's connection: one postgres.js connection set up as a monitor
// wants it, with the settings libpq would use (connect.ts, read afresh before
// each attempt), LISTEN on a primary, and what is known of the server it is to.
import { existsSync } from "node:fs";
import postgres from "postgres";
import type { DbTarget } from "../target.ts";
import type { Postmaster } from "./postmaster.ts";
import { planConnection, type ConnectPlan, type TlsState } from "./connect.ts";
import { bunPgSocket, type PgSocketOptions } from "./pgsocket.ts";
import { describe } from "../facts.ts";
import type { Settings } from "./libpq/settings.ts";

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

/** connect_timeout from the connection settings, else --connect-timeout. */
export function connectTimeoutOf(config: SessionConfig, plan: ConnectPlan | undefined): number {
  return plan?.settings.connectTimeoutMs ?? config.connectTimeoutMs;
}

/**
 * For a unix socket: the error a connection would fail with when the socket
 * file is missing (the server is down), found without a connection (a stat,
 * where a failed connection costs about 1 ms of CPU).
 */
function missingSocket(s: Settings): Error | undefined {
  const path = `${s.connectHost}/.s.PGSQL.${s.port}`;
  if (!s.unixSocket || existsSync(path)) return undefined;
  return Object.assign(new Error(`connect ENOENT ${path}`), { code: "ENOENT", address: path });
}

/** A connection as a monitor wants it; `onnotify` and `onclose` are told only while it is current. */
function connect(config: SessionConfig, plan: ConnectPlan, onnotify: () => void, onclose: () => void): postgres.Sql {
  const s = plan.settings;
  // onnotify, onclose and socket are read by postgres.js but missing from its types.
  const options: postgres.Options<{}> & { onnotify(): void; onclose(): void } = {
    host: s.connectHost,
    port: s.port,
    user: s.user,
    database: s.dbname,
    // No password found: an empty one, which a server that wants one refuses (28P01).
    password: s.password ?? "",
    ssl: plan.ssl as postgres.Options<{}>["ssl"],
    max: 1,
    // postgres.js defaults that are wrong for a monitor (ARCHITECTURE.md):
    // no recycling of the connection, no 30 s connect wait, no notices on stdout.
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: connectTimeoutOf(config, plan) / 1000,
    fetch_types: false,
    onnotice: () => {},
    onnotify,
    onclose,
    connection: { application_name: s.applicationName },
    // Bun's own sockets under postgres.js, unless TLS is used (pgsocket.ts).
    ...(plan.ssl === false && { socket: (o: PgSocketOptions) => bunPgSocket(o) }),
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
  /** The settings of the last connection attempt (connect.ts); undefined before the first. */
  readonly plan: ConnectPlan | undefined;
  /**
   * Unless a connection is open: reads the settings and files for the next
   * one afresh, and aims the postmaster.pid watch at their server. Returns the error the attempt
   * fails with before any connection (a bad file, a setting that cannot work,
   * a missing socket file), or undefined to go on.
   */
  prepare(): Promise<Error | undefined>;
  /** The connection, opened (after prepare) if there is none. */
  conn(): postgres.Sql;
  /** A poll succeeded on it; `toldSystemId`: its row (and so its system_id) was handed on. */
  polled(inRecovery: boolean, toldSystemId: boolean): void;
  /**
   * A second connection with the same settings, closed as soon as the server
   * lets it in: the error it failed with (57P03 once a shutdown, a smart one
   * too, has begun), or undefined. Costs the server a fork each time.
   */
  knock(): Promise<Error | undefined>;
  drop(): void;
  /** Closes it for good: Terminate if it is idle, a poll in flight cut off; never waits on the server. */
  end(): Promise<void>;
}

/** `pm` is told the server (host or hostaddr, and port) of each attempt's settings. */
export function createSession(config: SessionConfig, pm: Pick<Postmaster, "aim">, events: SessionEvents): Session {
  let sql: postgres.Sql | undefined;
  let id = 0;
  let fresh = true;
  let listening = false;
  let knowsSystemId = false;
  let plan: ConnectPlan | undefined;
  const tls: TlsState = { allowTls: false, offered: undefined };
  /** File warnings (a world-readable .pgpass) already told: once each. */
  const warned = new Set<string>();

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
    get plan() {
      return plan;
    },
    // The files are read at every attempt, as libpq does: a fixed .pgpass or
    // certificate is picked up at the next one.
    async prepare() {
      if (sql) return undefined;
      try {
        plan = await planConnection(config.target, config.connectTimeoutMs, tls);
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
      for (const w of plan.settings.warnings) {
        if (!warned.has(w)) events.warn(w);
        warned.add(w);
      }
      pm.aim(plan.settings.connectHost, plan.settings.port);
      return missingSocket(plan.settings);
    },
    conn() {
      if (sql) return sql;
      const mine = ++id;
      fresh = true;
      return (sql = connect(
        config,
        plan!,
        () => mine === id && events.notified(),
        () => mine === id && events.lost(),
      ));
    },
    polled(inRecovery, toldSystemId) {
      fresh = false;
      if (toldSystemId) knowsSystemId = true;
      if (!inRecovery && !listening && sql) listen(sql);
    },
    async knock() {
      if (!plan) return undefined;
      const door = connect(
        config,
        plan,
        () => {},
        () => {},
      );
      let timer: Timer | undefined;
      const timeoutMs = connectTimeoutOf(config, plan);
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error("no answer"), { code: "POLL_TIMEOUT" })), timeoutMs);
      });
      try {
        // An empty query: the least a connection can be asked (postgres.js's reserve() never resolves on a new one).
        await Promise.race([door.unsafe(""), late]);
        return undefined;
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      } finally {
        clearTimeout(timer);
        await door.end({ timeout: 0 }).catch(() => {});
      }
    },
    drop() {
      if (fresh) {
        // sslmode=allow: without TLS failed, so with it (or the other way round).
        if (plan?.settings.sslmode === "allow") tls.allowTls = !tls.allowTls;
        tls.offered = undefined;
      }
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
