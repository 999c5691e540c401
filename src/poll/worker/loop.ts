// The poll loop: one connection, one query per tick under a deadline, a retry after a failure, LISTEN on a primary,
// the stale timer, and how soon to try again by why the last attempt failed. ARCHITECTURE.md, "The poll".
import { statSync } from "node:fs";
import { formatDuration } from "../../units.ts";
import { classifyPollError, describe, POLL_QUERY, type PollErrorReason } from "../facts.ts";
import { watchPostmaster, type PmStatus, type Postmaster } from "./postmaster.ts";
import { connectTimeoutOf, createSession, type Session, type SessionConfig } from "./session.ts";

export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
/** A NOTIFY flood must not turn into a poll flood. */
const NOTIFY_MIN_GAP_MS = 5;
/** After a promotion's signal file changes (postmaster.ts): a poll this often, for this long at most. */
const PROMOTE_POLL_MS = 2;
const PROMOTE_BURST_MS = 2000;
/**
 * Where a poll cannot be the first to see a role change, it only keeps the answer fresh: at
 * least this many polls per --stale-after (every 250 ms at the default 1 s) when --poll-interval
 * is shorter. A primary becomes a standby only through a restart, which drops the connection
 * (UNKNOWN at once); a standby whose data directory is watched is woken by its promotion. At
 * 50 ms the poll cost 0.9% of a core idle; at 250 ms 0.45% (bench/README.md, idle).
 */
const FRESH_POLLS = 4;

/** What the poll loop needs. */
export interface LoopConfig extends SessionConfig {
  pollIntervalMs: number;
  staleAfterMs: number;
}

export type LoopTimings = Pick<LoopConfig, "pollIntervalMs" | "staleAfterMs" | "connectTimeoutMs">;

/** What the poll loop reports. Times are performance.now() of the loop's thread. */
export interface LoopHooks {
  ok(row: Record<string, unknown>, startedAt: number, durationMs: number): void;
  /** `retry` says when the next attempt comes, for the log. */
  fail(reason: string, code: string | undefined, retry: string): void;
  /** The last good poll started staleAfterMs ago and nothing newer came. */
  stale(): void;
  warn(message: string): void;
  /** Worth a line in the log once: where postmaster.pid is and how a shutdown is seen. */
  note(message: string): void;
}

export interface Loop {
  retime(timings: LoopTimings): void;
  stop(): Promise<void>;
}

// How soon to try again. Asking a server that is down costs it nothing, and
// one that refuses (starting, in recovery, a warm standby) a fork and a FATAL
// line in its log: without postmaster.pid both are asked again at the poll
// interval, not on a growing backoff, so a server that comes back is seen at
// once. With postmaster.pid (postmaster.ts), a server that is down or refuses
// is asked again when the file changes, which it does at every change of
// state, and at the latest every PM_RETRY_MS. The rest (a hung server, a bad
// password, a missing database, no free slot) gets the capped backoff.
const FLAT_RETRY: readonly PollErrorReason[] = ["refused", "starting_or_stopping", "connection_lost"];
/** While postmaster.pid says the server cannot take a connection: the longest wait between attempts. */
const PM_RETRY_MS = 5000;
/** While watching postmaster.pid, how often to wake anyway (the watch may have gone with its directory). */
const PM_RECHECK_MS = 1000;
/** What the log says of a smart or fast shutdown seen in postmaster.pid. */
const SHUTTING_DOWN = "the database system is shutting down (postmaster.pid says stopping)";
/**
 * Where postmaster.pid cannot be read (the package's own OS user, a 0700 data
 * directory), a smart shutdown shows only as a new connection refused with
 * 57P03: the loop asks for one this many times per --stale-after, beside the
 * poll's own connection (createDoor). Each costs the server a fork and a
 * backend start (docs/lifecycle.md has the numbers).
 */
const DOOR_CHECKS = 2;

/** How often a new connection is tried where postmaster.pid cannot be read. */
const doorEveryMs = (config: LoopConfig) => config.staleAfterMs / DOOR_CHECKS;

/** The identity of a unix socket's file ("" over TCP or without the file): a new one is a restarted server. */
function socketIdentity(session: Session): string {
  const s = session.plan?.settings;
  if (!s?.unixSocket) return "";
  try {
    return String(statSync(`${s.connectHost}/.s.PGSQL.${s.port}`).ino);
  } catch {
    return "";
  }
}

