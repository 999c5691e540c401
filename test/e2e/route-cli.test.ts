// `replstatus route` as a user starts it: the configuration errors, with
// stdout, stderr and the exit code together; a reload of its file (SIGHUP).
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHaproxy } from "../../src/demo/haproxy.ts";
import { waitFor } from "../../src/demo/proc.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { noDb, runCli } from "../kit/cli.ts";
import { startRoute } from "../kit/route.ts";

test.each([
  [[], "replstatus: replstatus route needs --haproxy-socket PATH: haproxy's stats socket with level admin\n"],
  [
    ["--haproxy-socket", "/run/haproxy/admin.sock"],
    "replstatus: replstatus route needs at least one --server BACKEND/SERVER=URL\n",
  ],
  [
    ["--haproxy-socket", "/run/haproxy/admin.sock", "--server", "pg/node1"],
    'replstatus: invalid value for --server: "pg/node1" (expected a haproxy backend and server, then = and the node\'s replstatus http listener, such as pg/node1=http://10.0.0.1:8008)\n',
  ],
  [
    ["--haproxy-socket", "/a.sock", "--server", "pg/a=http://10.0.0.1:8008", "--server", "pg/a=http://10.0.0.2:8008"],
    "replstatus: --server pg/a given more than once\n",
  ],
  [
    ["--haproxy-socket", "/a.sock", "--server", "pg/a=http://10.0.0.1:8008", "--listen", "127.0.0.1:9000"],
    "replstatus: replstatus route serves its /status and /events on one --listen http:HOST:PORT at most\n",
  ],
  [["--db", "postgres://x@y/z"], "replstatus: unknown flag: --db for replstatus route (see --help)\n"],
  [
    ["--haproxy-socket", "relative.sock"],
    'replstatus: invalid value for --haproxy-socket: "relative.sock" (expected an absolute path of at most 107 bytes)\n',
  ],
])("replstatus route %j: one line and exit 2", (args, stderr) => {
  expect(runCli(["route", ...args])).toEqual({ code: 2, stdout: "", stderr });
});

test("the server refuses the router's flags", () => {
  expect(runCli(["--haproxy-socket", "/a.sock"])).toEqual({
    code: 2,
    stdout: "",
    stderr: "replstatus: unknown flag: --haproxy-socket (see --help)\n",
  });
});

test("SIGHUP reads the file again: a server added is driven, one removed is left to the checks, a bad file is one line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rs-route-reload-"));
  // haproxy's checks pass (a listener that says MASTER): only the router takes a server out, and the
  // checks put it back at once (rise 1), so a router that drives a server pushes it again and again.
  const master = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { open: (s) => void s.end("MASTER"), data() {} },
  });
  const checked = [
    "option tcp-check",
    "tcp-check expect string MASTER",
    `server s1 127.0.0.1:1 check port ${master.port} inter 100ms rise 1 fall 1`,
  ];
  try {
    await using haproxy = await startHaproxy({ backends: { a: checked, b: checked } });
    // A node without PostgreSQL: its stream says UNKNOWN, so the router takes its server out of a primary backend.
    await using node = await startResponder(["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"], noDb(dir));
    const url = `http://127.0.0.1:${node.ports[1]}`;
    const file = join(dir, "route.toml");
    const write = (servers: string) =>
      writeFileSync(
        file,
        `haproxy-socket = "${haproxy.statsSocket}"\nserver = [${servers}]\nreconcile-interval = "100ms"\n`,
      );
    write(`"a/s1=${url}"`);
    await using route = await startRoute(["--config", file, "--listen", "http:127.0.0.1:0"]);
    await route.waitForLog(/a\/s1: set server a\/s1 health down/);

    write(`"b/s1=${url}"`);
    process.kill(route.pid, "SIGHUP");
    await route.waitForLog(/SIGHUP: reloaded; driving haproxy on \S+: b\/s1=/);
    const since = route.log.length;
    const pushes = (server: string) => route.log.slice(since).split(`${server}: set server`).length - 1;
    await waitFor("three pushes for b/s1 after the reload", () => pushes("b/s1") >= 3);
    // a/s1 is the checks' alone: nothing pushed for it since the reload.
    expect(pushes("a/s1")).toBe(0);

    writeFileSync(file, 'haproxy-socket = "relative.sock"\n');
    process.kill(route.pid, "SIGHUP");
    await route.waitForLog(
      /error: SIGHUP: reload rejected, keeping the running configuration: invalid value for (--)?haproxy-socket/,
    );
    const status = (await (await fetch(`http://127.0.0.1:${route.statusPort}/status`)).json()) as {
      servers: { backend: string; server: string }[];
    };
    expect(status.servers.map((s) => `${s.backend}/${s.server}`)).toEqual(["b/s1"]);
    expect(await route.stop()).toBe(0);
  } finally {
    master.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
});
