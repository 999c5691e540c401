// A throwaway PostgreSQL primary (and streaming standby) in a temp dir, for the tests, the benchmarks
// and `replstatus demo`.
// Everything a cluster owns lives under one mkdtemp dir: data dirs, socket dirs, logs.

import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { constants, tmpdir, userInfo } from "node:os";
import { basename, dirname, join } from "node:path";

export interface PgOptions {
  /** Extra postgresql.conf lines for the primary; the standby inherits them. */
  primaryConf?: string[];
  /** Extra postgresql.conf lines for the standby, after (so overriding) the primary's. */
  standbyConf?: string[];
  /** pg_hba.conf lines placed before the trust lines, e.g. to require a password for one role. */
  hbaPrepend?: string[];
  /** Files written into the primary's data dir before it starts, mode 0600 (e.g. server.key for ssl = on). */
  dataFiles?: Record<string, string>;
}

export interface PgNode {
  name: string;
  dataDir: string;
  port: number;
  socketDir: string;
  logFile: string;
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
const waitMs = 30_000;
/** Deadline of one psql run, in ms: a SIGSTOPped server never answers. */
const sqlTimeoutMs = 30_000;
/** Deadline of one initdb, pg_ctl or pg_basebackup run, in ms (pg_ctl itself gets -t 30). */
const commandTimeoutMs = 60_000;
/** Longest unix socket path, sun_path minus its terminating NUL. */
const maxSocketPath = 107;

// initdb refuses to run as root, so as root every PostgreSQL command runs as the postgres OS user;
// the bootstrap superuser is named after the OS user that runs initdb.
const asRoot = process.getuid?.() === 0;
/** The OS user the servers run as, which is also the database superuser. */
export const superuser = asRoot ? "postgres" : userInfo().username;

const baseConf = [
  "listen_addresses = '127.0.0.1'",
  "wal_level = replica",
  "max_wal_senders = 5",
  "hot_standby = on",
  "fsync = off",
  "synchronous_commit = off",
  "full_page_writes = on",
  "wal_log_hints = on", // so that pg_rewind works
  "shared_buffers = 16MB",
  "max_connections = 30",
  "log_min_messages = warning",
  "logging_collector = off",
];

const trustHba = [
  "local all all trust",
  "host all all 127.0.0.1/32 trust",
  "host all all ::1/128 trust",
  "local replication all trust",
  "host replication all 127.0.0.1/32 trust",
  "host replication all ::1/128 trust",
];

const streamingQuery =
  "select pg_is_in_recovery() and exists (select from pg_stat_wal_receiver where status = 'streaming')";

// PG* variables of the caller's shell must not steer the fixture's commands to another server.
const baseEnv: Record<string, string> = {};
for (const [key, value] of Object.entries(process.env)) {
  if (!key.startsWith("PG") && value !== undefined) baseEnv[key] = value;
}

let binDir: string | undefined;
function bin(name: string): string {
  binDir ??= findBinDir();
  return join(binDir, name);
}

function findBinDir(): string {
  if (Bun.which("pg_config")) {
    const out = Bun.spawnSync(["pg_config", "--bindir"], { stderr: "pipe" });
    const dir = out.stdout.toString().trim();
    if (out.exitCode === 0 && existsSync(join(dir, "initdb"))) return dir;
  }
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions[0]) return join(root, versions[0], "bin");
  throw new Error(
    "fixture: could not find PostgreSQL server binaries: no initdb in `pg_config --bindir` or /usr/lib/postgresql/*/bin\n" +
      "hint: apt-get install -y postgresql",
  );
}

let owner: { uid: number; gid: number } | undefined;
function chown(path: string): void {
  if (!asRoot) return;
  owner ??= postgresOwner();
  chownSync(path, owner.uid, owner.gid);
}

