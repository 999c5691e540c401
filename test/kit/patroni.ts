// A throwaway Patroni cluster (Debian's patroni 3.0.2) on a throwaway etcd (etcd.ts), for
// the Patroni tests and benchmarks: every member's PostgreSQL and REST API on
// free loopback ports, everything under one temp dir. As root, Patroni and its
// PostgreSQL run as the postgres OS user, as src/demo/pg.ts does. The caller
// stops what it starts; until then its processes and temp dir are registered
// with src/demo/cleanup.ts (nothing at import), so an interrupted run leaves nothing.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atExit } from "../../src/demo/cleanup.ts";
import type { Etcd } from "./etcd.ts";
import { serverBinDir } from "../../src/demo/pgbin.ts";
import {
  asPostgres,
  baseEnv,
  chown,
  freePort,
  processesUnder,
  run,
  signal,
  superuser,
  waitFor,
} from "../../src/demo/proc.ts";

export interface PatroniOptions {
  etcd: Etcd;
  /** 2 or 3; default 2. */
  members?: number;
  /** Patroni's ttl (s); default 10. The leader key's lease. */
  ttl?: number;
  /** loop_wait (s); default 1. */
  loopWait?: number;
  /** retry_timeout (s); default 3. */
  retryTimeout?: number;
  synchronousMode?: boolean;
  failsafeMode?: boolean;
  /** Per member name (m0, m1, ...), its tags. */
  tags?: Record<string, Record<string, unknown>>;
}

export interface PatroniMember {
  name: string;
  /** The REST API's port, on 127.0.0.1. */
  restPort: number;
  pgPort: number;
  dataDir: string;
  socketDir: string;
  /** patroni.yml of this member. */
  configFile: string;
  logFile: string;
  /** PGHOST (the socket dir), PGPORT, PGUSER, PGDATABASE, for a replstatus beside it. */
  env: Record<string, string>;
  /** Whether its Patroni process runs. */
  readonly running: boolean;
  /** psql -XAtq on its socket; trimmed stdout. */
  sql(query: string): Promise<string>;
  /** The postmaster's pid (postmaster.pid), or undefined. */
  postmasterPid(): number | undefined;
  /** pg_ctl stop -m fast behind Patroni's back (under `patronictl pause`, Patroni leaves it so). */
  stopPostgres(): Promise<void>;
  /** pg_ctl start -w, when it is not running. */
  startPostgres(): Promise<void>;
  /** Stops its Patroni (SIGTERM, which also stops its PostgreSQL) and waits. */
  stopPatroni(): Promise<void>;
  startPatroni(): Promise<void>;
}

export interface PatroniCluster extends AsyncDisposable {
  scope: string;
  namespace: string;
  dir: string;
  members: PatroniMember[];
  /** patronictl -c FILE ARGS (of member 0); trimmed stdout, throws with stderr. */
  ctl(...args: string[]): Promise<string>;
  /** The member holding the leader key, from etcd. */
  leader(): Promise<string | undefined>;
  /** Waits until `name` holds the leader key and every running member's REST says the same. */
  waitLeader(name?: string, timeoutMs?: number): Promise<string>;
  /** Waits until every running member but the leader streams from it and its REST API says so. */
  waitReplicas(timeoutMs?: number): Promise<void>;
  /** Stops every Patroni and PostgreSQL, removes dir. Idempotent. */
  stop(): Promise<void>;
}

// Patroni 3.0.2 runs the machine's own PostgreSQL (Debian's, 15 on the CI image); looked up at first use.
const pgBin = (name: string) => join(serverBinDir(), name);

/** One HTTP request on a fresh connection; the status code (0: no answer) and the body. */
export async function httpGet(
  port: number,
  path: string,
  method = "GET",
  timeoutMs = 5000,
): Promise<{ status: number; body: string }> {
  const { promise, resolve } = Promise.withResolvers<{ status: number; body: string }>();
  const chunks: Buffer[] = [];
  const done = () => {
    clearTimeout(timer);
    const text = Buffer.concat(chunks).toString("latin1");
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    const at = text.indexOf("\r\n\r\n");
    resolve({ status: m ? Number(m[1]) : 0, body: at < 0 ? "" : text.slice(at + 4) });
  };
  const timer = setTimeout(() => {
    socket?.terminate();
    done();
  }, timeoutMs);
  let socket: Bun.Socket | undefined;
  try {
    socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        },
        data(_, chunk) {
          chunks.push(Buffer.from(chunk));
        },
        close: done,
        error: done,
      },
    });
  } catch {
    done();
  }
  return promise;
}

