// Push routing against checks: the client write gap through haproxy across a failover, for the C
// worker's checks, replstatus's checks, and replstatus's checks with `replstatus route` driving
// haproxy (docs/routing.md), in one run, at `inter 100ms` and `inter 1s`. The machinery is the
// downtime part's (downtime.ts): one frontend per (setting, checker), every frontend sees the same
// event, a client per frontend starts a write every few ms.
import { measureGaps, type DowntimeResult } from "./downtime.ts";
import type { Pair } from "./targets.ts";

/** The settings of the push targets: a third of C's gap at inter 100ms, a tenth at inter 1s. */
export const PUSH_SETTINGS: { name: string; line: string; target: number }[] = [
  {
    name: "inter 100ms rise 2",
    line: "default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2 on-marked-down shutdown-sessions",
    target: 1 / 3,
  },
  {
    name: "inter 1s rise 2",
    line: "default-server inter 1s rise 2 fall 2 on-marked-down shutdown-sessions",
    target: 1 / 10,
  },
];

export function measurePush(pair: Pair, trials: number, log: (line: string) => void): Promise<DowntimeResult> {
  return measureGaps(pair, trials, (line) => log(line.replace(/^downtime/, "push")), {
    settings: PUSH_SETTINGS,
    route: true,
    // After the event, one attempt every 10 ms a client: half the downtime part's pace, as two
    // shared cores must also run three checkers and the router.
    attemptEveryMs: 10,
  });
}
