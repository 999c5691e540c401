// What a client feels across a failover: the gap in its writes through haproxy.
//
// One real haproxy with a frontend per (settings, checker): each frontend has both nodes of the
// pair as servers, checked either by replstatus (one process per node) or by the node's C
// bgw_replstatus, with `tcp-check expect string MASTER` and the same default-server line. One
// event is seen by every frontend at once:
// - stop-fast: `pg_ctl stop -m fast` of the primary, then `pg_ctl promote` of the standby, as a
//   failover manager would;
// - kill-9: SIGKILL to the primary's postmaster, then the promotion.
// A client per frontend starts a new connection every few ms (not one sequential writer: a
// client library's connect timeout and haproxy's queueing while no server is up would hide the
// gap) and runs one insert; the gap is the longest time between two writes that committed, in a
// window from just before the event until the writes have come back. After each trial the old
// primary is rebuilt as a standby of the new one.
import { spread, type Spread } from "./stats.ts";
import { writeOnce, type WriteTarget } from "./pgwrite.ts";
import {
  rebuildAsStandby,
  startReplstatus,
  waitAnswers,
  waitFor,
  type Pair,
  type PgNode,
  type RunningResponder,
} from "./targets.ts";
import { startHaproxy, type Haproxy } from "../src/demo/haproxy.ts";
import { startRoute } from "../test/kit/route.ts";

/** haproxy default-server lines measured; the first is README's recommended one. */
export const DOWNTIME_SETTINGS: { name: string; line: string }[] = [
  {
    name: "inter 100ms rise 1 (README)",
    line: "default-server inter 100ms fastinter 100ms downinter 100ms rise 1 fall 2 on-marked-down shutdown-sessions",
  },
  {
    name: "inter 100ms rise 2",
    line: "default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2 on-marked-down shutdown-sessions",
  },
  {
    name: "inter 1s rise 2",
    line: "default-server inter 1s fastinter 200ms downinter 1s rise 2 fall 2 on-marked-down shutdown-sessions",
  },
];

export interface DowntimeCell {
  /** stop-fast | kill-9 */
  event: string;
  /** DOWNTIME_SETTINGS[].name */
  setting: string;
  /** replstatus | bgw */
  key: string;
  gapMs: Spread;
}

/** Which frontends a measurement has: always replstatus's checks and the C worker's (when installed). */
export interface GapOptions {
  settings: { name: string; line: string }[];
  /** Also a frontend per setting driven by `replstatus route` (key "route"), on replstatus's checks. */
  route: boolean;
  /** A write attempt per client this often, each given up after attemptTimeoutMs; defaults ATTEMPT_EVERY_MS, ATTEMPT_TIMEOUT_MS. */
  attemptEveryMs?: number;
  attemptTimeoutMs?: number;
}

export interface DowntimeResult {
  trials: number;
  attemptEveryMs: number;
  settings: { name: string; line: string }[];
  /** Each cell's runs are in trial order, so trial i of two keys saw the same event. */
  cells: DowntimeCell[];
}

const ATTEMPT_EVERY_MS = 5;
const ATTEMPT_TIMEOUT_MS = 500;
/**
 * haproxy's process-wide connection limit. A session sent to the dead old primary before its
 * checks mark it down is held through the connect retries (`retries 3`, a turn-around of
 * min(timeout connect, 1 s) each: about 3 s), also after its client gave up; at one attempt
 * every ATTEMPT_EVERY_MS that is up to 600 held sessions per frontend. At the limit haproxy stops
 * accepting on every frontend, so one frontend's held sessions would stall the others' clients
 * in the kernel's accept queue (measured at 200: gaps of 3 to 5 s through frontends whose new
 * primary was long up). The limit must stay out of reach; each trial checks that it did.
 */
const HAPROXY_MAXCONN = 8192;
/** Writes that must commit before the event, and in a row after it. */
const WARM_WRITES = 5;
const BACK_STREAK = 20;
const TRIAL_DEADLINE_MS = 20_000;
const TABLE = "downtime_probe";

