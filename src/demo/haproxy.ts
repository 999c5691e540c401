// A throwaway haproxy (the machine's own binary) for the tests, the bench and
// the demo: a generated configuration in a temp dir, one `listen` section per
// proxy on a free loopback port, a unix stats socket to read server states,
// run in the foreground (-db) and stopped at the end.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { track, untrack } from "./cleanup.ts";
import { freePort, superuser, waitFor } from "./pg.ts";
import { request } from "./probe.ts";

export interface HaproxyOptions {
  /** Proxy name -> lines of its `listen` section (mode, checks, servers); the bind line is added. */
  proxies?: Record<string, string[]>;
  /** Backend name -> lines of a `backend` section: checks without a frontend. */
  backends?: Record<string, string[]>;
  /** Extra lines for the `global` section (not `maxconn`: haproxy keeps the first and ignores a second). */
  global?: string[];
  /**
   * The process-wide connection limit (global `maxconn`), shared by every proxy; 200 unless given.
   * At the limit haproxy stops accepting on every proxy, and new connections wait in the kernel.
   */
  maxconn?: number;
  /** The `timeout` lines of the `defaults` section; the default suits a test (connect 1s, client and server 30s, check 1s). */
  timeouts?: string[];
  /** Extra lines for the `defaults` section, e.g. a `default-server` line. */
  defaults?: string[];
}

const TEST_TIMEOUTS = ["timeout connect 1s", "timeout client 30s", "timeout server 30s", "timeout check 1s"];

/** One row of `show stat` for a server. */
export interface ServerStat {
  /** UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (going up), MAINT, ... */
  status: string;
  /** The last check's result: L7OK, L7STS, L4CON, SOCKERR, ... */
  checkStatus: string;
}

