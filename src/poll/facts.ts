// What one poll reads and what its failures mean: the query, the facts decoded
// from its row, and the one table of error codes that both the log line and
// the metrics' reason label come from.
import { oneLine } from "../units.ts";
import type { Settings } from "./worker/libpq/settings.ts";
import { describeTlsError } from "./worker/libpq/tlserror.ts";

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
  /** pg_last_wal_replay_lsn() as a byte position; null on a primary. Patroni's ?lag= compares it with the leader's optime. */
  replayLsn: number | null;
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
// The timeline (for the split-brain guard, src/cluster/): on a primary,
// the first 8 hex digits of the name of the WAL segment it writes, which since
// PostgreSQL 15 is named after the insertion timeline (pg_walfile_name() uses
// GetWALInsertionTimeLine()), so it is the new timeline from the moment a
// promotion ends (before 15 the backend's ThisTimeLineID, taken from shared
// memory once it sees recovery over: the same; test/e2e/majors.test.ts checks 13
// to 18, and no major needs another query). pg_control_checkpoint().timeline_id would not do: it is the
// last checkpoint's, and stays on the old timeline until the first checkpoint
// after promotion. pg_walfile_name() refuses to run in recovery, hence the
// case. On a standby, received_tli, else (no pg_read_all_stats) the last
// restartpoint's, read from pg_control only then: an uncorrelated subquery is
// an initplan, run only when coalesce() gets to it. system_identifier is read
// from pg_control too (open, read and CRC of global/pg_control: it made the
// poll about 45 us slower), so only when $1 asks for it, on the first poll of
// a connection: it cannot change while the server runs, and a rebuilt node
// restarts its server, which drops the connection. Every one of these
// functions is executable by PUBLIC. data_directory, read at the same time,
// says where postmaster.pid is (worker/postmaster.ts); pg_settings shows it only to
// members of pg_read_all_settings (pg_monitor has it), and is null without.
export const POLL_QUERY = `select r.in_recovery,
  w.pid as receiver_pid,
  w.status as receiver_status,
  pg_wal_lsn_diff(coalesce(w.latest_end_lsn, w.flushed_lsn), pg_last_wal_replay_lsn())::float8 as lag_bytes,
  extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as replay_age_s,
  pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8 as replay_lsn,
  case when $1::bool then (select system_identifier from pg_control_system())::text end as system_id,
  case when $1::bool then (select setting from pg_settings where name = 'data_directory') end as data_directory,
  case when r.in_recovery
    then coalesce(w.received_tli, (select timeline_id from pg_control_checkpoint()))
    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
  end as timeline
from (select pg_is_in_recovery() as in_recovery) as r left join pg_stat_wal_receiver w on true`;

/**
 * POLL_QUERY's row as facts. `systemId` is the one this connection's first
 * poll read (later polls do not ask for it).
 */
export function decodeFacts(
  row: Record<string, unknown>,
  systemId: string | null,
  startedAt: number,
  durationMs: number,
): PollFacts {
  const lagBytes = (row.lag_bytes as number | null) ?? null;
  return {
    inRecovery: row.in_recovery === true,
    receiverPid: (row.receiver_pid as number | null) ?? null,
    receiverStatus: (row.receiver_status as string | null) ?? null,
    // latest_end_lsn only moves with the sender's messages: replay can be past it.
    lagBytes: lagBytes === null ? null : Math.max(0, lagBytes),
    replayAgeSeconds: (row.replay_age_s as number | null) ?? null,
    replayLsn: (row.replay_lsn as number | null) ?? null,
    systemId,
    timeline: (row.timeline as number | null) ?? null,
    startedAt,
    durationMs,
  };
}

/** Poll error classes, the metrics' `reason` label: a fixed set, never free text. */
export const POLL_ERROR_REASONS = [
  "timeout",
  "refused",
  "connection_lost",
  "auth",
  "too_many_connections",
  "starting_or_stopping",
  "other",
] as const;
export type PollErrorReason = (typeof POLL_ERROR_REASONS)[number];

/** A poll failure's code as the rest of the process sees it. */
interface PollError {
  code?: string;
  message: string;
  /** The server's DETAIL field. */
  detail?: string;
  /** The socket path of an ENOENT. */
  address?: string;
}

