// The query parameters of the http check paths, as Patroni has them, judged
// apart from the socket code (src/listen/http/handler.ts renders the answer):
// - `?lag=N` on /replica and /readiness: a standby's replay at most N bytes
//   behind the primary; unknown lag (no grants, receiver not streaming) is not
//   "at most N". A bad or repeated value is a 400.
// - `?replication_state=streaming` on /replica: the WAL receiver streams.
// - `?tag_KEY=VALUE` on /replica, /read-only and /health: this node has that
//   tag (--tag, or patroni.yml's tags).
// - the noloadbalance tag keeps a standby out of /replica and /read-only.
import type { NodeTags } from "../../config/types.ts";
import { parseSizeBytes } from "../../units.ts";
import type { PollFacts } from "../../poll/facts.ts";

export type QueryPath = "replica" | "read-only" | "health" | "readiness";

/** 200 (true) or 503 (false), or why the request is bad. */
export type QueryVerdict = boolean | "bad-lag" | "bad-request";

export interface QueryNode {
  /** The state is a standby (healthy or lagging). */
  standby: boolean;
  /** The answer without a query, from the prebuilt table. */
  base: boolean;
  facts: PollFacts | undefined;
  tags: NodeTags | undefined;
}

/** `query` without the "?"; "" for none. */
export function queryVerdict(path: QueryPath, query: string, node: QueryNode): QueryVerdict {
  const { standby, base, facts, tags } = node;
  let maxBytes: number | undefined;
  let streaming = false;
  let tagsOk = true;
  for (const pair of query === "" ? [] : query.split("&")) {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (key === "lag" && (path === "replica" || path === "readiness")) {
      if (maxBytes !== undefined) return "bad-lag";
      maxBytes = parseSizeBytes(pair.slice(eq + 1));
      if (eq === -1 || maxBytes === undefined) return "bad-lag";
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
  const hidden = tags?.noloadbalance === true && standby && (path === "replica" || path === "read-only");
  let ok = base && !hidden;
  if (maxBytes !== undefined && (path === "replica" || standby)) {
    ok =
      standby &&
      !hidden &&
      facts?.receiverStatus === "streaming" &&
      facts.lagBytes !== null &&
      facts.lagBytes <= maxBytes;
  }
  if (streaming && facts?.receiverStatus !== "streaming") ok = false;
  return ok && tagsOk;
}
