// What PostgreSQL says of itself in postmaster.pid: its status line (starting, ready, standby, stopping; see
// LOCK_FILE_LINE_PM_STATUS in PostgreSQL's src/include/utils/pidfile.h), read where this process may, and an inotify
// watch on the data directory that wakes the poll loop when it changes or when a promotion's signal files do.
// Hints only: a poll sets the state. ARCHITECTURE.md, "The poll"; docs/lifecycle.md.
import { readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";

/** postmaster.pid's status, "down" without the file or its process, "unreadable" when it cannot be read. */
export type PmStatus = "starting" | "stopping" | "ready" | "standby" | "down" | "unreadable";

/** The files a promotion creates or deletes in the data directory. */
const SIGNAL_FILES = new Set(["promote", "standby.signal", "recovery.signal", "fallback_promote"]);

/** Lines of postmaster.pid, 0-based: the port (LOCK_FILE_LINE_PORT) and the status. */
const PORT_LINE = 3;
const STATUS_LINE = 7;

/** The status in dataDir's postmaster.pid; with `port`, a file of a server on another port is "unreadable". */
export function readPmStatus(dataDir: string, port?: number): PmStatus {
  let text: string;
  try {
    text = readFileSync(join(dataDir, "postmaster.pid"), "latin1");
  } catch (err) {
    return (err as { code?: string }).code === "ENOENT" ? "down" : "unreadable";
  }
  const lines = text.split("\n");
  if (port !== undefined && lines.length > PORT_LINE && Number(lines[PORT_LINE]) !== port) return "unreadable";
  if (!alive(Number(lines[0]))) return "down";
  const status = lines[STATUS_LINE]?.trim();
  // Written last at start-up: a file without it is a postmaster still starting.
  return status === "ready" || status === "standby" || status === "stopping" ? status : "starting";
}

/** Why a file cannot be read, as the system says it. */
function whyNot(file: string): string {
  try {
    readFileSync(file);
    return "its port is another server's";
  } catch (err) {
    const code = (err as { code?: string }).code;
    return code === "EACCES" ? "permission denied" : (code ?? String(err));
  }
}

// A postmaster killed with SIGKILL leaves its file behind.
function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

export interface Postmaster {
  /**
   * The server the next connection goes to, from its settings (connect.ts):
   * its port tells its file from another server's, its host whether a
   * data_directory it tells is a path on this host at all. A new server
   * forgets the directory learned from the old one.
   */
  aim(host: string, port: number): void;
  /** Where postmaster.pid is: the server's data_directory, told by a poll; ignored for a server on another host. */
  learn(dataDir: string): void;
  /** Its status now; "unreadable" before learn() or without access. */
  status(): PmStatus;
  /**
   * A number that changes whenever the postmaster rewrites the file (it does
   * at every change of state, even to the same status, as at the end of crash
   * recovery). Watched, it costs nothing; else the file is looked at now.
   */
  version(): number;
  /** Whether changes are told as they happen; else version() must be asked now and then. */
  readonly watching: boolean;
  /** One line for the log: where postmaster.pid is and whether it is watched, read, or why not. */
  describe(): string;
  close(): void;
}

/** A host setting that names this host: a socket directory or a loopback name. */
function isLocal(host: string): boolean {
  return host.startsWith("/") || host === "localhost" || host === "127.0.0.1" || host === "::1";
}

/**
 * Calls onChange at every rewrite of postmaster.pid, and onSignal at every
 * change of a promotion's signal file, while a watch on the data directory
 * lasts. `pgdata` (PGDATA) says where the file is before a poll tells it,
 * whatever the host.
 */
export function watchPostmaster(
  pgdata: string | undefined,
  onChange: (status: PmStatus) => void,
  onSignal: () => void = () => {},
): Postmaster {
  let port: number | undefined;
  let local = false;
  let server = "";
  let dataDir = pgdata;
  let watcher: FSWatcher | undefined;
  let version = 0;
  let signature = "";

  function status(): PmStatus {
    return dataDir === undefined ? "unreadable" : readPmStatus(dataDir, port);
  }

  function arm(dir: string): void {
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && SIGNAL_FILES.has(String(name))) return onSignal();
        if (name !== "postmaster.pid") return;
        version++;
        onChange(status());
      });
      watcher.on("error", () => close());
    } catch {
      watcher = undefined;
    }
  }

  function close(): void {
    watcher?.close();
    watcher = undefined;
  }

  const pm: Postmaster = {
    aim(host, newPort) {
      if (`${host} ${newPort}` === server) return;
      server = `${host} ${newPort}`;
      port = newPort;
      local = isLocal(host);
      close();
      dataDir = pgdata;
      if (dataDir !== undefined && status() !== "unreadable") arm(dataDir);
    },
    // Once per connection: a rebuilt node's directory is a new one under the same name.
    learn(dir) {
      if (!local && dir !== pgdata) return;
      close();
      dataDir = dir;
      if (status() !== "unreadable") arm(dir);
    },
    status,
    version() {
      if (watcher || dataDir === undefined) return version;
      let now = "";
      try {
        const st = statSync(join(dataDir, "postmaster.pid"));
        now = `${st.ino} ${st.mtimeMs} ${st.size}`;
      } catch {}
      if (now !== signature) version++;
      signature = now;
      return version;
    },
    get watching() {
      return watcher !== undefined;
    },
    describe() {
      if (dataDir === undefined)
        return "postmaster.pid: not known (no PGDATA, and no data_directory of a server on this host)";
      const file = join(dataDir, "postmaster.pid");
      if (watcher) return `postmaster.pid watched: ${file}`;
      if (status() !== "unreadable")
        return `postmaster.pid read at every poll (the directory cannot be watched): ${file}`;
      return `postmaster.pid cannot be read: ${file}: ${whyNot(file)}`;
    },
    close,
  };
  if (dataDir !== undefined) pm.learn(dataDir);
  return pm;
}
