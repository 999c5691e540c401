// The agent mode and the operator override, end to end: real PostgreSQL pair, real haproxy
// with agent-check in front, the real CLI for drain/maint/ready.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { landsOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { answer, probe, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { runCliAsync } from "../kit/cli.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";

useTimeouts();

let pg: PgPair;
let dir: string;
/** raw + agent (primary role) on each node. */
let onPrimary: Responder;
let onStandby: Responder;
/** agent with --agent-role standby --agent-weight-by-lag on the standby. */
let reader: Responder;
let haproxy: Haproxy;

const SEND = 'agent-send "hello\\n"';
/** The standby's received-but-not-replayed WAL, in bytes. */
const LAG_QUERY = "select pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())";
const sock = (name: string) => join(dir, `${name}.sock`);

beforeAll(async () => {
  pg = await startPair();
  dir = mkdtempSync(join(tmpdir(), "rs-agent-"));
  const both = ["--listen", "127.0.0.1:0", "--listen", "agent:127.0.0.1:0"];
  [onPrimary, onStandby, reader] = await Promise.all([
    startResponder([...both, "--control-socket", sock("primary")], pg.primary.env),
    startResponder([...both, "--control-socket", sock("standby"), "--db", pg.standby.url]),
    startResponder([
      ...["--listen", "agent:127.0.0.1:0", "--agent-role", "standby", "--agent-weight-by-lag"],
      ...["--agent-lag-for-min-weight", "1MB", "--control-socket", sock("reader"), "--db", pg.standby.url],
    ]),
  ]);
  // The write pool: a plain TCP check of PostgreSQL's port, and the agent that says which node is
  // the primary. The read pool: the standby's weighted agent; weight 100 so that percentages of it
  // are not rounded to 0 (haproxy scales the configured weight, whose default is 1). agent-send,
  // because without it haproxy 2.6 delays each agent check by about 200 ms (haproxy issue #1839),
  // more than an agent-inter of 100ms allows.
  haproxy = await startHaproxy({
    proxies: {
      rw: [
        "default-server inter 100ms rise 1 fall 1 on-marked-down shutdown-sessions",
        `server s1 127.0.0.1:${pg.primary.port} check agent-check agent-port ${onPrimary.ports[1]} agent-inter 100ms ${SEND}`,
        `server s2 127.0.0.1:${pg.standby.port} check agent-check agent-port ${onStandby.ports[1]} agent-inter 100ms ${SEND}`,
      ],
      ro: [
        `server r2 127.0.0.1:${pg.standby.port} weight 100 check inter 100ms agent-check agent-port ${reader.ports[0]} agent-inter 100ms ${SEND}`,
      ],
    },
  });
  await waitForAnswer(onPrimary.ports[0]!, "MASTER");
  await waitForAnswer(onStandby.ports[0]!, "STANDBY");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await haproxy?.stop();
  await Promise.all([onPrimary, onStandby, reader].map((r) => r?.[Symbol.asyncDispose]()));
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, HOOK_TIMEOUT_MS);

/** `replstatus <args>` as a user runs it: stdout, stderr, exit code. */
const cli = (args: string[]) => runCliAsync(args);

/** Runs body, then sets the node's override back to ready (a no-op when body did), also when body fails. */
async function thenReady(node: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } finally {
    await cli(["ready", "--control-socket", sock(node)]);
  }
}

async function waitForLine(port: number, want: string, timeoutMs = 10_000): Promise<void> {
  let last = "";
  await waitFor(
    `agent line ${JSON.stringify(want)}`,
    async () => (last = await answer(port)) === want,
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (last: ${JSON.stringify(last)})`);
  });
}

/** Waits until haproxy shows each named server of backend with the given status (and weight). */
async function waitForServers(backend: string, want: Record<string, string>, timeoutMs = 10_000): Promise<void> {
  let last = "";
  let rows = "";
  await waitFor(
    `haproxy ${backend}: ${JSON.stringify(want)}`,
    async () => {
      const servers = await haproxy.showServers(backend);
      rows = JSON.stringify(
        Object.values(servers).map((r) => [r.svname, r.status, r.weight, r.check_status, r.agent_status, r.last_agt]),
      );
      // "DOWN (agent)" says who said so; the first word is the state.
      const state = (name: string) => servers[name]?.status?.split(" ")[0];
      const seen = Object.fromEntries(
        Object.keys(want).map((name) => [
          name,
          want[name]!.includes("/") ? `${state(name)}/${servers[name]?.weight}` : state(name),
        ]),
      );
      last = JSON.stringify(seen);
      return last === JSON.stringify(want);
    },
    timeoutMs,
    20,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (last: ${last}; ${rows})`);
  });
}

