// How long a test and its hooks may take, in one place. bun test gives each test and hook 5 s unless
// told otherwise, this Bun does not apply bunfig.toml's [test] timeout, and setDefaultTimeout holds
// only for the file that calls it: so an e2e file calls useTimeouts() at its top, and a hook that
// starts or stops real components passes one of the hook timeouts below. All allow for a loaded
// 2-core machine; each wait inside a test has its own deadline.
import { setDefaultTimeout } from "bun:test";

/** A hook that starts or stops PostgreSQL (initdb, pg_basebackup, a fast stop) or builds the executable. */
export const HOOK_TIMEOUT_MS = 90_000;
/** A hook that starts a lab of many processes: Patroni members on etcd, nodes in network namespaces. */
export const LAB_HOOK_TIMEOUT_MS = 120_000;
/** A hook that compiles and packs the Debian package, then starts clusters under it. */
export const PACKAGE_HOOK_TIMEOUT_MS = 300_000;
/** A test on running clusters: restarts and failovers. */
export const TEST_TIMEOUT_MS = 60_000;

/** Sets this file's default test timeout: TEST_TIMEOUT_MS, or what a file of longer tests passes. */
export function useTimeouts(testMs = TEST_TIMEOUT_MS): void {
  setDefaultTimeout(testMs);
}
