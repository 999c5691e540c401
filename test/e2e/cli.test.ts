// The CLI as a user meets it: every bad input is one line on stderr, nothing
// on stdout, and the documented exit code.
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../../src/config/load.ts";
import { OPTIONS } from "../../src/config/options.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { answer } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { runCli } from "../kit/cli.ts";

const run = runCli;

describe("bad configuration: one line on stderr, exit 2", () => {
  test.each([
    [["--port", "99999"], 'replstatus: invalid value for --port: "99999" (expected an integer 1025..65535)'],
    [["--port", "80"], 'replstatus: invalid value for --port: "80" (expected an integer 1025..65535)'],
    [["--port=5x"], 'replstatus: invalid value for --port: "5x" (expected an integer 1025..65535)'],
    [["--port"], "replstatus: missing value for --port (expected PORT)"],
    [["--bind", "localhost"], 'replstatus: invalid value for --bind: "localhost" (expected an IPv4 or IPv6 address)'],
    [["--frobnicate"], "replstatus: unknown flag: --frobnicate (see --help)"],
    [["master"], 'replstatus: unexpected argument: "master" (see --help)'],
    [["--help=yes"], "replstatus: flag --help takes no value"],
    [["--port", "5401", "--port", "5402"], "replstatus: flag --port given more than once"],
    [
      ["--poll-interval", "5x"],
      'replstatus: invalid value for --poll-interval: "5x" (expected a duration 1ms..60s such as 250ms or 2s)',
    ],
    [
      ["--stale-after", "0"],
      'replstatus: invalid value for --stale-after: "0" (expected a duration 10ms..3600s such as 250ms or 2s)',
    ],
    [
      ["--stale-after", "50ms"],
      "replstatus: --stale-after (50ms) must be longer than --poll-interval (50ms), or every answer would be UNKNOWN",
    ],
    [
      ["--text-primary", ""],
      'replstatus: invalid value for --text-primary: "" (expected printable ASCII, 1..64 bytes)',
    ],
    [
      ["--text-standby", "STAND\tBY"],
      'replstatus: invalid value for --text-standby: "STAND\\tBY" (expected printable ASCII, 1..64 bytes)',
    ],
    [
      ["--text-unknown", "MASTER_DOWN"],
      'replstatus: the unknown text "MASTER_DOWN" contains the primary text "MASTER"; haproxy\'s "expect string" would match both',
    ],
    [
      ["--text-standby", "STANDBY_LAGGING", "--text-unknown", "LAGGING"],
      'replstatus: the standby text "STANDBY_LAGGING" contains the unknown text "LAGGING"; haproxy\'s "expect string" would match both',
    ],
    [
      ["--text-fenced", "MASTER_FENCED"],
      'replstatus: the fenced text "MASTER_FENCED" contains the primary text "MASTER"; haproxy\'s "expect string" would match both',
    ],
    [
      ["--peer", "ftp://10.0.0.2:8008"],
      'replstatus: invalid value for --peer: "ftp://10.0.0.2:8008" (expected an http or https URL of another node\'s replstatus http listener, such as http://10.0.0.2:8008)',
    ],
    [
      ["--peer", "http://10.0.0.2:8008/status"],
      'replstatus: invalid value for --peer: "http://10.0.0.2:8008/status" (expected an http or https URL of another node\'s replstatus http listener, such as http://10.0.0.2:8008)',
    ],
    [["--listen", "tls+http:127.0.0.1:0"], "replstatus: a tls+ listener needs --tls-cert and --tls-key"],
    [
      ["--listen", "tls+smtp:127.0.0.1:0"],
      'replstatus: invalid value for --listen: "tls+smtp:127.0.0.1:0" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--listen", "127.0.0.1:0", "--tls-cert", "/x.pem"],
      "replstatus: --tls-cert, --tls-key, --tls-ca and --tls-client-cert apply to tls+ listeners, and no --listen is one (e.g. --listen tls+http:0.0.0.0:8443)",
    ],
    [
      ["--listen", "tls:127.0.0.1:0", "--tls-cert", "/x.pem", "--tls-key", "/x.key", "--tls-client-cert", "required"],
      "replstatus: --tls-client-cert required needs --tls-ca, the CA that client certificates must chain to",
    ],
    [
      ["--listen", "tls:127.0.0.1:0", "--tls-cert", "/x.pem", "--tls-key", "/x.key", "--tls-client-cert", "maybe"],
      'replstatus: invalid value for --tls-client-cert: "maybe" (expected none, optional or required)',
    ],
    [
      ["--peer", "https://10.0.0.2:8008", "--peer-cert", "/x.pem"],
      "replstatus: --peer-cert and --peer-key go together: give both or neither",
    ],
    [
      ["--isolation-after", "2s"],
      "replstatus: --isolation-after needs at least one --peer: it counts the time since a peer last answered",
    ],
    [
      ["--peer", "http://10.0.0.2:8008", "--isolation-after", "1ms"],
      'replstatus: invalid value for --isolation-after: "1ms" (expected a duration 10ms..3600s such as 250ms or 2s)',
    ],
    [
      ["--peer", "http://10.0.0.2:8008", "--peer", "http://10.0.0.2:8008/"],
      "replstatus: peer http://10.0.0.2:8008 given more than once",
    ],
    [
      ["--peer-timeout", "5ms"],
      'replstatus: invalid value for --peer-timeout: "5ms" (expected a duration 10ms..60s such as 250ms or 2s)',
    ],
    [
      ["--listen", "1.2.3:5400"],
      'replstatus: invalid value for --listen: "1.2.3:5400" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--listen", "::1:5400"],
      'replstatus: invalid value for --listen: "::1:5400" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--listen", "tls+tls:127.0.0.1:5400"],
      'replstatus: invalid value for --listen: "tls+tls:127.0.0.1:5400" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--listen", "127.0.0.1:5400", "--port", "5401"],
      "replstatus: --port and --bind set the default listener and cannot be combined with --listen; add that address to --listen instead",
    ],
    [
      ["--db", "host=db1 password='secret target_session_attrs=read-write"],
      `replstatus: invalid value for --db: "host=db1 password=***" (expected a URL postgres://[user[:password]@][host][:port][/dbname] or keyword/value pairs host=... port=...: unterminated quoted string in connection string)`,
    ],
    [
      ["--db", "host=db1 target_session_attrs=read-write"],
      'replstatus: could not use target_session_attrs in --db "read-write": replstatus reports on the one server it connects to and must not be redirected to another (only "any" is accepted)',
    ],
    [
      ["--db", "postgres://u:secret@db1,db2/postgres?sslmode=require"],
      'replstatus: invalid value for --db: "postgres://u:***@db1,db2/postgres?sslmode=require" (expected a URL postgres://[user[:password]@][host][:port][/dbname] or keyword/value pairs host=... port=...: a URL with several hosts: replstatus watches one server)',
    ],
    [
      ["--db", "host=db1 sslmode=verify-all"],
      'replstatus: invalid value for sslmode in --db: "verify-all" (expected one of disable, allow, prefer, require, verify-ca, verify-full)',
    ],
    [
      ["--db", "mysql://u:secret@h/db"],
      'replstatus: invalid value for --db: "mysql://u:***@h/db" (expected a URL postgres://[user[:password]@][host][:port][/dbname] or keyword/value pairs host=... port=...)',
    ],
    [
      ["--listen", "http2:127.0.0.1:5400"],
      'replstatus: invalid value for --listen: "http2:127.0.0.1:5400" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--agent-role", "replica"],
      'replstatus: invalid value for --agent-role: "replica" (expected primary or standby)',
    ],
    [
      ["--agent-lag-for-min-weight", "64 MiB"],
      'replstatus: invalid value for --agent-lag-for-min-weight: "64 MiB" (expected a size of at least 1 byte such as 512kB, 64MB or 1GB)',
    ],
    [
      ["--control-socket", "replstatus.sock"],
      'replstatus: invalid value for --control-socket: "replstatus.sock" (expected an absolute path of at most 107 bytes)',
    ],
    [["drain", "--promote-after", "1s"], "replstatus: unknown flag: --promote-after (see --help)"],
    [["demo", "--port", "5400"], "replstatus: unknown flag: --port for replstatus demo (see --help)"],
    [
      ["demo", "--duration", "soon"],
      'replstatus: invalid value for --duration: "soon" (expected a duration 0s..86400s such as 500ms or 10s)',
    ],
    [
      ["--max-lag-bytes", "16XB"],
      'replstatus: invalid value for --max-lag-bytes: "16XB" (expected a size in bytes such as 1048576, 512kB, 16MB or 1GB)',
    ],
    [
      ["--max-lag-seconds", "0"],
      'replstatus: invalid value for --max-lag-seconds: "0" (expected a number of seconds above 0 and at most 86400, such as 30 or 2.5)',
    ],
    [
      ["--lag-grace", "soon"],
      'replstatus: invalid value for --lag-grace: "soon" (expected a duration 0s..3600s such as 250ms or 2s)',
    ],
    [
      ["--text-lagging", "STANDBY_LAG"],
      'replstatus: the lagging text "STANDBY_LAG" contains the standby text "STANDBY"; haproxy\'s "expect string" would match both',
    ],
    [
      ["--listen", "https:127.0.0.1:8008"],
      'replstatus: invalid value for --listen: "https:127.0.0.1:8008" (expected [[tls+]raw|http|agent:]HOST:PORT with an IP address, IPv6 in brackets, port 0..65535)',
    ],
    [
      ["--channel", "Bad-Name"],
      'replstatus: invalid value for --channel: "Bad-Name" (expected a lowercase identifier of 1..63 characters: a-z, 0-9, _)',
    ],
  ])("%j", (args, line) => {
    const r = run(args);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 2, stdout: "", stderr: line + "\n" });
  });

  test.each([
    [{ REPLSTATUS_PORT: "1" }, 'replstatus: invalid value for REPLSTATUS_PORT: "1" (expected an integer 1025..65535)'],
    [
      { REPLSTATUS_POLL_INTERVAL: "fast" },
      'replstatus: invalid value for REPLSTATUS_POLL_INTERVAL: "fast" (expected a duration 1ms..60s such as 250ms or 2s)',
    ],
    [
      { REPLSTATUS_AGENT_WEIGHT_BY_LAG: "maybe" },
      'replstatus: invalid value for REPLSTATUS_AGENT_WEIGHT_BY_LAG: "maybe" (expected 1, true, yes, on, 0, false, no or off)',
    ],
    [{ PGPORT: "x" }, 'replstatus: invalid value for PGPORT: "x" (expected an integer 1..65535)'],
    [
      { PGSSLMODE: "maybe" },
      'replstatus: invalid value for PGSSLMODE: "maybe" (expected one of disable, allow, prefer, require, verify-ca, verify-full)',
    ],
    [
      { PGTARGETSESSIONATTRS: "read-write" },
      'replstatus: could not use PGTARGETSESSIONATTRS "read-write": replstatus reports on the one server it connects to and must not be redirected to another (only "any" is accepted)',
    ],
  ])("environment %j", (env, line) => {
    const r = run([], env);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 2, stdout: "", stderr: line + "\n" });
  });
});

