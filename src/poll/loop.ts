// The poll loop: one connection, one query per tick under a deadline, backoff
// after a failure, LISTEN on a primary, and the stale timer. It runs on a
// thread of its own (worker.ts), so a flood of connections on the listeners'
// thread cannot hold its timers up (measured: a Bun.listen loop under 15k
// connections/s ran 10 ms timers up to 3 s late; a worker's, 7 ms).
import postgres from "postgres";
import type { DbTarget } from "./target.ts";
import { formatDuration } from "../config/config.ts";
import { bunPgSocket, type PgSocketOptions } from "./pgsocket.ts";
import { describe, POLL_QUERY } from "./facts.ts";
import { isLocal, watchPromotion, type PromoteWatch } from "./promote-watch.ts";
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS } from "./backoff.ts";

/** A NOTIFY flood must not turn into a poll flood. */
const NOTIFY_MIN_GAP_MS = 5;
/** After a promotion signal file changes (promote-watch.ts): a poll this often, for this long at most. */
const PROMOTE_POLL_MS = 2;
const PROMOTE_BURST_MS = 2000;
/**
 * Where a poll cannot be the first to see a role change, it only keeps the answer fresh: at
 * least this many polls per --stale-after (every 250 ms at the default 1 s) when --poll-interval
 * is shorter. A primary becomes a standby only through a restart, which drops the connection
 * (UNKNOWN at once); a standby whose data directory is watched is woken by its promotion. At
 * 50 ms the poll cost 0.9% of a core idle; at 250 ms 0.4-0.5% (bench/README.md, idle).
 */
const FRESH_POLLS = 4;

/** What the poll loop needs. */
export interface LoopConfig {
  target: DbTarget;
  pollIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  channel: string;
}

export type LoopTimings = Pick<LoopConfig, "pollIntervalMs" | "staleAfterMs" | "connectTimeoutMs">;

/** What the poll loop reports. Times are performance.now() of the loop's thread. */
export interface LoopHooks {
  ok(row: Record<string, unknown>, startedAt: number, durationMs: number): void;
  fail(reason: string, code: string | undefined): void;
  /** The last good poll started staleAfterMs ago and nothing newer came. */
  stale(): void;
  warn(message: string): void;
}

export interface Loop {
  retime(timings: LoopTimings): void;
  stop(): Promise<void>;
}

