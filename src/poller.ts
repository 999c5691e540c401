// The role source: one PostgreSQL connection, one query per tick, and the
// freshness rule that turns silence into UNKNOWN. It never says primary unless
// a poll that started less than staleAfterMs ago saw pg_is_in_recovery() false.
import postgres from "postgres";
import type { DbTarget } from "./db.ts";
import type { Logger } from "./log.ts";
import { formatDuration } from "./config.ts";
import type { LagJudge } from "./lag.ts";
import { bunPgSocket, type PgSocketOptions } from "./pgsocket.ts";
import { planConnection, type ConnectPlan, type TlsState } from "./poll/connect.ts";
import type { Settings } from "./poll/libpq/settings.ts";
import { describeTlsError } from "./poll/libpq/tls.ts";
import { ANSWER_SLOT, forceUnknown, generation, LAGGING, PRIMARY, STANDBY, UNKNOWN, type Status } from "./states.ts";

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
  /** The poll worker died: nothing would make a stale answer UNKNOWN any more. */
  onWorkerDeath(message: string): void;
  /** Told of every poll's duration and of every failure (metrics.ts). */
  observer?: { observePoll(durationMs: number): void; pollError(err: unknown): void };
}

export interface Poller {
  readonly facts: PollFacts | undefined;
  /** Applies new timings from the next poll on (a reload). */
  retime(timings: Pick<PollerOptions, "pollIntervalMs" | "staleAfterMs" | "connectTimeoutMs">): void;
  stop(): Promise<void>;
}

/** What the poll loop needs; it runs in the poll worker (poll-worker.ts). */
export interface LoopConfig {
  target: DbTarget;
  pollIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  channel: string;
}

/** What the poll loop reports. Times are performance.now() of the loop's thread. */
export interface LoopHooks {
  ok(row: Record<string, unknown>, startedAt: number, durationMs: number): void;
  fail(reason: string, code: string | undefined): void;
  /** The last good poll started staleAfterMs ago and nothing newer came. */
  stale(): void;
  warn(message: string): void;
}

export interface Loop {
  retime(timings: Pick<LoopConfig, "pollIntervalMs" | "staleAfterMs" | "connectTimeoutMs">): void;
  stop(): Promise<void>;
}

/**
 * The poll loop: one connection, one query per tick under a deadline,
 * backoff after a failure, LISTEN on a primary, and the stale timer. It runs
 * on a thread of its own (poll-worker.ts), so a flood of connections on the
 * listeners' thread cannot hold its timers up (measured: a Bun.listen loop
 * under 15k connections/s ran 10 ms timers up to 3 s late; a worker's, 7 ms).
 */
