// The Debian package as an administrator meets it: built by `bun run package`'s
// builder, checked by lintian, installed with dpkg -i, two clusters served by
// two instances of the template unit (its ExecStart run as systemd would run
// it: this machine has no running systemd), then dpkg -r and dpkg -P.
// It installs into this machine, so it runs as root and refuses to touch a
// replstatus package or user that it did not make.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pkg from "../../package.json";
import { buildPackage } from "../../packaging/build.ts";
import { atExit, trackDir, untrackDir } from "../../src/demo/cleanup.ts";
import { freePort, startPair, type PgNode, type PgPair } from "../../src/demo/pg.ts";
import { waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { asSystemd, serviceCommand } from "../kit/systemd.ts";
import { PACKAGE_HOOK_TIMEOUT_MS } from "../kit/timeouts.ts";
import { requireTool } from "../kit/tools.ts";

const UNITS = "/lib/systemd/system";
const TAG = `rs${process.pid}`;
/** Two Debian clusters: the fixture's primary and its standby. */
const CLUSTERS = [`15-${TAG}p`, `15-${TAG}s`];

function sh(cmd: string[]) {
  const r = Bun.spawnSync(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const dpkgStatus = () => sh(["dpkg-query", "-W", "-f", "${db:Status-Status}", "replstatus"]).stdout || "not-installed";
const passwd = (name: string) => sh(["getent", "passwd", name]).stdout.trim();
const group = (name: string) => sh(["getent", "group", name]).stdout.trim();

let work: string;
let deb: string;
let pg: PgPair | undefined;
let installed = false;
/** Files and directories this test wrote outside its temp dir, removed at the end. */
const written: string[] = [];

// Synchronous, so that it also runs from an 'exit' handler after Ctrl-C.
function cleanUp(): void {
  for (const path of written.splice(0).reverse()) rmSync(path, { recursive: true, force: true });
  if (installed) sh(["dpkg", "--purge", "replstatus"]);
  installed = false;
}
let cancelExitCleanUp = () => {};

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("test/e2e/package.test.ts installs a package: run it as root");
  if (dpkgStatus() !== "not-installed" || passwd("replstatus") || group("replstatus")) {
    throw new Error("a replstatus package, user or group exists on this machine already: this test would remove it");
  }
  cancelExitCleanUp = atExit(cleanUp);
  work = mkdtempSync(join(tmpdir(), "replstatus-package-"));
  trackDir(work);
  deb = await buildPackage(work);
  pg = await startPair();
}, PACKAGE_HOOK_TIMEOUT_MS);

afterAll(async () => {
  cleanUp();
  cancelExitCleanUp();
  await pg?.stop();
  rmSync(work, { recursive: true, force: true });
  untrackDir(work);
});

test("the package is named after the version and architecture, and lintian finds no error or warning", () => {
  const arch = sh(["dpkg", "--print-architecture"]).stdout.trim();
  expect(deb).toBe(join(work, `replstatus_${pkg.version}_${arch}.deb`));
  const r = sh(["lintian", "--fail-on", "error,warning", deb]);
  expect({ code: r.code, tags: r.stdout.split("\n").filter((l) => /^[EW]: /.test(l)) }).toEqual({ code: 0, tags: [] });
});

test("dpkg -i installs the executable, the units, the conffiles and a system user", () => {
  const r = sh(["dpkg", "-i", deb]);
  installed = true;
  expect(r.code).toBe(0);
  for (const path of [
    "/usr/bin/replstatus",
    `${UNITS}/replstatus@.service`,
    `${UNITS}/replstatus@.socket`,
    `${UNITS}/replstatus-patroni@.service`,
    `${UNITS}/replstatus.service`,
    `${UNITS}/replstatus.socket`,
    `${UNITS}/replstatus-route.service`,
    "/etc/replstatus/example.toml",
    "/etc/default/replstatus",
    "/usr/share/man/man1/replstatus.1.gz",
    "/usr/share/doc/replstatus/copyright",
  ]) {
    expect({ path, exists: existsSync(path) }).toEqual({ path, exists: true });
  }
  expect(sh(["dpkg-query", "-W", "-f", "${Conffiles}", "replstatus"]).stdout).toMatch(
    /^ \/etc\/default\/replstatus \w+\n \/etc\/replstatus\/example\.toml \w+$/,
  );
  const [name, , , , , home, shell] = passwd("replstatus").split(":");
  expect({ name, home, shell }).toEqual({ name: "replstatus", home: "/nonexistent", shell: "/usr/sbin/nologin" });
});

test("/usr/bin/replstatus runs with no Bun on the PATH", () => {
  const env = { PATH: "/usr/bin:/bin" };
  expect(Bun.which("bun", env)).toBeNull();
  const r = Bun.spawnSync(["/usr/bin/replstatus", "--version"], { env, cwd: "/" });
  expect({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() }).toEqual({
    code: 0,
    stdout: `replstatus ${pkg.version} (bun ${Bun.version})\n`,
    stderr: "",
  });
});

test("systemd-analyze verify finds nothing to say about the units", () => {
  const analyze = requireTool("systemd-analyze", "systemd");
  // An instance's socket takes its address from a drop-in, as docs/package.md shows.
  const dropIn = `/etc/systemd/system/replstatus@${CLUSTERS[0]}.socket.d`;
  mkdirSync(dropIn, { recursive: true });
  writeFileSync(join(dropIn, "listen.conf"), "[Socket]\nListenStream=127.0.0.1:5400\n");
  try {
    const units = [
      `${UNITS}/replstatus.service`,
      `${UNITS}/replstatus@${CLUSTERS[0]}.service`,
      `${UNITS}/replstatus@${CLUSTERS[0]}.socket`,
      `${UNITS}/replstatus-patroni@${CLUSTERS[0]}.service`,
    ];
    for (const unit of units) {
      const r = sh([analyze, "verify", unit]);
      expect({ unit, code: r.code, stderr: r.stderr }).toEqual({ unit, code: 0, stderr: "" });
    }
  } finally {
    rmSync(dropIn, { recursive: true, force: true });
  }
});

/** What an administrator does for a cluster, with a fake /etc/postgresql entry pointing at a fixture node. */
async function prepareCluster(cluster: string, node: PgNode): Promise<number> {
  const [version, name] = [cluster.slice(0, cluster.indexOf("-")), cluster.slice(cluster.indexOf("-") + 1)];
  const confDir = `/etc/postgresql/${version}/${name}`;
  // Remove from the first directory this made: a host without PostgreSQL packages has no /etc/postgresql.
  let top = confDir;
  while (!existsSync(dirname(top))) top = dirname(top);
  mkdirSync(confDir, { recursive: true });
  written.push(top);
  // As pg_createcluster writes it; the data directory is unreadable to replstatus, so its auto.conf is skipped.
  writeFileSync(
    `${confDir}/postgresql.conf`,
    [
      `data_directory = '${node.dataDir}'`,
      `port = ${node.port}\t\t\t\t# (change requires restart)`,
      `unix_socket_directories = '${node.socketDir}'\t# comma-separated list of directories`,
      "include_dir = 'conf.d'",
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const toml = `/etc/replstatus/${cluster}.toml`;
  written.push(toml);
  const example = readFileSync("/etc/replstatus/example.toml", "utf8");
  writeFileSync(toml, `${example}\nbind = "127.0.0.1"\nport = ${port}\n`);
  return port;
}

/** systemd makes RuntimeDirectory= and StateDirectory= owned by the unit's user before it starts it. */
function makeDirs(dirs: string[], user: string): void {
  const [, , uid, gid] = passwd(user).split(":").map(Number);
  for (const dir of dirs) {
    // The parents (/run/replstatus of replstatus/%i) are root's, 0755, as systemd makes them.
    mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
    mkdirSync(dir, { mode: 0o750 });
    chownSync(dir, uid!, gid!);
  }
}

describe("two clusters on one host, one instance each", () => {
  test("each instance finds its cluster and answers for it: MASTER on one port, STANDBY on the other", async () => {
    const { primary, standby } = pg!;
    await primary.sql("create role replstatus login; grant pg_monitor to replstatus");
    // The fixture keeps its sockets private to postgres; a Debian host's /var/run/postgresql is 2775.
    for (const dir of [pg!.dir, primary.socketDir, standby.socketDir]) chmodSync(dir, 0o711);
    const unit = readFileSync(`${UNITS}/replstatus@.service`, "utf8");
    const hardNofile = Number(sh(["prlimit", "--nofile", "--output", "HARD", "--noheadings"]).stdout.trim());
    expect(hardNofile).toBeGreaterThan(1024);
    written.push("/run/replstatus", "/var/lib/replstatus");
    const running = [];
    try {
      for (const [cluster, node, want] of [
        [CLUSTERS[0]!, primary, "MASTER"],
        [CLUSTERS[1]!, standby, "STANDBY"],
      ] as const) {
        const port = await prepareCluster(cluster, node);
        const cmd = serviceCommand(unit, cluster);
        expect(cmd.argv).toEqual([
          "/usr/bin/replstatus",
          "--config",
          `/etc/replstatus/${cluster}.toml`,
          "--cluster",
          cluster,
        ]);
        makeDirs([...cmd.runtimeDirs, ...cmd.stateDirs], cmd.user);
        const command = asSystemd(cmd, "/nonexistent", "/usr/sbin/nologin", hardNofile);
        const r = await startResponder([], {}, [], { command });
        running.push(r);
        const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${r.proc.pid}/status`, "utf8"))?.[1];
        expect(uid).toBe(passwd("replstatus").split(":")[2]);
        expect(r.ports).toEqual([port]);
        expect(r.log).toContain(`; database replstatus@${node.socketDir}/.s.PGSQL.${node.port}/postgres;`);
        expect(r.log).toContain(`; control socket /run/replstatus/${cluster}/control.sock`);
        // The limits come on the start report's second line, which may follow the "serving" line a moment later.
        await r.waitForLog(/; open-file limit /, "the limits line");
        expect(r.log).toContain(`; open-file limit ${Math.min(cmd.nofile!, hardNofile)}`);
        await waitForAnswer(port, want);
      }
      for (const r of running.splice(0)) expect(await r.stop()).toBe(0);
      // systemd removes an instance's RuntimeDirectory when it stops.
      for (const cluster of CLUSTERS) rmSync(`/run/replstatus/${cluster}`, { recursive: true, force: true });
    } finally {
      for (const r of running) await r[Symbol.asyncDispose]();
    }
  });
});

test("dpkg -r removes the program and the units, and keeps the configuration and the user", () => {
  expect(sh(["dpkg", "-r", "replstatus"]).code).toBe(0);
  for (const path of ["/usr/bin/replstatus", `${UNITS}/replstatus@.service`, `${UNITS}/replstatus.service`]) {
    expect({ path, exists: existsSync(path) }).toEqual({ path, exists: false });
  }
  expect(existsSync("/etc/replstatus/example.toml")).toBe(true);
  expect(passwd("replstatus")).not.toBe("");
  expect(dpkgStatus()).toBe("config-files");
});

test("dpkg -P removes the configuration, the state, the user and the group; an administrator's files stay", () => {
  const uid = passwd("replstatus").split(":")[2]!;
  const purge = sh(["dpkg", "-P", "replstatus"]);
  // dpkg's own note that it leaves /etc/replstatus to the administrator's files in it is the only message.
  expect({
    code: purge.code,
    stderr: purge.stderr.replace(/^dpkg: warning: .*'\/etc\/replstatus' not empty.*\n/m, ""),
  }).toEqual({
    code: 0,
    stderr: "",
  });
  installed = false;
  expect(dpkgStatus()).toBe("not-installed");
  expect({ user: passwd("replstatus"), group: group("replstatus") }).toEqual({ user: "", group: "" });
  for (const path of [
    "/etc/default/replstatus",
    "/etc/replstatus/example.toml",
    "/var/lib/replstatus",
    "/run/replstatus",
  ]) {
    expect({ path, exists: existsSync(path) }).toEqual({ path, exists: false });
  }
  // The instance files this test wrote as an administrator are not the package's to remove.
  const instanceFiles = CLUSTERS.map((c) => `${c}.toml`);
  expect(readdirSync("/etc/replstatus").sort()).toEqual(instanceFiles.sort());
  for (const name of instanceFiles) rmSync(`/etc/replstatus/${name}`);
  rmdirSync("/etc/replstatus");
  // Nothing of the removed user's is left where the package or its units write.
  const left = sh(["find", "/etc", "/var/lib", "/var/cache", "/run", "/usr", "-xdev", "-uid", uid]);
  expect(left.stdout).toBe("");
});
