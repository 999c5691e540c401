// The answers that carry live numbers: the /status body and checks with a
// query, rendered per request.
import type { GuardStatus } from "../../cluster/guard.ts";
import type { History } from "../../history.ts";
import type { NodeTags } from "../../config/types.ts";
import type { PollFacts } from "../../poll/facts.ts";
import type { Events } from "./events.ts";
import { bytes, OK, render, roleOf, type HttpResponses } from "./answers.ts";
import { CHECK_HEALTH, CHECK_READ_ONLY, CHECK_READINESS, CHECK_REPLICA } from "./parse.ts";
import { queryVerdict, type QueryPath } from "./query.ts";
import type { Holds } from "./holds.ts";
import { currentState, FENCED, LAGGING, OVERRIDE_NAMES, STANDBY, STATE_NAMES, UNKNOWN, type Cell } from "../../cell.ts";

/** The live part of the answer: lag facts and ages, for /status and `?lag=` checks. */
export interface HttpContext {
  cell: Cell;
  /** The last successful poll's facts, or undefined before the first one. */
  facts(): PollFacts | undefined;
  /** Prometheus text for /metrics (ops/metrics.ts); without it /metrics is 404. */
  metrics?(): string;
  /** The split-brain guard's view, for /status (src/cluster/guard.ts). */
  guard?(): GuardStatus;
  /** The Patroni mode (patroni.ts): every path but /status and /metrics; the query without "?". */
  patroni?(path: string, query: string, isHead: boolean): Uint8Array;
  /** More of /status: the Patroni mode's view (src/cluster/patroni-view.ts). */
  extraStatus?(): Record<string, unknown>;
  /** --tag and patroni.yml's tags, for ?tag_KEY=VALUE and noloadbalance. */
  tags?: NodeTags;
  /** The memory of ?lag= checks with rejoin_lag= or rejoin_after= (holds.ts). */
  holds?: Holds;
  /** How long a lagging standby's hold before rejoining has left (poll/lag.ts), for /status. */
  rejoinInMs?(): number | undefined;
  /** GET /events (events.ts); without it /events is 404. */
  events?: Events;
  /** The last changes of the answer and the override, for /status and the status page. */
  history?: History;
}

export function statusAnswer(ctx: HttpContext, code: number, withBody: boolean): Uint8Array {
  return bytes(render(code, JSON.stringify(statusBody(ctx)) + "\n", withBody));
}

// timeline and system_identifier are what peers read (src/cluster/): shown
// only while the state is known, so a peer never counts an old answer.
/** The /status body, also the data of every event (events.ts). */
export function statusBody(ctx: HttpContext): Record<string, unknown> {
  const { cell } = ctx;
  const state = currentState(cell.slots);
  const facts = state === UNKNOWN ? undefined : ctx.facts();
  const standby = facts?.inRecovery === true;
  return {
    role: roleOf(state),
    state: STATE_NAMES[state],
    // The poller's own state, before the fence and the override (the status page's "role by its own poll").
    polled: STATE_NAMES[cell.polled],
    override: OVERRIDE_NAMES[cell.override],
    timeline: facts?.timeline ?? null,
    system_identifier: facts?.systemId ?? null,
    lag_bytes: standby ? facts.lagBytes : null,
    replay_age_seconds: standby ? facts.replayAgeSeconds : null,
    receiver: standby ? facts.receiverStatus : null,
    rejoin_in_ms: standby ? (ctx.rejoinInMs?.() ?? null) : null,
    since_change_ms: Date.now() - cell.changedAt,
    changed_at: new Date(cell.changedAt).toISOString(),
    poll_age_ms: facts ? Math.round(performance.now() - facts.startedAt) : null,
    fence: state === FENCED ? (cell.fence ?? null) : null,
    ...ctx.guard?.(),
    ...ctx.extraStatus?.(),
    transitions: ctx.history?.list() ?? [],
  };
}

// The query of a check path (query.ts: ?lag=, ?replication_state=, ?tag_KEY=VALUE)
// and the noloadbalance tag. An answer other than the prebuilt one is the
// /status body with its code, since it depends on live numbers.
const QUERY_PATHS: (QueryPath | undefined)[] = [];
QUERY_PATHS[CHECK_REPLICA] = "replica";
QUERY_PATHS[CHECK_READ_ONLY] = "read-only";
QUERY_PATHS[CHECK_HEALTH] = "health";
QUERY_PATHS[CHECK_READINESS] = "readiness";

/** Whether check `kind` asks the query rule: it has a query, or a noloadbalance tag hides the node. */
export function asksQuery(ctx: HttpContext, kind: number, hasQuery: boolean): boolean {
  return QUERY_PATHS[kind] !== undefined && (hasQuery || ctx.tags?.noloadbalance === true);
}

/** `query` without the "?", "" for none. */
export function queryAnswer(
  ctx: HttpContext,
  answers: HttpResponses,
  kind: number,
  query: string,
  withBody: boolean,
): Uint8Array {
  const state = currentState(ctx.cell.slots);
  const base = OK[kind]![state]!;
  const standby = state === STANDBY || state === LAGGING;
  const node = { standby, base, facts: ctx.facts(), tags: ctx.tags, holds: ctx.holds };
  const verdict = queryVerdict(QUERY_PATHS[kind]!, query, node);
  if (typeof verdict === "string") {
    return verdict === "bad-lag" ? answers.badLag : verdict === "bad-rejoin" ? answers.badRejoin : answers.badRequest;
  }
  if (verdict === base && !/(^|&)lag=/.test(query)) return (withBody ? answers.get : answers.head)[kind]![state]!;
  return statusAnswer(ctx, verdict ? 200 : 503, withBody);
}