function postgresOwner(): { uid: number; gid: number } {
  const id = (flag: string) => {
    const out = Bun.spawnSync(["id", flag, "postgres"], { stderr: "pipe" });
    if (out.exitCode !== 0) {
      throw new Error(
        `fixture: could not find the postgres OS user, needed to run PostgreSQL as root: ${out.stderr.toString().trim()}\n` +
          "hint: apt-get install -y postgresql",
      );
    }
    return Number(out.stdout.toString().trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}

function asPostgres(cmd: string[]): string[] {
  return asRoot ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", ...cmd] : cmd;
}

/** Runs a PostgreSQL command as the server's OS user; returns trimmed stdout, throws with stderr. */
async function run(
  cmd: string[],
  cwd: string,
  what = basename(cmd[0] ?? ""),
  timeout = commandTimeoutMs,
): Promise<string> {
  const proc = Bun.spawn(asPostgres(cmd), {
    cwd,
    env: { ...baseEnv, HOME: cwd },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout,
    killSignal: "SIGKILL",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    const why = proc.signalCode ? `killed by ${proc.signalCode} after at most ${timeout}ms` : `exit ${code}`;
    throw new Error(`fixture: ${what} failed (${why}): ${(err || out).trim()}`);
  }
  return out.trim();
}

/** Polls fn every stepMs until it returns something truthy; a throw counts as "not yet". */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T> | undefined | false | null,
  timeoutMs = waitMs,
  stepMs = 10,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() >= deadline) {
      const last = lastError === undefined ? "" : ` (last error: ${messageOf(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last}`);
    }
    await Bun.sleep(stepMs);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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

function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in field 2 may hold spaces and parentheses: fields resume after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === ppid) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

