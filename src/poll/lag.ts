// Lag limits: when a standby stops being a good replica (bytes behind the primary's end as its WAL receiver heard
// it, seconds since the last replayed transaction while WAL is left to replay, a receiver that is not streaming) and
// what cannot be judged (no pg_read_all_stats); the grace and the rejoin hold go through src/hysteresis.ts.
// ARCHITECTURE.md, "Lag without flapping".
import { formatBytes, formatDuration } from "../units.ts";
import type { Logger } from "../log.ts";
import type { PollFacts } from "./facts.ts";
import { FRESH, hysteresisStep, interrupted } from "../hysteresis.ts";

export interface LagLimits {
  maxLagBytes: number | undefined;
  maxLagSeconds: number | undefined;
  lagGraceMs: number;
  /** A lagging standby rejoins at most this far behind; undefined: maxLagBytes. */
  rejoinLagBytes: number | undefined;
  /** As maxLagSeconds, for rejoining; undefined: maxLagSeconds. */
  rejoinLagSeconds: number | undefined;
  /** How long a lagging standby must stay under the rejoin limits before it rejoins. */
  rejoinAfterMs: number;
}

export interface LagVerdict {
  lagging: boolean;
  /** For the state-change log line: `replay 20 MB behind, limit 16 MB`. */
  reason: string;
  /** When the verdict changes if no new poll comes first (a grace or a hold ends); undefined: not by itself. */
  untilMs: number | undefined;
}

export interface LagJudge {
  /**
   * Judges a standby's poll. Only a good replica gets the grace: a responder
   * that starts (or reconnects) next to a lagging standby never says STANDBY
   * first. A lagging one rejoins under the rejoin limits after the hold.
   */
  judge(facts: PollFacts, nowMs: number): LagVerdict;
  /** A failed or stale poll: a good replica loses its grace, a lagging one stays out and its hold starts again. */
  interrupt(): void;
  /** Forgets everything (the node is a primary). */
  reset(): void;
  /** New limits from the next poll on (a reload); where the standby stands is kept. */
  retune(limits: LagLimits): void;
  /** While a lagging standby's hold runs (under the rejoin limits), how long it has left; else undefined. */
  rejoinInMs(nowMs: number): number | undefined;
}

/**
 * The receiver rule and the limits as one predicate: why `facts` are over
 * them (the limit named `word`, "limit" or "rejoin limit"), or undefined.
 */
function overLimits(
  facts: PollFacts,
  bytes: number | undefined,
  seconds: number | undefined,
  word: string,
): string | undefined {
  if (facts.receiverPid === null) return "no WAL receiver running";
  if (facts.receiverStatus !== "streaming") return `WAL receiver ${facts.receiverStatus}, not streaming`;
  const lagBytes = facts.lagBytes ?? 0;
  if (bytes !== undefined && lagBytes > bytes) {
    return `replay ${formatBytes(lagBytes)} behind, ${word} ${formatBytes(bytes)}`;
  }
  const ageS = facts.replayAgeSeconds;
  if (seconds !== undefined && lagBytes > 0 && ageS !== null && ageS > seconds) {
    return `replay ${formatBytes(lagBytes)} and ${Math.round(ageS)} s behind, ${word} ${seconds} s`;
  }
  return undefined;
}

/** The standby lost its feed (no receiver, or not streaming): the agent says down for it, not drain. */
export function cutOff(facts: PollFacts): boolean {
  return facts.receiverPid === null || (facts.receiverStatus !== null && facts.receiverStatus !== "streaming");
}

/** The limits as the judge reads them: the rejoin ones filled in. */
function tuned(limits: LagLimits) {
  const { maxLagBytes, maxLagSeconds, lagGraceMs, rejoinAfterMs } = limits;
  const rejoinBytes = limits.rejoinLagBytes ?? maxLagBytes;
  const rejoinSeconds = limits.rejoinLagSeconds ?? maxLagSeconds;
  const limited = maxLagBytes !== undefined || maxLagSeconds !== undefined;
  const rejoinWord = rejoinBytes !== maxLagBytes || rejoinSeconds !== maxLagSeconds ? "rejoin limit" : "limit";
  return { maxLagBytes, maxLagSeconds, lagGraceMs, rejoinAfterMs, rejoinBytes, rejoinSeconds, limited, rejoinWord };
}

export function createLagJudge(limits: LagLimits, log: Logger): LagJudge {
  let t = tuned(limits);
  let memory = FRESH;
  let warnedHidden = false;

  function hidden(): LagVerdict {
    if (!warnedHidden) {
      warnedHidden = true;
      log.warning(
        "cannot read the standby's lag: pg_stat_wal_receiver shows its columns only to members of pg_read_all_stats " +
          "(GRANT pg_monitor TO the user replstatus logs in as); answering the role without lag limits or ?lag= checks",
      );
    }
    memory = { phase: "in", sinceMs: undefined };
    return { lagging: false, reason: "lag not visible", untilMs: undefined };
  }

  return {
    judge(facts, nowMs) {
      const { maxLagBytes, maxLagSeconds, lagGraceMs, rejoinAfterMs, rejoinBytes, rejoinSeconds, limited } = t;
      const { rejoinWord } = t;
      if (facts.receiverPid !== null && facts.receiverStatus === null) return hidden();
      if (!limited) return { lagging: false, reason: "no lag limit", untilMs: undefined };
      const over = overLimits(facts, maxLagBytes, maxLagSeconds, "limit");
      const overRejoin = over ?? overLimits(facts, rejoinBytes, rejoinSeconds, rejoinWord);
      const next = hysteresisStep(
        memory,
        over !== undefined,
        overRejoin === undefined,
        lagGraceMs,
        rejoinAfterMs,
        nowMs,
      );
      const rejoined = memory.phase === "out" && next.phase === "in";
      memory = { phase: next.phase, sinceMs: next.sinceMs };
      const lagging = next.phase === "out";
      let reason = over ?? (lagging ? overRejoin : undefined);
      if (reason === undefined) {
        const bytes = rejoined || lagging ? rejoinBytes : maxLagBytes;
        const limit =
          bytes === undefined ? "" : `, ${rejoined || lagging ? rejoinWord : "limit"} ${formatBytes(bytes)}`;
        const held = rejoined && rejoinAfterMs > 0 ? `, under it for ${formatDuration(rejoinAfterMs)}` : "";
        reason = `replay ${formatBytes(facts.lagBytes ?? 0)} behind${limit}${held}`;
      }
      return { lagging, reason, untilMs: next.untilMs };
    },
    interrupt() {
      memory = interrupted(memory);
    },
    reset() {
      memory = FRESH;
    },
    retune(next) {
      t = tuned(next);
    },
    rejoinInMs(nowMs) {
      if (memory.phase !== "out" || memory.sinceMs === undefined) return undefined;
      return Math.max(0, memory.sinceMs + t.rejoinAfterMs - nowMs);
    },
  };
}
