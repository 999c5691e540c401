// Lag without flapping, end to end: a real pair whose standby's replay is
// paused and resumed, with writes on the primary, so that its lag crosses a
// 1 MB limit about once a second; two replstatus on the standby, one with
// today's settings and one with a hold (--rejoin-after), and a real haproxy
// that checks both through tcp-check, agent-check and httpchk (/replica?lag=1MB
// with and without rejoin_after=), and replstatus route driving two replica
// backends from the two responders' /events. Transitions are counted from
// replstatus's log, from route's pushes and from haproxy's log. Then a long query through an agent-checked backend
// survives the drain of the lagging standby, while a new connection goes to
// the primary; the same query through a backend that httpchk marks down (with
// on-marked-down shutdown-sessions) is cut. Last, with the primary stopped,
// the standby's WAL receiver is gone: raw LAGGING, but the agent says down.
//
// CYCLES (LAGFLAP_CYCLES, default 6) swings of about 2 s: each swing is one
// leave and one rejoin without the hold, so six show the flapping as well as
// thirty would; the counts scale with the cycles (docs/haproxy.md has a
// minute's run).
import { afterAll, beforeAll, expect, test } from "bun:test";
import type postgres from "postgres";
import { clientOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { startRoute, type RouteProc } from "../kit/route.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getStatus } from "../kit/http.ts";

useTimeouts(120_000);

const MB = 1024 * 1024;
const CYCLES = Number(process.env.LAGFLAP_CYCLES ?? 6);
/** How long the lag stays over (replay paused) and under (resumed) the limit in a swing: the oscillation's pace. */
const HALF_MS = 1000;
const HOLD = "3s";
const HOLD_MS = 3000;
const SEND = 'agent-send "ro\\n"';

let pg: PgPair;
/** On the standby: today's settings (leave at 1 MB after 200 ms, back at the first poll under). */
let plain: Responder;
/** The same, and a hold of 3 s under the limit before rejoining. */
let held: Responder;
let haproxy: Haproxy;
/** replstatus route, driving two replica backends from the two responders' /events. */
let route: RouteProc;
let primarySql: postgres.Sql;
let standbySql: postgres.Sql;

const LIMITS = ["--max-lag-bytes", "1MB", "--lag-grace", "200ms"];
const LISTENERS = ["--listen", "127.0.0.1:0", "--listen", "agent:127.0.0.1:0", "--listen", "http:127.0.0.1:0"];

beforeAll(async () => {
  pg = await startPair();
  const common = [...LISTENERS, ...LIMITS, "--agent-role", "standby", "--db", pg.standby.url];
  [plain, held] = await Promise.all([
    startResponder(common),
    startResponder([...common, "--rejoin-lag-bytes", "256kB", "--rejoin-after", HOLD]),
  ]);
  const [raw, agent, http] = [0, 1, 2];
  const standby = `127.0.0.1:${pg.standby.port}`;
  const primary = `127.0.0.1:${pg.primary.port}`;
  const fast = "inter 100ms fastinter 100ms downinter 100ms rise 1 fall 1";
  const httpchk = (query: string) => [
    `option httpchk GET /replica?${query}`,
    "http-check expect status 200",
    `server s ${standby} check port ${plain.ports[http]} ${fast}`,
  ];
  const tcpchk = (r: Responder) => [
    "option tcp-check",
    "tcp-check expect string STANDBY",
    `server s ${standby} check port ${r.ports[raw]} ${fast}`,
  ];
  const agentchk = (r: Responder) => [
    `server s ${standby} weight 100 check agent-check agent-port ${r.ports[agent]} agent-inter 100ms ${SEND} ${fast}`,
  ];
  // The pools a client reads from: the standby, and the primary when the standby takes nothing new.
  const pool = (lines: string[]) => [
    "default-server on-marked-down shutdown-sessions",
    ...lines,
    `server p ${primary} backup`,
  ];
  // The router's backends: a plain TCP check of PostgreSQL, and the drain pushed from each node's events.
  const routed = [`server s ${standby} check inter 1s`];
  haproxy = await startHaproxy({
    backends: {
      raw_plain: tcpchk(plain),
      raw_held: tcpchk(held),
      agent_plain: agentchk(plain),
      agent_held: agentchk(held),
      http_plain: httpchk("lag=1MB"),
      http_held: httpchk("lag=1MB&rejoin_after=3s"),
      route_plain: routed,
      route_held: routed,
    },
    proxies: { ro_agent: pool(agentchk(held)), ro_http: pool(httpchk("lag=1MB")) },
  });
  route = await startRoute([
    ...["--haproxy-socket", haproxy.statsSocket, "--replica-backend", "route_plain", "--replica-backend", "route_held"],
    ...["--server", `route_plain/s=http://127.0.0.1:${plain.ports[http]}`],
    ...["--server", `route_held/s=http://127.0.0.1:${held.ports[http]}`],
  ]);
  primarySql = clientOn(pg.primary.port);
  standbySql = clientOn(pg.standby.port);
  await waitForAnswer(plain.ports[raw]!, "STANDBY");
  await waitForAnswer(held.ports[raw]!, "STANDBY");
  await allUp();
}, HOOK_TIMEOUT_MS);

async function allUp(): Promise<void> {
  let last = "";
  await waitFor("every haproxy server up", async () => {
    const servers = await haproxy.servers();
    last = JSON.stringify(servers);
    return Object.entries(servers).every(([name, s]) => !name.endsWith("/s") || s.status === "UP");
  }).catch((err: Error) => {
    throw new Error(`${err.message} (last: ${last})\n${haproxy.log}`);
  });
}

afterAll(async () => {
  await standbySql`select pg_wal_replay_resume()`.catch(() => {});
  await Promise.all([primarySql?.end({ timeout: 1 }), standbySql?.end({ timeout: 1 })]);
  await route?.stop();
  await haproxy?.stop();
  await Promise.all([plain, held].map((r) => r?.[Symbol.asyncDispose]()));
  await pg?.stop();
}, HOOK_TIMEOUT_MS);

/** Received but not replayed on the standby, in bytes. */
async function unreplayed(): Promise<number> {
  const [row] =
    await standbySql`select pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 as d`;
  return row!.d as number;
}

/** Replay paused, then about 1.5 MB of WAL written on the primary, until the standby has received it. */
async function fallBehind(): Promise<void> {
  await standbySql`select pg_wal_replay_pause()`;
  await primarySql`insert into filler select repeat('x', 1000) from generate_series(1, 1200)`;
  await waitFor(
    "the standby to receive 1.2 MB it does not replay",
    async () => (await unreplayed()) > 1.2 * MB,
    10_000,
  );
}

async function catchUp(): Promise<void> {
  await standbySql`select pg_wal_replay_resume()`;
  await waitFor("the standby to replay what it received", async () => (await unreplayed()) < 8192, 10_000);
}

/** Caught up, within the hold: the held responder's /status says why it still says LAGGING. */
async function holdShows(): Promise<void> {
  type Status = { state: string; rejoin_in_ms: number | null };
  const status = async () => (await getStatus(held.ports[2]!)) as Status;
  const seen = (await waitFor("a running hold in /status", async () => {
    const s = await status();
    return s.rejoin_in_ms !== null ? s : undefined;
  }))!;
  expect(seen.state).toBe("lagging");
  expect(seen.rejoin_in_ms).toBeWithin(0, HOLD_MS + 1);
}

/** Lines of one responder's log that change its state between standby and lagging. */
function transitions(r: Responder): { leaves: number; rejoins: number } {
  return {
    leaves: r.log.match(/standby -> lagging/g)?.length ?? 0,
    rejoins: r.log.match(/lagging -> standby/g)?.length ?? 0,
  };
}

/**
 * haproxy's state changes of server s of each backend, from its log (-db
 * prints them on stderr): UP and DOWN, and the agent's drain (weight 0) and back.
 */
function haproxyChanges(log: string): Record<string, { up: number; down: number; drain: number; ready: number }> {
  const out: Record<string, { up: number; down: number; drain: number; ready: number }> = {};
  for (const [, backend, what] of log.matchAll(/Server (\w+)\/s (?:is )?(.*)/g)) {
    const c = (out[backend!] ??= { up: 0, down: 0, drain: 0, ready: 0 });
    if (/^DOWN/.test(what!)) c.down++;
    else if (/^DRAIN|enters drain/.test(what!)) c.drain++;
    else if (/leaving forced drain/.test(what!)) c.ready++;
    else if (/^UP/.test(what!)) c.up++;
  }
  return out;
}

test(`a lag that crosses 1 MB about once a second for ${CYCLES} swings: flaps without the hold, leaves once with it`, async () => {
  await primarySql`create table if not exists filler (x text)`;
  const logFrom = haproxy.log.length;
  const startedAt = Date.now();
  const t0 = performance.now();
  try {
    for (let i = 0; i < CYCLES; i++) {
      await fallBehind();
      await Bun.sleep(HALF_MS); // the oscillation's pace, not a wait for a condition
      await catchUp();
      if (i === CYCLES - 1) await holdShows();
      await Bun.sleep(HALF_MS);
    }
  } finally {
    await standbySql`select pg_wal_replay_resume()`;
  }
  const swingMs = performance.now() - t0;
  // Caught up for good: the held one rejoins once the hold has passed.
  await waitForAnswer(held.ports[0]!, "STANDBY", HOLD_MS + 10_000);
  await allUp();
  const periods = Math.ceil((swingMs + HOLD_MS) / HOLD_MS);
  const pushes = (server: string, command: string) =>
    route.pushes().filter((p) => p.at >= startedAt && p.server === server && p.command.endsWith(command)).length;
  const counts = {
    plain: transitions(plain),
    held: transitions(held),
    haproxy: haproxyChanges(haproxy.log.slice(logFrom)),
    route: Object.fromEntries(
      ["route_plain/s", "route_held/s"].map((s) => [
        s,
        { drain: pushes(s, "state drain"), ready: pushes(s, "state ready") },
      ]),
    ),
  };
  console.log(
    `lag-flap: ${CYCLES} swings in ${Math.round(swingMs)} ms, hold periods ${periods}: ${JSON.stringify(counts)}`,
  );

  // Without the hold every swing is a leave and a rejoin (allow a slow machine to miss a few).
  expect(counts.plain.leaves).toBeGreaterThanOrEqual(Math.ceil(CYCLES / 2));
  expect(counts.plain.rejoins).toBeGreaterThanOrEqual(Math.ceil(CYCLES / 2));
  // With it: at most one leave and one rejoin per hold period, and it did leave and come back.
  expect(counts.held.leaves).toBeGreaterThanOrEqual(1);
  expect(counts.held.leaves).toBeLessThanOrEqual(periods);
  expect(counts.held.rejoins).toBeLessThanOrEqual(periods);
  expect(counts.held.leaves).toBeLessThan(counts.plain.leaves);
  const h = counts.haproxy;
  for (const plainOne of ["raw_plain", "http_plain"])
    expect(h[plainOne]?.down).toBeGreaterThanOrEqual(Math.ceil(CYCLES / 2));
  for (const heldOne of ["raw_held", "http_held"]) {
    expect(h[heldOne]?.down).toBeGreaterThanOrEqual(1);
    expect(h[heldOne]!.down).toBeLessThanOrEqual(periods);
    expect(h[heldOne]!.up).toBeLessThanOrEqual(periods);
  }
  // The agent drains for lag: never DOWN, and with the hold it drains at most once per hold period.
  expect(h.agent_plain?.down ?? 0).toBe(0);
  expect(h.agent_held?.down ?? 0).toBe(0);
  expect(h.agent_plain?.drain).toBeGreaterThanOrEqual(Math.ceil(CYCLES / 2));
  expect(h.agent_held?.drain).toBeGreaterThanOrEqual(1);
  expect(h.agent_held!.drain).toBeLessThanOrEqual(periods);
  // replstatus route drains what its events call lagging: as often as the node flaps, or once per hold.
  const r = counts.route;
  expect(r["route_plain/s"]!.drain).toBeGreaterThanOrEqual(Math.ceil(CYCLES / 2));
  expect(r["route_held/s"]!.drain).toBeGreaterThanOrEqual(1);
  expect(r["route_held/s"]!.drain).toBeLessThanOrEqual(periods);
  expect(r["route_held/s"]!.ready).toBeLessThanOrEqual(periods);
  expect(h.route_plain?.down ?? 0).toBe(0);
  expect(h.route_held?.down ?? 0).toBe(0);
});

test("a long query on the lagging standby survives the drain; a new connection goes to the primary", async () => {
  const viaAgent = clientOn(haproxy.ports.ro_agent!);
  const viaHttp = clientOn(haproxy.ports.ro_http!);
  const fresh = clientOn(haproxy.ports.ro_agent!);
  try {
    const where = async (sql: postgres.Sql) => (await sql`select pg_is_in_recovery() as r`)[0]!.r as boolean;
    expect([await where(viaAgent), await where(viaHttp)]).toEqual([true, true]);
    const sleep = (sql: postgres.Sql) =>
      sql`select pg_sleep(4), pg_is_in_recovery() as r`.then(
        (rows) => `done on ${rows[0]!.r ? "standby" : "primary"}`,
        (err: Error) => `cut: ${err.message}`,
      );
    const [agentQuery, httpQuery] = [sleep(viaAgent), sleep(viaHttp)];
    await fallBehind();
    try {
      await waitFor(
        "haproxy to drain the standby of ro_agent",
        async () => (await haproxy.servers())["ro_agent/s"]?.status.startsWith("DRAIN"),
        10_000,
      );
      // A new session goes to the primary while the running one stays.
      expect(await where(fresh)).toBe(false);
      expect((await haproxy.servers())["ro_agent/s"]?.status).toBe("DRAIN (agent)");
      expect(await agentQuery).toBe("done on standby");
      // The same query where the check marks the standby DOWN, with shutdown-sessions: cut.
      expect(await httpQuery).toMatch(/^cut: /);
    } finally {
      await catchUp();
    }
  } finally {
    await Promise.all([viaAgent, viaHttp, fresh].map((sql) => sql.end({ timeout: 1 })));
  }
});

test("a standby that lost its WAL receiver is DOWN for the agent, not drained; raw still says LAGGING", async () => {
  await pg.primary.stop("fast");
  for (const r of [plain, held]) await waitForAnswer(r.ports[0]!, "LAGGING", 10_000);
  expect(await answer(held.ports[1]!)).toBe("down ready #lagging\n");
  await waitFor("haproxy to mark both agent-checked standbys DOWN by the agent", async () => {
    const servers = await haproxy.servers();
    return ["agent_plain/s", "agent_held/s"].every((name) => servers[name]?.status === "DOWN (agent)");
  });
  expect(haproxy.log).toMatch(/Server agent_held\/s is DOWN, reason: .*via agent : down \(lagging\)/);
});
