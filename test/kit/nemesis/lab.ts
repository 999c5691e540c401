// The nemesis lab: real hosts in network namespaces on one bridge. Three
// database hosts (PostgreSQL under Patroni 3.0.2, an etcd 3.4 member and a
// replstatus each), a load balancer (haproxy with Patroni's published lines,
// checking replstatus's raw port), a client host, and the run's own port on the
// bridge (the observer: it samples answers, watches etcd and is never cut off).
// Faults are made here: nftables rules inside a host's namespace, signals to
// its processes, patronictl.
//
// Every name holds rsn<pid> (the namespaces, the root-side link, the nftables
// table), so runs side by side never collide and a later run removes a crashed
// one's leftovers (netns.ts). Inside its own namespace each host uses the
// well-known ports (5432, 2379, 8008, 5400): nothing else shares them.
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atExit } from "../../../src/demo/cleanup.ts";
import { sweepLeftovers, netnsAvailable } from "../netns.ts";
import { serverBinDir } from "../../../src/demo/pgbin.ts";
import {
  asPostgres,
  baseEnv,
  childrenOf,
  chown,
  releaseSharedMemory,
  run,
  signal,
  superuser,
  waitFor,
} from "../../../src/demo/proc.ts";
import { cleanEnv, MAIN, startResponder, type Responder } from "../../../src/demo/responder.ts";
import { statsCommand } from "../../../src/demo/haproxy.ts";
import type { Direction } from "./schedule.ts";

export const PORTS = { pg: 5432, etcd: 2379, etcdPeer: 2380, rest: 8008, raw: 5400, http: 8009, lb: 5000 };

export interface LabOptions {
  /** Patroni's synchronous_mode and synchronous_mode_strict; otherwise asynchronous replication. */
  strictSync: boolean;
  /** patroni: replstatus --patroni; plain: replstatus on its own PostgreSQL only, no store, no peers. */
  replstatus: "patroni" | "plain";
  /** Patroni's ttl, loop_wait and retry_timeout (s). */
  ttlS: number;
  loopWaitS: number;
  retryTimeoutS: number;
  /** haproxy's default-server check line. */
  checkLine: string;
  /** Also `replstatus route` on the load balancer, pushing every node's changes into haproxy. */
  route: boolean;
  log(line: string): void;
}

/** Patroni's published haproxy timing (its haproxy.cfg), the check on replstatus's raw port. */
export const PATRONI_CHECK_LINE = "default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions";

export interface Host {
  name: string;
  address: string;
  ns: string;
  exec: string[];
}

export interface DbHost extends Host {
  dir: string;
  dataDir: string;
  socketDir: string;
  configFile: string;
  replstatus: Responder | undefined;
  postmasterPid(): number | undefined;
}

export interface Lab {
  dir: string;
  prefix: string;
  scope: string;
  /** The leader key's path in etcd. */
  leaderKey: string;
  membersPrefix: string;
  db: DbHost[];
  lb: Host;
  client: Host;
  /** This process's address on the bridge. */
  observer: string;
  etcdUrls: string[];
  /** address -> member name */
  nodeOf: Record<string, string>;
  statsSocket: string;
  start(): Promise<void>;
  psql(host: DbHost, sql: string, timeoutMs?: number): Promise<string>;
  /** Drops traffic between `host` and `peers` (only `ports` when given) in `direction`; returns the heal. */
  partition(host: DbHost, peers: Host[], direction: Direction, ports?: number[]): () => Promise<void>;
  killPostmaster(host: DbHost): void;
  /** SIGSTOP of the postmaster and its children; returns the SIGCONT. */
  stopPostgres(host: DbHost): () => Promise<void>;
  killPatroni(host: DbHost): () => Promise<void>;
  killEtcd(host: DbHost): () => Promise<void>;
  restartReplstatus(host: DbHost): Promise<void>;
  patronictl(from: DbHost, ...args: string[]): Promise<string>;
  /** `show servers state` of the primary backend: server -> srv_op_state (2 running). */
  haproxyView(): Promise<Record<string, number>>;
  /** The client process: each JSON line it writes goes to onLine as it comes; stopClient waits for its last. */
  startClient(onLine: (line: string) => void): void;
  stopClient(): Promise<void>;
  remove(): Promise<void>;
}

