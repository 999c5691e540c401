// Patroni's REST paths on an http listener in the Patroni mode: each path's code from src/cluster/patroni-rules.ts,
// check answers prebuilt per code and state, /cluster, /history and /config rendered per request. GET, HEAD and
// OPTIONS get the same code on every path (where Patroni 3.0.2 answers 503: docs/patroni.md).
import type { NodeTags } from "../../config/types.ts";
import {
  checkStatus,
  clusterJson,
  parseQuery,
  readinessStatus,
  type LagHolds,
  type LocalNode,
} from "../../cluster/patroni-rules.ts";
import type { PatroniView } from "../../cluster/patroni-view.ts";
import { bytes, render } from "./answers.ts";
import type { PollFacts } from "../../poll/facts.ts";
import {
  FENCED,
  LAGGING,
  PRIMARY,
  shownState,
  STANDBY,
  STATE_COUNT,
  STATE_NAMES,
  UNKNOWN,
  type State,
} from "../../cell.ts";

export interface PatroniHttpContext {
  /** The cell's slots (cell.ts): the state raw and http show now. */
  slots: Int32Array;
  facts(): PollFacts | undefined;
  view: PatroniView;
  member: string;
  tags: NodeTags;
  /** The memory of ?lag= checks with rejoin_lag= or rejoin_after=. */
  holds: LagHolds;
}

/** Answers one request: path without the query, the query without "?", and whether it is HEAD. */
export type PatroniAnswer = (path: string, query: string, isHead: boolean) => Uint8Array;

/** Patroni's "role" and "state" of a state shown: a fenced node is still PostgreSQL's primary. */
function patroniRole(state: State): string | null {
  return state === PRIMARY || state === FENCED ? "master" : state === STANDBY || state === LAGGING ? "replica" : null;
}

export function patroniHttp(ctx: PatroniHttpContext): PatroniAnswer {
  // [code 200 | 503][state]: GET (with a body) and HEAD.
  const table = (code: number, withBody: boolean) =>
    Array.from({ length: STATE_COUNT }, (_, s) => {
      const state = s as State;
      const body = {
        state: state === UNKNOWN ? "unknown" : "running",
        role: patroniRole(state),
        replstatus: STATE_NAMES[state],
      };
      return bytes(render(code, JSON.stringify(body) + "\n", withBody));
    });
  const get = { 200: table(200, true), 503: table(503, true) };
  const head = { 200: table(200, false), 503: table(503, false) };

  function local(state: State): LocalNode {
    // Under a fence PostgreSQL is still a primary; the rules check the key themselves.
    const polled = state === FENCED ? PRIMARY : state;
    return { member: ctx.member, polled, facts: polled === UNKNOWN ? undefined : ctx.facts(), tags: ctx.tags };
  }

  function json(code: number, value: unknown, isHead: boolean): Uint8Array {
    return bytes(render(code, JSON.stringify(value) + "\n", !isHead));
  }

  return (path, query, isHead) => {
    const state = shownState(Atomics.load(ctx.slots, 0));
    const { view } = ctx.view.current();
    switch (path) {
      case "/liveness":
        return (isHead ? head : get)[200][state]!;
      case "/readiness": {
        const code = readinessStatus(parseQuery(query), local(state), view, ctx.holds) as 200 | 503;
        return (isHead ? head : get)[code][state]!;
      }
      case "/cluster":
        return json(200, clusterJson(view), isHead);
      case "/history":
        return json(200, view?.history ?? [], isHead);
      case "/config":
        return view?.config.data ? json(200, view.config.data, isHead) : json(502, { error: "no config" }, isHead);
    }
    const code = checkStatus(path, parseQuery(query), local(state), view, ctx.holds) as 200 | 503;
    return (isHead ? head : get)[code][state]!;
  };
}
