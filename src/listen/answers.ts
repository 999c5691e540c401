// Every answer a listener can give, built once from the configuration. A
// reload builds a new set and copies its fields into the object the listeners
// hold, so their next connection sees it. The http answers do not depend on
// the configuration: every set shares the one built at start-up.
import type { AgentConfig, Texts } from "../config/types.ts";
import { HTTP_ANSWERS, type HttpResponses } from "./http/answers.ts";
import {
  agentIndex,
  agentLine,
  OVERRIDE_COUNT,
  STATE_COUNT,
  WEIGHT_BUCKETS,
  type Override,
  type State,
} from "../cell.ts";

/**
 * Every prebuilt answer, per protocol, indexed by state. Built from the
 * configuration; a reload replaces the fields of the same object, so
 * listeners holding it see the new answers on their next connection.
 */
export interface Responses {
  raw: Uint8Array[];
  /** Indexed by agentIndex(state, override, bucket). */
  agent: Uint8Array[];
  /** The settings the agent lines were built from, which the weight bucket is reckoned from too. */
  agentConfig: AgentConfig;
  http: HttpResponses;
}

export const DEFAULT_AGENT: AgentConfig = { role: "primary", weightByLag: false, lagForMinWeightBytes: 64 * 1024 ** 2 };

export function buildResponses(texts: Texts, agent: AgentConfig = DEFAULT_AGENT): Responses {
  const encode = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));
  const agentLines: Uint8Array[] = [];
  for (let o = 0; o < OVERRIDE_COUNT; o++) {
    for (let s = 0; s < STATE_COUNT; s++) {
      for (let b = 0; b < WEIGHT_BUCKETS; b++) {
        agentLines[agentIndex(s as State, o as Override, b)] = encode(agentLine(agent, s as State, o as Override, b));
      }
    }
  }
  return {
    raw: [
      encode(texts.primary),
      encode(texts.standby),
      encode(texts.unknown),
      encode(texts.lagging),
      encode(texts.fenced),
    ],
    agent: agentLines,
    agentConfig: agent,
    http: HTTP_ANSWERS,
  };
}
