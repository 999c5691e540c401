// Lag limits: when a standby stops being a good replica. The poll reads the
// facts (facts.ts, POLL_QUERY); this file only judges them, so the rule can
// be read in one place.
//
// - Bytes: the primary's position as the WAL receiver last heard it
//   (pg_stat_wal_receiver.latest_end_lsn) minus what this standby has replayed
//   (pg_last_wal_replay_lsn()). Measured against the primary, not against the
//   standby's own receive point, which would hide a receiver that fell behind.
// - Seconds: age of the last replayed transaction. On an idle primary it grows
//   for ever although nothing is missing, so it only counts while there is WAL
//   left to replay (byte lag above 0).
// - With any limit set, a standby whose WAL receiver is not streaming is lagging:
//   it is not being fed, whatever its last numbers said (ARCHITECTURE.md).
// - Without pg_read_all_stats the receiver's columns read as null: nothing can
//   be judged, so the role is answered as it is and the log says so once.
import { formatBytes } from "../units.ts";
import type { Logger } from "../log.ts";
import type { PollFacts } from "./facts.ts";

export interface LagLimits {
  maxLagBytes: number | undefined;
  maxLagSeconds: number | undefined;
  lagGraceMs: number;
}

export interface LagVerdict {
  lagging: boolean;
  /** For the state-change log line: `replay 20 MB behind, limit 16 MB`. */
  reason: string;
}

export interface LagJudge {
  /**
   * Judges a standby's poll. `wasStandby` says whether the node was a healthy
   * standby before this poll: only then does the grace period apply, so a
   * responder that starts next to a lagging standby never says STANDBY first.
   */
  judge(facts: PollFacts, wasStandby: boolean, nowMs: number): LagVerdict;
  /** Forgets an ongoing excursion (after a non-standby poll or a failure). */
  reset(): void;
}

export function createLagJudge(limits: LagLimits, log: Logger): LagJudge {
  const { maxLagBytes, maxLagSeconds, lagGraceMs } = limits;
  const limited = maxLagBytes !== undefined || maxLagSeconds !== undefined;
  let overSinceMs: number | undefined;
  let warnedHidden = false;

  function over(facts: PollFacts): string | undefined {
    if (facts.receiverPid === null) return "no WAL receiver running";
    if (facts.receiverStatus !== "streaming") return `WAL receiver ${facts.receiverStatus}, not streaming`;
    const lagBytes = facts.lagBytes ?? 0;
    if (maxLagBytes !== undefined && lagBytes > maxLagBytes) {
      return `replay ${formatBytes(lagBytes)} behind, limit ${formatBytes(maxLagBytes)}`;
    }
    const ageS = facts.replayAgeSeconds;
    if (maxLagSeconds !== undefined && lagBytes > 0 && ageS !== null && ageS > maxLagSeconds) {
      return `replay ${formatBytes(lagBytes)} and ${Math.round(ageS)} s behind, limit ${maxLagSeconds} s`;
    }
    return undefined;
  }

  return {
    judge(facts, wasStandby, nowMs) {
      if (facts.receiverPid !== null && facts.receiverStatus === null) {
        if (!warnedHidden) {
          warnedHidden = true;
          log.warning(
            "cannot read the standby's lag: pg_stat_wal_receiver shows its columns only to members of pg_read_all_stats " +
              "(GRANT pg_monitor TO the user replstatus logs in as); answering the role without lag limits or ?lag= checks",
          );
        }
        overSinceMs = undefined;
        return { lagging: false, reason: "lag not visible" };
      }
      if (!limited) return { lagging: false, reason: "no lag limit" };
      const why = over(facts);
      if (why === undefined) {
        overSinceMs = undefined;
        const lagBytes = facts.lagBytes ?? 0;
        const limit = maxLagBytes !== undefined ? `, limit ${formatBytes(maxLagBytes)}` : "";
        return { lagging: false, reason: `replay ${formatBytes(lagBytes)} behind${limit}` };
      }
      overSinceMs ??= nowMs;
      const lagging = !wasStandby || nowMs - overSinceMs >= lagGraceMs;
      return { lagging, reason: why };
    },
    reset() {
      overSinceMs = undefined;
    },
  };
}
