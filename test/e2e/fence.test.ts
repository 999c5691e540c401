// The split-brain guard end to end: real PostgreSQL nodes, the real CLI with
// http listeners naming each other as peers, real haproxy with the original's
// README layout (s1 preferred, s2 backup, tcp-check expect string MASTER). Peers
// that cannot vouch for anything (down, slow, garbage, another cluster) are
// small local servers started here: they stand in for the peer, not for
// replstatus or PostgreSQL.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { landsOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import {
  freePort,
  rebuildAsStandby,
  startPair,
  startPrimary,
  waitFor,
  type PgPair,
  type PgPrimary,
} from "../../src/demo/pg.ts";
import { answer, probe, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getStatus, scrape } from "../kit/http.ts";
import { withSlack } from "../kit/bounds.ts";

useTimeouts();
const PEER_INTERVAL_MS = 100;
const PEER_TIMEOUT_MS = 300;
const INTER_MS = 100;
/** What `pg_ctl promote` takes to end recovery on a busy machine. */
const PROMOTE_MS = 3000;

const peerArgs = (...urls: string[]) => [
  ...urls.flatMap((u) => ["--peer", u]),
  "--peer-interval",
  `${PEER_INTERVAL_MS}ms`,
  "--peer-timeout",
  `${PEER_TIMEOUT_MS}ms`,
];

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("failover with the old primary left running, then restarted as a primary, then rebuilt", () => {
  let pg: PgPair;
  let s1: Responder;
  let s2: Responder;
  let hx: Haproxy;
  let http1: number;
  let http2: number;

  beforeAll(async () => {
    pg = await startPair();
    http1 = await freePort();
    http2 = await freePort();
    const listen = (http: number) => ["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${http}`];
    s1 = await startResponder(
      [...listen(http1), "--listen", "agent:127.0.0.1:0", ...peerArgs(`http://127.0.0.1:${http2}`)],
      pg.primary.env,
    );
    s2 = await startResponder([...listen(http2), ...peerArgs(`http://127.0.0.1:${http1}`)], pg.standby.env);
    await waitForAnswer(s1.ports[0]!, "MASTER");
    await waitForAnswer(s2.ports[0]!, "STANDBY");
    hx = await startHaproxy({
      defaults: [`default-server inter ${INTER_MS}ms fastinter ${INTER_MS}ms downinter ${INTER_MS}ms rise 2 fall 2`],
      proxies: {
        // bgw_replstatus's README configuration: s1 preferred, s2 a backup.
        pgcluster: [
          "option tcp-check",
          "tcp-check expect string MASTER",
          `server s1 127.0.0.1:${pg.primary.port} check port ${s1.ports[0]}`,
          `server s2 127.0.0.1:${pg.standby.port} check port ${s2.ports[0]} backup`,
        ],
      },
    });
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await hx?.stop();
    await s1?.[Symbol.asyncDispose]();
    await s2?.[Symbol.asyncDispose]();
    await pg?.stop();
  }, HOOK_TIMEOUT_MS);

  test("both sides see each other: timelines, one system_identifier, the guard active", async () => {
    await waitFor("both guards active", async () => (await getStatus(http1)).guard === "active");
    await waitFor("both guards active", async () => (await getStatus(http2)).guard === "active");
    // A peer can answer before its own first poll (role null): wait for the roles too.
    await waitFor("s1 to see s2's role", async () => (await getStatus(http1)).peers[0].role === "standby");
    const systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
    expect(await getStatus(http1)).toMatchObject({
      role: "primary",
      state: "primary",
      timeline: 1,
      system_identifier: systemId,
      fenced_by: null,
      peers: [{ url: `http://127.0.0.1:${http2}`, result: "ok", role: "standby", timeline: 1 }],
    });
    expect(await getStatus(http2)).toMatchObject({ role: "standby", timeline: 1, system_identifier: systemId });
    await hx.waitForServer("pgcluster", "s1", "UP");
    expect(await landsOn(hx.ports.pgcluster!)).toEqual({ inRecovery: false, port: pg.primary.port });
  });

  test("promote s2 and leave s1 running: s1 FENCED, s2 MASTER, haproxy never goes back to s1", async () => {
    // Every answer of s1 and every haproxy state, through the failover and a
    // restart of the old primary, to show neither ever says s1 again.
    const answers: string[] = [];
    const states: string[] = [];
    let sampling = true;
    const sampleAnswers = (async () => {
      while (sampling) {
        answers.push((await probe(s1.ports[0]!)).text);
        await Bun.sleep(5);
      }
    })();
    const sampleHaproxy = (async () => {
      while (sampling) {
        states.push((await hx.servers())["pgcluster/s1"]!.status);
        await Bun.sleep(INTER_MS / 4);
      }
    })();

    try {
      const t0 = performance.now();
      await pg.standby.promote();
      await waitForAnswer(s1.ports[0]!, "FENCED", 20_000);
      const fencedMs = performance.now() - t0;
      await waitForAnswer(s2.ports[0]!, "MASTER");
      // The promotion itself, then one peer interval, one poll and one request.
      expect(fencedMs).toBeLessThan(withSlack(PROMOTE_MS + PEER_INTERVAL_MS + 50));
      if (process.env.REPLSTATUS_TEST_VERBOSE) console.log({ fencedMs });
      const newTimeline = Number(await pg.standby.sql("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"));
      expect(newTimeline).toBe(2);
      expect(s1.log).toContain(
        `info: primary -> fenced (peer http://127.0.0.1:${http2} is primary on timeline 2, we are on 1)\n`,
      );
      expect(await pg.primary.sql("select pg_is_in_recovery()")).toBe("f");

      // Every protocol says so: raw, agent, http (503 on the primary paths, 200 on /health).
      expect(await answer(s1.ports[2]!)).toBe("down ready #fenced\n");
      const primary = await fetch(`http://127.0.0.1:${http1}/primary`);
      expect(primary.status).toBe(503);
      expect(await primary.json()).toEqual({
        role: "primary",
        state: "fenced",
        reason: "a peer of the same cluster is primary on a higher timeline, see /status",
      });
      expect((await fetch(`http://127.0.0.1:${http1}/read-only`)).status).toBe(503);
      expect((await fetch(`http://127.0.0.1:${http1}/health`)).status).toBe(200);
      expect(await getStatus(http1)).toMatchObject({
        role: "primary",
        state: "fenced",
        timeline: 1,
        guard: "active",
        fenced_by: { peer: `http://127.0.0.1:${http2}`, timeline: 2 },
      });
      // The newest primary is never fenced by the older one, which it sees as primary on timeline 1.
      await waitFor("s2 to see s1 fenced", async () => (await getStatus(http2)).peers[0].state === "fenced");
      expect(await getStatus(http2)).toMatchObject({
        state: "primary",
        timeline: 2,
        fenced_by: null,
        peers: [{ role: "primary", state: "fenced", timeline: 1 }],
      });
      const metrics = (await scrape(http1)).text;
      expect(metrics).toContain('replstatus_state{state="fenced"} 1\n');
      expect(metrics).toContain("replstatus_guard_active 1\n");

      await hx.waitForServer("pgcluster", "s1", "DOWN");
      await hx.waitForServer("pgcluster", "s2", "UP");
      expect(await landsOn(hx.ports.pgcluster!)).toEqual({ inRecovery: false, port: pg.standby.port });

      // The old primary goes down and comes back as a primary: fenced from its first poll.
      await pg.primary.stop("fast");
      await s1.waitForLog(/fenced -> unknown/);
      await pg.primary.start();
      await s1.waitForLog(/unknown -> fenced \(peer [^)]* is primary on timeline 2, we are on 1\)/);
      expect(await answer(s1.ports[0]!)).toBe("FENCED");
      expect(await landsOn(hx.ports.pgcluster!)).toEqual({ inRecovery: false, port: pg.standby.port });

      // Some more rounds of checks, then the verdict on the whole history.
      const seen = states.length;
      await waitFor("more haproxy samples", () => states.length >= seen + 20);
    } finally {
      sampling = false;
      await Promise.allSettled([sampleAnswers, sampleHaproxy]);
    }
    const firstFenced = answers.indexOf("FENCED");
    expect(firstFenced).toBeGreaterThanOrEqual(0);
    expect(answers.slice(firstFenced).filter((a) => a === "MASTER")).toEqual([]);
    const firstDown = states.indexOf("DOWN");
    expect(firstDown).toBeGreaterThanOrEqual(0);
    expect(states.slice(firstDown).filter((s) => s.startsWith("UP"))).toEqual([]);
    expect(s1.log).not.toMatch(/fenced -> primary/);
  });

  test("rebuild s1 as a standby of s2: STANDBY on timeline 2, no longer fenced", async () => {
    await rebuildAsStandby(pg.primary, pg.standby);
    await waitForAnswer(s1.ports[0]!, "STANDBY", 30_000);
    expect(await getStatus(http1)).toMatchObject({ role: "standby", state: "standby", timeline: 2, fenced_by: null });
    expect(await answer(s2.ports[0]!)).toBe("MASTER");
    expect(await landsOn(hx.ports.pgcluster!)).toEqual({ inRecovery: false, port: pg.standby.port });
  });
});

