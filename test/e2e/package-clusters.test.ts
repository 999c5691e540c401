// The installed package against what Debian itself makes: a cluster from
// pg_createcluster, stopped with pg_ctlcluster -m smart, and a Patroni member
// from pg_createconfig_patroni, switched over with patronictl. The instances'
// commands run as systemd would run them (test/kit/systemd.ts): as the
// package's `replstatus` user, which cannot read a data directory (0700
// postgres), so a smart shutdown is seen only by the door check
// (docs/lifecycle.md). Installs into this machine: root only, and it refuses to
// touch a replstatus package or user it did not make. Clusters, files and
// processes carry this run's pid and are removed after, also on failure.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { buildPackage } from "../../packaging/build.ts";
import { atExit, track, trackDir, untrack, untrackDir } from "../../src/demo/cleanup.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { asPostgres, freePort, waitFor } from "../../src/demo/proc.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { DOOR_BOUND_MS, READY_BOUND_MS, withSlack } from "../kit/bounds.ts";
import { startEtcd, type Etcd } from "../kit/etcd.ts";
import { asSystemd, serviceCommand } from "../kit/systemd.ts";
import { PACKAGE_HOOK_TIMEOUT_MS } from "../kit/timeouts.ts";

const UNITS = "/lib/systemd/system";
const TAG = `rs${process.pid}`;
const verbose = (what: object) => process.env.REPLSTATUS_TEST_VERBOSE && console.log(what);

