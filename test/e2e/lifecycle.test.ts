// PostgreSQL's own lifecycle against the real CLI: smart shutdowns with a
// client session open, a warm standby and its promotion, a long stop, a full
// primary. What is asserted: replstatus leaves MASTER/STANDBY when PostgreSQL
// stops taking new clients, never holds a shutdown up, and comes back as soon
// as the server does; each case also for replstatus run as an OS user that
// cannot read the data directory (as the package runs it), where only a
// refused new connection tells a smart shutdown. Timing figures belong to
// bench/lifecycle.ts; the bounds here are generous.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startPair, startPrimary, waitFor, type PgNode, type PgPair } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { run } from "../../src/demo/proc.ts";
import { throwawayUser, type OsUser } from "../kit/osuser.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { metric } from "../kit/http.ts";
import { DOOR_BOUND_MS, READY_BOUND_MS, SHUTDOWN_BOUND_MS, withSlack } from "../kit/bounds.ts";

useTimeouts(90_000);
/** A role without pg_read_all_settings: its polls cannot learn where postmaster.pid is. */
const PLAIN_ROLE = "plain";
const verbose = (what: object) => process.env.REPLSTATUS_TEST_VERBOSE && console.log(what);

/** What replstatus logs of a smart shutdown, seen in postmaster.pid or by a refused new connection. */
const STOPPING = /-> unknown \(the database system is shutting down \(postmaster\.pid says stopping\)\)/;
const REFUSED = /-> unknown \(a new connection was refused: the database system is shutting down\)/;
/** The outsider's start: where postmaster.pid is, that it cannot be read, and the door check's pace. */
const CANNOT_READ =
  /info: postmaster\.pid cannot be read: \S+\/postmaster\.pid: permission denied; a shutdown is seen by a new connection every 500ms/;

let pg: PgPair;
/** An OS user that cannot read the data directories, as the package's `replstatus` user. */
let outsider: OsUser;

beforeAll(async () => {
  pg = await startPair();
  await pg.primary.sql(`create role ${PLAIN_ROLE} login`);
  outsider = throwawayUser("lc");
  // The sockets, not the data directories: a Debian host's /var/run/postgresql is 2775.
  for (const dir of [pg.dir, pg.primary.socketDir, pg.standby.socketDir]) chmodSync(dir, 0o711);
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await pg?.stop();
  await outsider?.[Symbol.asyncDispose]();
}, HOOK_TIMEOUT_MS);

/** A responder on `node`'s socket as the database superuser, run as the outsider OS user. */
function outsiderOn(node: PgNode): Promise<Responder> {
  return startResponder(
    ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"],
    { ...node.env, HOME: "/nonexistent" },
    outsider.wrap,
  );
}

/** A responder on `node`'s socket, as the superuser (which can see data_directory) or as PLAIN_ROLE. */
function responderOn(node: PgNode, role = node.user, args: string[] = []): Promise<Responder> {
  return startResponder(["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0", ...args], {
    ...node.env,
    PGUSER: role,
  });
}

/** A sample of /metrics on the responder's http listener (its second). */
const sample = (r: Responder, name: string) => metric(r.ports[1]!, name);
const refusals = (r: Responder) => sample(r, 'replstatus_poll_errors_total{reason="starting_or_stopping"}');

/** Whether the postmaster of `node` still runs. */
function running(node: PgNode): boolean {
  try {
    process.kill(node.pid(), 0);
    return true;
  } catch {
    return false;
  }
}

/** pg_ctl start without waiting: a warm standby never takes the connection that node.start() waits for. */
async function startNoWait(node: PgNode): Promise<void> {
  await run(
    [join(node.binDir, "pg_ctl"), "start", "-W", "-D", node.dataDir, "-l", node.logFile],
    join(node.dataDir, ".."),
  );
}

/**
 * `pg_ctl stop -m smart` with a client session open: replstatus leaves `was`
 * for UNKNOWN within the bound, closes its own session, the server stops the
 * moment the client leaves, and replstatus follows the restart.
 */
