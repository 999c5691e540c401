// Chaos against a real primary: kill -9, SIGSTOP, a terminated backend, a wrong
// password, no free connection slot. The invariant under test is the one
// replstatus exists for: it never says MASTER for a PostgreSQL that is not a
// working primary.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import postgres from "postgres";
import { startPrimary, waitFor, type PgPrimary } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS } from "../kit/timeouts.ts";
import { metric, metricsPort } from "../kit/http.ts";
import { KILL_BOUND_MS, staleBoundMs, withSlack } from "../kit/bounds.ts";

const POLL_INTERVAL_MS = 20;
const STALE_AFTER_MS = 500;
/** A kill -9 closes the poller's connection: the kernel tells at once. */
const KILL_WINDOW_MS = withSlack(KILL_BOUND_MS);
/** A stopped server answers nothing: the last good poll goes stale. */
const STOP_WINDOW_MS = withSlack(staleBoundMs(STALE_AFTER_MS));
/** How long each outage goes on past its bound, so probes check it. */
const HOLD_MS = 300;

let pg: PgPrimary;
let r: Responder;

beforeAll(async () => {
  pg = await startPrimary();
  r = await startResponder(
    [
      "--listen",
      "127.0.0.1:0",
      "--poll-interval",
      `${POLL_INTERVAL_MS}ms`,
      "--stale-after",
      `${STALE_AFTER_MS}ms`,
      "--metrics-listen",
      "127.0.0.1:0",
    ],
    pg.primary.env,
  );
  await waitForAnswer(r.ports[0]!, "MASTER");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await r?.[Symbol.asyncDispose]();
  await pg?.stop();
}, HOOK_TIMEOUT_MS);

interface Sample {
  /** performance.now() when the connect started, and when the answer was complete. */
  at: number;
  end: number;
  text: string;
}

/** One raw answer; resolves with "" on any error. */
function rawAnswer(port: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect({ port, host: "127.0.0.1" });
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("close", () => resolve(Buffer.concat(chunks).toString()));
    s.on("error", () => {});
  });
}

/** Probes back to back (about every millisecond) until stop() is called. */
function prober(port: number) {
  const samples: Sample[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const at = performance.now();
      const text = await rawAnswer(port);
      samples.push({ at, end: performance.now(), text });
      await Bun.sleep(1);
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await done;
    },
  };
}

/** A sample of the responder's /metrics (--metrics-listen). */
const sample = (name: string) => metric(metricsPort(r), name);

test("metrics of a working primary", async () => {
  await waitForAnswer(r.ports[0]!, "MASTER");
  expect(await sample('replstatus_state{state="primary"}')).toBe(1);
  expect(await sample('replstatus_state{state="unknown"}')).toBe(0);
  expect(await sample("replstatus_poll_duration_seconds_count")).toBeGreaterThan(0);
  expect(await sample('replstatus_poll_duration_seconds_bucket{le="+Inf"}')).toBe(
    await sample("replstatus_poll_duration_seconds_count"),
  );
  expect(await sample("replstatus_last_poll_age_seconds")).toBeLessThan(STALE_AFTER_MS / 1000);
  expect(await sample("replstatus_standby_lag_bytes")).toBeNaN();
  expect(await sample("replstatus_state_changes_total")).toBeGreaterThanOrEqual(1);
});