function memberConfig(o: {
  scope: string;
  namespace: string;
  name: string;
  dir: string;
  etcd: string;
  restPort: number;
  pgPort: number;
  opts: PatroniOptions;
}): string {
  const { opts } = o;
  const tags = opts.tags?.[o.name] ?? {};
  const config = {
    scope: o.scope,
    namespace: o.namespace,
    name: o.name,
    log: { level: "INFO" },
    restapi: { listen: `127.0.0.1:${o.restPort}`, connect_address: `127.0.0.1:${o.restPort}` },
    etcd3: { hosts: o.etcd },
    bootstrap: {
      dcs: {
        ttl: opts.ttl ?? 10,
        loop_wait: opts.loopWait ?? 1,
        retry_timeout: opts.retryTimeout ?? 3,
        maximum_lag_on_failover: 1024 * 1024 * 1024,
        synchronous_mode: opts.synchronousMode ?? false,
        failsafe_mode: opts.failsafeMode ?? false,
        postgresql: {
          use_pg_rewind: true,
          parameters: {
            wal_level: "replica",
            hot_standby: "on",
            max_wal_senders: 6,
            max_replication_slots: 6,
            wal_log_hints: "on",
            fsync: "off",
            synchronous_commit: "off",
            shared_buffers: "16MB",
            max_connections: 30,
          },
        },
      },
      initdb: [{ encoding: "UTF8" }, { locale: "C" }],
      pg_hba: [
        "local all all trust",
        "host all all 127.0.0.1/32 trust",
        "local replication all trust",
        "host replication all 127.0.0.1/32 trust",
      ],
    },
    postgresql: {
      listen: `127.0.0.1:${o.pgPort}`,
      connect_address: `127.0.0.1:${o.pgPort}`,
      data_dir: join(o.dir, o.name),
      bin_dir: serverBinDir(),
      pgpass: join(o.dir, `${o.name}.pgpass`),
      authentication: {
        superuser: { username: superuser, password: "rs" },
        replication: { username: "replicator", password: "rs" },
        rewind: { username: superuser, password: "rs" },
      },
      parameters: { unix_socket_directories: join(o.dir, `${o.name}.s`) },
    },
    tags,
  };
  // JSON is YAML: Patroni reads it as it is.
  return JSON.stringify(config, null, 2) + "\n";
}