/** A connection as a monitor wants it; `onnotify` and `onclose` are told only while it is current. */
function connect(config: LoopConfig, onnotify: () => void, onclose: () => void): postgres.Sql {
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

/** The wait after the failures-th failure in a row: doubling from the minimum, capped, with a 20% jitter. */
function backoffMs(failures: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
  return base * (0.8 + Math.random() * 0.4);
}

/** A sleep that wake() ends early. */
function alarm(): { nap(ms: number): Promise<void>; wake(): void } {
  let wake: (() => void) | undefined;
  return {
    nap: (ms) =>
      new Promise((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      }),
    wake: () => wake?.(),
  };
}

/** The one connection and what is known of it. */
interface Session {
  /** Bumped whenever the connection is dropped, so late events of an old one are recognised and ignored. */
  readonly id: number;
  /** No poll has succeeded on this connection yet. */
  readonly fresh: boolean;
  /** Whether its server has told its system_identifier (POLL_QUERY's $1). */
  readonly knowsSystemId: boolean;
  /** The server is a primary, or a standby whose promotion the watch will tell: polls keep freshness only. */
  readonly relaxed: boolean;
  /** The connection, opened if there is none. */
  conn(): postgres.Sql;
  /** A poll succeeded on it. */
  polled(inRecovery: boolean): void;
  drop(): void;
  /** Closes it for good, waiting up to a second for the server to be told. */
  end(): Promise<void>;
}

function createSession(
  config: LoopConfig,
  hooks: LoopHooks,
  notified: () => void,
  lost: () => void,
  promoting: () => void,
): Session {
  let sql: postgres.Sql | undefined;
  let id = 0;
  let fresh = true;
  let listening = false;
  let knowsSystemId = false;
  let watcher: PromoteWatch | undefined;
  let watchTried = false;
  let watchExplained = false;
  let primary = false;

  // Tried once per connection to a standby on this host; why it cannot is said once per process.
  function watchDataDir(conn: postgres.Sql): void {
    const watchId = id;
    watchTried = true;
    const gone = () => watchId !== id;
    void watchPromotion(conn, promoting, gone, (w) => (watcher = w)).then((why) => {
      if (why === undefined || gone() || watchExplained) return;
      watchExplained = true;
      hooks.warn(`${why}; a promotion is seen at the next poll`);
    });
  }

  // Standbys cannot LISTEN ("cannot execute LISTEN during recovery"), so it is
  // only tried once per connection, on a primary. A NOTIFY only shortens the
  // wait for the next poll; it never sets the state (anyone can NOTIFY).
  function listen(conn: postgres.Sql): void {
    const listenId = id;
    listening = true;
    conn.unsafe(`listen "${config.channel}"`).catch((err: unknown) => {
      if (listenId === id)
        hooks.warn(`could not LISTEN on channel "${config.channel}": ${describe(err)}; polling only`);
    });
  }

  function forget(): postgres.Sql | undefined {
    id++;
    fresh = true;
    listening = false;
    knowsSystemId = false;
    watcher?.close();
    watcher = undefined;
    watchTried = false;
    primary = false;
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
    get relaxed() {
      return primary || watcher !== undefined;
    },
    get knowsSystemId() {
      return knowsSystemId;
    },
    conn() {
      if (sql) return sql;
      const mine = ++id;
      fresh = true;
      return (sql = connect(
        config,
        () => mine === id && notified(),
        () => mine === id && lost(),
      ));
    },
    polled(inRecovery) {
      primary = !inRecovery;
      fresh = false;
      knowsSystemId = true;
      if (!inRecovery && !listening && sql) listen(sql);
      if (inRecovery && !watchTried && sql && isLocal(config.target)) watchDataDir(sql);
    },
    drop() {
      forget()
        ?.end({ timeout: 0 })
        .catch(() => {});
    },
    async end() {
      await forget()
        ?.end({ timeout: 1 })
        .catch(() => {});
    },
  };
}

export function pollLoop(config: LoopConfig, hooks: LoopHooks): Loop {
  const session = createSession(config, hooks, poke, () => fail("connection lost", "CONNECTION_CLOSED"), promoting);
  let stopped = false;
  let failures = 0;
  let staleTimer: Timer | undefined;
  let lastPollAt = 0;
  let poked = false;
  let burstUntil = 0;
  const { nap, wake } = alarm();

  function fail(reason: string, code: string | undefined): void {
    session.drop();
    clearTimeout(staleTimer);
    failures++;
    hooks.fail(reason, code);
  }

  function poke(): void {
    poked = true;
    wake();
  }

  function promoting(): void {
    burstUntil = performance.now() + PROMOTE_BURST_MS;
    poke();
  }

  function succeed(row: Record<string, unknown>, startedAt: number): void {
    const now = performance.now();
    failures = 0;
    // Fresh until staleAfterMs after the poll *started*: the answer may be
    // that old by the time it arrives.
    clearTimeout(staleTimer);
    staleTimer = setTimeout(hooks.stale, Math.max(0, startedAt + config.staleAfterMs - now));
    if (row.in_recovery === false) burstUntil = 0;
    hooks.ok(row, startedAt, now - startedAt);
    session.polled(row.in_recovery !== false);
  }

  // One poll: connect if needed, query under a deadline. A hung server never
  // answers and server-side timeouts never fire there, hence the deadline: at
  // it the connection is dropped, the query then fails as one of an old
  // session, and the loop goes on to the backoff. Returns whether it succeeded.
  async function poll(startedAt: number): Promise<boolean> {
    const conn = session.conn();
    const id = session.id;
    const current = () => id === session.id && !stopped;
    const deadlineMs = config.staleAfterMs + (session.fresh ? config.connectTimeoutMs : 0);
    const deadline = setTimeout(() => {
      if (current()) fail(`no answer within ${formatDuration(deadlineMs)}`, "POLL_TIMEOUT");
    }, deadlineMs);
    try {
      const rows = await conn.unsafe(POLL_QUERY, [!session.knowsSystemId], { prepare: true });
      if (!current()) return false;
      succeed(rows[0]!, startedAt);
      return true;
    } catch (err) {
      if (current()) fail(describe(err), (err as { code?: string }).code);
      return false;
    } finally {
      clearTimeout(deadline);
    }
  }

  // One poll at a time, then the wait for the next tick (or the backoff after
  // a failure); a NOTIFY cuts the wait short, no closer than NOTIFY_MIN_GAP_MS.
  async function run(): Promise<void> {
    while (!stopped) {
      poked = false;
      const startedAt = performance.now();
      lastPollAt = startedAt;
      const ok = await poll(startedAt);
      if (stopped) break;
      const burst = performance.now() < burstUntil;
      const intervalMs = session.relaxed
        ? Math.max(config.pollIntervalMs, config.staleAfterMs / FRESH_POLLS)
        : config.pollIntervalMs;
      if (!ok) await nap(backoffMs(failures));
      else if (!poked) await nap(Math.max(0, startedAt + (burst ? PROMOTE_POLL_MS : intervalMs) - performance.now()));
      if (ok && poked)
        await nap(Math.max(0, lastPollAt + (burst ? PROMOTE_POLL_MS : NOTIFY_MIN_GAP_MS) - performance.now()));
    }
  }

  const running = run();

  return {
    retime(timings) {
      config.pollIntervalMs = timings.pollIntervalMs;
      config.staleAfterMs = timings.staleAfterMs;
      config.connectTimeoutMs = timings.connectTimeoutMs;
      wake();
    },
    async stop() {
      stopped = true;
      wake();
      clearTimeout(staleTimer);
      await running;
      await session.end();
    },
  };
}
