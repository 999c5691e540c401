// Test helpers: spawn the real CLI, probe it with a real TCP client.
import { connect } from "node:net";
import { join } from "node:path";
import { waitFor } from "../src/testkit/pg.ts";

export const ROOT = join(import.meta.dir, "..");
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

/**
 * Starts `bun src/main.ts args` and waits for its start line. `wrap` is a
 * command that execs it (e.g. prlimit), so the pid stays the responder's.
 * `inheritFd` is passed as fd 3 (with testkit/socket.ts's ACTIVATE as `wrap`).
 */
export async function startResponder(
  args: string[],
  env: Record<string, string> = {},
  wrap: string[] = [],
  inheritFd?: number,
): Promise<Responder> {
  const proc = Bun.spawn([...wrap, process.execPath, MAIN, ...args], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe", ...(inheritFd === undefined ? [] : [inheritFd])],
  }) as Bun.Subprocess<"ignore", "pipe", "pipe">;
  let log = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) log += decoder.decode(chunk, { stream: true });
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
  await waitForLog(/ serving /, "the start line");
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

export interface ProbeResult {
  text: string;
  /** "fin" when the server closed cleanly, "reset" on ECONNRESET, else the error code. */
  close: string;
}

/**
 * Connects, optionally sends bytes first (as haproxy's tcp-check send does),
 * reads until the server closes, and says how it closed.
 */
export function probe(port: number, host = "127.0.0.1", send?: string | Uint8Array): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (close: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), close });
    };
    const socket = connect({ port, host }, () => {
      if (send !== undefined) socket.write(send);
    });
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => finish("fin"));
    socket.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : (e.code ?? e.message)));
    const timer = setTimeout(() => finish("timeout"), 5000);
  });
}

/** The raw answer, or throws when the connection did not end with a FIN. */
export async function answer(port: number, host = "127.0.0.1"): Promise<string> {
  const r = await probe(port, host);
  if (r.close !== "fin")
    throw new Error(`probe of ${host}:${port} ended with ${r.close} after ${JSON.stringify(r.text)}`);
  return r.text;
}

/** Polls the raw answer until it equals `want`; returns how long it took. */
export async function waitForAnswer(port: number, want: string, timeoutMs = 20_000): Promise<number> {
  const t0 = performance.now();
  let last = "";
  try {
    await waitFor(
      `answer ${want}`,
      async () => {
        last = await answer(port).catch((e: Error) => e.message);
        return last === want;
      },
      timeoutMs,
      2,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (last answer: ${JSON.stringify(last)})`);
  }
  return performance.now() - t0;
}