test.each([
  ["1", true],
  ["on", true],
  ["TRUE", true],
  ["0", false],
  ["off", false],
])("REPLSTATUS_AGENT_WEIGHT_BY_LAG=%s turns the switch %p", (value, on) => {
  expect(buildConfig(new Map(), { REPLSTATUS_AGENT_WEIGHT_BY_LAG: value }).agent.weightByLag).toBe(on);
});

test("--help lists every flag with its default and variable", () => {
  const r = run(["--help"]);
  expect(r.code).toBe(0);
  expect(r.stderr).toBe("");
  for (const o of OPTIONS) {
    expect(r.stdout).toContain(`--${o.name}`);
    if (o.default !== undefined) expect(r.stdout).toContain(`(default: ${o.default})`);
  }
  expect(r.stdout).toContain("REPLSTATUS_POLL_INTERVAL");
  expect(r.stdout).toContain("replstatus drain|maint|ready [flags]");
  expect(r.stdout).toContain("replstatus demo [demo flags]");
});

test("--version", () => {
  const r = run(["--version"]);
  expect(r.code).toBe(0);
  expect(r.stderr).toBe("");
  expect(r.stdout).toMatch(/^replstatus \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+\)\n$/);
});

test("a port in use is one line, a hint, and exit 1", () => {
  using busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const r = run(["--listen", `127.0.0.1:${busy.port}`]);
  expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
    code: 1,
    stdout: "",
    stderr:
      `replstatus: could not listen on 127.0.0.1:${busy.port}: address in use\n` +
      "hint: another process (bgw_replstatus, another replstatus) serves that port; stop it or choose another --port/--listen\n",
  });
});

