// A promotion seen as it starts. `pg_ctl promote` (and pg_promote()) creates the
// file `promote` in the data directory; the startup process deletes it when it
// takes the request, and deletes `standby.signal` as recovery ends (PostgreSQL
// documentation, "Failover" and "pg_ctl"). When this process can watch the
// data directory (inotify: the same host, and read access to it, as the
// `postgres` user or root) each change of one of those files wakes the poll
// loop, which then polls every few ms until the server says it has left
// recovery. A file event is only a hint, like a NOTIFY: the state still comes
// from a poll, so every freshness rule holds; without the watch the poll
// interval alone decides.
import { watch, type FSWatcher } from "node:fs";
import type postgres from "postgres";
import type { DbTarget } from "./target.ts";

const SIGNAL_FILES = new Set(["promote", "standby.signal", "recovery.signal", "fallback_promote"]);
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "::1"]);

export interface PromoteWatch {
  close(): void;
}

/** Whether the server can be on this host: a unix socket or a loopback address. */
export function isLocal(target: DbTarget): boolean {
  return target.host.startsWith("/") || LOCAL_HOSTS.has(target.host) || target.host.startsWith("127.");
}

/**
 * Asks the server for its data directory (needs superuser or pg_read_all_settings) and watches
 * it; `onSignal` on every change of a signal file. Resolves to why it cannot watch, or to
 * undefined once it does. `closed()` is asked after the query, so a connection dropped
 * meanwhile starts no watch.
 */
export async function watchPromotion(
  conn: postgres.Sql,
  onSignal: () => void,
  closed: () => boolean,
  keep: (w: PromoteWatch) => void,
): Promise<string | undefined> {
  let dir: string;
  try {
    const [row] = await conn.unsafe("select current_setting('data_directory') as dir");
    dir = String(row!.dir);
  } catch (err) {
    return `could not read data_directory: ${(err as Error).message}`;
  }
  if (closed()) return undefined;
  let w: FSWatcher;
  try {
    w = watch(dir, { persistent: false }, (_event, name) => {
      if (name === null || SIGNAL_FILES.has(String(name))) onSignal();
    });
  } catch (err) {
    return `could not watch ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  w.on("error", () => w.close());
  keep({ close: () => w.close() });
  return undefined;
}
