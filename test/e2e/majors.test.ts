// Every supported PostgreSQL major, end to end: one primary and streaming standby per major, the
// real CLI on each with raw and http listeners naming each other as peers, walked through what
// differs between majors underneath (the poll query's catalog columns and functions): the answers,
// the http paths, lag, a promotion with its new timeline and the split-brain guard, a kill -9 and a
// fast stop. REPLSTATUS_TEST_MAJORS=13,18 runs a subset.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAJORS } from "../../src/demo/pgbin.ts";
import { freePort, startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { probe, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getJson } from "../kit/http.ts";

useTimeouts();

const only = process.env.REPLSTATUS_TEST_MAJORS?.split(",").map(Number);
const majors = only ? MAJORS.filter((m) => only.includes(m)) : MAJORS;

const peerArgs = (url: string) => ["--peer", url, "--peer-interval", "100ms", "--peer-timeout", "300ms"];

const statusOf = async (port: number, path: string) => (await getJson(port, path)).status;

for (const major of majors) {
  describe(`PostgreSQL ${major}`, () => {
    let pg: PgPair;
    /** On the primary, then on the standby: raw listener ports, http listener ports. */
    let s1: Responder;
    let s2: Responder;
    let http1: number;
    let http2: number;
    const raw1 = () => s1.ports[0]!;
    const raw2 = () => s2.ports[0]!;

    beforeAll(async () => {
      pg = await startPair({ major });
      [http1, http2] = [await freePort(), await freePort()];
      const listen = (http: number) => ["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${http}`];
      s1 = await startResponder([...listen(http1), ...peerArgs(`http://127.0.0.1:${http2}`)], pg.primary.env);
      s2 = await startResponder(
        [...listen(http2), ...peerArgs(`http://127.0.0.1:${http1}`), "--max-lag-bytes", "1MB", "--lag-grace", "0"],
        pg.standby.env,
      );
      await waitForAnswer(raw1(), "MASTER");
      await waitForAnswer(raw2(), "STANDBY");
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await s1?.[Symbol.asyncDispose]();
      await s2?.[Symbol.asyncDispose]();
      await pg?.stop();
    }, HOOK_TIMEOUT_MS);

    test("exact bytes from primary and standby, closed with a FIN", async () => {
      expect(await pg.primary.sql("select current_setting('server_version_num')::int / 10000")).toBe(String(major));
      expect(await probe(raw1())).toEqual({ text: "MASTER", close: "fin" });
      expect(await probe(raw2())).toEqual({ text: "STANDBY", close: "fin" });
      // As haproxy's tcp-check send does: bytes first, the reply must still arrive whole.
      expect(await probe(raw2(), "127.0.0.1", "PING\r\n")).toEqual({ text: "STANDBY", close: "fin" });
    });

    test("http paths, and /status with timeline 1 and one system_identifier", async () => {
      const paths: [string, number, number][] = [
        ["/primary", 200, 503],
        ["/replica", 503, 200],
        ["/read-only", 200, 200],
        ["/health", 200, 200],
        ["/readiness", 200, 200],
      ];
      for (const [path, onPrimary, onStandby] of paths) {
        expect([path, await statusOf(http1, path), await statusOf(http2, path)]).toEqual([path, onPrimary, onStandby]);
      }
      const systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
      const primary = (await getJson(http1, "/status")).json;
      const standby = (await getJson(http2, "/status")).json;
      expect(primary).toMatchObject({ role: "primary", state: "primary", timeline: 1, system_identifier: systemId });
      expect(standby).toMatchObject({ role: "standby", state: "standby", timeline: 1, system_identifier: systemId });
      expect(standby.lag_bytes).toBeGreaterThanOrEqual(0);
    });

    test("a paused replay turns the standby LAGGING over --max-lag-bytes, STANDBY again once resumed", async () => {
      await pg.standby.sql("select pg_wal_replay_pause()");
      try {
        // About 5 MB of WAL, which the paused standby receives but does not replay.
        await pg.primary.sql(
          "drop table if exists wal_filler; create table wal_filler as select repeat('x', 1000) as x from generate_series(1, 5000)",
        );
        await waitForAnswer(raw2(), "LAGGING");
        expect(await statusOf(http2, "/replica")).toBe(503);
        expect((await getJson(http2, "/status")).json.lag_bytes).toBeGreaterThan(1024 * 1024);
      } finally {
        await pg.standby.sql("select pg_wal_replay_resume()");
      }
      await waitForAnswer(raw2(), "STANDBY");
      await s2.waitForLog(/standby -> lagging \(replay \d+(\.\d)? MB behind, limit 1 MB\)/);
    });

    test("a role with LOGIN only (primary) and one with pg_monitor (standby): the same answers, lag facts with pg_monitor", async () => {
      await pg.primary.sql("create role plain login; create role monitor login; grant pg_monitor to monitor");
      await waitFor(
        "the roles on the standby",
        async () =>
          (await pg.standby.sql("select count(*) from pg_roles where rolname in ('plain', 'monitor')")) === "2",
      );
      const http = (port: number) => ["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${port}`];
      const [httpPlain, httpMonitor] = [await freePort(), await freePort()];
      await using plain = await startResponder(http(httpPlain), { ...pg.primary.env, PGUSER: "plain" });
      await using monitor = await startResponder(http(httpMonitor), { ...pg.standby.env, PGUSER: "monitor" });
      await waitForAnswer(plain.ports[0]!, "MASTER");
      await waitForAnswer(monitor.ports[0]!, "STANDBY");
      const systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
      expect((await getJson(httpPlain, "/status")).json).toMatchObject({
        role: "primary",
        timeline: 1,
        system_identifier: systemId,
      });
      const standby = (await getJson(httpMonitor, "/status")).json;
      expect(standby).toMatchObject({ role: "standby", state: "standby", timeline: 1, system_identifier: systemId });
      expect(standby.lag_bytes).toBeGreaterThanOrEqual(0);
    });

    test("promotion: the standby answers MASTER on timeline 2, the old primary FENCED", async () => {
      await waitFor("both guards active", async () => {
        const [a, b] = [(await getJson(http1, "/status")).json, (await getJson(http2, "/status")).json];
        return a.guard === "active" && b.guard === "active";
      });
      await pg.standby.promote();
      await waitForAnswer(raw2(), "MASTER");
      await waitForAnswer(raw1(), "FENCED");
      expect((await getJson(http2, "/status")).json).toMatchObject({ role: "primary", state: "primary", timeline: 2 });
      expect((await getJson(http1, "/status")).json).toMatchObject({ role: "primary", state: "fenced", timeline: 1 });
      expect(await statusOf(http1, "/primary")).toBe(503);
      expect(await statusOf(http2, "/primary")).toBe(200);
      expect(s1.log).toContain(
        `primary -> fenced (peer http://127.0.0.1:${http2} is primary on timeline 2, we are on 1)`,
      );
      expect(s2.log).toMatch(/(standby|lagging) -> primary \(promoted\)/);
      // On the connection it opened during recovery: the timeline must not need a reconnect.
      expect(s2.log).not.toContain("poll failed");
    });

    test("kill -9 of the new primary: UNKNOWN, and the old one, unfenced, stops saying MASTER on a fast stop", async () => {
      pg.standby.signalAll("SIGKILL");
      await waitForAnswer(raw2(), "UNKNOWN");
      expect(await statusOf(http2, "/health")).toBe(503);
      // Its peer no longer says primary: the old primary answers from its own view again.
      await waitForAnswer(raw1(), "MASTER");
      await pg.primary.stop("fast");
      await waitForAnswer(raw1(), "UNKNOWN");
      expect(await statusOf(http1, "/primary")).toBe(503);
    });
  });
}
