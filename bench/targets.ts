// The servers the suite measures, all started here and each in its own process:
// - a throwaway PostgreSQL primary + streaming standby with the C bgw_replstatus loaded (the
//   baseline), each node's worker on its own port;
// - replstatus (src/main.ts) against the same pair;
// - the floor (floor.ts): a bare Bun.listen that writes the banner and closes.
// When the C extension is not installed the pair starts without it, the baseline is marked
// missing, and the install command is printed.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { rebuildAsStandby, startPair, waitFor, type PgNode, type PgPair } from "../src/demo/pg.ts";
import { MAIN, startResponder, type Responder } from "../src/demo/responder.ts";
import { childrenOf, freePort } from "../src/demo/proc.ts";
import { exchange } from "../src/demo/probe.ts";

export { rebuildAsStandby, waitFor, type PgNode, type PgPair };

/** Where the C extension would be, and the package that provides it. */
export interface BgwInfo {
  available: boolean;
  pkglibdir: string;
  /** e.g. `apt-get install -y postgresql-15-bgw-replstatus`. */
  install: string;
}

export function findBgw(): BgwInfo {
  let pkglibdir = "";
  let major = "15";
  if (Bun.which("pg_config")) {
    const dir = Bun.spawnSync(["pg_config", "--pkglibdir"], { stderr: "ignore" });
    pkglibdir = dir.stdout.toString().trim();
    const version = Bun.spawnSync(["pg_config", "--version"], { stderr: "ignore" }).stdout.toString();
    major = /PostgreSQL (\d+)/.exec(version)?.[1] ?? major;
  }
  if (!pkglibdir && existsSync("/usr/lib/postgresql")) {
    const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a));
    if (versions[0]) {
      major = versions[0];
      pkglibdir = `/usr/lib/postgresql/${major}/lib`;
    }
  }
  return {
    available: pkglibdir !== "" && existsSync(join(pkglibdir, "bgw_replstatus.so")),
    pkglibdir,
    install: `apt-get install -y postgresql-${major}-bgw-replstatus`,
  };
}

/** The listen backlog replstatus runs with, and whether it has the --backlog flag at all. */
export interface BacklogSupport {
  flag: boolean;
  /** Its default as --help states it; 512 (Bun's fixed backlog) without the flag. */
  backlog: number;
}

export function backlogSupport(): BacklogSupport {
  const help = Bun.spawnSync([process.execPath, MAIN, "--help"], { stderr: "ignore" }).stdout.toString();
  const line = help.split("\n").find((l) => /^\s*--backlog\b/.test(l));
  if (!line) return { flag: false, backlog: 512 };
  const def = /\(default: (\d+)\)/.exec(line)?.[1];
  return { flag: true, backlog: def ? Number(def) : 512 };
}

export interface Pair {
  pair: PgPair;
  /** bgw_replstatus ports by node name; empty without the extension. */
  bgwPort: Map<string, number>;
  bgw: boolean;
}

/**
 * max_connections of the pair: the downtime part's six clients start a connection every 5 ms
 * each, up to 101 at a time, and the fixture's 30 would refuse them ("too many clients").
 */
export const DOWNTIME_MAX_CONNECTIONS = 700;

/** A primary and a standby, each with the C bgw_replstatus on its own port when it is installed. */
export async function startBgwPair(bgw: boolean): Promise<Pair> {
  const bgwPort = new Map<string, number>();
  const connections = `max_connections = ${DOWNTIME_MAX_CONNECTIONS}`;
  if (!bgw) return { pair: await startPair({ primaryConf: [connections] }), bgwPort, bgw };
  const primaryPort = await freePort();
  const standbyPort = await freePort();
  const pair = await startPair({
    primaryConf: [
      connections,
      "shared_preload_libraries = 'bgw_replstatus'",
      "bgw_replstatus.bind = '127.0.0.1'",
      `bgw_replstatus.port = ${primaryPort}`,
    ],
    standbyConf: [`bgw_replstatus.port = ${standbyPort}`],
  });
  bgwPort.set("primary", primaryPort);
  bgwPort.set("standby", standbyPort);
  return { pair, bgwPort, bgw };
}

/**
 * The pid of a node's bgw_replstatus worker: the postmaster's child whose command line names
 * it (PostgreSQL sets it to "postgres: bgworker: bgw_replstatus" or similar); 0 when not found.
 */
export function bgwWorkerPid(node: PgNode): number {
  let postmaster: number;
  try {
    postmaster = node.pid();
  } catch {
    return 0;
  }
  for (const pid of childrenOf(postmaster)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("bgw_replstatus")) return pid;
    } catch {
      // exited while we looked
    }
  }
  return 0;
}

export interface RunningResponder {
  port: number;
  pid: number;
  /** The listen backlog it reports on its start line, else the one its --help promised. */
  backlog: number;
  responder: Responder;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** replstatus in its own process on 127.0.0.1 (a free port), watching `node`. */
export async function startReplstatus(node: PgNode, extra: string[] = []): Promise<RunningResponder> {
  const args = ["--listen", "127.0.0.1:0", "--db", node.url, ...extra];
  // startResponder tracks the process for the exit clean-up.
  const responder = await startResponder(args);
  const pid = responder.proc.pid;
  const started = /listen backlog (\d+)/.exec(responder.log)?.[1];
  const stop = async () => {
    if (responder.proc.exitCode === null && responder.proc.signalCode === null) {
      responder.proc.kill("SIGTERM");
      const killer = setTimeout(() => responder.proc.kill("SIGKILL"), 2000);
      await responder.proc.exited;
      clearTimeout(killer);
    }
  };
  return {
    port: responder.ports[0]!,
    pid,
    backlog: started ? Number(started) : backlogSupport().backlog,
    responder,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** One raw probe: the text the server sent before closing, or `<CODE>` on an error. */
export async function probe(port: number, timeoutMs = 500): Promise<string> {
  const r = await exchange({ host: "127.0.0.1", port }, undefined, timeoutMs);
  if (r.close === "fin" || r.text) return r.text;
  return r.close === "timeout" ? "<ETIMEDOUT>" : `<${r.close}>`;
}

/** Waits until every port answers `want` (at most timeoutMs). */
export async function waitAnswers(ports: number[], want: string, timeoutMs = 30_000): Promise<void> {
  for (const port of ports) {
    await waitFor(`127.0.0.1:${port} to answer ${want}`, async () => (await probe(port)) === want, timeoutMs, 5);
  }
}
