// Starts a server under test in its own process and learns its port from the first stdout
// line, `port=N` (floor.ts prints it; so can any server started with port 0).
import type { Subprocess } from "bun";
import { track, untrack } from "../src/demo/cleanup.ts";

export interface ServerProcess extends AsyncDisposable {
  port: number;
  pid: number;
  proc: Subprocess<"ignore", "pipe", "inherit">;
  /** SIGTERM, then SIGKILL after 2 s; resolves when the process is gone. */
  stop(): Promise<void>;
}

/** Spawn `argv` and wait (at most `timeoutMs`) for its `port=N` line. */
export async function startServer(argv: string[], timeoutMs = 10_000): Promise<ServerProcess> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  track(proc.pid);
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 2000);
      await proc.exited;
      clearTimeout(killer);
    }
    untrack(proc.pid);
  };
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    for (;;) {
      const match = /^port=(\d+)$/m.exec(text);
      if (match) {
        // Keep draining whatever else it prints, so a chatty server never blocks on a full pipe.
        void (async () => {
          while (!(await reader.read()).done) {}
        })().catch(() => {});
        const port = Number(match[1]);
        return { port, pid: proc.pid, proc, stop, [Symbol.asyncDispose]: stop };
      }
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    clearTimeout(timer);
  }
  await stop();
  throw new Error(
    `could not start ${argv.join(" ")}: no port=N line on stdout (exit ${proc.exitCode ?? proc.signalCode})`,
  );
}

/** The command that runs the floor server (bench/floor.ts) with extra flags. */
export function floorCommand(...flags: string[]): string[] {
  return [process.execPath, new URL("./floor.ts", import.meta.url).pathname, ...flags];
}
