// Leave and rejoin as one pure step: the hysteresis of the lag rules, shared
// by the configured limits (poll/lag.ts) and the per-request ?lag= checks
// with rejoin_lag= / rejoin_after= (listen/http/holds.ts). It judges nothing
// itself: its caller says whether a look is over the leave limits and whether
// it is under the rejoin limits. ARCHITECTURE.md, "Lag without flapping".

/**
 * Where a node stands: `fresh` (no look yet, or the last ones failed: no
 * grace), `in` (in the pool), `out` (lagging). `sinceMs` is when the running
 * stretch over the leave limits (in) or under the rejoin limits (out) began.
 */
export interface Hysteresis {
  phase: "fresh" | "in" | "out";
  sinceMs: number | undefined;
}

export const FRESH: Hysteresis = { phase: "fresh", sinceMs: undefined };

/**
 * One look: over the leave limits, under the rejoin limits (never both) in;
 * the new memory out, and while a stretch runs, when it ends if nothing new
 * comes (`untilMs`). Fresh: out when over, else in. In: out after `graceMs`
 * over. Out: in after `holdMs` under. A look that breaks a stretch ends it.
 */
export function hysteresisStep(
  m: Hysteresis,
  over: boolean,
  under: boolean,
  graceMs: number,
  holdMs: number,
  nowMs: number,
): Hysteresis & { untilMs: number | undefined } {
  if (m.phase === "fresh") return { phase: over ? "out" : "in", sinceMs: undefined, untilMs: undefined };
  const going = m.phase === "in" ? over : under;
  if (!going) return { phase: m.phase, sinceMs: undefined, untilMs: undefined };
  const sinceMs = m.sinceMs ?? nowMs;
  const waitMs = m.phase === "in" ? graceMs : holdMs;
  if (nowMs - sinceMs >= waitMs) {
    return { phase: m.phase === "in" ? "out" : "in", sinceMs: undefined, untilMs: undefined };
  }
  return { phase: m.phase, sinceMs, untilMs: sinceMs + waitMs };
}

/**
 * A look that failed (no poll, the node not a standby): one in the pool loses
 * its grace (fresh), one out stays out and its hold starts again.
 */
export function interrupted(m: Hysteresis): Hysteresis {
  return m.phase === "out" ? { phase: "out", sinceMs: undefined } : FRESH;
}
