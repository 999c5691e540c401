// The role source: one PostgreSQL connection, one query per tick, and the
// freshness rule that turns silence into UNKNOWN. It never says primary unless
// a poll that started less than staleAfterMs ago saw pg_is_in_recovery() false.
import postgres from "postgres";
import type { DbTarget } from "./db.ts";
import type { Logger } from "./log.ts";
import { formatDuration } from "./config.ts";
import type { LagJudge } from "./lag.ts";
import { bunPgSocket, type PgSocketOptions } from "./pgsocket.ts";
import { LAGGING, PRIMARY, STANDBY, UNKNOWN, type Status } from "./states.ts";

/** What the last successful poll saw. Lag facts are null on a primary. */
export interface PollFacts {
  inRecovery: boolean;
  /** pg_stat_wal_receiver.pid: null when no WAL receiver runs (a primary, or a standby not fed by streaming). */
  receiverPid: number | null;
  /** pg_stat_wal_receiver.status; null without pg_read_all_stats (while receiverPid is set) or with no receiver. */
  receiverStatus: string | null;
  /** Bytes between the primary's last reported position and our replay position, at least 0. */
  lagBytes: number | null;
  /** Seconds since the last replayed transaction's commit. */
  replayAgeSeconds: number | null;
  /** pg_control_system().system_identifier, as text: it is a 64-bit number. */
  systemId: string | null;
  /**
   * On a primary the timeline it writes WAL on; on a standby the timeline of
   * the WAL it last received (without pg_read_all_stats: of its last restartpoint).
   */
  timeline: number | null;
  /** performance.now() when the poll started. */
  startedAt: number;
  durationMs: number;
}

// One round trip a tick. The receiver columns need pg_read_all_stats (e.g.
// pg_monitor); without it they are null but for the pid, and the role is still
// right. latest_end_lsn is the primary's WAL end as last reported by its WAL
// sender, so the difference is the replay lag against the primary. It stays
// null until the sender's first message after a (re)connect, which on an idle
// primary is a keepalive up to wal_sender_timeout / 2 later; until then the
// receiver's own flushed position is the best known end.
//
// The timeline (section 8 of the design, the split-brain guard): on a primary,
// the first 8 hex digits of the name of the WAL segment it writes, which since
// PostgreSQL 15 is named after the insertion timeline (pg_walfile_name() uses
// GetWALInsertionTimeLine()), so it is the new timeline from the moment a
// promotion ends. pg_control_checkpoint().timeline_id would not do: it is the
// last checkpoint's, and stays on the old timeline until the first checkpoint
// after promotion. pg_walfile_name() refuses to run in recovery, hence the
// case. On a standby, received_tli, else (no pg_read_all_stats) the last
// restartpoint's, read from pg_control only then: an uncorrelated subquery is
// an initplan, run only when coalesce() gets to it. system_identifier is read
// from pg_control too (open, read and CRC of global/pg_control: it made the
// poll about 45 us slower), so only when $1 asks for it, on the first poll of
// a connection: it cannot change while the server runs, and a rebuilt node
// restarts its server, which drops the connection. Every one of these
// functions is executable by PUBLIC.
export const POLL_QUERY = `select r.in_recovery,
  w.pid as receiver_pid,
  w.status as receiver_status,
  pg_wal_lsn_diff(coalesce(w.latest_end_lsn, w.flushed_lsn), pg_last_wal_replay_lsn())::float8 as lag_bytes,
  extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as replay_age_s,
  case when $1::bool then (select system_identifier from pg_control_system())::text end as system_id,
  case when r.in_recovery
    then coalesce(w.received_tli, (select timeline_id from pg_control_checkpoint()))
    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
  end as timeline
from (select pg_is_in_recovery() as in_recovery) as r left join pg_stat_wal_receiver w on true`;

export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
/** A NOTIFY flood must not turn into a poll flood. */
const NOTIFY_MIN_GAP_MS = 5;
const CONNECTION_LOST = { code: "CONNECTION_CLOSED" };

export interface PollerOptions {
  target: DbTarget;
  pollIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  channel: string;
  status: Status;
  lag: LagJudge;
  log: Logger;
  /** Called with every successful poll's facts, before the state is set. */
  onFacts?: (facts: PollFacts) => void;
  /** Told of every poll's duration and of every failure (metrics.ts). */
  observer?: { observePoll(durationMs: number): void; pollError(err: unknown): void };
}