/** One member's files, ports and handle; its Patroni is not started yet. */
async function newMember(o: {
  name: string;
  dir: string;
  scope: string;
  namespace: string;
  opts: PatroniOptions;
  procs: Map<string, Bun.Subprocess>;
}): Promise<PatroniMember> {
  const { name, dir, scope, namespace, opts, procs } = o;
  const [restPort, pgPort] = [await freePort(), await freePort()];
  const socketDir = join(dir, `${name}.s`);
  mkdirSync(socketDir, { mode: 0o700 });
  chown(socketDir);
  const configFile = join(dir, `${name}.yml`);
  writeFileSync(
    configFile,
    memberConfig({ scope, namespace, name, dir, etcd: `127.0.0.1:${opts.etcd.port}`, restPort, pgPort, opts }),
  );
  chown(configFile);
  const logFile = join(dir, `${name}.log`);
  const dataDir = join(dir, name);
  const env = { PGHOST: socketDir, PGPORT: String(pgPort), PGUSER: superuser, PGDATABASE: "postgres" };
  const member: PatroniMember = {
    name,
    restPort,
    pgPort,
    dataDir,
    socketDir,
    configFile,
    logFile,
    env,
    get running() {
      const p = procs.get(name);
      return p !== undefined && p.exitCode === null && p.signalCode === null;
    },
    async sql(query) {
      const psql = [pgBin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(pgPort)];
      return await run([...psql, "-U", superuser, "-d", "postgres", "-c", query], dir, undefined, 30_000);
    },
    postmasterPid() {
      const file = join(dataDir, "postmaster.pid");
      if (!existsSync(file)) return undefined;
      const pid = Number(readFileSync(file, "utf8").split("\n")[0]);
      return pid > 0 ? pid : undefined;
    },
    async stopPostgres() {
      await run([pgBin("pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30", "-D", dataDir], dir, undefined, 60_000);
    },
    async startPostgres() {
      if (member.postmasterPid() !== undefined) return;
      const log = join(dir, `${name}.pg.log`);
      await run([pgBin("pg_ctl"), "start", "-w", "-t", "30", "-D", dataDir, "-l", log], dir, undefined, 60_000);
    },
    async stopPatroni() {
      const p = procs.get(name);
      procs.delete(name);
      if (!p || p.exitCode !== null) return;
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
      await p.exited;
      clearTimeout(timer);
    },
    async startPatroni() {
      if (member.running) return;
      const out = Bun.file(logFile);
      const p = Bun.spawn(asPostgres(["patroni", configFile]), {
        cwd: dir,
        env: { ...baseEnv, HOME: dir },
        stdin: "ignore",
        stdout: out,
        stderr: out,
      });
      procs.set(name, p);
    },
  };
  return member;
}

/** Starts etcd-backed Patroni members m0, m1[, m2]: m0 bootstraps, the others clone it. */
export async function startPatroni(opts: PatroniOptions): Promise<PatroniCluster> {
  const count = opts.members ?? 2;
  const dir = mkdtempSync(join(tmpdir(), "rs-patroni-"));
  chown(dir);
  const scope = `rs${process.pid}x${Math.floor(Math.random() * 1e6)}`;
  const namespace = "/service/";
  const procs = new Map<string, Bun.Subprocess>();
  const members: PatroniMember[] = [];
  let stopped = false;
  const forget = atExit(() => stopAtExit(dir, procs, members));

  for (let i = 0; i < count; i++) members.push(await newMember({ name: `m${i}`, dir, scope, namespace, opts, procs }));

  const cluster: PatroniCluster = {
    scope,
    namespace,
    dir,
    members,
    async ctl(...args) {
      return await run(["patronictl", "-c", members[0]!.configFile, ...args], dir, undefined, 60_000);
    },
    async leader() {
      return await opts.etcd.get(`${namespace}${scope}/leader`);
    },
    async waitLeader(name, timeoutMs = 60_000) {
      return await waitFor<string>(
        `a Patroni leader${name ? ` ${name}` : ""}`,
        async () => {
          const leader = await cluster.leader();
          if (!leader || (name && leader !== name)) return "";
          const m = members.find((x) => x.name === leader)!;
          return (await httpGet(m.restPort, "/primary", "GET", 2000)).status === 200 ? leader : "";
        },
        timeoutMs,
        100,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${tails(members)}`);
      });
    },
    async waitReplicas(timeoutMs = 90_000) {
      await waitFor(
        "every Patroni replica to stream",
        async () => {
          const leader = await cluster.leader();
          for (const m of members) {
            if (!m.running || m.name === leader) continue;
            const streaming = await m.sql(
              "select exists (select from pg_stat_wal_receiver where status = 'streaming')",
            );
            if (streaming !== "t") return false;
            // /health, not /replica: a noloadbalance member never says 200 there.
            if ((await httpGet(m.restPort, "/health", "GET", 2000)).status !== 200) return false;
          }
          return true;
        },
        timeoutMs,
        200,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${tails(members)}`);
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      forget();
      await Promise.all(members.map((m) => m.stopPatroni()));
      // A Patroni killed mid-way may leave its PostgreSQL behind.
      for (const m of members) {
        const pid = m.postmasterPid();
        if (pid !== undefined) {
          await run([pgBin("pg_ctl"), "stop", "-m", "immediate", "-w", "-D", m.dataDir], dir, undefined, 30_000).catch(
            () => {},
          );
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
    [Symbol.asyncDispose]: () => cluster.stop(),
  };

  try {
    await members[0]!.startPatroni();
    await cluster.waitLeader("m0");
    for (const m of members.slice(1)) await m.startPatroni();
    await cluster.waitReplicas();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

// An interrupted run (cleanup.ts): only synchronous work is possible at exit.
function stopAtExit(dir: string, procs: Map<string, Bun.Subprocess>, members: PatroniMember[]): void {
  for (const p of procs.values()) p.kill("SIGKILL");
  for (const m of members) {
    if (m.postmasterPid() === undefined) continue;
    const stop = [pgBin("pg_ctl"), "stop", "-w", "-t", "10", "-m", "immediate", "-D", m.dataDir];
    Bun.spawnSync(asPostgres(stop), { cwd: dir, env: baseEnv, stdout: "ignore", stderr: "ignore", timeout: 15_000 });
  }
  signal(processesUnder(dir), "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

/** The last lines of every member's Patroni log, for a failed wait. */
export function tails(members: PatroniMember[], lines = 15): string {
  return members
    .map((m) => {
      const text = existsSync(m.logFile) ? readFileSync(m.logFile, "utf8") : "";
      return `--- ${m.logFile} ---\n${text.trimEnd().split("\n").slice(-lines).join("\n")}`;
    })
    .join("\n");
}
