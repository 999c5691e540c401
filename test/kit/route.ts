// `replstatus route` as a child process, for the tests and the bench: started,
// watched through its log (every push is a line with its time), stopped with
// SIGTERM or killed with SIGKILL (a router that dies).
import { track, untrack } from "../../src/demo/cleanup.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { cleanEnv, MAIN } from "../../src/demo/responder.ts";

export interface RouteProc extends AsyncDisposable {
  pid: number;
  readonly log: string;
  /** The port of its --listen http listener, when it has one. */
  statusPort: number | undefined;
  /** Every push logged so far: when (epoch ms), the BACKEND/SERVER, and the command. */
  pushes(): { at: number; server: string; command: string }[];
  waitForLog(pattern: RegExp, what?: string, timeoutMs?: number): Promise<void>;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number>;
  /** SIGKILL: a router that dies without a word. */
  kill(): Promise<void>;
}

export async function startRoute(args: string[]): Promise<RouteProc> {
  const proc = Bun.spawn([process.execPath, MAIN, "route", ...args], {
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  }) as Bun.Subprocess<"ignore", "pipe", "pipe">;
  track(proc.pid);
  void proc.exited.then(() => untrack(proc.pid));
  let log = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) log += decoder.decode(chunk, { stream: true });
  })();
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const waitForLog = async (pattern: RegExp, what = String(pattern), timeoutMs = 20_000) => {
    await waitFor(what, () => exited() || pattern.test(log), timeoutMs);
    if (!pattern.test(log)) throw new Error(`replstatus route exited before ${what}\n--- its log ---\n${log}`);
  };
  const stop = async () => {
    if (!exited()) proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    const code = await proc.exited;
    clearTimeout(timer);
    return code;
  };
  await waitForLog(/replstatus route driving haproxy.*\n/, "the start line").catch(async (err: Error) => {
    await stop();
    throw err;
  });
  const port = /status http \S*:(\d+)/.exec(log)?.[1];
  return {
    pid: proc.pid,
    get log() {
      return log;
    },
    statusPort: port === undefined ? undefined : Number(port),
    pushes: () =>
      [...log.matchAll(/^(\S+) info: (\S+): ((?:set server|shutdown sessions server) [^(]+?) \(/gm)].map((m) => ({
        at: Date.parse(m[1]!),
        server: m[2]!,
        command: m[3]!,
      })),
    waitForLog,
    stop,
    kill: async () => {
      proc.kill("SIGKILL");
      await proc.exited;
    },
    [Symbol.asyncDispose]: async () => void (await stop()),
  };
}