describe("chaos", () => {
  // While PostgreSQL is down or hung no poll can succeed, so the only MASTER
  // answers allowed after a failure are those still inside the bound: the
  // connection loss (kill) or the staleness of the last good poll (stop).
  // Windows are [failure sent + bound, server back): a probe that started and
  // ended inside one must not read MASTER.
  test(
    "kill -9, restart, SIGSTOP, SIGCONT in a loop: never MASTER while the primary is down or hung",
    async () => {
      const port = r.ports[0]!;
      const windows: { from: number; to: number; what: string }[] = [];
      const p = prober(port);
      try {
        for (let round = 0; round < 2; round++) {
          await waitForAnswer(port, "MASTER", 10_000);
          const pid = pg.primary.pid();
          const killedAt = performance.now();
          pg.primary.signalAll("SIGKILL");
          await waitFor("the killed postmaster to be reaped", () => !existsSync(`/proc/${pid}`));
          await Bun.sleep(Math.max(0, killedAt + KILL_WINDOW_MS + HOLD_MS - performance.now())); // down a while longer
          const restarting = performance.now();
          windows.push({ from: killedAt + KILL_WINDOW_MS, to: restarting, what: `kill -9 (round ${round})` });
          await pg.primary.start();
          await waitForAnswer(port, "MASTER", 10_000);

          const stoppedAt = performance.now();
          pg.primary.signalAll("SIGSTOP");
          await waitFor("UNKNOWN while stopped", async () => (await answer(port)) === "UNKNOWN", 5000, 5);
          await Bun.sleep(Math.max(0, stoppedAt + STOP_WINDOW_MS + HOLD_MS - performance.now())); // hung a while longer
          const resumedAt = performance.now();
          pg.primary.signalAll("SIGCONT");
          windows.push({ from: stoppedAt + STOP_WINDOW_MS, to: resumedAt, what: `SIGSTOP (round ${round})` });
        }
        await waitForAnswer(port, "MASTER", 10_000);
      } finally {
        pg.primary.signalAll("SIGCONT");
        await p.stop();
      }
      const wrong = p.samples
        .filter((s) => s.text === "MASTER")
        .flatMap((s) =>
          windows
            .filter((w) => s.at >= w.from && s.end < w.to)
            .map((w) => `${w.what} +${(s.at - w.from).toFixed(0)}ms`),
        );
      expect(wrong).toEqual([]);
      // The loop really probed through the outages, and inside every window.
      const unprobed = windows.filter((w) => !p.samples.some((s) => s.at >= w.from && s.end < w.to));
      expect(unprobed.map((w) => w.what)).toEqual([]);
      expect(p.samples.filter((s) => s.text === "UNKNOWN").length).toBeGreaterThan(10);
      expect(p.samples.length).toBeGreaterThan(500);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "pg_terminate_backend() of the poller's own backend: UNKNOWN at once, then MASTER again",
    async () => {
      const port = r.ports[0]!;
      await waitForAnswer(port, "MASTER", 10_000);
      const before = await sample('replstatus_poll_errors_total{reason="connection_lost"}');
      const logFrom = r.log.length;
      const p = prober(port);
      try {
        expect(
          await pg.primary.sql(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'replstatus') t",
          ),
        ).toBe("1");
        await waitFor("an UNKNOWN answer", () => p.samples.some((s) => s.text === "UNKNOWN"), 5000, 1);
        await waitForAnswer(port, "MASTER", 10_000);
      } finally {
        await p.stop();
      }
      // Idle, the connection is closed; mid-query, postgres.js may see the
      // reset first. On a loaded machine the last poll may have gone stale
      // first: the reason is then in the poll error, not in the state change.
      expect(r.log.slice(logFrom)).toMatch(
        /(primary -> unknown \(|poll failed: )(connection lost|connection reset by the server|terminating connection due to administrator command)/,
      );
      await waitFor(
        "the connection_lost counter",
        async () => (await sample('replstatus_poll_errors_total{reason="connection_lost"}')) > before,
      );
    },
    HOOK_TIMEOUT_MS,
  );
});

test(
  "a wrong password: UNKNOWN, and one clear line that says what to set",
  async () => {
    await using node = await startPrimary({ hbaPrepend: ["host all pwuser 127.0.0.1/32 scram-sha-256"] });
    await node.primary.sql("create role pwuser login password 'right'");
    const url = `postgres://pwuser:wrong@127.0.0.1:${node.primary.port}/postgres`;
    await using bad = await startResponder(["--listen", "127.0.0.1:0", "--db", url, "--metrics-listen", "127.0.0.1:0"]);
    await bad.waitForLog(
      /warning: poll failed: password authentication failed for user "pwuser" \(the password came from --db\)/,
    );
    expect(await answer(bad.ports[0]!)).toBe("UNKNOWN");
    expect(bad.log).not.toContain("wrong");
    expect(bad.log.match(/poll failed/g)).toHaveLength(1);
  },
  HOOK_TIMEOUT_MS,
);

test(
  "no free connection slot at start: UNKNOWN with the reason, MASTER once a slot frees",
  async () => {
    await using node = await startPrimary({
      primaryConf: ["max_connections = 3", "superuser_reserved_connections = 0"],
    });
    // postgres.js, not psql: the slots must stay taken while the test runs.
    const hog = postgres(node.primary.url, { max: 3, onnotice: () => {} });
    const held = await Promise.all([hog.reserve(), hog.reserve(), hog.reserve()]);
    try {
      await using full = await startResponder(["--listen", "127.0.0.1:0"], node.primary.env);
      await full.waitForLog(/warning: poll failed: sorry, too many clients already/);
      expect(await answer(full.ports[0]!)).toBe("UNKNOWN");
      held[0]!.release();
      await hog.end({ timeout: 1 });
      await waitForAnswer(full.ports[0]!, "MASTER", 10_000);
    } finally {
      await hog.end({ timeout: 1 }).catch(() => {});
    }
  },
  HOOK_TIMEOUT_MS,
);