export function pollLoop(opts: LoopConfig, hooks: LoopHooks): Loop {
  const { target } = opts;
  let sql: postgres.Sql | undefined;
  // Bumped whenever a connection is dropped, so late events of an old
  // connection (close, notify, a rejected query) are recognised and ignored.
  let session = 0;
  let fresh = true;
  let listening = false;
  let stopped = false;
  let failures = 0;
  /** Whether this connection's server has told its system_identifier (POLL_QUERY's $1). */
  let knowsSystemId = false;
  let staleTimer: Timer | undefined;
  let lastPollAt = 0;
  let poked = false;
  let wake: (() => void) | undefined;
  /** The connection's settings, for the hint of a failed login. */
  let plan: ConnectPlan | undefined;
  const tlsState: TlsState = { allowTls: false, offered: undefined };
  /** File warnings (a world-readable .pgpass) already told: once each. */
  const warned = new Set<string>();

  // The files are read at every attempt, as libpq does: a fixed .pgpass or
  // certificate is picked up at the next one.
  async function prepare(): Promise<ConnectPlan> {
    const next = await planConnection(target, opts.connectTimeoutMs, tlsState);
    for (const w of next.settings.warnings) {
      if (!warned.has(w)) hooks.warn(w);
      warned.add(w);
    }
    return next;
  }

  function open(p: ConnectPlan): postgres.Sql {
    const id = ++session;
    fresh = true;
    plan = p;
    const s = p.settings;
    // onnotify, onclose and socket are read by postgres.js but missing from its types.
    const options: postgres.Options<{}> & { onnotify(): void; onclose(): void } = {
      host: s.connectHost,
      port: s.port,
      user: s.user,
      database: s.dbname,
      // No password found: an empty one, which a server that wants one refuses (28P01).
      password: s.password ?? "",
      ssl: p.ssl as postgres.Options<{}>["ssl"],
      max: 1,
      // postgres.js defaults that are wrong for a monitor (DESIGN.md section 7):
      // no recycling of the connection, no 30 s connect wait, no notices on stdout.
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: connectTimeoutMs() / 1000,
      fetch_types: false,
      onnotice: () => {},
      onnotify: () => id === session && poke(),
      onclose: () => id === session && fail("connection lost", "CONNECTION_CLOSED"),
      connection: { application_name: s.applicationName },
      // Bun's own sockets under postgres.js, unless TLS is used (pgsocket.ts).
      ...(p.ssl === false && { socket: (o: PgSocketOptions) => bunPgSocket(o) }),
    };
    return postgres(options);
  }

  /** connect_timeout from the connection settings, else --connect-timeout. */
  function connectTimeoutMs(): number {
    return plan?.settings.connectTimeoutMs ?? opts.connectTimeoutMs;
  }

  function drop(): void {
    session++;
    listening = false;
    knowsSystemId = false;
    const old = sql;
    sql = undefined;
    old?.end({ timeout: 0 }).catch(() => {});
  }

  function fail(reason: string, code: string | undefined): void {
    drop();
    clearTimeout(staleTimer);
    failures++;
    if (fresh) {
      // sslmode=allow: without TLS failed, so with it (or the other way round).
      if (plan?.settings.sslmode === "allow") tlsState.allowTls = !tlsState.allowTls;
      tlsState.offered = undefined;
    }
    hooks.fail(reason, code);
  }

  // Standbys cannot LISTEN ("cannot execute LISTEN during recovery"), so it is
  // only tried once per connection, on a primary. A NOTIFY only shortens the
  // wait for the next poll; it never sets the state (anyone can NOTIFY).
  function listen(conn: postgres.Sql): void {
    const id = session;
    listening = true;
    conn.unsafe(`listen "${opts.channel}"`).catch((err: unknown) => {
      if (id === session) hooks.warn(`could not LISTEN on channel "${opts.channel}": ${describe(err)}; polling only`);
    });
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
      if (!sql) {
        try {
          sql = open(await prepare());
        } catch (err) {
          if (stopped) break;
          fresh = true;
          fail(describe(err), (err as { code?: string }).code);
          await nap(backoffMs());
          continue;
        }
        if (stopped) break;
      }
      const conn = sql;
      const id = session;
      const deadlineMs = opts.staleAfterMs + (fresh ? connectTimeoutMs() : 0);
      // At the deadline the connection is dropped: the query then fails, as
      // one of an old session, and the loop goes on to the backoff.
      const deadline = setTimeout(() => {
        if (id === session && !stopped) fail(`no answer within ${formatDuration(deadlineMs)}`, "POLL_TIMEOUT");
      }, deadlineMs);
      let ok = false;
      try {
        const rows = await conn.unsafe(POLL_QUERY, [!knowsSystemId], { prepare: true });
        if (id === session && !stopped) {
          const now = performance.now();
          fresh = false;
          knowsSystemId = true;
          failures = 0;
          // Fresh until staleAfterMs after the poll *started*: the answer may
          // be that old by the time it arrives.
          clearTimeout(staleTimer);
          staleTimer = setTimeout(hooks.stale, Math.max(0, startedAt + opts.staleAfterMs - now));
          const row = rows[0]!;
          hooks.ok(row, startedAt, now - startedAt);
          if (row.in_recovery === false && !listening && sql) listen(sql);
          ok = true;
        }
      } catch (err) {
        if (id === session && !stopped) fail(describe(err, plan?.settings), (err as { code?: string }).code);
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

/** Messages from the poll worker (poll-worker.ts); `gen` is the answer word's generation (states.ts). */
export type WorkerMessage =
  | { t: "ok"; row: Record<string, unknown>; startedEpochMs: number; durationsMs: number[]; gen: number }
  | { t: "fail"; reason: string; code: string | undefined; gen: number }
  | { t: "stale"; gen: number }
  | { t: "warn"; message: string }
  | { t: "stopped" };

/**
 * The poller as the rest of the process sees it. The loop runs in the poll
 * worker, which writes UNKNOWN into the shared cell itself on a failure or
 * when the last poll goes stale; here its results become states, with the
 * lag judge, the logs and the metrics.
 */
export function startPoller(opts: PollerOptions): Poller {
  const { status, log } = opts;
  const cell = status.cell;
  // Reasons already logged in this outage: a flapping reason is logged once.
  const logged = new Set<string>();
  let facts: PollFacts | undefined;
  /** Of the server this connection is to; read once per connection (POLL_QUERY). */
  let systemId: string | null = null;
  let stopped: (() => void) | undefined;
  /** Written by the worker at every good poll (it sends only changes). */
  const lastPoll = new Float64Array(new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT));
  const worker = new Worker(new URL("./poll-worker.ts", import.meta.url).href);

  function succeed(row: Record<string, unknown>, startedAt: number, durationsMs: number[]): void {
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
      durationMs: durationsMs.at(-1) ?? 0,
    };
    for (const ms of durationsMs) opts.observer?.observePoll(ms);
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
  }

  worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
    const m = event.data;
    switch (m.t) {
      case "ok":
        // Overtaken by a forced UNKNOWN (the poll went stale, or the
        // connection failed, before this thread got to it): dropped.
        if (m.gen !== generation(Atomics.load(cell, ANSWER_SLOT))) return;
        status.sync(m.gen);
        succeed(m.row, m.startedEpochMs - performance.timeOrigin, m.durationsMs);
        return;
      case "fail":
        status.sync(m.gen);
        systemId = null;
        opts.observer?.pollError({ code: m.code });
        opts.lag.reset();
        status.set(UNKNOWN, m.reason);
        if (!logged.has(m.reason)) {
          logged.add(m.reason);
          log.warning(
            `poll failed: ${m.reason} (retrying every ${formatDuration(BACKOFF_MIN_MS)}..${formatDuration(BACKOFF_MAX_MS)})`,
          );
        }
        return;
      case "stale":
        status.sync(m.gen);
        opts.lag.reset();
        status.set(UNKNOWN, `no successful poll for ${formatDuration(opts.staleAfterMs)}`);
        return;
      case "warn":
        log.warning(m.message);
        return;
      case "stopped":
        stopped?.();
        return;
    }
  };
  const config: LoopConfig = {
    target: opts.target,
    pollIntervalMs: opts.pollIntervalMs,
    staleAfterMs: opts.staleAfterMs,
    connectTimeoutMs: opts.connectTimeoutMs,
    channel: opts.channel,
  };
  // Without the worker nothing turns a stale answer into UNKNOWN: answer
  // UNKNOWN now and let the caller end the process (a service manager
  // restarts it), rather than serve a frozen MASTER.
  let ending = false;
  const died = (message: string) => {
    if (ending) return;
    status.sync(forceUnknown(cell));
    status.set(UNKNOWN, "poll worker stopped");
    opts.onWorkerDeath(message);
  };
  worker.addEventListener("error", (event) => died((event as ErrorEvent).message || "error"));
  worker.addEventListener("close", () => died("exited"));
  worker.postMessage({ t: "start", config, cell, lastPoll });

  return {
    get facts() {
      // The worker sends a poll that saw nothing new at most once a second;
      // the start of the last good poll is kept up to date in shared memory.
      if (facts && lastPoll[0]! > 0) facts.startedAt = Math.max(facts.startedAt, lastPoll[0]! - performance.timeOrigin);
      return facts;
    },
    retime(timings) {
      opts.pollIntervalMs = timings.pollIntervalMs;
      opts.staleAfterMs = timings.staleAfterMs;
      opts.connectTimeoutMs = timings.connectTimeoutMs;
      worker.postMessage({ t: "retime", timings });
    },
    async stop() {
      ending = true;
      const done = new Promise<void>((resolve) => (stopped = resolve));
      worker.postMessage({ t: "stop" });
      await Promise.race([done, Bun.sleep(3000)]);
      worker.terminate();
    },
  };
}

/** One line for a log: what failed, and for the usual mistakes what to do. */
export function describe(err: unknown, settings?: Settings): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { code?: string; address?: string; port?: number };
  const passwordFrom = settings?.passwordFrom;
  const tls = settings && describeTlsError(e, settings);
  if (tls) return tls;
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
      return passwordFrom
        ? `${oneLine(e.message)} (the password came from ${passwordFrom})`
        : `${oneLine(e.message)} (no password was found: put it in ~/.pgpass or the file PGPASSFILE names)`;
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
