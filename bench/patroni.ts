// The Patroni mode beside Patroni's own REST API, on one throwaway cluster
// (etcd + two Patroni 3.0.2 members, a replstatus beside each started with
// --patroni), in one run:
// - checks/s: closed-loop `OPTIONS /primary` on a fresh connection each, 16
//   at a time, against the leader's Patroni REST API and its replstatus http
//   listener, runs interleaved;
// - leader key -> answer: under `patronictl pause`, the leader key is set to
//   the other member in etcd (same lease), and the old leader's replstatus is
//   probed (raw, every ~0.2 ms) until it stops answering MASTER; then the key
//   is given back;
// - kill -9 of the leader's postmaster: from the kill until /primary stops
//   answering 200, probed every 2 ms, for Patroni's REST API and replstatus.
// Patroni holds the leader key through a crash of its PostgreSQL and restarts
// it (crash recovery), and its /primary answers from the key: 200 all along.
// The fixture runs Patroni with loop_wait 1 s (the default is 10 s).
//
// - write downtime: a client writing through haproxy (Patroni's published
//   lines: option httpchk OPTIONS /primary, http-check expect status 200,
//   inter 100ms fall 2 rise 2, on-marked-down shutdown-sessions) across a
//   patronictl switchover, the longest gap between two successful writes;
//   haproxy checking Patroni's REST API, checking replstatus, and checking
//   replstatus with `replstatus route` beside it take turns.
//
// Usage: bun bench/patroni.ts [--quick] [--json FILE]
import { writeFileSync } from "node:fs";
import postgres from "postgres";
import { b64, startEtcd } from "../test/kit/etcd.ts";
import { httpGet, startPatroni } from "../test/kit/patroni.ts";
import { superuser, waitFor } from "../src/demo/proc.ts";
import { startHaproxy } from "../src/demo/haproxy.ts";
import { answer } from "../src/demo/probe.ts";
import { startResponder, type Responder } from "../src/demo/responder.ts";
import { fmtMs, fmtRate, fmtSpread, spread, type Spread } from "./stats.ts";
import { startRoute } from "../test/kit/route.ts";

const quick = process.argv.includes("--quick");
const jsonAt = process.argv.indexOf("--json");
const jsonFile = jsonAt > 0 ? process.argv[jsonAt + 1] : undefined;
const RUNS = quick ? 1 : 3;
const WINDOW_MS = quick ? 1000 : 3000;
const CONCURRENCY = 16;
const KEY_TRIALS = quick ? 3 : 10;
const KILL_TRIALS = quick ? 1 : 3;
const SWITCH_TRIALS = quick ? 1 : 2;
const WRITE_DEADLINE_MS = 1000;
/** How long /primary is watched after a kill; past it the figure is "200 throughout". */
const KILL_WATCH_MS = 20_000;

const progress = (line: string) => process.stderr.write(`patroni: ${line}\n`);

/** Completed checks per second that answered 200, `CONCURRENCY` at a time for `WINDOW_MS`. */
async function checkRate(port: number): Promise<number> {
  const request = "OPTIONS /primary HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  const until = performance.now() + WINDOW_MS;
  let ok = 0;
  let failed = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      let head = "";
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        if (head.startsWith("HTTP/1.0 200") || head.startsWith("HTTP/1.1 200")) ok++;
        else failed++;
        resolve();
      };
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open: (s) => void s.write(request),
          data: (_, chunk) => void (head += head.length < 16 ? Buffer.from(chunk).toString("latin1") : ""),
          close: finish,
          error: finish,
        },
      }).catch(finish);
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) await one();
    }),
  );
  if (failed > 0) progress(`  ${failed} checks did not answer 200`);
  return ok / ((performance.now() - t0) / 1000);
}

/**
 * Writes through haproxy's `port` until `done()` says so and 2 s of writes
 * have followed it; resolves to the longest gap between two successful
 * writes. Every failure (reset, read-only, deadline) reconnects.
 */
async function writeGap(port: number, done: () => boolean): Promise<number> {
  const connect = () =>
    postgres({
      host: "127.0.0.1",
      port,
      user: superuser,
      database: "postgres",
      max: 1,
      connect_timeout: 1,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
    });
  let sql = connect();
  let last = performance.now();
  let gap = 0;
  let doneAt: number | undefined;
  while (doneAt === undefined || performance.now() - doneAt < 2000) {
    if (doneAt === undefined && done()) doneAt = performance.now();
    try {
      const write = sql`insert into bench_writes values (1)`;
      await Promise.race([write, Bun.sleep(WRITE_DEADLINE_MS).then(() => Promise.reject(new Error("deadline")))]);
      const now = performance.now();
      gap = Math.max(gap, now - last);
      last = now;
    } catch {
      void sql.end({ timeout: 0 }).catch(() => {});
      sql = connect();
      await Bun.sleep(2);
    }
  }
  await sql.end({ timeout: 1 }).catch(() => {});
  return gap;
}

