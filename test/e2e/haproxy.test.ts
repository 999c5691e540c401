// Real haproxy in front of a real primary and standby, a responder beside
// each: haproxy routes clients to the primary, follows a failover within its
// own rise/fall bounds, and a lag-bounded read pool drops a stalled replica.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { landsOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { withSlack } from "../kit/bounds.ts";

/** bun:test gives hooks 5 s whatever bunfig.toml says; a pair on a busy machine needs more. */
const HOOK_TIMEOUT_MS = 90_000;
// Tests get 5 s as well (bunfig.toml's `timeout` is not read, and the default
// resets for every file): some here wait for PostgreSQL restarts and deadlines
// of seconds, each wait bounded on its own.
setDefaultTimeout(60_000);
// Short haproxy intervals keep the tests fast; the bounds below follow from them.
const INTER_MS = 100;
const RISE = 2;
const FALL = 2;

let pg: PgPair;
let onPrimary: Responder;
let onStandby: Responder;
let hx: Haproxy;

/** The pools under test, each with the same two servers. */
const WRITE_POOLS = ["tcp", "send", "http"] as const;

beforeAll(async () => {
  pg = await startPair();
  const args = ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"];
  onPrimary = await startResponder(args, pg.primary.env);
  onStandby = await startResponder(args, pg.standby.env);
  await waitForAnswer(onPrimary.ports[0]!, "MASTER");
  await waitForAnswer(onStandby.ports[0]!, "STANDBY");
  const servers = (port: "raw" | "http") => {
    const i = port === "raw" ? 0 : 1;
    return [
      `server pg1 127.0.0.1:${pg.primary.port} check port ${onPrimary.ports[i]}`,
      `server pg2 127.0.0.1:${pg.standby.port} check port ${onStandby.ports[i]}`,
    ];
  };
  hx = await startHaproxy({
    defaults: [
      `default-server inter ${INTER_MS}ms fastinter ${INTER_MS}ms downinter ${INTER_MS}ms rise ${RISE} fall ${FALL} on-marked-down shutdown-sessions`,
    ],
    proxies: {
      // bgw_replstatus's README configuration.
      tcp: ["option tcp-check", "tcp-check expect string MASTER", ...servers("raw")],
      // A checker that sends first: the reply must still arrive whole, not be reset.
      send: ["option tcp-check", "tcp-check send PING\\r\\n", "tcp-check expect string MASTER", ...servers("raw")],
      http: ["option httpchk GET /primary", "http-check expect status 200", ...servers("http")],
      read: ["option httpchk GET /replica?lag=1MB", "http-check expect status 200", ...servers("http")],
    },
  });
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await hx?.stop();
  await onPrimary?.[Symbol.asyncDispose]();
  await onStandby?.[Symbol.asyncDispose]();
  await pg?.stop();
}, HOOK_TIMEOUT_MS);

test.each(WRITE_POOLS)("%s: clients land on the primary", async (pool) => {
  await hx.waitForServer(pool, "pg1", "UP");
  await hx.waitForServer(pool, "pg2", "DOWN");
  expect((await hx.servers())[`${pool}/pg1`]).toEqual({ status: "UP", checkStatus: "L7OK" });
  expect(await landsOn(hx.ports[pool]!)).toEqual({ inRecovery: false, port: pg.primary.port });
});

describe("a read pool on /replica?lag=1MB", () => {
  test("drops a standby whose replay is paused once the primary writes past the limit, takes it back after resume", async () => {
    await hx.waitForServer("read", "pg2", "UP");
    expect((await hx.servers())["read/pg1"]!.status).toBe("DOWN");
    await pg.standby.sql("select pg_wal_replay_pause()");
    try {
      // About 5 MB of WAL: received by the standby, not replayed.
      await pg.primary.sql("create table filler as select repeat('x', 1000) as x from generate_series(1, 5000)");
      await hx.waitForServer("read", "pg2", "DOWN");
      expect((await hx.servers())["read/pg2"]!.checkStatus).toBe("L7STS");
    } finally {
      await pg.standby.sql("select pg_wal_replay_resume()");
    }
    await hx.waitForServer("read", "pg2", "UP");
  });
});

describe("failover", () => {
  test("after promoting the standby and stopping the old primary, clients land on the new primary", async () => {
    // Sample every server's state through the whole failover, to show the old
    // primary is never UP again once it went DOWN.
    const history: Record<string, string[]> = {};
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = await hx.servers();
        for (const [name, s] of Object.entries(now)) (history[name] ??= []).push(s.status);
        await Bun.sleep(INTER_MS / 4);
      }
    })();

    try {
      await pg.standby.promote();
      await pg.standby.waitPrimary();
      // haproxy's own bounds: RISE good checks one interval apart to come up, FALL
      // bad ones to go down, after the responder's next poll (50 ms) sees the change.
      const newUpMs = await Promise.all(WRITE_POOLS.map((pool) => hx.waitForServer(pool, "pg2", "UP")));
      expect(Math.max(...newUpMs)).toBeLessThan(withSlack(50 + RISE * INTER_MS));
      const stopping = pg.primary.stop("fast");
      const oldDownMs = await Promise.all(WRITE_POOLS.map((pool) => hx.waitForServer(pool, "pg1", "DOWN")));
      await stopping;
      expect(Math.max(...oldDownMs)).toBeLessThan(withSlack(FALL * INTER_MS));
      if (process.env.REPLSTATUS_TEST_VERBOSE) console.log({ newUpMs, oldDownMs });

      for (const pool of WRITE_POOLS) {
        expect(await landsOn(hx.ports[pool]!)).toEqual({ inRecovery: false, port: pg.standby.port });
      }
      // Twenty more samples (several rounds of checks), then the verdict on the whole history.
      const seen = history["tcp/pg1"]!.length;
      await waitFor("more samples", () => history["tcp/pg1"]!.length >= seen + 20);
    } finally {
      // Also on a failure above: no sampler left polling haproxy's stats into the next test.
      sampling = false;
      await sampler;
    }
    for (const pool of WRITE_POOLS) {
      const old = history[`${pool}/pg1`]!;
      const firstDown = old.indexOf("DOWN");
      expect(firstDown).toBeGreaterThanOrEqual(0);
      expect(old.slice(firstDown).filter((s) => s.startsWith("UP"))).toEqual([]);
      expect(history[`${pool}/pg2`]!.at(-1)).toBe("UP");
    }
  });
});