function ip(args: string[]): void {
  const r = Bun.spawnSync(["ip", ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`lab: ip ${args.join(" ")} failed: ${r.stderr.toString().trim()}`);
}

function nft(ns: string, script: string): void {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns, "nft", "-f", "-"], {
    stdin: Buffer.from(script),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`lab: nft in ${ns} failed: ${r.stderr.toString().trim()}\n${script}`);
}

/** A third octet R such that nothing of this namespace is in 169.254.R.0/24. */
function freeOctet(): number {
  const used = Bun.spawnSync(["ip", "-4", "-o", "addr", "show"]).stdout.toString();
  const routes = Bun.spawnSync(["ip", "-4", "route", "show"]).stdout.toString();
  for (let tries = 0; tries < 100; tries++) {
    const r = 16 + Math.floor(Math.random() * 224);
    if (!used.includes(`169.254.${r}.`) && !routes.includes(`169.254.${r}.`)) return r;
  }
  throw new Error("lab: could not find a free 169.254.R.0/24");
}

function patroniConfig(o: { lab: Lab; host: DbHost; opts: LabOptions }): string {
  const { lab, host, opts } = o;
  return `${JSON.stringify(
    {
      scope: lab.scope,
      namespace: "/service/",
      name: host.name,
      log: { level: "INFO" },
      restapi: { listen: `${host.address}:${PORTS.rest}`, connect_address: `${host.address}:${PORTS.rest}` },
      etcd3: { hosts: lab.db.map((d) => `${d.address}:${PORTS.etcd}`) },
      bootstrap: {
        dcs: {
          ttl: opts.ttlS,
          loop_wait: opts.loopWaitS,
          retry_timeout: opts.retryTimeoutS,
          maximum_lag_on_failover: 1024 * 1024 * 1024,
          synchronous_mode: opts.strictSync,
          synchronous_mode_strict: opts.strictSync,
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            parameters: {
              wal_level: "replica",
              hot_standby: "on",
              max_wal_senders: 8,
              max_replication_slots: 8,
              wal_log_hints: "on",
              // No fault here loses the OS page cache; a commit still waits for the sync standby.
              fsync: "off",
              synchronous_commit: "on",
              shared_buffers: "16MB",
              max_connections: 200,
              wal_keep_size: "128MB",
              logging_collector: "on",
              log_directory: "log",
              log_line_prefix: "%m [%p] ",
            },
          },
        },
        initdb: [{ encoding: "UTF8" }, { locale: "C" }],
        pg_hba: [
          "local all all trust",
          "host all all 0.0.0.0/0 trust",
          "local replication all trust",
          "host replication all 0.0.0.0/0 trust",
        ],
      },
      postgresql: {
        listen: `${host.address}:${PORTS.pg}`,
        connect_address: `${host.address}:${PORTS.pg}`,
        use_unix_socket: true,
        data_dir: host.dataDir,
        bin_dir: serverBinDir(),
        pgpass: join(host.dir, "pgpass"),
        remove_data_directory_on_rewind_failure: true,
        remove_data_directory_on_diverged_timelines: true,
        authentication: {
          superuser: { username: superuser, password: "rs" },
          replication: { username: "replicator", password: "rs" },
          rewind: { username: superuser, password: "rs" },
        },
        parameters: { unix_socket_directories: host.socketDir },
      },
      tags: {},
    },
    null,
    2,
  )}\n`;
}

function haproxyConfig(lab: Lab, opts: LabOptions): string {
  return [
    "global",
    `\tstats socket ${lab.statsSocket} mode 600 level admin`,
    "\tmaxconn 4096",
    "",
    "defaults",
    "\tmode tcp",
    "\tretries 2",
    "\ttimeout client 30m",
    "\ttimeout connect 4s",
    "\ttimeout server 30m",
    "\ttimeout check 5s",
    "",
    "listen primary",
    `\tbind ${lab.lb.address}:${PORTS.lb}`,
    "\toption tcp-check",
    "\ttcp-check expect string MASTER",
    `\t${opts.checkLine}`,
    ...lab.db.map((d) => `\tserver ${d.name} ${d.address}:${PORTS.pg} maxconn 100 check port ${PORTS.raw}`),
    "",
  ].join("\n");
}