test("an address this host does not have is one line and exit 1", () => {
  const r = run(["--listen", "192.0.2.1:5400"]);
  expect({ code: r.code, stdout: r.stdout, stderr: r.stderr.split("\n")[0] }).toEqual({
    code: 1,
    stdout: "",
    stderr: "replstatus: could not listen on 192.0.2.1:5400: address not available on this host",
  });
});

test("no PostgreSQL is not a start-up error: it serves UNKNOWN and says why", async () => {
  const dir = mkdtempSync(join(tmpdir(), "replstatus-nopg-"));
  try {
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--listen", "[::1]:0"], {
      PGHOST: dir,
      PGPORT: "5999",
    });
    await r.waitForLog(/poll failed: no server socket at .*\.s\.PGSQL\.5999 \(is PostgreSQL running/, "the poll error");
    expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
    expect(await answer(r.ports[1]!, "::1")).toBe("UNKNOWN");
    expect(await r.stop()).toBe(0);
    expect(r.log).toContain("SIGTERM: shutting down");
    expect(await new Response(r.proc.stdout).text()).toBe("");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("retries are not logged one by one: a line per change of reason", async () => {
  // A TCP peer that accepts and resets: every connection attempt is counted.
  let attempts = 0;
  using fake = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        attempts++;
        s.terminate();
      },
      data() {},
    },
  });
  await using r = await startResponder(["--listen", "127.0.0.1:0"], { PGHOST: "127.0.0.1", PGPORT: String(fake.port) });
  await waitFor("five connection attempts", () => attempts >= 5);
  expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
  expect(r.log.match(/poll failed/g), r.log).toHaveLength(1);
});

test("a control socket dir that other users can write to is refused: one line, a hint, exit 1", () => {
  const dir = mkdtempSync(join(tmpdir(), "replstatus-ctl-"));
  try {
    chmodSync(dir, 0o777);
    const r = run(["--listen", "127.0.0.1:0", "--control-socket", join(dir, "c.sock")]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 1,
      stdout: "",
      stderr:
        `replstatus: could not use control socket directory ${dir}: mode 777 lets other users replace the socket\n` +
        "hint: chmod 700 it, or choose another --control-socket\n",
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
