// haproxy's agent-check protocol (configuration manual, "agent-check"): on
// connect, one newline-terminated line of words such as "up ready 75%",
// "down ready #standby", "drain", "maint". The lines are prebuilt per state,
// override and weight bucket (cell.ts); open() only picks one.
import type { SocketHandler } from "bun";
import type { AgentConfig } from "../config/types.ts";
import { DRAIN_TIMEOUT_S, rawHandler } from "./raw.ts";
import type { PollFacts } from "../poll/facts.ts";
import type { Responses } from "./answers.ts";
import { currentAgent, WEIGHT_BUCKETS } from "../cell.ts";

/**
 * The hot path of an agent listener: as raw mode, but the line comes from
 * `responses.agent`. haproxy may send an `agent-send` string first; it is read
 * and dropped by the raw handler's drain, so the close is a FIN, not a reset.
 */
export function agentHandler(slots: Int32Array, responses: Responses): SocketHandler<number> {
  return {
    ...rawHandler(slots, responses),
    open(socket) {
      socket.write(responses.agent[currentAgent(slots)]!);
      socket.shutdown();
      socket.timeout(DRAIN_TIMEOUT_S);
    },
  };
}

/**
 * The weight bucket for the last poll: bucket b means a weight of
 * 100 - 10 * b percent. Linear in replay lag, from 100% at none to the floor
 * of 10% at lagForMinWeightBytes and beyond; never 0%, which haproxy treats
 * as drain. A primary is always 100%. A standby whose WAL receiver is not
 * streaming (or cannot be seen without pg_read_all_stats) gets the floor, as
 * it cannot be shown to be fresh.
 */
export function weightBucket(agent: AgentConfig, facts: PollFacts): number {
  if (!facts.inRecovery) return 0;
  if (facts.receiverStatus !== "streaming") return WEIGHT_BUCKETS - 1;
  // XXX: latest_end_lsn is NULL from the receiver's start until the primary's
  // first message carries its position (on an idle primary, a keepalive up to
  // wal_sender_timeout / 2 later): counted as no lag.
  const share = Math.min(1, Math.max(0, facts.lagBytes ?? 0) / agent.lagForMinWeightBytes);
  return Math.round(share * (WEIGHT_BUCKETS - 1));
}