export interface Poller {
  readonly facts: PollFacts | undefined;
  /** Polls that failed since the last success (0 when healthy). */
  readonly failures: number;
  /** Applies new timings from the next poll on (a reload). */
  retime(timings: Pick<PollerOptions, "pollIntervalMs" | "staleAfterMs" | "connectTimeoutMs">): void;
  stop(): Promise<void>;
}

export function startPoller(opts: PollerOptions): Poller {
  const { target, status, log } = opts;
  let sql: postgres.Sql | undefined;
  // Bumped whenever a connection is dropped, so late events of an old
  // connection (close, notify, a rejected query) are recognised and ignored.
  let session = 0;
  let fresh = true;
  let listening = false;
  let stopped = false;
  let failures = 0;
  // Reasons already logged in this outage: a flapping reason is logged once.
  const logged = new Set<string>();
  let facts: PollFacts | undefined;
  /** Of the server this connection is to; read once per connection (POLL_QUERY). */
  let systemId: string | null = null;
  let staleTimer: Timer | undefined;
  let lastPollAt = 0;
  let poked = false;
  let wake: (() => void) | undefined;

  function open(): postgres.Sql {
    const id = ++session;
    fresh = true;
    // onnotify and onclose are read by postgres.js but missing from its types.
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
      // postgres.js defaults that are wrong for a monitor (DESIGN.md section 7):
      // no recycling of the connection, no 30 s connect wait, no notices on stdout.
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: opts.connectTimeoutMs / 1000,
      fetch_types: false,
      onnotice: () => {},
      onnotify: () => id === session && poke(),
      onclose: () => {
        if (id !== session) return;
        opts.observer?.pollError(CONNECTION_LOST);
        fail("connection lost");
      },
      connection: { application_name: "replstatus" },
      // Bun's own sockets under postgres.js, unless TLS is asked for (pgsocket.ts).
      ...((target.sslmode === undefined || target.sslmode === "disable") && {
        socket: (o: PgSocketOptions) => bunPgSocket(o),
      }),
    };
    return postgres(options);
  }

  function drop(): void {
    session++;
    listening = false;
    systemId = null;
    const old = sql;
    sql = undefined;
    old?.end({ timeout: 0 }).catch(() => {});
  }

  function fail(reason: string): void {
    drop();
    clearTimeout(staleTimer);
    failures++;
    opts.lag.reset();
    status.set(UNKNOWN, reason);
    if (!logged.has(reason)) {
      logged.add(reason);
      log.warning(
        `poll failed: ${reason} (retrying every ${formatDuration(BACKOFF_MIN_MS)}..${formatDuration(BACKOFF_MAX_MS)})`,
      );
    }
  }

  function succeed(row: Record<string, unknown>, startedAt: number): void {
    const now = performance.now();
    const lagBytes = (row.lag_bytes as number | null) ?? null;
    facts = {
      inRecovery: row.in_recovery === true,
      receiverPid: (row.receiver_pid as number | null) ?? null,
      receiverStatus: (row.receiver_status as string | null) ?? null,
      // latest_end_lsn only moves with the sender's messages: replay can be past it.
      lagBytes: lagBytes === null ? null : Math.max(0, lagBytes),
      replayAgeSeconds: (row.replay_age_s as number | null) ?? null,
      systemId: (systemId ??= (row.system_id as string | null) ?? null),
      timeline: (row.timeline as number | null) ?? null,
      startedAt,
      durationMs: now - startedAt,
    };
    // Fresh until staleAfterMs after the poll *started*: the answer may be
    // that old by the time it arrives.
    opts.observer?.observePoll(facts.durationMs);
    clearTimeout(staleTimer);
    staleTimer = setTimeout(onStale, Math.max(0, startedAt + opts.staleAfterMs - now));
    failures = 0;
    logged.clear();
    opts.onFacts?.(facts);
    const from = status.polled;
    if (facts.inRecovery) {
      const verdict = opts.lag.judge(facts, from === STANDBY, Date.now());
      if (verdict.lagging) status.set(LAGGING, verdict.reason);
      else status.set(STANDBY, from === PRIMARY ? "now in recovery" : from === LAGGING ? verdict.reason : "poll ok");
    } else {
      opts.lag.reset();
      status.set(PRIMARY, from === STANDBY || from === LAGGING ? "promoted" : "poll ok");
    }
    if (status.polled === PRIMARY && !listening && sql) listen(sql);
  }

  // Standbys cannot LISTEN ("cannot execute LISTEN during recovery"), so it is
  // only tried once per connection, on a primary. A NOTIFY only shortens the
  // wait for the next poll; it never sets the state (anyone can NOTIFY).
  function listen(conn: postgres.Sql): void {
    const id = session;
    listening = true;
    conn.unsafe(`listen "${opts.channel}"`).catch((err: unknown) => {
      if (id === session) log.warning(`could not LISTEN on channel "${opts.channel}": ${describe(err)}; polling only`);
    });
  }

  function onStale(): void {
    opts.lag.reset();
    status.set(UNKNOWN, `no successful poll for ${formatDuration(opts.staleAfterMs)}`);
  }

  function poke(): void {
    poked = true;
    wake?.();
  }

  function nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  function backoffMs(): number {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
    return base * (0.8 + Math.random() * 0.4);
  }

  // One poll at a time: connect if needed, query under a deadline, then wait
  // for the next tick (or the backoff after a failure). A hung server never
  // answers and server-side timeouts never fire there, hence the deadline.
  async function run(): Promise<void> {
    while (!stopped) {
      poked = false;
      const startedAt = performance.now();
      lastPollAt = startedAt;
      const conn = (sql ??= open());
      const id = session;
      const deadlineMs = opts.staleAfterMs + (fresh ? opts.connectTimeoutMs : 0);
      // At the deadline the connection is dropped: the query then fails, as
      // one of an old session, and the loop goes on to the backoff.
      const deadline = setTimeout(() => {
        if (id !== session || stopped) return;
        const err = new DeadlineError(`no answer within ${formatDuration(deadlineMs)}`);
        opts.observer?.pollError(err);
        fail(err.message);
      }, deadlineMs);
      let ok = false;
      try {
        const rows = await conn.unsafe(POLL_QUERY, [systemId === null], { prepare: true });
        if (id === session && !stopped) {
          fresh = false;
          succeed(rows[0]!, startedAt);
          ok = true;
        }
      } catch (err) {
        if (id === session && !stopped) {
          opts.observer?.pollError(err);
          fail(describe(err));
        }
      }
      clearTimeout(deadline);
      if (stopped) break;
      if (ok && poked) {
        await nap(Math.max(0, lastPollAt + NOTIFY_MIN_GAP_MS - performance.now()));
      } else if (ok) {
        await nap(Math.max(0, startedAt + opts.pollIntervalMs - performance.now()));
        if (poked) await nap(Math.max(0, lastPollAt + NOTIFY_MIN_GAP_MS - performance.now()));
      } else {
        await nap(backoffMs());
      }
    }
  }

  const running = run();

  return {
    get facts() {
      return facts;
    },
    get failures() {
      return failures;
    },
    retime(timings) {
      opts.pollIntervalMs = timings.pollIntervalMs;
      opts.staleAfterMs = timings.staleAfterMs;
      opts.connectTimeoutMs = timings.connectTimeoutMs;
      wake?.();
    },
    async stop() {
      stopped = true;
      wake?.();
      clearTimeout(staleTimer);
      await running;
      const conn = sql;
      session++;
      sql = undefined;
      await conn?.end({ timeout: 1 }).catch(() => {});
    },
  };
}

