// Real haproxy in front of a real primary and standby, a responder beside
// each: haproxy routes clients to the primary, follows a failover within its
// own rise/fall bounds, and a lag-bounded read pool drops a stalled replica.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { landsOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { usePair } from "../kit/pair.ts";
import { READY_BOUND_MS, SHUTDOWN_BOUND_MS, withSlack } from "../kit/bounds.ts";

useTimeouts();
// Short haproxy intervals keep the tests fast; the bounds below follow from them.
const INTER_MS = 100;
const RISE = 2;
const FALL = 2;

const pair = usePair({ args: ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"] });
let hx: Haproxy;

/** The pools under test, each with the same two servers. */
const WRITE_POOLS = ["tcp", "send", "http"] as const;

beforeAll(async () => {
  const servers = (port: "raw" | "http") => {
    const i = port === "raw" ? 0 : 1;
    return [
      `server pg1 127.0.0.1:${pair.pg.primary.port} check port ${pair.onPrimary.ports[i]}`,
      `server pg2 127.0.0.1:${pair.pg.standby.port} check port ${pair.onStandby.ports[i]}`,
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
}, HOOK_TIMEOUT_MS);

test.each(WRITE_POOLS)("%s: clients land on the primary", async (pool) => {
  await hx.waitForServer(pool, "pg1", "UP");
  await hx.waitForServer(pool, "pg2", "DOWN");
  expect((await hx.servers())[`${pool}/pg1`]).toEqual({ status: "UP", checkStatus: "L7OK" });
  expect(await landsOn(hx.ports[pool]!)).toEqual({ inRecovery: false, port: pair.pg.primary.port });
});

describe("a read pool on /replica?lag=1MB", () => {
  test("drops a standby whose replay is paused once the primary writes past the limit, takes it back after resume", async () => {
    await hx.waitForServer("read", "pg2", "UP");
    expect((await hx.servers())["read/pg1"]!.status).toBe("DOWN");
    await pair.pg.standby.sql("select pg_wal_replay_pause()");
    try {
      // About 5 MB of WAL: received by the standby, not replayed.
      await pair.pg.primary.sql("create table filler as select repeat('x', 1000) as x from generate_series(1, 5000)");
      await hx.waitForServer("read", "pg2", "DOWN");
      expect((await hx.servers())["read/pg2"]!.checkStatus).toBe("L7STS");
    } finally {
      await pair.pg.standby.sql("select pg_wal_replay_resume()");
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
      await pair.pg.standby.promote();
      await pair.pg.standby.waitPrimary();
      // haproxy's own bounds: RISE good checks one interval apart to come up, FALL bad ones to go
      // down, after the responder's answer follows PostgreSQL (a promotion, a shutdown).
      const newUpMs = await Promise.all(WRITE_POOLS.map((pool) => hx.waitForServer(pool, "pg2", "UP")));
      expect(Math.max(...newUpMs)).toBeLessThan(withSlack(READY_BOUND_MS + RISE * INTER_MS));
      const stopping = pair.pg.primary.stop("fast");
      const oldDownMs = await Promise.all(WRITE_POOLS.map((pool) => hx.waitForServer(pool, "pg1", "DOWN")));
      await stopping;
      expect(Math.max(...oldDownMs)).toBeLessThan(withSlack(SHUTDOWN_BOUND_MS + FALL * INTER_MS));
      if (process.env.REPLSTATUS_TEST_VERBOSE) console.log({ newUpMs, oldDownMs });

      for (const pool of WRITE_POOLS) {
        expect(await landsOn(hx.ports[pool]!)).toEqual({ inRecovery: false, port: pair.pg.standby.port });
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
