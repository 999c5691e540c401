// The real CLI run to its exit, as a user runs it: stdout, stderr and the exit code together.
import { cleanEnv, MAIN } from "../../src/demo/responder.ts";

/** A CLI run that does not exit is killed after this; none takes more than a second. */
export const CLI_TIMEOUT_MS = 10_000;

export interface CliResult {
  /** null when it was killed (see CLI_TIMEOUT_MS). */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** A command that execs replstatus (e.g. socket.ts's ACTIVATE). */
  wrap?: string[];
  /** A socket to pass as fd 3. */
  inheritFd?: number;
}

/**
 * `replstatus args` as a user runs it, to its exit. A regression that makes it
 * serve instead of exit fails the test after CLI_TIMEOUT_MS rather than hang it.
 */
export function runCli(args: string[], env: Record<string, string> = {}, opts: CliOptions = {}): CliResult {
  const r = Bun.spawnSync([...(opts.wrap ?? []), process.execPath, MAIN, ...args], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe", ...(opts.inheritFd === undefined ? [] : [opts.inheritFd])],
    timeout: CLI_TIMEOUT_MS,
    killSignal: "SIGKILL",
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** runCli without blocking the test's event loop. */
export async function runCliAsync(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const proc = Bun.spawn([process.execPath, MAIN, ...args], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), CLI_TIMEOUT_MS);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code: proc.signalCode === null ? code : null, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** The environment of a replstatus that finds no PostgreSQL: a socket dir with no server in it (answers UNKNOWN). */
export function noDb(socketDir: string): Record<string, string> {
  return { PGHOST: socketDir, PGPORT: "5999" };
}