class DeadlineError extends Error {
  readonly code = "POLL_TIMEOUT";
}

/** One line for a log: what failed, and for the usual mistakes what to do. */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { code?: string; address?: string; port?: number };
  switch (e.code) {
    case "CONNECTION_CLOSED":
    case "CONNECTION_ENDED":
    case "CONNECTION_DESTROYED":
    // A write to a connection the server has just closed.
    case "EPIPE":
      return "connection lost";
    case "CONNECT_TIMEOUT":
      return "connect timed out";
    case "ECONNRESET":
      return "connection reset by the server";
    case "ENOENT":
      return `no server socket at ${e.address ?? "the socket path"} (is PostgreSQL running? set PGHOST/PGPORT or --db)`;
    case "ECONNREFUSED":
      return `${oneLine(e.message)} (is PostgreSQL running and listening there? set PGHOST/PGPORT or --db)`;
    case "28P01":
      return `${oneLine(e.message)} (set PGPASSWORD or the password in --db)`;
    case "28000":
      // Both "role ... does not exist" and a refused peer/ident login: the
      // user is the OS user unless PGUSER or --db says otherwise, as in libpq.
      return `${oneLine(e.message)} (set PGUSER or the user in --db, or run as an OS user PostgreSQL lets in; see pg_hba.conf)`;
    case "3D000":
      return `${oneLine(e.message)} (set PGDATABASE or the database in --db)`;
    default:
      return oneLine(e.message);
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
