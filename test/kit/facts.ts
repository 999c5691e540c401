// A poll's facts (src/poll/facts.ts) for the pure tests: a caught-up streaming standby's or a
// primary's, with what a case changes on top.
import type { PollFacts } from "../../src/poll/facts.ts";

/** The system_identifier of the cluster the facts come from. */
export const SYSTEM_ID = "7712175825285183157";

/** A streaming standby on timeline 1, caught up. */
export function standbyFacts(over: Partial<PollFacts> = {}): PollFacts {
  return {
    inRecovery: true,
    receiverPid: 4242,
    receiverStatus: "streaming",
    lagBytes: 0,
    replayAgeSeconds: 0,
    replayLsn: null,
    systemId: SYSTEM_ID,
    timeline: 1,
    startedAt: 0,
    durationMs: 1,
    ...over,
  };
}

/** A primary on timeline 1: no receiver, no lag. */
export function primaryFacts(over: Partial<PollFacts> = {}): PollFacts {
  return standbyFacts({
    inRecovery: false,
    receiverPid: null,
    receiverStatus: null,
    lagBytes: null,
    replayAgeSeconds: null,
    ...over,
  });
}