interface Frontend {
  proxy: string;
  setting: string;
  key: string;
  port: number;
}

/**
 * A client that starts a write every `everyMs` and keeps the completion time of each
 * that committed. Once a write has failed after arm() it stops after BACK_STREAK commits in a row: a
 * commit of a write begun before the event does not end the gap, nor does one of every other
 * write while haproxy still sends half of them to a dead server.
 */
function writer(target: WriteTarget, everyMs: number, timeoutMs: number) {
  /*
   * maxInFlight, in flight per client at most: a bound, not a pace, and one a steady pace never reaches (every
   * attempt ends within ATTEMPT_TIMEOUT_MS). While haproxy still routes to the dead old primary
   * it holds each attempt through its connect retries, so a lower bound fills with those and
   * the client starts nothing until they time out: a real population of clients would not wait
   * so (measured with 30: gaps of about ATTEMPT_TIMEOUT_MS where haproxy routed to the new primary
   * after 200 ms). Six clients at this bound stay below the pair's max_connections
   * (DOWNTIME_MAX_CONNECTIONS, set by targets.ts).
   */
  const maxInFlight = Math.ceil(timeoutMs / everyMs) + 1;
  const committed: number[] = [];
  let inFlight = 0;
  let failed = false;
  let streak = 0;
  let back = false;
  let stopped = false;
  const attempt = async () => {
    inFlight++;
    const ok = await writeOnce(target, timeoutMs);
    inFlight--;
    if (ok) {
      committed.push(performance.now());
      if (failed && ++streak >= BACK_STREAK) back = stopped = true;
    } else {
      failed = true;
      streak = 0;
    }
  };
  const timer = setInterval(() => {
    if (!stopped && inFlight < maxInFlight) void attempt();
  }, everyMs);
  return {
    get committed() {
      return committed.length;
    },
    /** The event starts now: failures before it (a slow warm-up) do not count. */
    arm() {
      failed = false;
      streak = 0;
    },
    get done() {
      return stopped && inFlight === 0;
    },
    /** The longest time between two commits from `from` on; NaN when the writes never came back. */
    gap(from: number): number {
      if (!back) return Number.NaN;
      const times = committed.filter((t) => t >= from).sort((a, b) => a - b);
      let gap = 0;
      for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
      return gap;
    },
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

function proxyLines(setting: string, servers: { name: string; pgPort: number; checkPort: number }[]): string[] {
  return [
    "option tcp-check",
    "tcp-check expect string MASTER",
    setting,
    ...servers.map((s) => `server ${s.name} 127.0.0.1:${s.pgPort} check port ${s.checkPort}`),
  ];
}

async function startFrontends(
  pair: Pair,
  nodes: PgNode[],
  rs: Map<PgNode, RunningResponder>,
  opts: GapOptions,
): Promise<{ haproxy: Haproxy; frontends: Frontend[] }> {
  const proxies: Record<string, string[]> = {};
  const frontends: Omit<Frontend, "port">[] = [];
  opts.settings.forEach((s, i) => {
    const checkers: [string, (n: PgNode) => number][] = [["replstatus", (n) => rs.get(n)!.port]];
    if (pair.bgw) checkers.push(["bgw", (n) => pair.bgwPort.get(n.name)!]);
    if (opts.route) checkers.push(["route", (n) => rs.get(n)!.port]);
    for (const [key, checkPort] of checkers) {
      const proxy = `${key}-${i}`;
      const servers = nodes.map((n) => ({ name: n.name, pgPort: n.port, checkPort: checkPort(n) }));
      proxies[proxy] = proxyLines(s.line, servers);
      frontends.push({ proxy, setting: s.name, key });
    }
  });
  const haproxy = await startHaproxy({ proxies, maxconn: HAPROXY_MAXCONN });
  return { haproxy, frontends: frontends.map((f) => ({ ...f, port: haproxy.ports[f.proxy]! })) };
}

/**
 * Until every checker answers for its node's role (a replstatus that lost its server while the
 * node was rebuilt may still be in its reconnect backoff), and every frontend routes to
 * `primary` only.
 */
async function waitRouted(
  pair: Pair,
  rs: Map<PgNode, RunningResponder>,
  haproxy: Haproxy,
  frontends: Frontend[],
  primary: PgNode,
  standby: PgNode,
): Promise<void> {
  for (const [node, want] of [
    [primary, "MASTER"],
    [standby, "STANDBY"],
  ] as const) {
    const bgw = pair.bgwPort.get(node.name);
    await waitAnswers([rs.get(node)!.port, ...(bgw ? [bgw] : [])], want, 60_000);
  }
  await waitFor(
    `every frontend to route to ${primary.name} only`,
    async () => {
      const servers = await haproxy.servers();
      return frontends.every((f) =>
        Object.entries(servers)
          .filter(([k]) => k.startsWith(`${f.proxy}/`))
          .every(([k, s]) => s.status === (k === `${f.proxy}/${primary.name}` ? "UP" : "DOWN")),
      );
    },
    60_000,
    20,
  );
}

/** An upper bound of haproxy's peak of open sessions so far: the sum of each frontend's peak. */
async function peakSessions(haproxy: Haproxy): Promise<number> {
  const rows = await haproxy.showStat();
  return rows.filter((r) => r.svname === "FRONTEND").reduce((n, r) => n + Number(r.smax), 0);
}

/** One event seen by every frontend's client; resolves to each frontend's gap in ms. */
async function trial(
  frontends: Frontend[],
  user: string,
  pace: { everyMs: number; timeoutMs: number },
  act: () => Promise<void>,
): Promise<number[]> {
  const writers = frontends.map((f) =>
    writer(
      { port: f.port, user, database: "postgres", sql: `insert into ${TABLE} values (now())` },
      pace.everyMs,
      pace.timeoutMs,
    ),
  );
  try {
    await waitFor(
      "writes through every frontend",
      () => writers.every((w) => w.committed >= WARM_WRITES),
      10_000,
      5,
    ).catch((err: Error) => {
      const counts = frontends.map((f, i) => `${f.proxy} ${writers[i]!.committed}`).join(", ");
      throw new Error(`${err.message} (commits: ${counts})`);
    });
    const t0 = performance.now();
    for (const w of writers) w.arm();
    await act();
    await waitFor(
      "writes to come back through every frontend",
      () => writers.every((w) => w.done),
      TRIAL_DEADLINE_MS,
      10,
    ).catch(() => {});
    // From a little before the event: the last commit before it starts the gap.
    return writers.map((w) => w.gap(t0 - 100));
  } finally {
    for (const w of writers) w.stop();
  }
}

export function measureDowntime(pair: Pair, trials: number, log: (line: string) => void): Promise<DowntimeResult> {
  return measureGaps(pair, trials, log, { settings: DOWNTIME_SETTINGS, route: false });
}

/** `replstatus route` driving the route frontends: one --server per (frontend, node), on each node's http listener. */
function routeFor(haproxy: Haproxy, frontends: Frontend[], nodes: PgNode[], rs: Map<PgNode, RunningResponder>) {
  const servers = frontends
    .filter((f) => f.key === "route")
    .flatMap((f) =>
      nodes.flatMap((n) => ["--server", `${f.proxy}/${n.name}=http://127.0.0.1:${rs.get(n)!.responder.ports[1]}`]),
    );
  return startRoute(["--haproxy-socket", haproxy.statsSocket, ...servers]);
}

export async function measureGaps(
  pair: Pair,
  trials: number,
  log: (line: string) => void,
  opts: GapOptions,
): Promise<DowntimeResult> {
  const nodes = [pair.pair.primary, pair.pair.standby];
  // An earlier part (failover) may have swapped the roles.
  const swapped = (await pair.pair.primary.sql("select pg_is_in_recovery()")) === "t";
  let primary = swapped ? pair.pair.standby : pair.pair.primary;
  let standby = swapped ? pair.pair.primary : pair.pair.standby;
  await primary.sql(`create table if not exists ${TABLE} (at timestamptz)`);
  await waitFor(
    `${TABLE} on ${standby.name}`,
    async () => (await standby.sql(`select to_regclass('${TABLE}') is not null`)) === "t",
  );
  const rs = new Map<PgNode, RunningResponder>();
  // A second listener, http, for the router's /events.
  for (const n of nodes) rs.set(n, await startReplstatus(n, opts.route ? ["--listen", "http:127.0.0.1:0"] : []));
  const { haproxy, frontends } = await startFrontends(pair, nodes, rs, opts);
  const router = opts.route ? await routeFor(haproxy, frontends, nodes, rs) : undefined;
  const gaps = new Map<string, number[]>();
  try {
    const events: [string, (old: PgNode, next: PgNode) => Promise<void>][] = [
      [
        "stop-fast",
        async (old, next) => {
          await old.stop("fast");
          await next.promote();
        },
      ],
      [
        "kill-9",
        async (old, next) => {
          process.kill(old.pid(), "SIGKILL");
          await next.promote();
        },
      ],
    ];
    for (const [event, act] of events.filter(([e]) => !process.env.DTEV || e === process.env.DTEV)) {
      for (let i = 0; i < trials; i++) {
        await waitRouted(pair, rs, haproxy, frontends, primary, standby);
        const old = primary;
        const next = standby;
        let actMs = Number.NaN;
        let ms: number[];
        try {
          const pace = {
            everyMs: opts.attemptEveryMs ?? ATTEMPT_EVERY_MS,
            timeoutMs: opts.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS,
          };
          ms = await trial(frontends, primary.user, pace, async () => {
            const t = performance.now();
            await act(old, next);
            actMs = performance.now() - t;
          });
        } catch (err) {
          // Before the event (no writes got through to begin with): the roles are unchanged.
          if (Number.isNaN(actMs)) {
            const direct = await primary.sql(`insert into ${TABLE} values (now())`).then(
              () => "a direct insert works",
              (e: Error) => `a direct insert fails: ${e.message.split("\n")[0]}`,
            );
            log(`downtime ${event}: trial skipped: ${(err as Error).message}; ${direct}`);
            continue;
          }
          throw err;
        }
        frontends.forEach((f, j) => {
          const k = `${event}/${f.setting}/${f.key}`;
          gaps.set(k, [...(gaps.get(k) ?? []), ms[j]!]);
        });
        const held = await peakSessions(haproxy);
        log(
          `downtime ${event} (its commands took ${actMs.toFixed(0)} ms): ${frontends.map((f, j) => `${f.setting} ${f.key} ${ms[j]!.toFixed(0)}ms`).join(", ")}; haproxy sessions at most ${held} of ${HAPROXY_MAXCONN}`,
        );
        if (held >= HAPROXY_MAXCONN)
          throw new Error(`haproxy reached maxconn ${HAPROXY_MAXCONN}: the gaps are its queue's`);
        await next.waitPrimary();
        await rebuildAsStandby(old, next);
        primary = next;
        standby = old;
      }
    }
  } finally {
    await router?.stop();
    await haproxy.stop();
    for (const r of rs.values()) await r.stop();
  }
  const cells: DowntimeCell[] = [];
  for (const [k, ms] of gaps) {
    const [event, setting, key] = k.split("/") as [string, string, string];
    cells.push({ event, setting, key, gapMs: spread(ms) });
  }
  return { trials, attemptEveryMs: opts.attemptEveryMs ?? ATTEMPT_EVERY_MS, settings: opts.settings, cells };
}
