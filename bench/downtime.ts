// What a client feels across a failover: the gap in its writes through haproxy.
//
// One real haproxy with a frontend per (settings, checker): each frontend has both nodes of the
// pair as servers, checked either by replstatus (one process per node) or by the node's C
// bgw_replstatus, with `tcp-check expect string MASTER` and the same default-server line. One
// event is seen by every frontend at once:
// - stop-fast: `pg_ctl stop -m fast` of the primary, then `pg_ctl promote` of the standby, as a
//   failover manager would;
// - kill-9: SIGKILL to the primary's postmaster, then the promotion.
// A client per frontend writes through it (one insert on a new connection each time, as a new
// user would), gently until the event, then starting one every few ms (not one sequential writer:
// a client library's connect timeout and haproxy's queueing while no server is up would hide the
// gap). The gap is the time from the start of the event's commands until a write through that
// frontend commits on the new primary. After each trial the old primary is rebuilt as a standby
// of the new one.
import { spread, type Spread } from "./stats.ts";
import { writeOnce, writeReturning, type WriteTarget } from "./pgwrite.ts";
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
  /**
   * replstatus | bgw | route: a frontend's gap; commands: how long the event's commands took (pg_ctl
   * stop and promote, which wait for PostgreSQL); direct: the gap of a client writing straight to the
   * new primary, PostgreSQL's floor; pushed: from the event's start until the router pushed the new
   * primary in.
   */
  key: string;
  gapMs: Spread;
}

/** Which frontends a measurement has: always replstatus's checks and the C worker's (when installed). */
export interface GapOptions {
  settings: { name: string; line: string }[];
  /** Also a frontend per setting driven by `replstatus route` (key "route"), on replstatus's checks. */
  route: boolean;
  /** After the event, a write attempt per client this often, each given up after attemptTimeoutMs; defaults ATTEMPT_EVERY_MS, ATTEMPT_TIMEOUT_MS. */
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
/** Writes that must commit through every frontend before the event. */
const WARM_WRITES = 3;
/** An attempt in flight this long no longer holds back the client's next (writer()). */
const HELD_MS = 50;
/** The share of a postmaster's forks a second that the clients' steady writes may take. */
const WARM_LOAD = 0.3;
const TRIAL_DEADLINE_MS = 20_000;
const TABLE = "downtime_probe";

interface Frontend {
  proxy: string;
  setting: string;
  key: string;
  port: number;
}

/**
 * A client of one frontend. Before the event it writes at `warmMs`, a pace the pair's postmasters
 * keep up with, to show the frontend routes; from arm() on it starts a write every `fastMs` and
 * stops at the first one committed by the new primary (each write's RETURNING names the port of
 * the node that took it): the gap is the time from the event's start to that commit. Commits on
 * the old primary after the start (a fast stop takes a few ms to close its doors) do not end it.
 *
 * Not the longest time between two commits at a fast pace throughout: PostgreSQL forks a backend
 * for every connection, and where a fork is slow (11-20 ms a connection, about 50 a second a node,
 * on some virtual machines) six clients at that pace queue in the postmaster and no write commits
 * at all. Only the first commit on the new primary is timed, so each client's burst ends there,
 * and the next frontend's first write does not wait behind it for long. `oneAtATime`: never more than
 * one attempt in flight, for the client that writes straight to a node.
 */
function writer(target: WriteTarget, pace: { warmMs: number; fastMs: number; timeoutMs: number }, oneAtATime = false) {
  /*
   * A new attempt starts only when every attempt in flight is older than HELD_MS. One answered at once
   * (haproxy with no server up closes at once) makes way for the next at the client's pace. One that is
   * not has either reached a postmaster (a backend's start takes tens of ms where forks are slow) or is
   * held by haproxy through its connect retries to a dead server (about 3 s): the first must not pile up
   * in the postmaster, where every connection is forked even after its client gave up, until nothing
   * commits at all; the second must not stop the client, as a real population of clients would not wait
   * on it. maxInFlight bounds the held ones (every attempt ends within timeoutMs).
   */
  const maxInFlight = oneAtATime ? 1 : Math.ceil(pace.timeoutMs / pace.fastMs) + 1;
  const started = new Set<number>();
  let committed = 0;
  let stopped = false;
  let armed: { at: number; port: number } | undefined;
  let firstAt: number | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };
  const free = () => {
    if (stopped || started.size >= maxInFlight) return false;
    const now = performance.now();
    for (const t of started) if (now - t < HELD_MS) return false;
    return true;
  };
  const attempt = async () => {
    const at = performance.now();
    started.add(at);
    const port = await writeReturning(target, pace.timeoutMs);
    started.delete(at);
    if (port === undefined) return;
    committed++;
    if (armed && firstAt === undefined && Number(port) === armed.port) {
      firstAt = performance.now();
      stop();
    }
  };
  const every = (ms: number) => {
    clearInterval(timer);
    timer = setInterval(() => {
      if (free()) void attempt();
    }, ms);
  };
  every(pace.warmMs);
  return {
    get committed() {
      return committed;
    },
    /** The event starts now, and ends at the first write the node on `port` commits. */
    arm(port: number) {
      armed = { at: performance.now(), port };
      every(pace.fastMs);
    },
    get done() {
      return stopped && started.size === 0;
    },
    /** From arm() to the first commit on the new primary; NaN when none came. */
    gap(): number {
      return armed && firstAt !== undefined ? firstAt - armed.at : Number.NaN;
    },
    stop,
  };
}

