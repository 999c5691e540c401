// Everything the demo, a test or the bench starts is registered here while it runs, so an interrupted run leaves no
// process or temp dir behind. Nothing is installed at import: the handlers come with the first registration and go
// with the last. Bun emits no 'exit' when a signal kills it, so while anything is registered a signal becomes an exit.
import { rmSync } from "node:fs";
import { constants } from "node:os";

const tasks = new Set<() => void>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const exitOnSignal = (sig: NodeJS.Signals) => process.exit(128 + constants.signals[sig]);

function runAll(): void {
  for (const task of tasks) {
    try {
      task();
    } catch {
      // the others still run
    }
  }
}

/** Runs `task` (synchronous) if the process exits before the returned function is called. */
export function atExit(task: () => void): () => void {
  if (tasks.size === 0) {
    process.on("exit", runAll);
    for (const sig of SIGNALS) process.on(sig, exitOnSignal);
  }
  tasks.add(task);
  return () => {
    if (!tasks.delete(task) || tasks.size > 0) return;
    process.off("exit", runAll);
    for (const sig of SIGNALS) process.off(sig, exitOnSignal);
  };
}

const pids = new Map<number, () => void>();
const dirs = new Map<string, () => void>();

/** Kill `pid` if the process exits before `untrack(pid)`. */
export function track(pid: number): void {
  pids.set(
    pid,
    atExit(() => process.kill(pid, "SIGKILL")),
  );
}

export function untrack(pid: number): void {
  pids.get(pid)?.();
  pids.delete(pid);
}

/** Remove `dir` if the process exits before `untrackDir(dir)`. */
export function trackDir(dir: string): void {
  dirs.set(
    dir,
    atExit(() => rmSync(dir, { recursive: true, force: true })),
  );
}

export function untrackDir(dir: string): void {
  dirs.get(dir)?.();
  dirs.delete(dir);
}