function sh(cmd: string[], env?: Record<string, string>) {
  const r = Bun.spawnSync(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", ...(env && { env }) });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Runs it or throws with what it said. */
function must(cmd: string[]): string {
  const r = sh(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited with ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A container may not raise its hard open-file limit to the unit's LimitNOFILE. */
const hardNofile = () => Number(sh(["prlimit", "--nofile", "--output", "HARD", "--noheadings"]).stdout.trim());
const postgresIds = () => passwd("postgres").split(":").slice(2, 4).map(Number) as [number, number];
const dpkgStatus = () => sh(["dpkg-query", "-W", "-f", "${db:Status-Status}", "replstatus"]).stdout || "not-installed";
const passwd = (name: string) => sh(["getent", "passwd", name]).stdout.trim();

let work: string;
let installed = false;
/** Undone at the end in reverse order, also from an exit handler: synchronous. */
const undo: (() => void)[] = [];

function cleanUp(): void {
  for (const step of undo.splice(0).reverse()) {
    try {
      step();
    } catch {
      // the others still run
    }
  }
  if (installed) sh(["dpkg", "--purge", "replstatus"]);
  installed = false;
}
let cancelExitCleanUp = () => {};

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("test/e2e/package-clusters.test.ts installs a package: run it as root");
  if (dpkgStatus() !== "not-installed" || passwd("replstatus")) {
    throw new Error("a replstatus package or user exists on this machine already: this test would remove it");
  }
  cancelExitCleanUp = atExit(cleanUp);
  work = mkdtempSync(join(tmpdir(), "replstatus-clusters-"));
  trackDir(work);
  const deb = await buildPackage(work);
  must(["dpkg", "-i", deb]);
  installed = true;
}, PACKAGE_HOOK_TIMEOUT_MS);

afterAll(() => {
  cleanUp();
  cancelExitCleanUp();
  rmSync(work, { recursive: true, force: true });
  untrackDir(work);
});

/** /etc/replstatus/INSTANCE.toml from the example, on a free loopback port; the port. */
async function instanceFile(instance: string): Promise<number> {
  const port = await freePort();
  const toml = `/etc/replstatus/${instance}.toml`;
  undo.push(() => rmSync(toml, { force: true }));
  writeFileSync(toml, `${readFileSync("/etc/replstatus/example.toml", "utf8")}\nbind = "127.0.0.1"\nport = ${port}\n`);
  return port;
}

/** The unit's command for `instance`, run as systemd would (its user, groups, environment and directories). */
async function startInstance(unit: string, instance: string, dropGroups = false): Promise<Responder> {
  const cmd = serviceCommand(readFileSync(join(UNITS, unit), "utf8"), instance);
  if (dropGroups) cmd.groups = [];
  const [, , uid, gid] = passwd(cmd.user).split(":").map(Number);
  for (const dir of [...cmd.runtimeDirs, ...cmd.stateDirs]) {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    chownSync(dir, uid!, gid!);
    undo.push(() => rmSync(dir, { recursive: true, force: true }));
  }
  const r = await startResponder([], {}, [], {
    command: asSystemd(cmd, "/nonexistent", "/usr/sbin/nologin", hardNofile()),
  });
  undo.push(() => r.proc.kill("SIGKILL"));
  return r;
}

/** Whether a process runs. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** psql as the postgres OS user on Debian's socket directory. */
function psql(port: number, query: string): string {
  return must(asPostgres(["psql", "-XAtq", "-h", "/var/run/postgresql", "-p", String(port), "-c", query])).trim();
}

/** A client session as the postgres OS user, open until leave(); its backend's pid. */
function clientSession(port: number) {
  const proc = Bun.spawn(asPostgres(["psql", "-XAtq", "-h", "/var/run/postgresql", "-p", String(port)]), {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc.pid);
  undo.push(() => proc.kill("SIGKILL"));
  return {
    async open(): Promise<void> {
      proc.stdin.write("select 'in';\n");
      await proc.stdin.flush();
      const reader = proc.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      if (!new TextDecoder().decode(value).includes("in")) throw new Error("the client session did not open");
    },
    /** The client leaves as psql does at the end of its input. */
    async leave(): Promise<void> {
      await proc.stdin.end();
      await proc.exited;
      untrack(proc.pid);
    },
  };
}

describe("a pg_createcluster cluster, replstatus@ as the replstatus user", () => {
  const name = `${TAG}c`;
  const instance = `15-${name}`;
  let pgPort: number;
  let r: Responder;
  let rsPort: number;
  const pmPid = () => Number(readFileSync(`/var/run/postgresql/${instance}.pid`, "utf8").trim());

  beforeAll(async () => {
    pgPort = await freePort();
    undo.push(() => sh(["pg_dropcluster", "--stop", "15", name]));
    must(["pg_createcluster", "-p", String(pgPort), "15", name, "--start"]);
    psql(pgPort, "create role replstatus login; grant pg_monitor to replstatus");
    rsPort = await instanceFile(instance);
    r = await startInstance("replstatus@.service", instance);
  }, PACKAGE_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await r?.[Symbol.asyncDispose]();
  });

  test("MASTER; the log says postmaster.pid cannot be read and how a shutdown is seen", async () => {
    await waitForAnswer(rsPort, "MASTER");
    const dataDir = `/var/lib/postgresql/15/${name}`;
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    await r.waitForLog(/info: postmaster\.pid cannot be read: /);
    expect(r.log).toContain(
      `info: postmaster.pid cannot be read: ${dataDir}/postmaster.pid: permission denied; a shutdown is seen by a new connection every 500ms\n`,
    );
    // What the replstatus user can read beside the socket: the pid, never the status.
    expect(readFileSync(`/var/run/postgresql/${instance}.pid`, "utf8").trim()).toMatch(/^\d+$/);
    expect(statSync(`/var/run/postgresql/.s.PGSQL.${pgPort}.lock`).mode & 0o777).toBe(0o600);
  });

  /** pg_ctlcluster stop -m smart, started now; resolves to its exit code. */
  function smartStop(): Promise<number> {
    const p = Bun.spawn(["pg_ctlcluster", "15", name, "stop", "-m", "smart"], { stdout: "ignore", stderr: "pipe" });
    undo.push(() => p.kill("SIGKILL"));
    return p.exited;
  }

  /**
   * How many shutdown checkpoints the server log has begun (log_checkpoints is on by default). Once the last session
   * has left, PostgreSQL begins it at once; how long it then takes (fsync on, a loaded disk) is PostgreSQL's own.
   */
  const checkpoints = () =>
    readFileSync(`/var/log/postgresql/postgresql-${instance}.log`, "utf8").split("checkpoint starting: shutdown")
      .length - 1;
  /** PostgreSQL's own time to finish a shutdown once it has begun its checkpoint. */
  const FINISH_MS = 60_000;

  /** The backend of replstatus's poll: the oldest of its sessions (a door check's lasts a moment). */
  const pollBackend = () =>
    Number(
      psql(pgPort, "select pid from pg_stat_activity where usename = 'replstatus' order by backend_start limit 1"),
    );

  let stopped: Promise<number> | undefined;
  let before = 0;

  /**
   * From the moment PostgreSQL takes the smart shutdown (its status line, read here as root): the answer leaves
   * MASTER and replstatus's own session ends, both within the bound. Returns when that was, and the postmaster's pid.
   */
  async function shutdownSeen(): Promise<{ t0: number; unknownMs: number; sessionMs: number; pid: number }> {
    await waitForAnswer(rsPort, "MASTER");
    const [pid, backend] = [pmPid(), pollBackend()];
    before = checkpoints();
    const status = `/var/lib/postgresql/15/${name}/postmaster.pid`;
    const stopping = () => readFileSync(status, "utf8").split("\n")[7]?.trim() === "stopping";
    stopped = smartStop();
    await waitFor("the smart shutdown to begin", stopping, 30_000, 1);
    const t0 = performance.now();
    const [unknownMs] = await Promise.all([
      waitForAnswer(rsPort, "UNKNOWN", withSlack(DOOR_BOUND_MS)),
      waitFor("replstatus's session to end", () => !alive(backend), withSlack(DOOR_BOUND_MS), 1),
    ]);
    return { t0, unknownMs, sessionMs: performance.now() - t0, pid };
  }

  test("pg_ctlcluster stop -m smart, no client session: UNKNOWN, replstatus's session gone and the shutdown under way within the bound", async () => {
    const { t0, unknownMs, sessionMs, pid } = await shutdownSeen();
    await waitFor("the shutdown checkpoint", () => checkpoints() > before, withSlack(DOOR_BOUND_MS), 1);
    const checkpointMs = performance.now() - t0;
    await waitFor("the postmaster to exit", () => !alive(pid), FINISH_MS);
    verbose({ alone: true, unknownMs, sessionMs, checkpointMs, goneMs: performance.now() - t0 });
    expect(await stopped).toBe(0);
    await r.waitForLog(/-> unknown \(a new connection was refused: the database system is shutting down\)/);
    must(["pg_ctlcluster", "15", name, "start"]);
    await waitForAnswer(rsPort, "MASTER", withSlack(READY_BOUND_MS));
  });

  test("pg_ctlcluster stop -m smart, a client session open: UNKNOWN within the bound, the shutdown under way within it of the client leaving", async () => {
    await waitForAnswer(rsPort, "MASTER");
    const client = clientSession(pgPort);
    await client.open();
    const { t0, unknownMs, sessionMs, pid } = await shutdownSeen();
    // Only the client's session holds the shutdown up now.
    expect(alive(pid)).toBe(true);
    expect(checkpoints()).toBe(before);
    expect(await answer(rsPort)).toBe("UNKNOWN");
    const t1 = performance.now();
    await client.leave();
    await waitFor(
      "the shutdown checkpoint once the client left",
      () => checkpoints() > before,
      withSlack(DOOR_BOUND_MS),
      1,
    );
    const checkpointMs = performance.now() - t1;
    await waitFor("the postmaster to exit", () => !alive(pid), FINISH_MS);
    verbose({ unknownMs, sessionMs, heldMs: t1 - t0, checkpointMs, goneAfterClientMs: performance.now() - t1 });
    expect(await stopped).toBe(0);
    must(["pg_ctlcluster", "15", name, "start"]);
    await waitForAnswer(rsPort, "MASTER", withSlack(READY_BOUND_MS));
  });
});

/** A free port P whose Patroni REST port under Debian's rule (P + 2576, pg_createconfig_patroni) is free too. */
async function portPair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 2576 > 65535) continue;
    try {
      Bun.listen({ hostname: "127.0.0.1", port: port + 2576, socket: { data() {} } }).stop(true);
      return port;
    } catch {
      // taken: another
    }
  }
}