/** A stand-in peer whose answer the test sets. */
type PeerMode =
  { kind: "json"; body: Record<string, unknown> } | { kind: "hang" } | { kind: "text"; status: number; text: string };

describe("peers that cannot vouch: the node keeps its own view and says why", () => {
  let pg: PgPrimary;
  let node: Responder;
  let systemId: string;
  let peerPort: number;
  let peerUrl: string;
  let mode: PeerMode;
  let peer: ReturnType<typeof Bun.serve> | undefined;
  let httpPort: number;

  const servePeer = () => {
    peer = Bun.serve({
      hostname: "127.0.0.1",
      port: peerPort,
      fetch() {
        if (mode.kind === "hang") return new Promise<Response>(() => {});
        if (mode.kind === "text") return new Response(mode.text, { status: mode.status });
        return Response.json(mode.body);
      },
    });
  };
  const primaryOn = (timeline: number, id = systemId) => ({
    kind: "json" as const,
    body: { role: "primary", state: "primary", timeline, system_identifier: id },
  });

  beforeAll(async () => {
    pg = await startPrimary();
    systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
    peerPort = await freePort();
    peerUrl = `http://127.0.0.1:${peerPort}`;
    mode = primaryOn(1);
    servePeer();
    node = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0", ...peerArgs(peerUrl)],
      pg.primary.env,
    );
    httpPort = node.ports[1]!;
    await waitForAnswer(node.ports[0]!, "MASTER");
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await peer?.stop(true);
    await node?.[Symbol.asyncDispose]();
    await pg?.stop();
  }, HOOK_TIMEOUT_MS);

  // Each case starts fenced by a primary on timeline 2, then the peer turns
  // into the case: the node is MASTER again within one interval and one
  // timeout (plus slack), and says why in its log, /status and metrics.
  const cases: [string, (id: string) => PeerMode | "down", string, string | undefined, string, string][] = [
    [
      "slow (never answers)",
      () => ({ kind: "hang" }),
      "peer PEER unreachable (no answer within 300ms), no reachable peer is primary on a higher timeline",
      "warning: peer PEER unreachable: no answer within 300ms; it does not count",
      "timeout",
      "no peer reachable",
    ],
    [
      "down",
      () => "down",
      "peer PEER unreachable (connection refused), no reachable peer is primary on a higher timeline",
      "warning: peer PEER unreachable: connection refused; it does not count",
      "refused",
      "no peer reachable",
    ],
    [
      "answering garbage",
      () => ({ kind: "text", status: 200, text: "hello" }),
      "peer PEER answered garbage (not JSON), no reachable peer is primary on a higher timeline",
      "warning: peer PEER answered garbage: not JSON; it does not count",
      "bad_answer",
      "no peer reachable",
    ],
    [
      "answering an error page",
      () => ({ kind: "text", status: 404, text: "not found" }),
      "peer PEER answered garbage (HTTP 404 from /status), no reachable peer is primary on a higher timeline",
      "warning: peer PEER answered garbage: HTTP 404 from /status; it does not count",
      "bad_answer",
      "no peer reachable",
    ],
    [
      "answering JSON that is not a replstatus /status",
      () => ({ kind: "json", body: { role: "primary", state: "running", timeline: 9 } }),
      "peer PEER answered garbage (no state), no reachable peer is primary on a higher timeline",
      "warning: peer PEER answered garbage: no state; it does not count",
      "bad_answer",
      "no peer reachable",
    ],
    [
      "of another cluster, primary on a higher timeline",
      () => primaryOn(9, "12345"),
      "peer PEER belongs to another cluster (system_identifier 12345 there, ID here), no reachable peer is primary on a higher timeline",
      "warning: peer PEER belongs to another cluster (system_identifier 12345 there, ID here): ignored",
      "other_cluster",
      "no peer reachable",
    ],
    [
      "primary on the same timeline",
      () => primaryOn(1),
      "peer PEER is primary on timeline 1, we are on 1",
      undefined,
      "ok",
      "active",
    ],
    [
      "a standby on a higher timeline",
      (id) => ({ kind: "json", body: { role: "standby", state: "standby", timeline: 2, system_identifier: id } }),
      "peer PEER is standby on timeline 2, we are on 1",
      undefined,
      "ok",
      "active",
    ],
    [
      "without a known role (its PostgreSQL down)",
      () => ({ kind: "json", body: { role: null, state: "unknown", timeline: null, system_identifier: null } }),
      "peer PEER is unknown, we are on 1",
      undefined,
      "ok",
      "active",
    ],
  ];
  test.each(cases)("peer %s", async (_, next, change, warning, result, guard) => {
    const fill = (line: string) => line.replaceAll("PEER", peerUrl).replaceAll("ID", systemId);
    mode = primaryOn(2);
    await waitForAnswer(node.ports[0]!, "FENCED");
    const t0 = performance.now();
    const turn = next(systemId);
    if (turn === "down") await peer!.stop(true);
    else mode = turn;
    try {
      await waitForAnswer(node.ports[0]!, "MASTER");
      expect(performance.now() - t0).toBeLessThan(withSlack(PEER_INTERVAL_MS + PEER_TIMEOUT_MS));
      expect(node.log).toContain(`info: fenced -> primary (${fill(change)})\n`);
      if (warning) await node.waitForLog(new RegExp(escape(fill(warning)) + "\n"));
      expect(await getStatus(httpPort)).toMatchObject({
        state: "primary",
        guard,
        fenced_by: null,
        peers: [{ url: peerUrl, result }],
      });
      const metrics = (await scrape(httpPort)).text;
      expect(metrics).toContain(`replstatus_guard_active ${guard === "active" ? 1 : 0}\n`);
      expect(metrics).toContain(`replstatus_peer_up{peer="${peerUrl}"} ${result === "ok" ? 1 : 0}\n`);
      expect(metrics).toMatch(
        new RegExp(`replstatus_peer_requests_total\\{peer="${escape(peerUrl)}",result="${result}"\\} [1-9]`),
      );
    } finally {
      // The cases after this one need the peer back, also when this one failed.
      if (turn === "down") servePeer();
    }
  });

  test("a warning is logged once per change of reason, not per request", async () => {
    mode = primaryOn(9, "777");
    const warning = `warning: peer ${peerUrl} belongs to another cluster (system_identifier 777 there, ${systemId} here): ignored\n`;
    await node.waitForLog(new RegExp(escape(warning)));
    const count = () => node.log.split(warning).length - 1;
    const requests = async () => {
      const text = (await scrape(httpPort)).text;
      return Number(new RegExp(`result="other_cluster"\\} (\\d+)`).exec(text)![1]);
    };
    const before = await requests();
    await waitFor("five more requests", async () => (await requests()) >= before + 5);
    expect(count()).toBe(1);
    expect(await answer(node.ports[0]!)).toBe("MASTER");
  });

  test("a real second cluster's primary as the only peer: ignored, the node answers from its own view", async () => {
    await using other = await startPrimary();
    const otherId = await other.primary.sql("select system_identifier from pg_control_system()");
    await using onOther = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0"],
      other.primary.env,
    );
    await waitForAnswer(onOther.ports[0]!, "MASTER");
    await using mine = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0", ...peerArgs(`http://127.0.0.1:${onOther.ports[1]}`)],
      pg.primary.env,
    );
    await mine.waitForLog(/belongs to another cluster/);
    expect(mine.log).toContain(
      `warning: peer http://127.0.0.1:${onOther.ports[1]} belongs to another cluster (system_identifier ${otherId} there, ${systemId} here): ignored\n`,
    );
    expect(await answer(mine.ports[0]!)).toBe("MASTER");
    expect((await getStatus(mine.ports[1]!)).guard).toBe("no peer reachable");
  });
});
