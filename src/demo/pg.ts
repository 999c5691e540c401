// A throwaway PostgreSQL primary (and streaming standby) in a temp dir, for the tests, the benchmarks
// and `replstatus demo`.
// Everything a cluster owns lives under one mkdtemp dir: data dirs, socket dirs, logs.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { atExit } from "./cleanup.ts";
import {
  asPostgres,
  asRoot,
  baseEnv,
  childrenOf,
  chown,
  freePort,
  messageOf,
  postgresOwner,
  processesUnder,
  releaseSharedMemory,
  run,
  signal,
  superuser,
  waitFor,
  writeOwned,
} from "./proc.ts";

export { freePort, superuser, waitFor } from "./proc.ts";
import { clientBinDir, hasBaseBackup, serverBinDir } from "./pgbin.ts";
import { baseConf, streamingQuery, trustHba } from "./pgconf.ts";

export interface PgOptions {
  /** Extra postgresql.conf lines for the primary; the standby inherits them. */
  primaryConf?: string[];
  /** Extra postgresql.conf lines for the standby, after (so overriding) the primary's. */
  standbyConf?: string[];
  /** pg_hba.conf lines placed before the trust lines, e.g. to require a password for one role. */
  hbaPrepend?: string[];
  /** Files written into the primary's data dir before it starts, mode 0600 (e.g. server.key for ssl = on). */
  dataFiles?: Record<string, string>;
  /**
   * A command prefix for the primary's (standby's) server commands, e.g. `ip netns exec NS` to run
   * the node in a network namespace (test/kit/netns.ts). psql and pg_ctl's signals go through the
   * socket dir and the pid, so they reach it anyway.
   */
  primaryWrap?: string[];
  standbyWrap?: string[];
  /** Address the standby streams from (primary_conninfo); default 127.0.0.1. Allow it in hbaPrepend. */
  primaryHost?: string;
  /**
   * The PostgreSQL major to run (13..18, src/demo/pgbin.ts): the machine's own when it has that
   * major, else the npm package pinned for it. Default: the machine's own PostgreSQL.
   */
  major?: number;
}

export interface PgNode {
  name: string;
  dataDir: string;
  port: number;
  socketDir: string;
  logFile: string;
  /** The dir of the server programs (initdb, pg_ctl, postgres) this node runs. */
  binDir: string;
  /** The database superuser, which is also the OS user the server runs as. */
  user: string;
  /** postgres://user@127.0.0.1:PORT/postgres */
  url: string;
  /** PGHOST (the socket dir), PGPORT, PGUSER, PGDATABASE */
  env: Record<string, string>;
  /** The postmaster pid, from postmaster.pid; throws when the node is not running. */
  pid(): number;
  /** pg_ctl start -w, then waits until it accepts connections. */
  start(): Promise<void>;
  /** pg_ctl stop -w; mode defaults to "fast". */
  stop(mode?: "fast" | "immediate" | "smart"): Promise<void>;
  /** pg_ctl promote -W: returns as soon as the request is made, not when it is done. */
  promote(): Promise<void>;
  /** Waits until pg_is_in_recovery() is false. */
  waitPrimary(): Promise<void>;
  /** Signals the postmaster and its direct children. */
  signalAll(sig: "SIGSTOP" | "SIGCONT" | "SIGKILL"): void;
  /** psql -XAtq against the socket dir; trimmed stdout; throws with stderr. */
  sql(query: string): Promise<string>;
}