/**
 * The time one new connection and insert takes on `node` (median of a few, one at a time): what a
 * backend's fork and start cost on this machine, which sets the warm-up pace.
 */
async function connectionCost(node: PgNode): Promise<number> {
  const target = { port: node.port, user: node.user, database: "postgres", sql: `insert into ${TABLE} values (now())` };
  const ms: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t = performance.now();
    if (!(await writeOnce(target, 2000))) throw new Error(`a write directly to ${node.name} failed`);
    ms.push(performance.now() - t);
  }
  return ms.sort((a, b) => a - b)[5]!;
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

/**
 * One event seen by every frontend's client, ending at `next`; resolves to each frontend's gap in ms,
 * then the gap of a client writing straight to `next`.
 */
async function trial(
  haproxy: Haproxy,
  log: (line: string) => void,
  frontends: Frontend[],
  user: string,
  next: PgNode,
  pace: { warmMs: number; fastMs: number; timeoutMs: number },
  act: () => Promise<void>,
): Promise<number[]> {
  const sql = `insert into ${TABLE} values (now()) returning current_setting('port')`;
  const writers = frontends.map((f) => writer({ port: f.port, user, database: "postgres", sql }, pace));
  try {
    await waitFor(
      "writes through every frontend",
      () => writers.every((w) => w.committed >= WARM_WRITES),
      5_000 + 3 * WARM_WRITES * pace.warmMs,
      5,
    ).catch((err: Error) => {
      const counts = frontends.map((f, i) => `${f.proxy} ${writers[i]!.committed}`).join(", ");
      throw new Error(`${err.message} (commits: ${counts})`);
    });
    for (const w of writers) w.arm(next.port);
    // The floor: the same client straight to the new primary, refused until it is one; one attempt
    // at a time, so as not to load the node whose promotion is measured.
    const direct = writer({ port: next.port, user, database: "postgres", sql }, pace, true);
    direct.arm(next.port);
    writers.push(direct);
    await act();
    await waitFor(
      "writes to come back through every frontend",
      () => writers.every((w) => w.done),
      TRIAL_DEADLINE_MS,
      10,
    ).catch(() => {});
    const late = frontends.filter((_, i) => !writers[i]!.done).map((f) => f.proxy);
    if (!direct.done) late.push(`straight to ${next.name}`);
    if (late.length) {
      const servers = await haproxy.servers();
      const states = Object.entries(servers)
        .filter(([k]) => late.some((p) => k.startsWith(`${p}/`)))
        .map(([k, s]) => `${k} ${s.status} ${s.checkStatus}`);
      log(
        `downtime: no write came back through ${late.join(", ")} in ${TRIAL_DEADLINE_MS} ms; haproxy: ${states.join(", ")}`,
      );
    }
    return writers.map((w) => w.gap());
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
  const fastMs = opts.attemptEveryMs ?? ATTEMPT_EVERY_MS;
  const cost = await connectionCost(primary);
  const pace = {
    fastMs,
    // Every client's steady writes together at most WARM_LOAD of what one postmaster forks in a second.
    warmMs: Math.max(fastMs, Math.ceil((frontends.length * cost) / WARM_LOAD)),
    timeoutMs: opts.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS,
  };
  log(
    `downtime: a new connection and insert take ${cost.toFixed(1)} ms here; ${frontends.length} clients write every ${pace.warmMs} ms until the event, every ${fastMs} ms after it`,
  );
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
        let startedAt = 0;
        let ms: number[];
        try {
          ms = await trial(haproxy, log, frontends, primary.user, next, pace, async () => {
            const t = performance.now();
            startedAt = Date.now();
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
        const add = (k: string, v: number) => gaps.set(k, [...(gaps.get(k) ?? []), v]);
        const directMs = ms[frontends.length]!;
        frontends.forEach((f, j) => {
          add(`${event}/${f.setting}/${f.key}`, ms[j]!);
          if (f.key === "replstatus") add(`${event}/${f.setting}/commands`, actMs);
          if (f.key === "replstatus") add(`${event}/${f.setting}/direct`, directMs);
          // When the router pushed the new primary in, from its log (ms resolution).
          const up = router
            ?.pushes()
            .find(
              (p) => p.server === `${f.proxy}/${next.name}` && p.command.endsWith("health up") && p.at >= startedAt,
            );
          if (f.key === "route") add(`${event}/${f.setting}/pushed`, up ? up.at - startedAt : Number.NaN);
        });
        const held = await peakSessions(haproxy);
        log(
          `downtime ${event} (its commands took ${actMs.toFixed(0)} ms, a write straight to the new primary ${directMs.toFixed(0)} ms): ${frontends.map((f, j) => `${f.setting} ${f.key} ${ms[j]!.toFixed(0)}ms`).join(", ")}; haproxy sessions at most ${held} of ${HAPROXY_MAXCONN}`,
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