// Every server process has its data dir as cwd, which also finds children orphaned by a killed
// postmaster, and any psql a test left running in the cluster dir.
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`).replace(/ \(deleted\)$/, "");
      if (cwd === dir || cwd.startsWith(`${dir}/`)) pids.push(Number(entry));
    } catch {
      // exited, a zombie, or not ours to inspect
    }
  }
  return pids;
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

interface Cluster {
  dir: string;
  nodes: PgNode[];
}

const live = new Set<Cluster>();

// An interrupted run (Ctrl-C, a failed beforeAll, process.exit in a test) must not leave servers
// behind. Bun emits no 'exit' when a signal kills it, so while clusters are live a signal becomes
// an exit. Only synchronous work is possible in an 'exit' handler.
const exitOnSignal = (sig: NodeJS.Signals) => process.exit(128 + constants.signals[sig]);
const exitSignals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

process.on("exit", () => {
  for (const { dir, nodes } of live) {
    signal(processesUnder(dir), "SIGCONT");
    for (const node of nodes) {
      if (!existsSync(join(node.dataDir, "postmaster.pid"))) continue;
      const stop = [bin("pg_ctl"), "stop", "-w", "-t", "10", "-m", "immediate", "-D", node.dataDir];
      Bun.spawnSync(asPostgres(stop), { cwd: dir, env: baseEnv, stdout: "ignore", stderr: "ignore", timeout: 15_000 });
    }
    signal(processesUnder(dir), "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

function newCluster(): Cluster {
  // Fail on missing binaries or a missing postgres user before there is anything to clean up.
  bin("initdb");
  if (asRoot) owner ??= postgresOwner();
  const dir = mkdtempSync(join(tmpdir(), "rs-"));
  chown(dir);
  const cluster: Cluster = { dir, nodes: [] };
  if (live.size === 0) for (const sig of exitSignals) process.on(sig, exitOnSignal);
  live.add(cluster);
  return cluster;
}

async function stopCluster(cluster: Cluster): Promise<void> {
  if (!live.delete(cluster)) return;
  if (live.size === 0) for (const sig of exitSignals) process.off(sig, exitOnSignal);
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

// A postmaster that was SIGKILLed (by a test, or above) leaves its System V segment behind; line 7
// of postmaster.pid holds "key shmid" (PostgreSQL's LOCK_FILE_LINE_SHMEM_KEY).
function releaseSharedMemory(pidFile: string): void {
  const shmid = readFileSync(pidFile, "utf8").split("\n")[6]?.trim().split(/\s+/)[1];
  if (shmid && shmid !== "0") Bun.spawnSync(["ipcrm", "-m", shmid], { stdout: "ignore", stderr: "ignore" });
}

function writeOwned(path: string, lines: string[]): void {
  writeFileSync(path, `${lines.join("\n")}\n`);
  chown(path);
}

// Node-specific settings live in fixture.conf, included from postgresql.conf: pg_basebackup copies
// both, and the copy's fixture.conf is rewritten, so a clone never keeps its source's port.
const nodeConfs = new WeakMap<PgNode, string[]>();

function writeNodeConf(node: PgNode): void {
  writeOwned(join(node.dataDir, "fixture.conf"), [
    ...baseConf,
    `port = ${node.port}`,
    `unix_socket_directories = '${node.socketDir}'`,
    ...(nodeConfs.get(node) ?? []),
  ]);
}

async function newNode(cluster: Cluster, name: string, conf: string[]): Promise<PgNode> {
  const { dir } = cluster;
  const port = await freePort();
  const dataDir = join(dir, name);
  const socketDir = join(dir, `${name}.s`);
  const logFile = join(dir, `${name}.log`); // outside the data dir, so pg_basebackup does not copy it
  const socketPath = join(socketDir, `.s.PGSQL.${port}`);
  if (socketPath.length > maxSocketPath) {
    throw new Error(
      `fixture: socket path too long (${socketPath.length} > ${maxSocketPath} bytes): ${socketPath}\nhint: set TMPDIR to a shorter dir`,
    );
  }
  mkdirSync(socketDir, { mode: 0o700 });
  chown(socketDir);

  const pgCtl = (action: string, ...args: string[]) =>
    withLog(node, run([bin("pg_ctl"), action, ...args, "-D", dataDir], dir, `pg_ctl ${action} of ${name}`));
  const node: PgNode = {
    name,
    dataDir,
    port,
    socketDir,
    logFile,
    user: superuser,
    url: `postgres://${superuser}@127.0.0.1:${port}/postgres`,
    env: { PGHOST: socketDir, PGPORT: String(port), PGUSER: superuser, PGDATABASE: "postgres" },
    pid() {
      const pidFile = join(dataDir, "postmaster.pid");
      if (!existsSync(pidFile)) throw new Error(`fixture: ${name} is not running (no ${pidFile})`);
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
  nodeConfs.set(node, conf);
  cluster.nodes.push(node);
  return node;
}

/** Makes node a fresh copy of source (pg_basebackup -R), starts it and waits until it streams. */
async function cloneFrom(node: PgNode, source: PgNode): Promise<void> {
  rmSync(node.dataDir, { recursive: true, force: true });
  const backup = [bin("pg_basebackup"), "-D", node.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"];
  const from = ["-h", "127.0.0.1", "-p", String(source.port), "-U", source.user];
  await withLog(source, run([...backup, ...from], dirname(node.dataDir), `pg_basebackup of ${node.name}`));
  writeNodeConf(node);
  await node.start();
  await withLog(
    node,
    waitFor(`${node.name} to stream from ${source.name}`, async () => (await node.sql(streamingQuery)) === "t"),
  );
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
  const cluster = newCluster();
  return orStop(cluster, async () => {
    const primary = await newNode(cluster, "primary", opts.primaryConf ?? []);
    await run(
      [bin("initdb"), "-D", primary.dataDir, "-U", superuser, "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync"],
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
    const standby = await newNode(cluster, "standby", standbyConf);
    await cloneFrom(standby, primary);
    return { ...handle(cluster, primary), standby };
  });
}

/** Stops node (immediate), wipes it and makes it a standby of source; resolves once it streams. */
export async function rebuildAsStandby(node: PgNode, source: PgNode): Promise<void> {
  await halt(node);
  await cloneFrom(node, source);
}