/** `message: detail`, the detail as a clause: "...: hot standby mode is disabled". */
function withDetail(e: PollError): string {
  const detail = e.detail?.replace(/\.$/, "");
  if (!detail) return oneLine(e.message);
  return `${oneLine(e.message)}: ${detail[0]!.toLowerCase()}${oneLine(detail.slice(1))}`;
}

/** A hint may depend on the failed connection's settings (where its password came from). */
type Hint = string | ((settings: Settings | undefined) => string);

/**
 * Per error code (PostgreSQL's SQLSTATEs, Appendix A; postgres.js's and the
 * system's), its class and what the log line says: a fixed text, or the
 * server's message, then for the usual mistakes what to do.
 */
const POLL_ERRORS: Record<string, { reason: PollErrorReason; text?: (e: PollError) => string; hint?: Hint }> = {
  POLL_TIMEOUT: { reason: "timeout" },
  CONNECT_TIMEOUT: { reason: "timeout", text: () => "connect timed out" },
  ETIMEDOUT: { reason: "timeout" },
  ECONNREFUSED: {
    reason: "refused",
    hint: "is PostgreSQL running and listening there? set PGHOST/PGPORT or --db",
  },
  ENOENT: {
    reason: "refused",
    text: (e) => `no server socket at ${e.address ?? "the socket path"}`,
    hint: "is PostgreSQL running? set PGHOST/PGPORT or --db",
  },
  EHOSTUNREACH: { reason: "refused" },
  ENETUNREACH: { reason: "refused" },
  CONNECTION_CLOSED: { reason: "connection_lost", text: () => "connection lost" },
  CONNECTION_ENDED: { reason: "connection_lost", text: () => "connection lost" },
  CONNECTION_DESTROYED: { reason: "connection_lost", text: () => "connection lost" },
  // A write to a connection the server has just closed.
  EPIPE: { reason: "connection_lost", text: () => "connection lost" },
  ECONNRESET: { reason: "connection_lost", text: () => "connection reset by the server" },
  "57P01": { reason: "connection_lost" }, // admin_shutdown: pg_terminate_backend(), fast shutdown
  "57P02": { reason: "connection_lost" }, // crash_shutdown
  "53300": { reason: "too_many_connections" },
  // cannot_connect_now: starting up, shutting down, in crash recovery, or a
  // warm standby ("not accepting connections", detail "Hot standby mode is disabled.")
  "57P03": { reason: "starting_or_stopping", text: withDetail },
  "28P01": {
    reason: "auth",
    hint: (s) =>
      s?.passwordFrom
        ? `the password came from ${s.passwordFrom}`
        : "no password was found: put it in ~/.pgpass or the file PGPASSFILE names",
  },
  // Both "role ... does not exist" and a refused peer/ident login: the user is
  // the OS user unless PGUSER or --db says otherwise, as in libpq.
  "28000": {
    reason: "auth",
    hint: "set PGUSER or the user in --db, or run as an OS user PostgreSQL lets in; see pg_hba.conf",
  },
  "3D000": { reason: "other", hint: "set PGDATABASE or the database in --db" },
};

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function entryOf(code: string | undefined): (typeof POLL_ERRORS)[string] | undefined {
  return code !== undefined && Object.hasOwn(POLL_ERRORS, code) ? POLL_ERRORS[code] : undefined;
}

/** A poll failure's class, for the metrics. */
export function classifyPollError(err: unknown): PollErrorReason {
  const code = codeOf(err);
  if (code === undefined) return "other";
  // invalid_authorization_specification and its subclasses
  return entryOf(code)?.reason ?? (code.startsWith("28") ? "auth" : "other");
}

/**
 * One line for a log: what failed, and for the usual mistakes what to do.
 * `settings`, those of the failed connection, say where its password and
 * root certificate came from.
 */
export function describe(err: unknown, settings?: Settings): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & PollError;
  const tls = settings && describeTlsError(e, settings);
  if (tls) return tls;
  const entry = entryOf(codeOf(err));
  const text = entry?.text?.(e) ?? oneLine(e.message);
  const hint = typeof entry?.hint === "function" ? entry.hint(settings) : entry?.hint;
  return hint === undefined ? text : `${text} (${hint})`;
}