describe("agent lines", () => {
  test("one newline-terminated line, then a FIN, also after an agent-send string", async () => {
    for (const send of [undefined, "hello\n", "x".repeat(8192)]) {
      expect(await probe(onPrimary.ports[1]!, "127.0.0.1", send)).toEqual({ text: "up ready\n", close: "fin" });
      expect(await probe(onStandby.ports[1]!, "127.0.0.1", send)).toEqual({
        text: "down ready #standby\n",
        close: "fin",
      });
    }
  });

  test("--agent-role standby --agent-weight-by-lag: up with a weight on the standby", async () => {
    // Started beside the others, it may not have polled yet.
    await waitForLine(reader.ports[0]!, "up ready 100%\n");
    expect(reader.log).toContain("control socket " + sock("reader"));
  });

  test("haproxy routes the write pool to the primary and the read pool to the standby", async () => {
    await waitForServers("rw", { s1: "UP", s2: "DOWN" });
    await waitForServers("ro", { r2: "UP/100" });
    expect(await landsOn(haproxy.ports.rw!)).toEqual({ port: pg.primary.port, inRecovery: false });
  });
});

describe("operator override", () => {
  test("the control socket is 0600", () => {
    expect(statSync(sock("primary")).mode & 0o777).toBe(0o600);
  });

  test("drain: agent says drain, raw keeps the role, haproxy drains; ready undoes it", async () => {
    await thenReady("primary", async () => {
      const r = await cli(["drain", "--control-socket", sock("primary")]);
      expect(r).toEqual({ code: 0, stdout: "replstatus: override set to drain\n", stderr: "" });
      expect(await answer(onPrimary.ports[1]!)).toBe("up drain\n");
      expect(await answer(onPrimary.ports[0]!)).toBe("MASTER");
      await waitForServers("rw", { s1: "DRAIN", s2: "DOWN" });
      await onPrimary.waitForLog(/info: override ready -> drain \(replstatus drain\)\n/);

      expect(await cli(["ready", "--control-socket", sock("primary")])).toEqual({
        code: 0,
        stdout: "replstatus: override set to ready\n",
        stderr: "",
      });
      expect(await answer(onPrimary.ports[1]!)).toBe("up ready\n");
      await waitForServers("rw", { s1: "UP", s2: "DOWN" });
    });
  });

  test("maint: agent says maint, raw says UNKNOWN, haproxy puts the server in maintenance; ready undoes it", async () => {
    await thenReady("primary", async () => {
      expect((await cli(["maint", "--control-socket", sock("primary")])).code).toBe(0);
      expect(await answer(onPrimary.ports[1]!)).toBe("maint\n");
      expect(await answer(onPrimary.ports[0]!)).toBe("UNKNOWN");
      await waitForServers("rw", { s1: "MAINT", s2: "DOWN" });
      // Repeating an override changes nothing and logs nothing.
      expect((await cli(["maint", "--control-socket", sock("primary")])).code).toBe(0);
      expect(onPrimary.log.match(/-> maint/g)).toHaveLength(1);

      expect((await cli(["ready", "--control-socket", sock("primary")])).code).toBe(0);
      expect(await answer(onPrimary.ports[0]!)).toBe("MASTER");
      await waitForServers("rw", { s1: "UP", s2: "DOWN" });
      expect(await landsOn(haproxy.ports.rw!)).toEqual({ port: pg.primary.port, inRecovery: false });
    });
  });

  test("a standby honours it too", async () => {
    await thenReady("standby", async () => {
      expect((await cli(["drain", "--control-socket", sock("standby")])).code).toBe(0);
      expect(await answer(onStandby.ports[1]!)).toBe("down drain #standby\n");
      expect(await answer(onStandby.ports[0]!)).toBe("STANDBY");
      expect((await cli(["ready", "--control-socket", sock("standby")])).code).toBe(0);
      expect(await answer(onStandby.ports[1]!)).toBe("down ready #standby\n");
    });
  });

  test("no replstatus on the control socket: one error line, a hint, exit 1", async () => {
    const path = sock("nobody");
    expect(await cli(["drain", "--control-socket", path])).toEqual({
      code: 1,
      stdout: "",
      stderr:
        `replstatus: no replstatus is listening on ${path}: no such socket\n` +
        "hint: start replstatus first, or give the same --port/--listen/--control-socket as the running one\n",
    });
  });

  test("a second replstatus on the same control socket is a start-up error", async () => {
    const r = await cli(["--listen", "127.0.0.1:0", "--control-socket", sock("primary")]);
    expect(r).toEqual({
      code: 1,
      stdout: "",
      stderr:
        `replstatus: could not listen on control socket ${sock("primary")}: another replstatus is using it\n` +
        "hint: give each replstatus its own --control-socket (the default includes the port)\n",
    });
  });
});