type Proc = Bun.Subprocess<"ignore", "ignore" | "pipe", "ignore" | "pipe">;

/** Labs of this process not yet removed, for a test's afterAll after a timeout. */
const live = new Set<Lab>();
let labs = 0;

/** Removes every lab this process made and has not removed yet. */
export async function removeLabs(): Promise<void> {
  for (const lab of [...live]) await lab.remove();
}

export function createLab(opts: LabOptions): Lab {
  const why = netnsAvailable();
  if (why) throw new Error(`lab: could not make network namespaces: ${why}`);
  sweepLeftovers();
  // rsn<pid> first, as netns.ts sweeps by it; x<k> tells this process's labs apart.
  const prefix = `rsn${process.pid}x${labs++}`;
  const octet = freeOctet();
  const dir = mkdtempSync(join(tmpdir(), "rs-nemesis-"));
  chown(dir);
  const addr = (n: number) => `169.254.${octet}.${n}`;
  const switchNs = `${prefix}-sw`;
  const rootLink = `${prefix}c`;
  const namespaces: string[] = [];
  const host = (name: string, n: number): Host => {
    const ns = `${prefix}-${name}`;
    return { name, address: addr(n), ns, exec: ["ip", "netns", "exec", ns] };
  };
  const dbHost = (name: string, n: number): DbHost => {
    const h = host(name, n);
    const hdir = join(dir, name);
    const dataDir = join(hdir, "data");
    return {
      ...h,
      dir: hdir,
      dataDir,
      socketDir: join(dir, `${name}.s`),
      configFile: join(hdir, "patroni.yml"),
      replstatus: undefined,
      postmasterPid() {
        const file = join(dataDir, "postmaster.pid");
        if (!existsSync(file)) return undefined;
        const pid = Number(readFileSync(file, "utf8").split("\n")[0]);
        return pid > 0 ? pid : undefined;
      },
    };
  };
  const db = [dbHost("db1", 1), dbHost("db2", 2), dbHost("db3", 3)];
  const etcds = new Map<string, Proc>();
  const patronis = new Map<string, Proc>();
  let haproxy: Proc | undefined;
  let router: Bun.Subprocess<"ignore", "ignore", "pipe"> | undefined;
  let client: Bun.Subprocess<"ignore", "pipe", "ignore"> | undefined;
  let clientOut: Promise<void> | undefined;
  let removed = false;
  const forget = atExit(() => removeNow());

  const spawnIn = (h: Host, cmd: string[], logName: string, cwd: string): Proc => {
    const fd = openSync(join(dir, `${logName}.log`), "a");
    try {
      return Bun.spawn([...h.exec, ...cmd], {
        cwd,
        env: { ...baseEnv, HOME: cwd },
        stdin: "ignore",
        stdout: fd,
        stderr: fd,
      }) as unknown as Proc;
    } finally {
      closeSync(fd);
    }
  };

  const startEtcd = (h: DbHost) => {
    const cluster = db.map((d) => `${d.name}=http://${d.address}:${PORTS.etcdPeer}`).join(",");
    const args = [
      "etcd",
      `--name=${h.name}`,
      `--data-dir=${join(h.dir, "etcd")}`,
      `--listen-client-urls=http://${h.address}:${PORTS.etcd},http://127.0.0.1:${PORTS.etcd}`,
      `--advertise-client-urls=http://${h.address}:${PORTS.etcd}`,
      `--listen-peer-urls=http://${h.address}:${PORTS.etcdPeer}`,
      `--initial-advertise-peer-urls=http://${h.address}:${PORTS.etcdPeer}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-token=${prefix}`,
      "--initial-cluster-state=new",
      "--heartbeat-interval=100",
      "--election-timeout=1000",
      "--enable-grpc-gateway=true",
      "--log-level=warn",
      "--logger=zap",
    ];
    etcds.set(h.name, spawnIn(h, args, `${h.name}-etcd`, h.dir));
  };
  const startPatroni = (h: DbHost) => {
    patronis.set(h.name, spawnIn(h, asPostgres(["patroni", h.configFile]), `${h.name}-patroni`, h.dir));
  };
  const replstatusArgs = (h: DbHost) => {
    const listen = ["--listen", `raw:0.0.0.0:${PORTS.raw}`, "--listen", `http:0.0.0.0:${PORTS.http}`];
    const control = ["--control-socket", join(dir, "ctl", `${h.name}.sock`)];
    return opts.replstatus === "patroni" ? ["--patroni", h.configFile, ...listen, ...control] : [...listen, ...control];
  };
  const replstatusEnv = (h: DbHost): Record<string, string> =>
    opts.replstatus === "patroni"
      ? { PGUSER: superuser }
      : { PGHOST: h.socketDir, PGPORT: String(PORTS.pg), PGUSER: superuser, PGDATABASE: "postgres" };
  const startReplstatus = async (h: DbHost) => {
    h.replstatus = await startResponder(replstatusArgs(h), replstatusEnv(h), h.exec);
  };

  // replstatus route beside haproxy, subscribed to every node's /events (docs/routing.md).
  const startRouter = async () => {
    const servers = db.flatMap((d) => ["--server", `primary/${d.name}=http://${d.address}:${PORTS.http}`]);
    const p = Bun.spawn(
      [...lab.lb.exec, process.execPath, MAIN, "route", "--haproxy-socket", lab.statsSocket, ...servers],
      { env: cleanEnv(), stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    router = p;
    let log = "";
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of p.stderr) log += decoder.decode(chunk, { stream: true });
    })();
    await waitFor(
      "replstatus route to follow every node",
      () => {
        if (p.exitCode !== null) throw new Error(`replstatus route exited with ${p.exitCode}: ${log}`);
        return (log.match(/stream connected/g) ?? []).length >= db.length;
      },
      30_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${log}`);
    });
    opts.log("replstatus route: following every node");
  };

  const network = () => {
    ip(["netns", "add", switchNs]);
    namespaces.push(switchNs);
    ip(["-n", switchNs, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", switchNs, "link", "set", "br0", "up"]);
    const plug = (h: Host) => {
      ip(["netns", "add", h.ns]);
      namespaces.push(h.ns);
      ip(["-n", h.ns, "link", "set", "lo", "up"]);
      ip(["link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", h.name, "netns", switchNs]);
      ip(["-n", switchNs, "link", "set", h.name, "master", "br0", "up"]);
      ip(["-n", h.ns, "addr", "add", `${h.address}/24`, "dev", "eth0"]);
      ip(["-n", h.ns, "link", "set", "eth0", "up"]);
    };
    for (const h of [...db, lab.lb, lab.client]) plug(h);
    ip(["link", "add", rootLink, "type", "veth", "peer", "name", "observer", "netns", switchNs]);
    ip(["-n", switchNs, "link", "set", "observer", "master", "br0", "up"]);
    ip(["addr", "add", `${lab.observer}/24`, "dev", rootLink]);
    ip(["link", "set", rootLink, "up"]);
    for (const h of db) {
      nft(
        h.ns,
        `table inet ${prefix} {\n chain input { type filter hook input priority 0; policy accept; }\n` +
          ` chain output { type filter hook output priority 0; policy accept; }\n}\n`,
      );
    }
  };

  const pgCtlStopAll = () => {
    for (const h of db) {
      const pid = h.postmasterPid();
      if (pid === undefined) continue;
      signal([pid, ...childrenOf(pid)], "SIGCONT");
      const stop = [join(serverBinDir(), "pg_ctl"), "stop", "-w", "-t", "10", "-m", "immediate", "-D", h.dataDir];
      Bun.spawnSync(asPostgres(stop), { cwd: dir, env: baseEnv, stdout: "ignore", stderr: "ignore", timeout: 15_000 });
      const pidFile = join(h.dataDir, "postmaster.pid");
      if (existsSync(pidFile)) releaseSharedMemory(pidFile);
    }
  };

  // Synchronous, so that an interrupted run (cleanup.ts) can do it at exit too.
  const removeNow = () => {
    if (removed) return;
    removed = true;
    live.delete(lab);
    forget();
    for (const p of [...patronis.values(), ...etcds.values(), haproxy, client, router]) p?.kill("SIGKILL");
    for (const h of db) h.replstatus?.proc.kill("SIGKILL");
    pgCtlStopAll();
    for (const ns of namespaces) {
      const pids = Bun.spawnSync(["ip", "netns", "pids", ns]).stdout.toString().split(/\s+/).filter(Boolean);
      signal(pids.map(Number), "SIGKILL");
    }
    for (const ns of namespaces) Bun.spawnSync(["ip", "netns", "del", ns]);
    Bun.spawnSync(["ip", "link", "del", rootLink], { stderr: "ignore" });
    // NEMESIS_KEEP_LOGS=DIR keeps every process's log (and PostgreSQL's) for a look after the run.
    const keep = process.env.NEMESIS_KEEP_LOGS;
    if (keep)
      Bun.spawnSync([
        "sh",
        "-c",
        `mkdir -p "$1" && cp "$0"/*.log "$1"/ && for h in db1 db2 db3; do cp -r "$0/$h/data/log" "$1/$h-pglog" 2>/dev/null; done`,
        dir,
        keep,
      ]);
    rmSync(dir, { recursive: true, force: true });
  };

  const lab: Lab = {
    dir,
    prefix,
    scope: prefix,
    leaderKey: `/service/${prefix}/leader`,
    membersPrefix: `/service/${prefix}/members/`,
    db,
    lb: host("lb", 10),
    client: host("client", 20),
    observer: addr(100),
    etcdUrls: db.map((d) => `http://${d.address}:${PORTS.etcd}`),
    nodeOf: Object.fromEntries(db.map((d) => [d.address, d.name])),
    statsSocket: join(dir, "lb.sock"),

    async start() {
      try {
        network();
        mkdirSync(join(dir, "ctl"), { mode: 0o700 });
        for (const h of db) {
          mkdirSync(h.dir, { mode: 0o700 });
          chown(h.dir);
          mkdirSync(h.socketDir, { mode: 0o700 });
          chown(h.socketDir);
          writeFileSync(h.configFile, patroniConfig({ lab, host: h, opts }));
          chown(h.configFile);
        }
        for (const h of db) startEtcd(h);
        await waitFor(
          "the etcd cluster",
          async () => {
            const r = await fetch(`${lab.etcdUrls[0]}/v3/kv/put`, {
              method: "POST",
              body: JSON.stringify({ key: btoa(`/lab/${prefix}`), value: btoa("up") }),
              signal: AbortSignal.timeout(1000),
            });
            return r.ok;
          },
          60_000,
          200,
        );
        opts.log("etcd: 3 members up");
        startPatroni(db[0]!);
        await waitFor(
          "db1 to lead",
          async () => (await lab.psql(db[0]!, "select pg_is_in_recovery()", 2000)) === "f",
          90_000,
          300,
        );
        for (const h of db.slice(1)) startPatroni(h);
        await waitFor(
          "db2 and db3 to stream",
          async () =>
            (await lab.psql(db[0]!, "select count(*) from pg_stat_replication where state = 'streaming'", 2000)) ===
            "2",
          120_000,
          300,
        );
        // After the replicas: with synchronous_mode_strict a commit waits for a synchronous standby.
        await lab.psql(
          db[0]!,
          "create table nemesis_writes (id bigint primary key, at timestamptz default now())",
          60_000,
        );
        opts.log("patroni: db1 leads, db2 and db3 stream");
        for (const h of db) await startReplstatus(h);
        writeFileSync(join(dir, "haproxy.cfg"), haproxyConfig(lab, opts));
        haproxy = spawnIn(lab.lb, ["haproxy", "-db", "-f", join(dir, "haproxy.cfg")], "haproxy", dir);
        await waitFor("haproxy to route to db1", async () => (await lab.haproxyView()).db1 === 2, 30_000, 200);
        opts.log(`haproxy: routing to db1 (${opts.checkLine})`);
        if (opts.route) await startRouter();
      } catch (err) {
        await lab.remove();
        throw err;
      }
    },

    psql(h, sql, timeoutMs = 10_000) {
      const psql = [join(serverBinDir(), "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", h.socketDir, "-p"];
      return run([...psql, String(PORTS.pg), "-U", superuser, "-d", "postgres", "-c", sql], dir, "psql", timeoutMs);
    },

    partition(h, peers, direction, ports) {
      const set = `{ ${peers.map((p) => p.address).join(", ")} }`;
      const portSet = ports && `{ ${ports.join(", ")} }`;
      const rules: string[] = [];
      const match = (side: "saddr" | "daddr") =>
        portSet
          ? [`ip ${side} ${set} tcp dport ${portSet}`, `ip ${side} ${set} tcp sport ${portSet}`]
          : [`ip ${side} ${set}`];
      if (direction !== "out") for (const m of match("saddr")) rules.push(`add rule inet ${prefix} input ${m} drop`);
      if (direction !== "in") for (const m of match("daddr")) rules.push(`add rule inet ${prefix} output ${m} drop`);
      nft(h.ns, `${rules.join("\n")}\n`);
      return async () => nft(h.ns, `flush chain inet ${prefix} input\nflush chain inet ${prefix} output\n`);
    },

    killPostmaster(h) {
      const pid = h.postmasterPid();
      if (pid !== undefined) signal([pid], "SIGKILL");
    },

    stopPostgres(h) {
      const pid = h.postmasterPid();
      if (pid === undefined) return async () => {};
      const before = childrenOf(pid);
      signal([pid, ...before], "SIGSTOP");
      const stopped = [...new Set([pid, ...before, ...childrenOf(pid)])];
      signal(stopped, "SIGSTOP");
      return async () => signal([...new Set([...stopped, ...childrenOf(pid)])], "SIGCONT");
    },

    killPatroni(h) {
      patronis.get(h.name)?.kill("SIGKILL");
      return async () => {
        await patronis.get(h.name)?.exited;
        startPatroni(h);
      };
    },

    killEtcd(h) {
      etcds.get(h.name)?.kill("SIGKILL");
      return async () => {
        await etcds.get(h.name)?.exited;
        startEtcd(h);
      };
    },

    async restartReplstatus(h) {
      await h.replstatus?.stop();
      await startReplstatus(h);
    },

    patronictl(from, ...args) {
      return run(["patronictl", "-c", from.configFile, ...args], from.dir, "patronictl", 30_000, from.exec);
    },

    async haproxyView() {
      const text = await statsCommand(lab.statsSocket, "show servers state primary", 2000);
      const view: Record<string, number> = {};
      for (const line of text.split("\n")) {
        const f = line.split(" ");
        if (f.length > 6 && f[1] === "primary") view[f[3]!] = Number(f[5]);
      }
      return view;
    },

    startClient(onLine) {
      const script = join(import.meta.dir, "client.ts");
      const args = ["--host", lab.lb.address, "--port", String(PORTS.lb)];
      const p = Bun.spawn([...lab.client.exec, process.execPath, script, ...args], {
        stdin: "ignore",
        stdout: "pipe",
        stderr: Bun.file(join(dir, "client.log")),
      });
      client = p as unknown as typeof client;
      clientOut = (async () => {
        const decoder = new TextDecoder();
        let text = "";
        for await (const chunk of p.stdout) {
          text += decoder.decode(chunk, { stream: true });
          let nl;
          while ((nl = text.indexOf("\n")) >= 0) {
            const line = text.slice(0, nl);
            text = text.slice(nl + 1);
            if (line.trim()) onLine(line);
          }
        }
      })();
    },

    async stopClient() {
      const p = client;
      if (!p) return;
      client = undefined;
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 15_000);
      await p.exited;
      clearTimeout(timer);
      await clientOut;
    },

    async remove() {
      for (const h of db) await h.replstatus?.[Symbol.asyncDispose]();
      removeNow();
    },
  };
  live.add(lab);
  return lab;
}