export interface PgPrimary {
  /** The temp dir holding everything; removed by stop(). */
  dir: string;
  primary: PgNode;
  /** Stops every node with -m immediate, kills leftovers and removes dir. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface PgPair extends PgPrimary {
  standby: PgNode;
}

/** Default deadline of every wait, in ms. */
/** Deadline of one psql run, in ms: a SIGSTOPped server never answers. */
const sqlTimeoutMs = 30_000;
/** Longest unix socket path, sun_path minus its terminating NUL. */
const maxSocketPath = 107;

/** A client program (psql) of the machine's own PostgreSQL: it talks to every major here. */
function bin(name: string): string {
  return join(clientBinDir(), name);
}

function logTail(node: PgNode, lines = 20): string {
  const text = existsSync(node.logFile) ? readFileSync(node.logFile, "utf8") : "";
  return text.trimEnd().split("\n").slice(-lines).join("\n") || "(empty)";
}

/** Rethrows with the tail of the node's server log, which usually says why. */
async function withLog<T>(node: PgNode, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw new Error(`${messageOf(error)}\n--- tail of ${node.logFile} ---\n${logTail(node)}`);
  }
}

interface Cluster {
  dir: string;
  /** Where initdb, pg_ctl and postgres of the cluster's major are. */
  binDir: string;
  nodes: PgNode[];
}

const live = new Map<Cluster, () => void>();