/** GET on a Patroni REST API: the status, 0 when it does not answer. */
async function rest(port: number, path: string): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    return 0;
  }
}

/** The last lines of a log, for a failure's message. */
function tail(file: string, lines = 30): string {
  return existsSync(file) ? readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n") : `(no ${file})`;
}

/** `patroni FILE` as patroni@ runs it: as postgres, its output to `log`. */
function startPatroni(file: string, log: string): Bun.Subprocess {
  const p = Bun.spawn(asPostgres(["patroni", file]), {
    cwd: "/",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/var/lib/postgresql" },
    stdin: "ignore",
    stdout: Bun.file(log),
    stderr: Bun.file(log),
  });
  track(p.pid);
  return p;
}

/** SIGTERM (Patroni stops its PostgreSQL first), SIGKILL after 30 s. */
async function stopPatroni(p: Bun.Subprocess | undefined): Promise<void> {
  if (!p || p.exitCode !== null) return;
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
  await p.exited;
  clearTimeout(timer);
  untrack(p.pid);
}

describe("a Patroni member from pg_createconfig_patroni, replstatus-patroni@ as the replstatus user", () => {
  const name = `${TAG}p`;
  const instance = `15-${name}`;
  const yml = `/etc/patroni/${instance}.yml`;
  let etcd: Etcd | undefined;
  let dir: string;
  let pgPort: number;
  /** The second member, on this host with its own name, ports and directories (a second host needs none of that). */
  const b = { name: "", yml: "", pgPort: 0, apiPort: 0 };
  const patronis: Bun.Subprocess[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), `rs-patroni-deb-`));
    trackDir(dir);
    chownSync(dir, ...postgresIds());
    pgPort = await portPair();
    // What an operator does first: the store in /etc/patroni/dcs.yml (a shared file: put back at once).
    const dcs = "/etc/patroni/dcs.yml";
    const saved = readFileSync(dcs);
    undo.push(() => sh(["pg_dropcluster", "--stop", "15", name]));
    undo.push(() => rmSync(yml, { force: true }));
    undo.push(() => rmSync(`/var/lib/postgresql/${instance}.pgpass`, { force: true }));
    undo.push(() => rmSync(`/var/log/postgresql/postgresql-${instance}.log`, { force: true }));
    try {
      writeFileSync(dcs, `etcd3:\n  hosts: 127.0.0.1:${etcd.port}\n`);
      must(["pg_createconfig_patroni", "--hostip=127.0.0.1", "--network=127.0.0.1/32", `--port=${pgPort}`, "15", name]);
    } finally {
      writeFileSync(dcs, saved);
    }
    patronis.push(startPatroni(yml, join(dir, "a.log")));
    await waitFor(
      "the first member to lead",
      async () => (await rest(pgPort + 2576, "/primary")) === 200,
      180_000,
    ).catch((err: Error) => Promise.reject(new Error(`${err.message}\n${tail(join(dir, "a.log"))}`)));
    psql(pgPort, "create role replstatus login; grant pg_monitor to replstatus");

    const conf = Bun.YAML.parse(readFileSync(yml, "utf8")) as Record<string, any>;
    [b.pgPort, b.apiPort] = [await freePort(), await freePort()];
    b.name = `${conf.name}-b`;
    b.yml = join(dir, "b.yml");
    conf.name = b.name;
    conf.restapi.listen = conf.restapi.connect_address = `127.0.0.1:${b.apiPort}`;
    conf.postgresql.listen = conf.postgresql.connect_address = `127.0.0.1:${b.pgPort}`;
    conf.postgresql.data_dir = join(dir, "b");
    // Patroni stops its PostgreSQL when it exits; one killed instead leaves it running.
    undo.push(() =>
      sh(asPostgres(["/usr/lib/postgresql/15/bin/pg_ctl", "-D", join(dir, "b"), "stop", "-m", "immediate"])),
    );
    conf.postgresql.pgpass = join(dir, "b.pgpass");
    conf.postgresql.create_replica_method = ["basebackup"];
    // Its own config_dir, as Debian's own layout has one per cluster under /etc/postgresql.
    conf.postgresql.config_dir = join(dir, "b.conf");
    mkdirSync(conf.postgresql.config_dir, { mode: 0o700 });
    chownSync(conf.postgresql.config_dir, ...postgresIds());
    // What pg_createcluster leaves there for Patroni to move aside (postgresql.base.conf).
    writeFileSync(join(conf.postgresql.config_dir, "postgresql.conf"), "");
    chownSync(join(conf.postgresql.config_dir, "postgresql.conf"), ...postgresIds());
    conf.postgresql.parameters.log_filename = `postgresql-${instance}-b.log`;
    undo.push(() => rmSync(`/var/log/postgresql/postgresql-${instance}-b.log`, { force: true }));
    // JSON is YAML.
    writeFileSync(b.yml, JSON.stringify(conf, null, 2));
    chownSync(b.yml, ...postgresIds());
    patronis.push(startPatroni(b.yml, join(dir, "b.log")));
    await waitFor(
      "the second member to stream",
      async () => (await rest(b.apiPort, "/replica")) === 200,
      180_000,
    ).catch((err: Error) => Promise.reject(new Error(`${err.message}\n${tail(join(dir, "b.log"))}`)));
  }, PACKAGE_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    for (const p of patronis.reverse()) await stopPatroni(p);
    await etcd?.stop();
    if (!dir) return;
    sh(asPostgres(["/usr/lib/postgresql/15/bin/pg_ctl", "-D", join(dir, "b"), "stop", "-m", "immediate"]));
    rmSync(dir, { recursive: true, force: true });
    untrackDir(dir);
  }, PACKAGE_HOOK_TIMEOUT_MS);

  test("pg_createconfig_patroni's file is 0660 postgres:postgres, and left so", () => {
    const st = statSync(yml);
    expect({ mode: st.mode & 0o777, owner: passwd("postgres").split(":")[2] === String(st.uid) }).toEqual({
      mode: 0o660,
      owner: true,
    });
  });

  test("without the postgres group the instance cannot read it: one line, exit 2", async () => {
    await instanceFile(instance);
    const cmd = serviceCommand(readFileSync(join(UNITS, "replstatus-patroni@.service"), "utf8"), instance);
    expect(cmd.groups).toEqual(["postgres"]);
    const r = sh(
      asSystemd(
        { ...cmd, groups: [], runtimeDirs: [], stateDirs: [] },
        "/nonexistent",
        "/usr/sbin/nologin",
        hardNofile(),
      ),
    );
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 2,
      stderr: `replstatus: could not read ${yml} (--patroni): permission denied\n`,
    });
  });

  test("MASTER on the leader, STANDBY on the replica; patronictl switchover moves MASTER to the new leader", async () => {
    const port = await instanceFile(instance);
    await using a = await startInstance("replstatus-patroni@.service", instance);
    // The other member's replstatus: the same executable, as postgres, reading b's file.
    await using other = await startResponder(
      ["--listen", "127.0.0.1:0", "--patroni", b.yml],
      { PGUSER: "postgres", PGDATABASE: "postgres", HOME: dir },
      ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"],
      { command: ["/usr/bin/replstatus"] },
    );
    await waitForAnswer(port, "MASTER", 30_000);
    await waitForAnswer(other.ports[0]!, "STANDBY", 30_000);
    expect(a.log).toContain(`/var/lib/postgresql/15/${name}/postmaster.pid: permission denied`);
    const t0 = performance.now();
    must(["patronictl", "-c", yml, "switchover", "--candidate", b.name, "--force"]);
    const [masterMs, standbyMs] = await Promise.all([
      waitForAnswer(other.ports[0]!, "MASTER", 60_000),
      waitForAnswer(port, "STANDBY", 60_000),
    ]);
    verbose({ switchoverMs: performance.now() - t0, masterMs, standbyMs });
    expect(await answer(port)).toBe("STANDBY");
    expect(a.log).toMatch(/info: primary -> /);
  });
});