export interface Haproxy extends AsyncDisposable {
  dir: string;
  /** The admin-level stats socket, for statsCommand(). */
  statsSocket: string;
  /** Proxy name -> the port its clients connect to. */
  ports: Record<string, number>;
  /** Everything haproxy wrote to stdout and stderr so far. */
  readonly log: string;
  /** "proxy/server" -> its state now, from the stats socket. */
  servers(): Promise<Record<string, ServerStat>>;
  /** `show stat`, one object per row, keyed by the CSV header (pxname, svname, status, weight, agent_status...). */
  showStat(): Promise<Record<string, string>[]>;
  /** The server rows of one proxy from `show stat`, by server name. */
  showServers(proxy: string): Promise<Record<string, Record<string, string>>>;
  /** Waits until the server's status is exactly `status`; resolves to the time it took, in ms. */
  waitForServer(proxy: string, server: string, status: "UP" | "DOWN", timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

const HAPROXY_CANDIDATES = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"];

/** The haproxy binary, or undefined when it is not installed. */
export function findHaproxy(): string | undefined {
  return Bun.which("haproxy") ?? HAPROXY_CANDIDATES.find((p) => existsSync(p));
}

export function haproxyBinary(): string {
  const found = findHaproxy();
  if (!found) throw new Error("could not find haproxy\nhint: apt-get install -y haproxy");
  return found;
}

/** The configuration file's text, and the port of each proxy. */
async function configure(opts: HaproxyOptions, socketPath: string): Promise<[string, Record<string, number>]> {
  const ports: Record<string, number> = {};
  const sections: string[] = [];
  for (const [name, lines] of Object.entries(opts.proxies ?? {})) {
    ports[name] = await freePort();
    sections.push(`listen ${name}`, `\tbind 127.0.0.1:${ports[name]}`, ...lines.map((l) => `\t${l}`), "");
  }
  for (const [name, lines] of Object.entries(opts.backends ?? {})) {
    sections.push(`backend ${name}`, ...lines.map((l) => `\t${l}`), "");
  }
  const config = [
    "global",
    `\tstats socket ${socketPath} mode 600 level admin`,
    `\tmaxconn ${opts.maxconn ?? 200}`,
    ...(opts.global ?? []).map((l) => `\t${l}`),
    "",
    "defaults",
    "\tmode tcp",
    ...[...(opts.timeouts ?? TEST_TIMEOUTS), ...(opts.defaults ?? [])].map((l) => `\t${l}`),
    "",
    ...sections,
  ].join("\n");
  return [config, ports];
}

/** What the stats socket says of the servers. */
function statsReader(socketPath: string) {
  const showStat = async (): Promise<Record<string, string>[]> => {
    const [header, ...rows] = (await statsCommand(socketPath, "show stat")).replace(/^# /, "").trim().split("\n");
    const keys = header!.split(",");
    return rows.map((row) => Object.fromEntries(row.split(",").map((v, i) => [keys[i] ?? String(i), v])));
  };
  const serverRows = async () => (await showStat()).filter((r) => r.svname !== "FRONTEND" && r.svname !== "BACKEND");
  const servers = async (): Promise<Record<string, ServerStat>> =>
    Object.fromEntries(
      (await serverRows()).map((r) => [`${r.pxname}/${r.svname}`, { status: r.status!, checkStatus: r.check_status! }]),
    );
  const showServers = async (proxy: string) =>
    Object.fromEntries((await serverRows()).filter((r) => r.pxname === proxy).map((r) => [r.svname!, r]));
  const waitForServer = async (proxy: string, server: string, status: "UP" | "DOWN", timeoutMs = 10_000) => {
    const t0 = performance.now();
    let last: ServerStat | undefined;
    try {
      await waitFor(
        `${proxy}/${server} to be ${status}`,
        async () => {
          last = (await servers())[`${proxy}/${server}`];
          return last?.status === status;
        },
        timeoutMs,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message} (last: ${JSON.stringify(last)})`);
    }
    return performance.now() - t0;
  };
  return { showStat, servers, showServers, waitForServer };
}

export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  const bin = haproxyBinary();
  const dir = mkdtempSync(join(tmpdir(), "rs-haproxy-"));
  const socketPath = join(dir, "stats.sock");
  const [config, ports] = await configure(opts, socketPath);
  writeFileSync(join(dir, "haproxy.cfg"), config);

  const proc = Bun.spawn([bin, "-db", "-f", join(dir, "haproxy.cfg")], {
    cwd: dir,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  let log = "";
  for (const stream of [proc.stdout, proc.stderr]) {
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
    })();
  }

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    untrack(proc.pid);
    proc.kill("SIGTERM");
    const exited = await Promise.race([proc.exited, Bun.sleep(5000).then(() => undefined)]);
    if (exited === undefined) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const stats = statsReader(socketPath);
  try {
    await waitFor(
      "haproxy's stats socket",
      async () => {
        if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}:\n${log}\n${config}`);
        return Object.keys(await stats.servers()).length > 0;
      },
      10_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    dir,
    statsSocket: socketPath,
    ports,
    get log() {
      return log;
    },
    ...stats,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Sends one command to haproxy's stats socket and returns its whole answer. */
export function statsCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  return request({ path: socketPath }, `${command}\n`, timeoutMs);
}

/** One connection as the superuser to 127.0.0.1:port (a node, or a haproxy frontend), opened on first use. */
export function clientOn(port: number): postgres.Sql {
  return postgres({
    host: "127.0.0.1",
    port,
    user: superuser,
    database: "postgres",
    max: 1,
    connect_timeout: 5,
    idle_timeout: 0,
    fetch_types: false,
    onnotice: () => {},
  });
}

/**
 * Connects through a haproxy frontend as a client would: which PostgreSQL
 * answers (its port), and is it in recovery?
 */
export async function landsOn(port: number): Promise<{ inRecovery: boolean; port: number }> {
  const sql = clientOn(port);
  try {
    const [row] = await sql`select pg_is_in_recovery() as r, current_setting('port')::int as p`;
    return { inRecovery: row!.r as boolean, port: row!.p as number };
  } finally {
    await sql.end({ timeout: 1 });
  }
}