/** The wait after the failures-th failure in a row: doubling from the minimum, capped, with a 20% jitter. */
function backoffMs(failures: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
  return base * (0.8 + Math.random() * 0.4);
}

/**
 * When to ask again after a failure, by the rule above. A shutdown seen by a
 * refused new connection (createDoor) is asked again every doorEveryMs, or at
 * once when the socket file changes (the server stopped, or a new one started):
 * a smart shutdown may wait for clients for hours, and each attempt costs the
 * server a fork and a FATAL line in its log.
 */
function createRetry(config: LoopConfig, pm: Postmaster, socketId: () => string) {
  let failures = 0;
  let code: string | undefined;
  /** The socket file's identity when a new connection was refused for a shutdown; undefined otherwise. */
  let shutSocket: string | undefined;
  /** Ask again only once postmaster.pid has changed (or PM_RETRY_MS has passed). */
  let waiting = false;
  /** postmaster.pid's version and the time before the last attempt (or a lost connection). */
  let triedVersion = 0;
  let triedAt = 0;

  function plan(): { ms: number; text: string } {
    if (shutSocket !== undefined) {
      const every = formatDuration(doorEveryMs(config));
      return { ms: config.pollIntervalMs, text: `retrying every ${every}, or when the socket file changes` };
    }
    if (waiting && pm.watching) return { ms: PM_RECHECK_MS, text: "retrying when postmaster.pid changes" };
    const every = `every ${formatDuration(config.pollIntervalMs)}`;
    if (waiting) return { ms: config.pollIntervalMs, text: `retrying when postmaster.pid changes, read ${every}` };
    if (FLAT_RETRY.includes(classifyPollError({ code })))
      return { ms: config.pollIntervalMs, text: `retrying ${every}` };
    const range = `${formatDuration(BACKOFF_MIN_MS)}..${formatDuration(BACKOFF_MAX_MS)}`;
    return { ms: backoffMs(failures), text: `retrying every ${range}` };
  }

  return {
    /**
     * A failure with `failCode`; `lost`: of a connection that worked, so what
     * postmaster.pid says now is the news (an attempt's own failure keeps the
     * version from before it). Returns what the log says of the retry.
     */
    failed(failCode: string | undefined, lost: boolean, doorShut = false): string {
      failures++;
      code = failCode;
      const sameServer = shutSocket !== undefined && failCode === "57P03" && socketId() === shutSocket;
      shutSocket = doorShut || sameServer ? socketId() : undefined;
      const status = pm.status();
      const refusing = status === "down" || status === "stopping" || status === "starting";
      waiting = refusing || (status !== "unreadable" && classifyPollError({ code }) === "starting_or_stopping");
      if (lost) {
        triedVersion = pm.version();
        triedAt = performance.now();
      }
      return plan().text;
    },
    succeeded(): void {
      failures = 0;
      waiting = false;
      shutSocket = undefined;
    },
    /** Whether to try to connect now. */
    due(): boolean {
      const now = performance.now();
      if (shutSocket !== undefined) {
        if (socketId() === shutSocket && now - triedAt < doorEveryMs(config)) return false;
        triedAt = now;
        return true;
      }
      if (!waiting) return true;
      const version = pm.version();
      if (version === triedVersion && now - triedAt < PM_RETRY_MS) return false;
      triedVersion = version;
      triedAt = now;
      return true;
    },
    /** The wait after a failure, or after an attempt not made; none if the file changed meanwhile. */
    waitMs(): number {
      return waiting && shutSocket === undefined && pm.version() !== triedVersion ? 0 : plan().ms;
    },
  };
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

/**
 * One poll: the settings (a bad file or a missing socket fails here), connect
 * if needed, the query under a deadline (a hung server never answers); at the
 * deadline the connection is dropped and the query fails as one of an old
 * session. The row, or undefined after `fail` was told why.
 */
async function queryOnce(
  config: LoopConfig,
  session: Session,
  stopped: () => boolean,
  fail: (reason: string, code: string | undefined) => void,
): Promise<Record<string, unknown> | undefined> {
  const refused = await session.prepare();
  if (refused && !stopped()) fail(describe(refused), (refused as { code?: string }).code);
  if (refused || stopped()) return undefined;
  const conn = session.conn();
  const id = session.id;
  const current = () => id === session.id && !stopped();
  const deadlineMs = config.staleAfterMs + (session.fresh ? connectTimeoutOf(config, session.plan) : 0);
  const deadline = setTimeout(() => {
    if (current()) fail(`no answer within ${formatDuration(deadlineMs)}`, "POLL_TIMEOUT");
  }, deadlineMs);
  try {
    const rows = await conn.unsafe(POLL_QUERY, [!session.knowsSystemId], { prepare: true });
    return current() ? rows[0]! : undefined;
  } catch (err) {
    if (current()) fail(describe(err, session.plan?.settings), (err as { code?: string }).code);
    return undefined;
  } finally {
    clearTimeout(deadline);
  }
}

/**
 * When the next poll starts. A primary, or a standby whose promotion the
 * watch will tell, polls to stay fresh only (FRESH_POLLS per --stale-after); a
 * NOTIFY or a signal file cuts the wait short, no closer than
 * NOTIFY_MIN_GAP_MS; a promotion under way is polled every PROMOTE_POLL_MS.
 */
function createPace(config: LoopConfig, pm: Postmaster) {
  let burstUntil = 0;
  let primary = false;
  return {
    polled(isPrimary: boolean): void {
      primary = isPrimary;
      if (primary) burstUntil = 0;
    },
    promoting(): void {
      burstUntil = performance.now() + PROMOTE_BURST_MS;
    },
    /** The start of the poll after one that started at startedAt; poked: one was asked for. */
    nextAt(startedAt: number, poked: boolean): number {
      if (performance.now() < burstUntil) return startedAt + PROMOTE_POLL_MS;
      if (poked) return startedAt + NOTIFY_MIN_GAP_MS;
      const freshOnly = primary || pm.watching;
      return (
        startedAt +
        (freshOnly ? Math.max(config.pollIntervalMs, config.staleAfterMs / FRESH_POLLS) : config.pollIntervalMs)
      );
    },
  };
}

/**
 * The stale timer: the answer of a good poll stands until staleAfterMs after
 * the poll *started* (it may be that old by the time it arrives), and then
 * `stale` runs, unless a newer poll or a failure came first.
 */
function createFreshness(config: LoopConfig, stale: () => void) {
  let timer: Timer | undefined;
  /** The start of the last good poll while its answer stands, else undefined. */
  let freshFrom: number | undefined;
  const disarm = () => {
    clearTimeout(timer);
    freshFrom = undefined;
  };
  const arm = (startedAt: number) => {
    clearTimeout(timer);
    freshFrom = startedAt;
    const fire = () => {
      freshFrom = undefined;
      stale();
    };
    timer = setTimeout(fire, Math.max(0, startedAt + config.staleAfterMs - performance.now()));
  };
  return {
    /** Whether an answer that started at `startedAt` is still fresh now. */
    fresh: (startedAt: number) => performance.now() - startedAt < config.staleAfterMs,
    arm,
    disarm,
    /** After a reload: the answer standing now is held to the new bound too. */
    retimed: () => freshFrom !== undefined && arm(freshFrom),
  };
}

/**
 * The door check, where postmaster.pid cannot be read: after a good poll, at
 * most every doorEveryMs, a second connection (session.knock) that the server
 * lets in and is closed at once. Refused with 57P03 (a shutdown has begun),
 * `shut` drops the poll's connection too, so that it cannot hold a smart
 * shutdown up: the answer leaves MASTER within doorEveryMs and one attempt.
 */
function createDoor(config: LoopConfig, session: Session, pm: Postmaster, shut: (reason: string) => void) {
  let lastAt = Number.NEGATIVE_INFINITY;
  let busy = false;
  /** What the log last said (tell). */
  let told = "";
  return {
    /** After a good poll. */
    polled(now: number): void {
      if (busy || now - lastAt < doorEveryMs(config) || pm.watching || pm.status() !== "unreadable") return;
      lastAt = now;
      busy = true;
      const id = session.id;
      void session.knock().then((err) => {
        busy = false;
        if ((err as { code?: string } | undefined)?.code === "57P03" && id === session.id)
          shut(`a new connection was refused: ${describe(err)}`);
      });
    },
    /** At a connection's first good poll: one line for the log, how a shutdown is seen, when it changed. */
    tell(note: (line: string) => void): void {
      const line =
        pm.watching || pm.status() !== "unreadable"
          ? pm.describe()
          : `${pm.describe()}; a shutdown is seen by a new connection every ${formatDuration(doorEveryMs(config))}`;
      if (line !== told) note(line);
      told = line;
    },
  };
}

/**
 * Whether postmaster.pid says a shutdown (a smart one too) has begun, seen even where the
 * directory cannot be watched. Where it is, the watch tells every rewrite, so the file is read
 * only at a connection's first poll (the watch may have been armed just now): reading it was a
 * quarter of an idle poll's CPU (bench/README.md, idle).
 */
function shutdownSeen(session: Session, pm: Postmaster): boolean {
  return (session.fresh || !pm.watching) && pm.status() === "stopping";
}

export function pollLoop(config: LoopConfig, hooks: LoopHooks): Loop {
  // A shutdown, even a smart one, is seen here first: this session is closed
  // then, so that the shutdown need not wait for it.
  const pm = watchPostmaster(
    config.target.dataDir,
    (status) => {
      if (status === "stopping" && session.connected) fail(SHUTTING_DOWN, "57P03");
      else if (!session.connected) wake();
    },
    promoting,
  );
  const session = createSession(config, pm, {
    notified: poke,
    lost: () => fail("connection lost", "CONNECTION_CLOSED"),
    warn: hooks.warn,
  });
  const retry = createRetry(config, pm, () => socketIdentity(session));
  const pace = createPace(config, pm);
  const freshness = createFreshness(config, hooks.stale);
  const door = createDoor(config, session, pm, (reason) => {
    if (stopped) return;
    fail(reason, "57P03", true);
    wake();
  });
  let stopped = false;
  let poked = false;
  const { nap, wake } = alarm();

  function fail(reason: string, code: string | undefined, doorShut = false): void {
    pace.polled(false);
    const lost = !session.fresh;
    session.drop();
    freshness.disarm();
    hooks.fail(reason, code, retry.failed(code, lost, doorShut));
  }

  function poke(): void {
    poked = true;
    wake();
  }

  function promoting(): void {
    pace.promoting();
    poke();
  }

  function succeed(row: Record<string, unknown>, startedAt: number): boolean {
    if (typeof row.data_directory === "string") pm.learn(row.data_directory);
    if (session.fresh) door.tell(hooks.note);
    if (shutdownSeen(session, pm)) return (fail(SHUTTING_DOWN, "57P03"), false);
    door.polled(startedAt);
    retry.succeeded();
    pace.polled(row.in_recovery === false);
    // An answer that arrives as old as staleAfterMs (read in the same turn as
    // its deadline, or after a reload shortened it) is stale, not ok: the
    // worker shows a promotion from an ok poll at once (cell.ts).
    const fresh = freshness.fresh(startedAt);
    if (fresh) {
      freshness.arm(startedAt);
      hooks.ok(row, startedAt, performance.now() - startedAt);
    } else {
      freshness.disarm();
      hooks.stale();
    }
    // A stale row is not handed on, nor its system_id: the next poll asks for it again.
    session.polled(row.in_recovery !== false, fresh);
    return true;
  }

  async function poll(startedAt: number): Promise<boolean> {
    const row = await queryOnce(config, session, () => stopped, fail);
    return row !== undefined && succeed(row, startedAt);
  }

  // One poll at a time, then the wait for the next tick (or the retry after a
  // failure); a NOTIFY or a signal file cuts the wait short (createPace).
  async function run(): Promise<void> {
    while (!stopped) {
      poked = false;
      const startedAt = performance.now();
      const ok = (session.connected || retry.due()) && (await poll(startedAt));
      if (stopped) break;
      if (!ok) {
        await nap(retry.waitMs());
        continue;
      }
      if (!poked) await nap(Math.max(0, pace.nextAt(startedAt, false) - performance.now()));
      if (poked) await nap(Math.max(0, pace.nextAt(startedAt, true) - performance.now()));
    }
  }

  void run();

  return {
    retime({ pollIntervalMs, staleAfterMs, connectTimeoutMs }) {
      Object.assign(config, { pollIntervalMs, staleAfterMs, connectTimeoutMs });
      freshness.retimed();
      wake();
    },
    async stop() {
      stopped = true;
      pm.close();
      wake();
      freshness.disarm();
      // The poll in flight, if any, is rejected by end() and run() returns.
      await session.end();
    },
  };
}
