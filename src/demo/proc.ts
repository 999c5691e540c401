// Processes for the demo's lab, which the tests and the bench use too: waits with a deadline,
// free ports, and running PostgreSQL's programs as the postgres OS user when run as root.
import { chownSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { basename } from "node:path";

/** How long waitFor waits by default, in ms. */
const waitMs = 30_000;
/** Deadline of one initdb, pg_ctl or pg_basebackup run, in ms (pg_ctl itself gets -t 30). */
export const commandTimeoutMs = 60_000;

// initdb refuses to run as root, so as root every PostgreSQL command runs as the postgres OS user;
// the bootstrap superuser is named after the OS user that runs initdb.
export const asRoot = process.getuid?.() === 0;
/** The OS user the servers run as, which is also the database superuser. */
export const superuser = asRoot ? "postgres" : userInfo().username;

// PG* variables of the caller's shell must not steer the fixture's commands to another server.
export const baseEnv: Record<string, string> = {};
for (const [key, value] of Object.entries(process.env)) {
  if (!key.startsWith("PG") && value !== undefined) baseEnv[key] = value;
}

let owner: { uid: number; gid: number } | undefined;
export function chown(path: string): void {
  if (!asRoot) return;
  owner ??= postgresOwner();
  chownSync(path, owner.uid, owner.gid);
}

export function postgresOwner(): { uid: number; gid: number } {
  const id = (flag: string) => {
    const out = Bun.spawnSync(["id", flag, "postgres"], { stderr: "pipe" });
    if (out.exitCode !== 0) {
      throw new Error(
        `could not find the postgres OS user, needed to run PostgreSQL as root: ${out.stderr.toString().trim()}\n` +
          "hint: apt-get install -y postgresql",
      );
    }
    return Number(out.stdout.toString().trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}

export function asPostgres(cmd: string[]): string[] {
  return asRoot ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", ...cmd] : cmd;
}

/**
 * Runs a PostgreSQL command as the server's OS user; returns trimmed stdout, throws with stderr.
 * `wrap` is a command prefix that execs it, e.g. `ip netns exec NS` (test/kit/netns.ts).
 */
export async function run(
  cmd: string[],
  cwd: string,
  what = basename(cmd[0] ?? ""),
  timeout = commandTimeoutMs,
  wrap: string[] = [],
): Promise<string> {
  const proc = Bun.spawn([...wrap, ...asPostgres(cmd)], {
    cwd,
    env: { ...baseEnv, HOME: cwd },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout,
    killSignal: "SIGKILL",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    const why = proc.signalCode ? `killed by ${proc.signalCode} after at most ${timeout}ms` : `exit ${code}`;
    throw new Error(`${what} failed (${why}): ${(err || out).trim()}`);
  }
  return out.trim();
}

/** Polls fn every stepMs until it returns something truthy; a throw counts as "not yet". */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T> | undefined | false | null,
  timeoutMs = waitMs,
  stepMs = 10,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() >= deadline) {
      const last = lastError === undefined ? "" : ` (last error: ${messageOf(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last}`);
    }
    await Bun.sleep(stepMs);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in field 2 may hold spaces and parentheses: fields resume after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === ppid) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

// Every server process has its data dir as cwd, which also finds children orphaned by a killed
// postmaster, and any psql a test left running in the cluster dir.
export function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`).replace(/ \(deleted\)$/, "");
      if (cwd === dir || cwd.startsWith(`${dir}/`)) pids.push(Number(entry));
    } catch {
      // exited, a zombie, or not ours to inspect
    }
  }
  return pids;
}

export function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

// A postmaster that was SIGKILLed (by a test, or pg.ts's halt) leaves its System V segment behind; line 7
// of postmaster.pid holds "key shmid" (PostgreSQL's LOCK_FILE_LINE_SHMEM_KEY).
export function releaseSharedMemory(pidFile: string): void {
  const shmid = readFileSync(pidFile, "utf8").split("\n")[6]?.trim().split(/\s+/)[1];
  if (shmid && shmid !== "0") Bun.spawnSync(["ipcrm", "-m", shmid], { stdout: "ignore", stderr: "ignore" });
}

/** Writes lines to path, owned by the servers' OS user. */
export function writeOwned(path: string, lines: string[]): void {
  writeFileSync(path, `${lines.join("\n")}\n`);
  chown(path);
}
