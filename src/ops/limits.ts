// The open-file limit and --max-connections: the limit a listener enforces,
// and the log lines when it is reached. Counting happens on the hot path
// (listen/gate.ts); logging happens here, never per connection.
import type { Gate } from "../listen/gate.ts";
import type { Logger } from "../log.ts";
import { OVER_LIMIT, RESULTS } from "../listen/gate.ts";

/** Open files the process needs besides client sockets: runtime, database, metrics. */
export const FD_RESERVE = 32;

/**
 * --max-connections as enforced: at most FD_RESERVE below the open-file limit.
 * At that limit Bun's accept loop spins at full CPU without telling (EMFILE;
 * measured with Bun 1.4.5) and there is no hook to learn of it, so the
 * defence is to never get there.
 */
export function fitFdLimit(maxConnections: number, fdLimit: number | undefined): number {
  return fdLimit === undefined ? maxConnections : Math.max(1, Math.min(maxConnections, fdLimit - FD_RESERVE));
}

/** Logs once when connections start being closed over the limit and once when that ends. */
export function logOverLimit(counters: Float64Array, gate: Gate, log: Logger): Timer {
  let last = 0;
  let limited = false;
  let atStart = 0;
  const timer = setInterval(() => {
    let total = 0;
    for (let i = OVER_LIMIT; i < counters.length; i += RESULTS.length) total += counters[i]!;
    if (total > last && !limited) {
      limited = true;
      atStart = last;
      log.warning(
        `connection limit reached: ${gate.open} open, closing new connections unanswered (--max-connections ${gate.maxConnections})`,
      );
    } else if (total === last && limited) {
      limited = false;
      log.info(`connections below the limit again; ${total - atStart} closed unanswered meanwhile`);
    }
    last = total;
  }, 1000);
  timer.unref();
  return timer;
}