async function smartShutdown(node: PgNode, was: string, open = responderOn, why = STOPPING): Promise<void> {
  await using r = await open(node);
  await waitForAnswer(r.ports[0]!, was);
  if (why === REFUSED) await r.waitForLog(CANNOT_READ);
  const bound = withSlack(why === REFUSED ? DOOR_BOUND_MS : SHUTDOWN_BOUND_MS);
  const client = postgres(node.url, { max: 1, onnotice: () => {} });
  try {
    await client`select 1`;
    const t0 = performance.now();
    // What pg_ctl stop -m smart sends.
    process.kill(node.pid(), "SIGTERM");
    await waitForAnswer(r.ports[0]!, "UNKNOWN", bound);
    const unknownMs = performance.now() - t0;
    await r.waitForLog(why);
    // Only the client's session holds the shutdown up now.
    await waitFor(
      "replstatus's session to end",
      async () =>
        (await client`select count(*)::int as n from pg_stat_activity where application_name = 'replstatus'`)[0]!.n ===
        0,
      bound,
    );
    expect(running(node)).toBe(true);
    await client.end({ timeout: 1 });
    const t1 = performance.now();
    await waitFor("the postmaster to exit once the client left", () => !running(node), 5000);
    verbose({ node: node.name, unknownMs, stoppedAfterClientMs: performance.now() - t1 });
    expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
    await node.start();
    await waitForAnswer(r.ports[0]!, was, withSlack(READY_BOUND_MS));
    // One line per reason, not one per attempt: stopping, gone, starting, and for a standby
    // perhaps "not yet accepting connections" once more while it reaches consistency.
    const reasons = [...r.log.matchAll(/poll failed: (.*)$/gm)].map((m) => m[1]!);
    expect(reasons.length).toBeLessThanOrEqual(4);
    expect(new Set(reasons).size).toBe(reasons.length);
  } finally {
    await client.end({ timeout: 1 }).catch(() => {});
  }
}

