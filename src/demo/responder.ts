// The real CLI as a child process, for the demo, the tests and the bench: started, watched
// through its log, stopped with SIGTERM (SIGKILL if it will not go).
import { join } from "node:path";
import { track, untrack } from "./cleanup.ts";
import { waitFor } from "./pg.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const MAIN = join(ROOT, "src", "main.ts");

export interface Responder extends AsyncDisposable {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** Everything written to stderr so far. */
  readonly log: string;
  /** Ports of the listeners, in the order of the start line. */
  ports: number[];
  waitForLog(pattern: RegExp, what?: string, timeoutMs?: number): Promise<void>;
  /** Resolves to the exit code after SIGTERM. */
  stop(): Promise<number>;
}

export interface ResponderOptions {
  /** What runs replstatus; default `bun src/main.ts` (the demo passes the running binary). */
  command?: string[];
  /** Called with every line it logs, as it arrives. */
  onLine?(line: string): void;
  /** A listening socket to pass as fd 3, with test/kit/socket.ts's ACTIVATE as `wrap`. */
  inheritFd?: number;
}

/**
 * Starts `bun src/main.ts args` and waits for its start line. `wrap` is a
 * command that execs it (e.g. prlimit), so the pid stays the responder's.
 */
export async function startResponder(
  args: string[],
  env: Record<string, string> = {},
  wrap: string[] = [],
  opts: ResponderOptions = {},
): Promise<Responder> {
  const proc = Bun.spawn([...wrap, ...(opts.command ?? [process.execPath, MAIN]), ...args], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe", ...(opts.inheritFd === undefined ? [] : [opts.inheritFd])],
  }) as Bun.Subprocess<"ignore", "pipe", "pipe">;
  track(proc.pid);
  void proc.exited.then(() => untrack(proc.pid));
  let log = "";
  void (async () => {
    const decoder = new TextDecoder();
    let done = 0;
    for await (const chunk of proc.stderr) {
      log += decoder.decode(chunk, { stream: true });
      if (!opts.onLine) continue;
      for (let end; (end = log.indexOf("\n", done)) !== -1; done = end + 1) opts.onLine(log.slice(done, end));
    }
  })();
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const waitForLog = async (pattern: RegExp, what = String(pattern), timeoutMs = 20_000) => {
    await waitFor(what, () => exited() || pattern.test(log), timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}\n--- replstatus log ---\n${log}`);
    });
    if (!pattern.test(log)) {
      throw new Error(`replstatus exited with ${proc.exitCode ?? proc.signalCode} while waiting for ${what}:\n${log}`);
    }
  };
  // A responder that never got to serving must not outlive the failed start.
  await waitForLog(/ serving /, "the start line").catch(async (err: Error) => {
    proc.kill("SIGKILL");
    await proc.exited;
    throw err;
  });
  const line = log.split("\n").find((l) => l.includes(" serving "))!;
  const ports = [...line.matchAll(/:(\d+)(?=[,;])/g)].map((m) => Number(m[1]));
  const stop = async () => {
    proc.kill("SIGTERM");
    return await proc.exited;
  };
  return {
    proc,
    get log() {
      return log;
    },
    ports,
    waitForLog,
    stop,
    // SIGTERM first, so it removes its control socket; SIGKILL if it does not exit.
    async [Symbol.asyncDispose]() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}

/** The environment without PG* and REPLSTATUS_* variables of the caller. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("PG") && !k.startsWith("REPLSTATUS_")) env[k] = v;
  }
  return env;
}