type Etcd = Awaited<ReturnType<typeof startEtcd>>;
type Cluster = Awaited<ReturnType<typeof startPatroni>>;

/** 1. checks/s against the leader's Patroni REST API and its replstatus, interleaved. */
async function measureRates(cluster: Cluster, rs: Responder[]) {
  const patroni: number[] = [];
  const ours: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    patroni.push(await checkRate(cluster.members[0]!.restPort));
    ours.push(await checkRate(rs[0]!.ports[1]!));
    progress(`checks/s run ${i + 1}: patroni ${fmtRate(patroni.at(-1)!)}, replstatus ${fmtRate(ours.at(-1)!)}`);
  }
  return { patroni: spread(patroni), replstatus: spread(ours) };
}

/** 2. leader key -> answer, under pause so that Patroni leaves the key alone meanwhile. */
async function measureLeaderKey(etcd: Etcd, cluster: Cluster, r0: Responder) {
  await cluster.ctl("pause", "--wait");
  const leaderKey = b64(`${cluster.namespace}${cluster.scope}/leader`);
  const { kvs } = (await etcd.call("kv/range", { key: leaderKey })) as { kvs: { lease: string }[] };
  const lease = kvs[0]!.lease;
  const keyMs: number[] = [];
  for (let i = 0; i < KEY_TRIALS; i++) {
    await waitFor("MASTER again", async () => (await answer(r0.ports[0]!)) === "MASTER");
    const t0 = performance.now();
    await etcd.call("kv/put", { key: leaderKey, value: b64("m1"), lease });
    while ((await answer(r0.ports[0]!)) === "MASTER") {
      if (performance.now() - t0 > 5000) throw new Error("no change within 5 s");
    }
    keyMs.push(performance.now() - t0);
    await etcd.call("kv/put", { key: leaderKey, value: b64("m0"), lease });
  }
  progress(`leader key -> answer: ${keyMs.map((v) => v.toFixed(1)).join(", ")} ms`);
  await cluster.ctl("resume", "--wait");
  await cluster.waitLeader("m0");
  return spread(keyMs);
}

/** 3. kill -9 of the leader's postmaster -> /primary not 200, on Patroni's REST API and on replstatus. */
async function measureKill(cluster: Cluster, r0: Responder) {
  const m0 = cluster.members[0]!;
  const killPatroni: number[] = [];
  const killOurs: number[] = [];
  for (let i = 0; i < KILL_TRIALS; i++) {
    await cluster.waitLeader("m0");
    await waitFor("MASTER again", async () => (await answer(r0.ports[0]!)) === "MASTER", 60_000);
    const pid = m0.postmasterPid()!;
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    const until = async (port: number) => {
      while ((await httpGet(port, "/primary", "GET", 1000)).status === 200) {
        if (performance.now() - t0 > KILL_WATCH_MS) return Number.POSITIVE_INFINITY;
        await Bun.sleep(2);
      }
      return performance.now() - t0;
    };
    const [p, o] = await Promise.all([until(m0.restPort), until(r0.ports[1]!)]);
    killPatroni.push(p);
    killOurs.push(o);
    const show = (v: number) =>
      v === Number.POSITIVE_INFINITY ? `200 throughout ${KILL_WATCH_MS / 1000} s` : fmtMs(v);
    progress(`kill -9 trial ${i + 1}: patroni ${show(p)}, replstatus ${show(o)}`);
  }
  return { patroni: spread(killPatroni), replstatus: spread(killOurs) };
}

const CHECKERS = ["patroni", "replstatus", "route"] as const;
type Checker = (typeof CHECKERS)[number];

/**
 * 4. write downtime through haproxy across a switchover, each checker in turn: Patroni's REST API,
 * replstatus's http listener, and the latter with `replstatus route` driving the proxy from every
 * member's GET /events (docs/routing.md).
 */