// An interrupted run must not leave servers behind (cleanup.ts). Only
// synchronous work is possible at exit: an immediate stop, then SIGKILL.
function stopAtExit({ dir, nodes }: Cluster): void {
  signal(processesUnder(dir), "SIGCONT");
  for (const node of nodes) {
    if (!existsSync(join(node.dataDir, "postmaster.pid"))) continue;
    const stop = [join(node.binDir, "pg_ctl"), "stop", "-w", "-t", "10", "-m", "immediate", "-D", node.dataDir];
    Bun.spawnSync(asPostgres(stop), { cwd: dir, env: baseEnv, stdout: "ignore", stderr: "ignore", timeout: 15_000 });
  }
  signal(processesUnder(dir), "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

function newCluster(major: number | undefined): Cluster {
  // Fail on missing binaries or a missing postgres user before there is anything to clean up.
  bin("psql");
  const binDir = serverBinDir(major);
  if (asRoot) postgresOwner();
  const dir = mkdtempSync(join(tmpdir(), "rs-"));
  chown(dir);
  const cluster: Cluster = { dir, binDir, nodes: [] };
  live.set(
    cluster,
    atExit(() => stopAtExit(cluster)),
  );
  return cluster;
}

async function stopCluster(cluster: Cluster): Promise<void> {
  const forget = live.get(cluster);
  if (!forget) return;
  live.delete(cluster);
  forget();
  await Promise.all(cluster.nodes.map(halt));
  await waitFor(`the servers in ${cluster.dir} to exit`, () => {
    signal(processesUnder(cluster.dir), "SIGKILL");
    return processesUnder(cluster.dir).length === 0;
  });
  rmSync(cluster.dir, { recursive: true, force: true });
}

// pg_ctl stop -m immediate lets the postmaster release its shared memory, which a SIGKILL would
// leak; SIGCONT first, since a SIGSTOPped postmaster never acts on the stop request.
async function halt(node: PgNode): Promise<void> {
  signal(processesUnder(node.dataDir), "SIGCONT");
  const pidFile = join(node.dataDir, "postmaster.pid");
  if (existsSync(pidFile)) await node.stop("immediate").catch(() => {});
  await waitFor(`${node.name} to exit`, () => {
    signal(processesUnder(node.dataDir), "SIGKILL");
    return processesUnder(node.dataDir).length === 0;
  });
  if (existsSync(pidFile)) releaseSharedMemory(pidFile);
}

// Node-specific settings live in fixture.conf, included from postgresql.conf: pg_basebackup copies
// both, and the copy's fixture.conf is rewritten, so a clone never keeps its source's port. `wrap`
// prefixes a node's server commands (PgOptions.primaryWrap).
const nodeSettings = new WeakMap<PgNode, { conf: string[]; wrap: string[] }>();

function writeNodeConf(node: PgNode): void {
  writeOwned(join(node.dataDir, "fixture.conf"), [
    ...baseConf,
    `port = ${node.port}`,
    `unix_socket_directories = '${node.socketDir}'`,
    ...(nodeSettings.get(node)?.conf ?? []),
  ]);
}

async function newNode(cluster: Cluster, name: string, conf: string[], wrap: string[] = []): Promise<PgNode> {
  const { dir } = cluster;
  const port = await freePort();
  const dataDir = join(dir, name);
  const socketDir = join(dir, `${name}.s`);
  const logFile = join(dir, `${name}.log`); // outside the data dir, so pg_basebackup does not copy it
  const socketPath = join(socketDir, `.s.PGSQL.${port}`);
  if (socketPath.length > maxSocketPath) {
    throw new Error(
      `socket path too long (${socketPath.length} > ${maxSocketPath} bytes): ${socketPath}\nhint: set TMPDIR to a shorter dir`,
    );
  }
  mkdirSync(socketDir, { mode: 0o700 });
  chown(socketDir);

  const pgCtl = (action: string, ...args: string[]) =>
    withLog(
      node,
      run(
        [join(cluster.binDir, "pg_ctl"), action, ...args, "-D", dataDir],
        dir,
        `pg_ctl ${action} of ${name}`,
        undefined,
        wrap,
      ),
    );
  const node: PgNode = {
    name,
    dataDir,
    port,
    socketDir,
    logFile,
    binDir: cluster.binDir,
    user: superuser,
    url: `postgres://${superuser}@127.0.0.1:${port}/postgres`,
    env: { PGHOST: socketDir, PGPORT: String(port), PGUSER: superuser, PGDATABASE: "postgres" },
    pid() {
      const pidFile = join(dataDir, "postmaster.pid");
      if (!existsSync(pidFile)) throw new Error(`${name} is not running (no ${pidFile})`);
      return Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    },
    async start() {
      await pgCtl("start", "-w", "-t", "30", "-l", logFile);
      await withLog(
        node,
        waitFor(`${name} to accept connections`, async () => (await node.sql("select 1")) === "1"),
      );
    },
    async stop(mode = "fast") {
      await pgCtl("stop", "-w", "-t", "30", "-m", mode);
    },
    async promote() {
      await pgCtl("promote", "-W");
    },
    async waitPrimary() {
      await withLog(
        node,
        waitFor(`${name} to leave recovery`, async () => (await node.sql("select pg_is_in_recovery()")) === "f"),
      );
    },
    signalAll(sig) {
      // List the children before the signal (a killed postmaster's children are reparented) and
      // after it (a stopped postmaster forks no more).
      const postmaster = node.pid();
      const before = childrenOf(postmaster);
      process.kill(postmaster, sig);
      signal([...new Set([...before, ...childrenOf(postmaster)])], sig);
    },
    sql(query) {
      const psql = [bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port)];
      return run([...psql, "-U", superuser, "-d", "postgres", "-c", query], dir, `psql on ${name}`, sqlTimeoutMs);
    },
  };
  nodeSettings.set(node, { conf, wrap });
  cluster.nodes.push(node);
  return node;
}

/** Makes node a fresh copy of source (pg_basebackup -R), starts it and waits until it streams. */
async function cloneFrom(node: PgNode, source: PgNode, sourceHost = "127.0.0.1"): Promise<void> {
  rmSync(node.dataDir, { recursive: true, force: true });
  if (hasBaseBackup(source.binDir)) {
    const backup = [join(source.binDir, "pg_basebackup"), "-D", node.dataDir, "-R", "-X", "stream", "-c", "fast"];
    const from = ["--no-sync", "-h", sourceHost, "-p", String(source.port), "-U", source.user];
    const what = `pg_basebackup of ${node.name}`;
    await withLog(
      source,
      run([...backup, ...from], dirname(node.dataDir), what, undefined, nodeSettings.get(node)?.wrap),
    );
  } else {
    await copyStopped(node, source, sourceHost);
  }
  writeNodeConf(node);
  await node.start();
  await withLog(
    node,
    waitFor(`${node.name} to stream from ${source.name}`, async () => (await node.sql(streamingQuery)) === "t"),
  );
}

// Without pg_basebackup (the npm packages' majors) a standby is a copy of its source's data dir
// taken while the source is stopped (-m fast ends with a shutdown checkpoint, so the copy needs no
// WAL from elsewhere), plus what pg_basebackup -R would write: standby.signal and primary_conninfo
// in postgresql.auto.conf. The low-level backup API (pg_backup_start/stop, pg_start_backup before
// 15) would keep the source up, but needs one session held across the copy and the backup_label it
// returns written into the copy; one restart of the source is simpler, and in startPair happens
// before anything watches it.
async function copyStopped(node: PgNode, source: PgNode, sourceHost: string): Promise<void> {
  await source.stop("fast");
  try {
    await run(["cp", "-a", source.dataDir, node.dataDir], dirname(node.dataDir), `copy of ${source.name}`);
  } finally {
    await source.start();
  }
  const autoConf = join(node.dataDir, "postgresql.auto.conf");
  const kept = readFileSync(autoConf, "utf8")
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("primary_conninfo"));
  writeOwned(autoConf, [...kept, `primary_conninfo = 'host=${sourceHost} port=${source.port} user=${source.user}'`]);
  writeOwned(join(node.dataDir, "standby.signal"), []);
}