test("weight by lag: paused replay lowers the standby's weight in haproxy, resumed replay restores it", async () => {
  await pg.standby.sql("select pg_wal_replay_pause()");
  try {
    // About 4 MB of WAL, past the 1MB floor of the reader.
    await pg.primary.sql(
      "create table agent_lag as select g, repeat('x', 100) as pad from generate_series(1, 30000) g",
    );
    await waitForLine(reader.ports[0]!, "up ready 10%\n");
    await waitForServers("ro", { r2: "UP/10" });
  } finally {
    await pg.standby.sql("select pg_wal_replay_resume()");
  }
  await waitForLine(reader.ports[0]!, "up ready 100%\n");
  await waitForServers("ro", { r2: "UP/100" });
});

test("a reload's --agent-lag-for-min-weight is what the weight is reckoned from", async () => {
  const file = join(dir, "reader2.toml");
  writeFileSync(file, 'agent-lag-for-min-weight = "1GB"\n');
  await using reader2 = await startResponder([
    ...["--config", file, "--listen", "agent:127.0.0.1:0", "--agent-role", "standby", "--agent-weight-by-lag"],
    ...["--control-socket", sock("reader2"), "--db", pg.standby.url],
  ]);
  await pg.standby.sql("select pg_wal_replay_pause()");
  try {
    // About 4 MB of WAL: under a 1GB floor the weight stays at 100%, under 1MB it is the floor.
    await pg.primary.sql(
      "create table agent_lag_reload as select g, repeat('x', 100) as pad from generate_series(1, 30000) g",
    );
    await waitFor("the lag to show", async () => Number(await pg.standby.sql(LAG_QUERY)) > 2 ** 20);
    await waitForLine(reader2.ports[0]!, "up ready 100%\n");
    writeFileSync(file, 'agent-lag-for-min-weight = "1MB"\n');
    reader2.proc.kill("SIGHUP");
    await reader2.waitForLog(/SIGHUP: reloaded; agent-lag-for-min-weight/);
    await waitForLine(reader2.ports[0]!, "up ready 10%\n");
  } finally {
    await pg.standby.sql("select pg_wal_replay_resume()");
  }
});

test("failover: haproxy follows the promotion and never marks the old primary UP again", async () => {
  // Watch haproxy's view of the write pool from here on.
  const seen: string[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const servers = await haproxy.showServers("rw").catch(() => undefined);
      if (servers) seen.push(`${servers.s1?.status?.split(" ")[0]} ${servers.s2?.status?.split(" ")[0]}`);
      await Bun.sleep(10);
    }
  })();
  try {
    await pg.primary.stop("fast");
    await pg.standby.promote();
    await pg.standby.waitPrimary();
    await waitForServers("rw", { s1: "DOWN", s2: "UP" });
    expect(await landsOn(haproxy.ports.rw!)).toEqual({ port: pg.standby.port, inRecovery: false });
    expect(await answer(onStandby.ports[1]!)).toBe("up ready\n");
    expect(await answer(onPrimary.ports[1]!)).toBe("down ready #unknown\n");
    await waitForLine(reader.ports[0]!, "down ready #primary\n");
    // A while longer: the old primary stays down.
    await Bun.sleep(500);
  } finally {
    watching = false;
    await watcher;
  }
  const firstDown = seen.findIndex((s) => s.startsWith("DOWN"));
  expect(firstDown).toBeGreaterThanOrEqual(0);
  expect(seen.slice(firstDown).filter((s) => s.startsWith("UP"))).toEqual([]);
  expect(seen.filter((s) => s === "UP UP")).toEqual([]);
  expect(seen.at(-1)).toBe("DOWN UP");
});