async function measureSwitchovers(cluster: Cluster, rs: Responder[]) {
  const server = (check: Checker) =>
    cluster.members.map(
      (m, i) =>
        `server ${m.name} 127.0.0.1:${m.pgPort} check port ${check === "patroni" ? m.restPort : rs[i]!.ports[1]}`,
    );
  const hx = await startHaproxy({
    defaults: ["default-server inter 100ms fall 2 rise 2 on-marked-down shutdown-sessions"],
    proxies: Object.fromEntries(
      CHECKERS.map((c) => [c, ["option httpchk OPTIONS /primary", "http-check expect status 200", ...server(c)]]),
    ),
  });
  const targets = cluster.members.flatMap((m, i) => [
    "--server",
    `route/${m.name}=http://127.0.0.1:${rs[i]!.ports[1]}`,
  ]);
  const router = await startRoute(["--haproxy-socket", hx.statsSocket, ...targets]);
  const gaps: Record<Checker, number[]> = { patroni: [], replstatus: [], route: [] };
  try {
    const first = await cluster.waitLeader();
    await cluster.members.find((m) => m.name === first)!.sql("create table if not exists bench_writes (x int)");
    for (let i = 0; i < SWITCH_TRIALS; i++) {
      for (const check of CHECKERS) {
        const from = (await cluster.waitLeader())!;
        await cluster.waitReplicas();
        const to = cluster.members.find((m) => m.name !== from)!.name;
        await hx.waitForServer(check, from, "UP", 30_000);
        await hx.waitForServer(check, to, "DOWN", 30_000);
        let switched = false;
        const gap = writeGap(hx.ports[check]!, () => switched);
        await Bun.sleep(500);
        await cluster.ctl("switchover", "--leader", from, "--candidate", to, "--force");
        await cluster.waitLeader(to);
        await hx.waitForServer(check, to, "UP", 30_000);
        switched = true;
        gaps[check].push(await gap);
        progress(
          `switchover ${from} -> ${to}, haproxy checking ${check}: writes stopped for ${fmtMs(gaps[check].at(-1)!)}`,
        );
      }
    }
  } finally {
    await router.stop();
    await hx.stop();
  }
  return { patroni: spread(gaps.patroni), replstatus: spread(gaps.replstatus), route: spread(gaps.route) };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const cluster = await startPatroni({ etcd });
  const rs: Responder[] = [];
  try {
    for (const m of cluster.members) {
      const args = ["--patroni", m.configFile, "--listen", "raw:127.0.0.1:0", "--listen", "http:127.0.0.1:0"];
      rs.push(await startResponder(args, m.env));
    }
    const r0 = rs[0]!;
    await waitFor("replstatus on m0 to say MASTER", async () => (await answer(r0.ports[0]!)) === "MASTER");
    const result = {
      checksPerS: await measureRates(cluster, rs),
      leaderKeyToAnswerMs: await measureLeaderKey(etcd, cluster, r0),
      killToNot200Ms: await measureKill(cluster, r0),
      switchoverWriteGapMs: await measureSwitchovers(cluster, rs),
    };
    report(result);
    if (jsonFile) writeFileSync(jsonFile, JSON.stringify(result, null, 2) + "\n");
  } finally {
    for (const r of rs) await r[Symbol.asyncDispose]();
    await cluster.stop();
    await etcd.stop();
  }
}

function report(r: {
  checksPerS: { patroni: Spread; replstatus: Spread };
  leaderKeyToAnswerMs: Spread;
  killToNot200Ms: { patroni: Spread; replstatus: Spread };
  switchoverWriteGapMs: { patroni: Spread; replstatus: Spread; route: Spread };
}): void {
  const ratio = (a: Spread, b: Spread) => `${(a.median / b.median).toFixed(1)}x`;
  const rows = [
    ["figure", "replstatus", "Patroni REST", "ratio", "target"],
    [
      `OPTIONS /primary checks/s (c=${CONCURRENCY})`,
      fmtSpread(r.checksPerS.replstatus, fmtRate),
      fmtSpread(r.checksPerS.patroni, fmtRate),
      ratio(r.checksPerS.replstatus, r.checksPerS.patroni),
      `>= 20x: ${r.checksPerS.replstatus.median >= 20 * r.checksPerS.patroni.median ? "met" : "NOT MET"}`,
    ],
    [
      "leader key change -> raw answer change",
      fmtSpread(r.leaderKeyToAnswerMs, fmtMs),
      "",
      "",
      `<= 50 ms: ${r.leaderKeyToAnswerMs.median <= 50 ? "met" : "NOT MET"}`,
    ],
    [
      "kill -9 postmaster -> /primary not 200",
      fmtSpread(r.killToNot200Ms.replstatus, fmtMs),
      r.killToNot200Ms.patroni.runs.every((v) => v === Number.POSITIVE_INFINITY)
        ? `200 throughout ${KILL_WATCH_MS / 1000} s`
        : fmtSpread(r.killToNot200Ms.patroni, fmtMs),
      "",
      `<= 200 ms: ${r.killToNot200Ms.replstatus.median <= 200 ? "met" : "NOT MET"}`,
    ],
    [
      "write gap through haproxy, switchover",
      fmtSpread(r.switchoverWriteGapMs.replstatus, fmtMs),
      fmtSpread(r.switchoverWriteGapMs.patroni, fmtMs),
      ratio(r.switchoverWriteGapMs.replstatus, r.switchoverWriteGapMs.patroni),
      "",
    ],
    [
      "same, with replstatus route",
      fmtSpread(r.switchoverWriteGapMs.route, fmtMs),
      fmtSpread(r.switchoverWriteGapMs.patroni, fmtMs),
      ratio(r.switchoverWriteGapMs.route, r.switchoverWriteGapMs.patroni),
      "",
    ],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "));
}

await main();
