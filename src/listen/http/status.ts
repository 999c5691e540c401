// The answers that carry live numbers: the /status body and `?lag=` checks,
// rendered per request.
import { parseSizeBytes } from "../../units.ts";
import type { GuardStatus } from "../../cluster/peers.ts";
import type { PollFacts } from "../../poll/facts.ts";
import { bytes, render, roleOf, type HttpResponses } from "./answers.ts";
import { CHECK_REPLICA } from "./parse.ts";
import { currentState, LAGGING, OVERRIDE_NAMES, STANDBY, STATE_NAMES, UNKNOWN, type Status } from "../../cell.ts";

/** The live part of the answer: lag facts and ages, for /status and `?lag=` checks. */
export interface HttpContext {
  status: Status;
  /** The last successful poll's facts, or undefined before the first one. */
  facts(): PollFacts | undefined;
  /** Prometheus text for /metrics (ops/metrics.ts); without it /metrics is 404. */
  metrics?(): string;
  /** The split-brain guard's view, for /status (src/cluster/peers.ts). */
  guard?(): GuardStatus;
}

// timeline and system_identifier are what peers read (src/cluster/): shown
// only while the state is known, so a peer never counts an old answer.
export function statusAnswer(ctx: HttpContext, code: number, withBody: boolean): Uint8Array {
  const { status } = ctx;
  const state = currentState(status.cell);
  const facts = state === UNKNOWN ? undefined : ctx.facts();
  const standby = facts?.inRecovery === true;
  const body =
    JSON.stringify({
      role: roleOf(state),
      state: STATE_NAMES[state],
      override: OVERRIDE_NAMES[status.override],
      timeline: facts?.timeline ?? null,
      system_identifier: facts?.systemId ?? null,
      lag_bytes: standby ? facts.lagBytes : null,
      replay_age_seconds: standby ? facts.replayAgeSeconds : null,
      receiver: standby ? facts.receiverStatus : null,
      since_change_ms: Date.now() - status.changedAt,
      changed_at: new Date(status.changedAt).toISOString(),
      poll_age_ms: facts ? Math.round(performance.now() - facts.startedAt) : null,
      ...ctx.guard?.(),
    }) + "\n";
  return bytes(render(code, body, withBody));
}

// `?lag=N`: like /replica, and the replay at most N bytes behind the
// primary. Unknown lag (no grants, receiver not streaming) is not "at most N".
export function lagAnswer(ctx: HttpContext, answers: HttpResponses, query: string, withBody: boolean): Uint8Array {
  let maxBytes: number | undefined;
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (key !== "lag") continue;
    if (maxBytes !== undefined) return answers.badLag;
    maxBytes = parseSizeBytes(pair.slice(eq + 1));
    if (eq === -1 || maxBytes === undefined) return answers.badLag;
  }
  const state = currentState(ctx.status.cell);
  if (maxBytes === undefined) return (withBody ? answers.get : answers.head)[CHECK_REPLICA]![state]!;
  const facts = ctx.facts();
  const ok =
    (state === STANDBY || state === LAGGING) &&
    facts?.receiverStatus === "streaming" &&
    facts.lagBytes !== null &&
    facts.lagBytes <= maxBytes;
  return statusAnswer(ctx, ok ? 200 : 503, withBody);
}