describe("smart shutdown with a client session open", () => {
  test("standby: STANDBY -> UNKNOWN, the shutdown completes when the client leaves, STANDBY after a restart", () =>
    smartShutdown(pg.standby, "STANDBY"));

  test("primary: MASTER -> UNKNOWN, the shutdown completes when the client leaves, MASTER after a restart", () =>
    smartShutdown(pg.primary, "MASTER"));

  test("standby, replstatus unable to read the data directory: a refused new connection tells it", () =>
    smartShutdown(pg.standby, "STANDBY", outsiderOn, REFUSED));

  test("primary, replstatus unable to read the data directory: a refused new connection tells it", async () => {
    await smartShutdown(pg.primary, "MASTER", outsiderOn, REFUSED);
  });

  test("the server named by a service file, no PGHOST or PGPORT: its postmaster.pid is the one watched", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rs-service-"));
    try {
      const { socketDir, port, user } = pg.primary;
      writeFileSync(join(dir, "services"), `[node]\nhost=${socketDir}\nport=${port}\nuser=${user}\ndbname=postgres\n`);
      await smartShutdown(pg.primary, "MASTER", () =>
        startResponder(["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"], {
          PGSERVICEFILE: join(dir, "services"),
          PGSERVICE: "node",
        }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * `pg_ctl stop -m smart` with no client session but replstatus's own: the
 * answer leaves `was` and the postmaster is gone, each within the bound.
 */
async function smartShutdownAlone(node: PgNode, was: string): Promise<void> {
  await using r = await outsiderOn(node);
  await waitForAnswer(r.ports[0]!, was);
  const t0 = performance.now();
  process.kill(node.pid(), "SIGTERM");
  const [unknownMs] = await Promise.all([
    waitForAnswer(r.ports[0]!, "UNKNOWN", withSlack(DOOR_BOUND_MS)),
    waitFor("the postmaster to exit", () => !running(node), withSlack(DOOR_BOUND_MS)),
  ]);
  verbose({ node: node.name, alone: true, unknownMs, stoppedMs: performance.now() - t0 });
  await r.waitForLog(REFUSED);
  await node.start();
  await waitForAnswer(r.ports[0]!, was, withSlack(READY_BOUND_MS));
}

describe("smart shutdown with no other session, replstatus unable to read the data directory", () => {
  test("primary: UNKNOWN and the postmaster gone within the bound, MASTER after a restart", () =>
    smartShutdownAlone(pg.primary, "MASTER"));

  test("standby: UNKNOWN and the postmaster gone within the bound, STANDBY after a restart", () =>
    smartShutdownAlone(pg.standby, "STANDBY"));
});

describe("every way back", () => {
  test("a primary stopped for 10 s is MASTER again within the bound of pg_ctl start, with and without postmaster.pid", async () => {
    await using watching = await responderOn(pg.primary);
    await using plain = await responderOn(pg.primary, PLAIN_ROLE);
    await using outside = await outsiderOn(pg.primary);
    await waitForAnswer(watching.ports[0]!, "MASTER");
    await waitForAnswer(plain.ports[0]!, "MASTER");
    await waitForAnswer(outside.ports[0]!, "MASTER");
    await pg.primary.stop("fast");
    expect(await answer(watching.ports[0]!)).toBe("UNKNOWN");
    expect(await answer(plain.ports[0]!)).toBe("UNKNOWN");
    expect(await answer(outside.ports[0]!)).toBe("UNKNOWN");
    // The outage itself, as long as the issue's: a growing backoff would be at its cap by now.
    await Bun.sleep(10_000);
    const t0 = performance.now();
    await pg.primary.start();
    const startMs = performance.now() - t0;
    const [watchingMs, plainMs, outsideMs] = await Promise.all([
      waitForAnswer(watching.ports[0]!, "MASTER", withSlack(READY_BOUND_MS)),
      waitForAnswer(plain.ports[0]!, "MASTER", withSlack(READY_BOUND_MS)),
      waitForAnswer(outside.ports[0]!, "MASTER", withSlack(READY_BOUND_MS)),
    ]);
    verbose({ startMs, afterStartWatchingMs: watchingMs, afterStartPlainMs: plainMs, outsideMs });
    expect(watching.log).toContain("(retrying when postmaster.pid changes)");
    expect(plain.log).toContain("(retrying every 50ms)");
    expect(outside.log).toContain("(retrying every 50ms)");
  });
});

describe("a primary at max_connections", () => {
  test("stays MASTER while replstatus holds its session: a full primary is still the primary", async () => {
    await using full = await startPrimary({
      primaryConf: ["max_connections = 3", "superuser_reserved_connections = 0"],
    });
    await using r = await responderOn(full.primary);
    await waitForAnswer(r.ports[0]!, "MASTER");
    const hog = postgres(full.primary.url, { max: 2, onnotice: () => {} });
    try {
      await Promise.all([hog.reserve(), hog.reserve()]);
      const refused = await postgres(full.primary.url, { max: 1, onnotice: () => {} })`select 1`.then(
        () => "accepted",
        (err: { code?: string }) => err.code,
      );
      expect(refused).toBe("53300");
      const polls = await sample(r, "replstatus_poll_duration_seconds_count");
      await waitFor("more polls", async () => (await sample(r, "replstatus_poll_duration_seconds_count")) > polls + 5);
      expect(await answer(r.ports[0]!)).toBe("MASTER");
    } finally {
      await hog.end({ timeout: 1 });
    }
  });
});

describe("a warm standby (hot_standby = off)", () => {
  test("UNKNOWN while it refuses connections; after a long wait, pg_ctl promote gives MASTER within the bound", async () => {
    const node = pg.standby;
    // Started hot, so the superuser's responder has learnt where postmaster.pid is.
    await using watching = await responderOn(node);
    await using plain = await responderOn(node, PLAIN_ROLE);
    await using outside = await outsiderOn(node);
    await waitForAnswer(watching.ports[0]!, "STANDBY");
    await waitForAnswer(plain.ports[0]!, "STANDBY");
    await waitForAnswer(outside.ports[0]!, "STANDBY");
    await node.stop("fast");
    appendFileSync(join(node.dataDir, "postgresql.auto.conf"), "hot_standby = off\n");
    await startNoWait(node);
    await waitFor("the standby's postmaster.pid", () => existsSync(join(node.dataDir, "postmaster.pid")));
    const warm = /poll failed: the database system is not accepting connections: hot standby mode is disabled/;
    await watching.waitForLog(warm);
    await plain.waitForLog(warm);
    await outside.waitForLog(warm);
    expect(await answer(watching.ports[0]!)).toBe("UNKNOWN");
    expect(await answer(plain.ports[0]!)).toBe("UNKNOWN");
    expect(await answer(outside.ports[0]!)).toBe("UNKNOWN");
    // Without postmaster.pid: asked at the poll interval, so 40 refusals come in
    // about 2 s (on a growing backoff they would take over a minute).
    const [before, since] = [await refusals(watching), performance.now()];
    await waitFor("40 refusals without postmaster.pid", async () => (await refusals(plain)) >= 40, 20_000);
    // With it: asked again only when the file changes, or every 5 s (on a loaded machine the 40 take longer than 5 s).
    const fiveSeconds = Math.floor((performance.now() - since) / 5000);
    expect((await refusals(watching)) - before).toBeLessThanOrEqual(1 + fiveSeconds);
    const t0 = performance.now();
    await node.promote();
    // The bound starts where PostgreSQL takes connections as a primary: its own end of recovery, which
    // beside a busy loop on every core took over 2 s once, is not replstatus's to shorten.
    await node.waitPrimary();
    const promoteMs = performance.now() - t0;
    const named = { watching, plain, outside };
    const [watchingMs, plainMs, outsideMs] = await Promise.all(
      Object.entries(named).map(([name, r]) =>
        waitForAnswer(r.ports[0]!, "MASTER", withSlack(READY_BOUND_MS)).catch((err: Error) => {
          throw new Error(`${name}: ${err.message}`);
        }),
      ),
    );
    verbose({ promoteMs, watchingMs, plainMs, outsideMs });
    expect(watching.log).toContain("(retrying when postmaster.pid changes)");
  });
});
