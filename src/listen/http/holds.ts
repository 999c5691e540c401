// The memory of ?lag= checks that ask for hysteresis (rejoin_lag=,
// rejoin_after=): a check path answers per request, so what it must remember
// between two requests (in the pool or out, since when under the rejoin
// limit) is kept here, one entry per distinct question (path and the three
// numbers), shared by every client that asks it. Bounded: at most MAX_HOLDS
// questions (the least recently asked goes first), and one not asked for
// FORGET_AFTER_MS starts fresh. The node is judged only when asked: a spike
// between two checks is not seen. ARCHITECTURE.md, "Lag without flapping".
import { FRESH, hysteresisStep, interrupted, type Hysteresis } from "../../hysteresis.ts";

export const MAX_HOLDS = 64;
export const FORGET_AFTER_MS = 60_000;

export interface Holds {
  /**
   * One look at the question `key`: over its lag limit, under its rejoin
   * limit (never both); whether the node is in the pool now. Out, it comes
   * back after `holdMs` of looks under the rejoin limit.
   */
  look(key: string, over: boolean, under: boolean, holdMs: number, nowMs: number): boolean;
  /** The node is no standby (or unknown) at this look: out stays out, its hold starts again. */
  fail(key: string, nowMs: number): void;
  readonly size: number;
}

export function createHolds(maxHolds = MAX_HOLDS, forgetAfterMs = FORGET_AFTER_MS): Holds {
  const held = new Map<string, { m: Hysteresis; askedMs: number }>();

  function take(key: string, nowMs: number): Hysteresis {
    const entry = held.get(key);
    if (entry === undefined) return FRESH;
    held.delete(key);
    return nowMs - entry.askedMs > forgetAfterMs ? FRESH : entry.m;
  }

  function keep(key: string, m: Hysteresis, nowMs: number): void {
    held.set(key, { m, askedMs: nowMs });
    if (held.size > maxHolds) held.delete(held.keys().next().value!);
  }

  return {
    look(key, over, under, holdMs, nowMs) {
      const next = hysteresisStep(take(key, nowMs), over, under, 0, holdMs, nowMs);
      keep(key, { phase: next.phase, sinceMs: next.sinceMs }, nowMs);
      return next.phase === "in";
    },
    fail(key, nowMs) {
      keep(key, interrupted(take(key, nowMs)), nowMs);
    },
    get size() {
      return held.size;
    },
  };
}
