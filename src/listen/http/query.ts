// The query parameters of the http check paths, judged apart from the socket code: ?lag=, &rejoin_lag= and
// &rejoin_after= (holds.ts), ?replication_state=streaming, ?tag_KEY=VALUE, and the noloadbalance tag; a bad or
// repeated ?lag= is a 400. What each means: docs/haproxy.md.
import type { NodeTags } from "../../config/types.ts";
import { parseDurationMs, parseSizeBytes } from "../../units.ts";
import type { PollFacts } from "../../poll/facts.ts";
import type { Holds } from "./holds.ts";

export type QueryPath = "replica" | "read-only" | "health" | "readiness";

/** 200 (true) or 503 (false), or why the request is bad. */
export type QueryVerdict = boolean | "bad-lag" | "bad-rejoin" | "bad-request";

/** The longest rejoin_after= (one hour, as --rejoin-after). */
export const MAX_REJOIN_AFTER_MS = 3_600_000;

export interface QueryNode {
  /** The state is a standby (healthy or lagging). */
  standby: boolean;
  /** The answer without a query, from the prebuilt table. */
  base: boolean;
  facts: PollFacts | undefined;
  tags: NodeTags | undefined;
  /** The memory of checks with rejoin_lag= or rejoin_after=; without it they answer as plain ?lag=. */
  holds?: Holds;
  nowMs?: number;
}

/** A ?lag= check's numbers; undefined when there is no lag= at all. */
interface LagAsk {
  maxBytes: number;
  rejoinBytes: number | undefined;
  holdMs: number | undefined;
}

/** `query` without the "?"; "" for none. */
export function queryVerdict(path: QueryPath, query: string, node: QueryNode): QueryVerdict {
  const { standby, base, facts, tags } = node;
  let maxBytes: number | undefined;
  let rejoinBytes: number | undefined;
  let holdMs: number | undefined;
  let streaming = false;
  let tagsOk = true;
  for (const pair of query === "" ? [] : query.split("&")) {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (key === "lag" && (path === "replica" || path === "readiness")) {
      if (maxBytes !== undefined) return "bad-lag";
      maxBytes = parseSizeBytes(pair.slice(eq + 1));
      if (eq === -1 || maxBytes === undefined) return "bad-lag";
    } else if (key === "rejoin_lag" && (path === "replica" || path === "readiness")) {
      if (rejoinBytes !== undefined) return "bad-rejoin";
      rejoinBytes = eq === -1 ? undefined : parseSizeBytes(pair.slice(eq + 1));
      if (rejoinBytes === undefined) return "bad-rejoin";
    } else if (key === "rejoin_after" && (path === "replica" || path === "readiness")) {
      if (holdMs !== undefined) return "bad-rejoin";
      holdMs = eq === -1 ? undefined : parseDurationMs(pair.slice(eq + 1));
      if (holdMs === undefined || holdMs > MAX_REJOIN_AFTER_MS) return "bad-rejoin";
    } else if (key === "replication_state" && path === "replica") {
      streaming = pair.slice(eq + 1) === "streaming";
    } else if (key.startsWith("tag_") && path !== "readiness" && eq > 0) {
      let want: string;
      try {
        want = decodeURIComponent(pair.slice(eq + 1).replaceAll("+", " "));
      } catch {
        return "bad-request";
      }
      if (tags?.values[key.slice(4)] !== want) tagsOk = false;
    }
  }
  if (rejoinBytes !== undefined || holdMs !== undefined) {
    if (maxBytes === undefined || (rejoinBytes ?? 0) > maxBytes) return "bad-rejoin";
  }
  const hidden = tags?.noloadbalance === true && standby && (path === "replica" || path === "read-only");
  let ok = base && !hidden;
  if (maxBytes !== undefined && (path === "replica" || standby)) {
    ok = lagOk(path, { maxBytes, rejoinBytes, holdMs }, node) && standby && !hidden;
  }
  if (streaming && facts?.receiverStatus !== "streaming") ok = false;
  return ok && tagsOk;
}

/**
 * Replay at most `maxBytes` behind; unknown lag (no grants, receiver not
 * streaming) is not "at most". With a rejoin limit or hold, the answer
 * remembered for this question, stepped by this look.
 */
function lagOk(path: QueryPath, ask: LagAsk, node: QueryNode): boolean {
  const { facts, holds } = node;
  const known = node.standby && facts?.receiverStatus === "streaming" && facts.lagBytes !== null;
  const within = (limit: number) => known && facts!.lagBytes! <= limit;
  if (holds === undefined || (ask.rejoinBytes === undefined && ask.holdMs === undefined)) return within(ask.maxBytes);
  const key = `${path} ${ask.maxBytes} ${ask.rejoinBytes ?? ask.maxBytes} ${ask.holdMs ?? 0}`;
  const nowMs = node.nowMs ?? Date.now();
  if (!node.standby) {
    holds.fail(key, nowMs);
    return false;
  }
  return holds.look(key, !within(ask.maxBytes), within(ask.rejoinBytes ?? ask.maxBytes), ask.holdMs ?? 0, nowMs);
}
