// Everything the suite starts is registered here, so that an interrupted run (Ctrl-C, SIGTERM,
// an exception) leaves no process or temp dir behind. The PostgreSQL fixture cleans up its own
// clusters on exit; this covers the rest: responders, floor servers, load workers, haproxy.
//
// Bun emits no 'exit' when a signal kills it, so once anything is registered a signal becomes
// an exit; only synchronous work is possible in an 'exit' handler.
import { rmSync } from "node:fs";

const pids = new Set<number>();
const dirs = new Set<string>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  process.on("SIGINT", () => process.exit(130));
  process.on("SIGTERM", () => process.exit(143));
  process.on("exit", () => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Kill `pid` if the suite exits before `untrack(pid)`. */
export function track(pid: number): void {
  install();
  pids.add(pid);
}

export function untrack(pid: number): void {
  pids.delete(pid);
}

/** Remove `dir` if the suite exits before `untrackDir(dir)`. */
export function trackDir(dir: string): void {
  install();
  dirs.add(dir);
}

export function untrackDir(dir: string): void {
  dirs.delete(dir);
}