function handle(cluster: Cluster, primary: PgNode): PgPrimary {
  const stop = () => stopCluster(cluster);
  return { dir: cluster.dir, primary, stop, [Symbol.asyncDispose]: stop };
}

/** Stops the cluster and rethrows when set-up fails, so a failed start leaves nothing behind. */
async function orStop<T>(cluster: Cluster, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    await stopCluster(cluster).catch(() => {});
    throw error;
  }
}

async function initCluster(opts: PgOptions): Promise<{ cluster: Cluster; primary: PgNode }> {
  const cluster = newCluster(opts.major);
  return orStop(cluster, async () => {
    const primary = await newNode(cluster, "primary", opts.primaryConf ?? [], opts.primaryWrap);
    await run(
      [
        join(cluster.binDir, "initdb"),
        "-D",
        primary.dataDir,
        "-U",
        superuser,
        "--auth=trust",
        "--locale=C",
        "-E",
        "UTF8",
        "--no-sync",
      ],
      cluster.dir,
    );
    writeOwned(join(primary.dataDir, "pg_hba.conf"), [...(opts.hbaPrepend ?? []), ...trustHba]);
    for (const [name, text] of Object.entries(opts.dataFiles ?? {})) {
      writeFileSync(join(primary.dataDir, name), text, { mode: 0o600 });
      chown(join(primary.dataDir, name));
    }
    writeFileSync(join(primary.dataDir, "postgresql.conf"), "include 'fixture.conf'\n", { flag: "a" });
    writeNodeConf(primary);
    return { cluster, primary };
  });
}

/** A primary that is initialised but not started: primary.start() brings it up. */
export async function initNode(opts: PgOptions = {}): Promise<PgPrimary> {
  const { cluster, primary } = await initCluster(opts);
  return handle(cluster, primary);
}

/** A running primary without a standby. */
export async function startPrimary(opts: PgOptions = {}): Promise<PgPrimary> {
  const { cluster, primary } = await initCluster(opts);
  await orStop(cluster, () => primary.start());
  return handle(cluster, primary);
}

/** A running primary and a standby streaming from it. */
export async function startPair(opts: PgOptions = {}): Promise<PgPair> {
  const { cluster, primary } = await initCluster(opts);
  return orStop(cluster, async () => {
    await primary.start();
    const standbyConf = [...(opts.primaryConf ?? []), ...(opts.standbyConf ?? [])];
    const standby = await newNode(cluster, "standby", standbyConf, opts.standbyWrap);
    await cloneFrom(standby, primary, opts.primaryHost);
    return { ...handle(cluster, primary), standby };
  });
}

/**
 * Stops node (immediate), wipes it and makes it a standby of source; resolves once it streams.
 * On a major without pg_basebackup, source is stopped (fast) and started again for the copy.
 */
export async function rebuildAsStandby(node: PgNode, source: PgNode): Promise<void> {
  await halt(node);
  await cloneFrom(node, source);
}
