// `replstatus route` as a user starts it: the configuration errors, with
// stdout, stderr and the exit code together.
import { expect, test } from "bun:test";
import { runCli } from "../kit/cli.ts";

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
