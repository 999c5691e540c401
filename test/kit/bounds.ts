// The time bounds replstatus promises, as the e2e tests assert them, and the one allowance for load.
// Tests assert these bounds (the stale-after bound, the exit time, kill -9 and a fast stop, the 408) and
// nothing about speed or throughput: those are the bench's (bench/README.md, "Tests and benchmarks").

/**
 * What a test adds to a promised bound on a loaded 2-core machine: other suites, PostgreSQL pairs, haproxy and
 * a CPU hog on both cores share it, so a thread woken by a timer or a socket can wait for a core. `bun
 * bench/slack.ts` checks it: the timing-bound tests again and again beside a CPU hog per core (bench/README.md).
 */
export const LOAD_SLACK_MS = 2000;

/** A promised bound as a test asserts it: the bound, plus LOAD_SLACK_MS. */
export function withSlack(promisedMs: number): number {
  return promisedMs + LOAD_SLACK_MS;
}

/** `kill -9` of the postmaster -> no `MASTER`: the poller's connection drops (bench/README.md, Targets). */
export const KILL_BOUND_MS = 200;
/** A shutdown starts (`pg_ctl stop`, smart or fast) -> no `MASTER` (bench/README.md, Targets; docs/lifecycle.md). */
export const SHUTDOWN_BOUND_MS = 100;
/**
 * Where replstatus cannot read postmaster.pid: a smart shutdown starts -> no `MASTER`, and replstatus's own session
 * closed: the door check's --stale-after / 2 and one connection attempt, at most --stale-after (1 s at the defaults;
 * docs/lifecycle.md).
 */
export const DOOR_BOUND_MS = 1000;
/** SIGTERM -> exit, also with PostgreSQL hung (bench/README.md, Targets; docs/restarts.md). */
export const EXIT_BOUND_MS = 100;

/**
 * PostgreSQL takes connections as a primary (started, or promoted) -> `MASTER`: the watch or the next poll (50 ms
 * at the defaults) sees it, with no backoff however long it was down (docs/lifecycle.md).
 */
export const READY_BOUND_MS = 100;

/** A hung server -> no `MASTER`: the last good poll goes stale, plus the stale timer's own lateness. */
export function staleBoundMs(staleAfterMs: number): number {
  return staleAfterMs + 100;
}
