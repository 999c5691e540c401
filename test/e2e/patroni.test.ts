// The Patroni mode against the real thing: a three-member Patroni 3.0.2
// cluster on a real etcd, a replstatus beside each member started with
// nothing but `--patroni patroni.yml` (and PG* for its PostgreSQL).
//
// The differential test: in each situation, for every path x member, the
// status code replstatus answers equals the one Patroni's own REST API
// answers at the same moment; the documented stricter cases are asserted as
// such. Both are asked back to back, and the comparison is repeated until it
// holds (under a deadline): Patroni's own view moves on its loop_wait, so a
// single snapshot right after a change would compare two different moments.
//
// Members: m0 (the first leader), m1 (tag dc=east), m2 (noloadbalance: true).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { landsOn, startHaproxy } from "../../src/demo/haproxy.ts";
import { answer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { openStream } from "../../src/route/stream.ts";
import { waitFor } from "../../src/demo/proc.ts";
import { startEtcd, type Etcd } from "../kit/etcd.ts";
import { httpGet, startPatroni, tails, type PatroniCluster } from "../kit/patroni.ts";
import { LAB_HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";

useTimeouts(240_000);
/** How long Patroni and replstatus get to agree after a change. */
const SETTLE_MS = 30_000;

const PATHS = [
  "GET /",
  "GET /primary",
  "GET /master",
  "GET /read-write",
  "GET /leader",
  "GET /standby-leader",
  "GET /replica",
  "GET /replica?lag=1MB",
  "GET /replica?lag=16MB",
  "GET /replica?tag_dc=east",
  "GET /replica?tag_dc=west",
  "GET /read-only",
  "GET /sync",
  "GET /synchronous",
  "GET /async",
  "GET /asynchronous",
  "GET /read-only-sync",
  "GET /health",
  "GET /liveness",
  "GET /readiness",
  "OPTIONS /primary",
  "OPTIONS /replica",
  "HEAD /replica",
] as const;
type Path = (typeof PATHS)[number];

let etcd: Etcd;
let cluster: PatroniCluster;
const responders = new Map<string, Responder>();

beforeAll(async () => {
  etcd = await startEtcd();
  cluster = await startPatroni({
    etcd,
    members: 3,
    tags: { m1: { dc: "east" }, m2: { noloadbalance: true, nosync: true, dc: "west" } },
  });
  for (const m of cluster.members) {
    const args = ["--patroni", m.configFile, "--listen", "raw:127.0.0.1:0", "--listen", "http:127.0.0.1:0"];
    // m2's finds its PostgreSQL from patroni.yml alone (socket dir and port); PGUSER, since the tests run as root.
    responders.set(m.name, await startResponder(args, m.name === "m2" ? { PGUSER: m.env.PGUSER! } : m.env));
  }
}, LAB_HOOK_TIMEOUT_MS);

afterAll(async () => {
  for (const r of responders.values()) await r[Symbol.asyncDispose]();
  await cluster?.stop();
  await etcd?.stop();
}, LAB_HOOK_TIMEOUT_MS);

const member = (name: string) => cluster.members.find((m) => m.name === name)!;
const rs = (name: string) => responders.get(name)!;

async function ask(port: number, path: Path | `GET /replica?${string}`): Promise<number> {
  const [method, target] = path.split(" ") as [string, string];
  return (await httpGet(port, target, method, 5000)).status;
}

/**
 * Where replstatus is stricter than Patroni: member -> path -> [Patroni's
 * code, replstatus's], accepted besides equality (Patroni moves there too, a
 * loop_wait later).
 */
type Stricter = Record<string, Partial<Record<Path, [number, number]>>>;

/** Compares every path on every member until they agree (or the documented stricter pair holds). */
async function differential(situation: string, stricter: Stricter = {}, members = cluster.members): Promise<void> {
  let diffs: string[] = [];
  try {
    await waitFor(
      `replstatus and Patroni to agree (${situation})`,
      async () => {
        diffs = [];
        for (const m of members) {
          for (const path of PATHS) {
            const patroni = await ask(m.restPort, path);
            const ours = await ask(rs(m.name).ports[1]!, path);
            const want = stricter[m.name]?.[path];
            const ok = patroni === ours || (want !== undefined && patroni === want[0] && ours === want[1]);
            if (!ok)
              diffs.push(`${m.name} ${path}: patroni ${patroni}, replstatus ${ours}${want ? ` (want ${want})` : ""}`);
          }
        }
        return diffs.length === 0;
      },
      SETTLE_MS,
      200,
    );
  } catch (err) {
    const logs = [...responders].map(([n, r]) => `--- replstatus ${n} ---\n${r.log.split("\n").slice(-8).join("\n")}`);
    throw new Error(`${(err as Error).message}\n${diffs.join("\n")}\n${logs.join("\n")}\n${tails(cluster.members, 8)}`);
  }
}

async function raw(name: string): Promise<string> {
  return await answer(rs(name).ports[0]!);
}

async function waitRaw(name: string, want: string): Promise<void> {
  let last = "";
  await waitFor(`${name} to answer ${want}`, async () => (last = await raw(name)) === want, SETTLE_MS, 20).catch(
    (err: Error) => {
      throw new Error(`${err.message} (last ${last})\n${rs(name).log}`);
    },
  );
}

describe("differential: replstatus answers as Patroni's REST API does", () => {
  test("healthy: m0 leads, m1 and m2 replicate", async () => {
    await differential("healthy");
    expect([await raw("m0"), await raw("m1"), await raw("m2")]).toEqual(["MASTER", "STANDBY", "STANDBY"]);
    // m2's noloadbalance tag: Patroni's /replica says 503, and so does replstatus.
    expect(await ask(rs("m2").ports[1]!, "GET /replica")).toBe(503);
    expect(await ask(rs("m1").ports[1]!, "GET /replica")).toBe(200);
  });

  test("a replstatus started beside the leader goes UNKNOWN -> MASTER, never through FENCED", async () => {
    await using fresh = await startResponder(
      ["--patroni", member("m0").configFile, "--listen", "raw:127.0.0.1:0"],
      member("m0").env,
    );
    const seen = new Set<string>();
    await waitFor(
      "MASTER",
      async () => {
        const a = await answer(fresh.ports[0]!);
        seen.add(a);
        return a === "MASTER";
      },
      SETTLE_MS,
      1,
    );
    expect(seen.has("FENCED")).toBe(false);
  });

  test("a primary whose member does not hold the leader key is FENCED", async () => {
    // Another replstatus beside m0's PostgreSQL that calls itself m1.
    await using impostor = await startResponder(
      ["--patroni", member("m1").configFile, "--listen", "raw:127.0.0.1:0", "--listen", "http:127.0.0.1:0"],
      member("m0").env,
    );
    await waitFor("FENCED", async () => (await answer(impostor.ports[0]!)) === "FENCED", SETTLE_MS, 20);
    expect(await ask(impostor.ports[1]!, "GET /primary")).toBe(503);
    expect(await ask(impostor.ports[1]!, "GET /health")).toBe(200);
    const status = JSON.parse((await httpGet(impostor.ports[1]!, "/status")).body);
    expect(status.patroni).toMatchObject({ member: "m1", leader: "m0", fenced_by: "member m0 holds the leader key" });
  });

  test("after patronictl switchover to m1", async () => {
    // GET /events on m2, a replica throughout: the leader key's change is an event of its own, the view beside it.
    const leaders: unknown[] = [];
    const stream = openStream({
      url: `http://127.0.0.1:${rs("m2").ports[1]}`,
      tls: undefined,
      silenceMs: 5000,
      onEvent: (e) => void leaders.push((e.patroni as { leader?: unknown } | undefined)?.leader),
      onState: () => {},
    });
    try {
      await waitFor("m2's first event", () => leaders.length > 0, SETTLE_MS);
      expect(leaders[0]).toBe("m0");
      await cluster.ctl("switchover", "--leader", "m0", "--candidate", "m1", "--force");
      await cluster.waitLeader("m1");
      await waitFor("an event on m2 naming m1 the leader", () => leaders.includes("m1"), SETTLE_MS);
    } finally {
      stream.close();
    }
    await cluster.waitReplicas();
    await waitRaw("m1", "MASTER");
    await differential("after switchover");
    expect(await raw("m0")).toBe("STANDBY");
    // /history and /cluster in Patroni's shape, from the store.
    const json = async (port: number, path: string) => JSON.parse((await httpGet(port, path)).body);
    await waitFor(
      "the same /history",
      async () => {
        const [theirs, ours] = [
          await json(member("m2").restPort, "/history"),
          await json(rs("m2").ports[1]!, "/history"),
        ];
        return theirs.length > 0 && Bun.deepEquals(theirs, ours);
      },
      SETTLE_MS,
      200,
    );
    const shape = (c: { members: Record<string, unknown>[] }) =>
      c.members.map(({ name, role, state, host, port, timeline, api_url, tags }) => ({
        name,
        role,
        state,
        host,
        port,
        timeline,
        api_url,
        tags,
      }));
    await waitFor(
      "the same /cluster",
      async () => {
        const theirs = shape(await json(member("m2").restPort, "/cluster"));
        return Bun.deepEquals(theirs, shape(await json(rs("m2").ports[1]!, "/cluster")));
      },
      SETTLE_MS,
      200,
    );
  });

  test("after patronictl failover to m0", async () => {
    await cluster.ctl("failover", "--candidate", "m0", "--force");
    await cluster.waitLeader("m0");
    await cluster.waitReplicas();
    await waitRaw("m0", "MASTER");
    await differential("after failover");
  });

  test("synchronous_mode: true", async () => {
    await cluster.ctl("edit-config", "--set", "synchronous_mode=true", "--force");
    try {
      await waitFor(
        "a sync standby in the sync key",
        async () => {
          const sync = await etcd.get(`${cluster.namespace}${cluster.scope}/sync`);
          return sync !== undefined && JSON.parse(sync).sync_standby;
        },
        SETTLE_MS,
        100,
      );
      const sync = JSON.parse((await etcd.get(`${cluster.namespace}${cluster.scope}/sync`))!).sync_standby as string;
      // The sync key comes before Patroni's own /sync says 200: compare once Patroni does.
      const member = cluster.members.find((m) => m.name === sync)!;
      await waitFor(
        "Patroni's /sync on the sync standby",
        async () => (await ask(member.restPort, "GET /sync")) === 200,
        SETTLE_MS,
        100,
      );
      await differential("synchronous_mode");
      expect(await ask(rs(sync).ports[1]!, "GET /sync")).toBe(200);
    } finally {
      // Also on failure: a switchover later on would be refused in synchronous mode.
      await cluster.ctl("edit-config", "--set", "synchronous_mode=false", "--force");
    }
    await differential("synchronous_mode off again");
  });

  // Patroni 3.0.2 resumes a paused replay on every loop of a replica
  // (handle_parameter_change, PostgreSQL 14+) unless the cluster is paused.
  const HELD = "GET /replica?lag=1MB&rejoin_lag=512kB&rejoin_after=3s";
  test("a replica with replay paused past ?lag=1MB (under patronictl pause)", async () => {
    const m1 = member("m1");
    await cluster.ctl("pause", "--wait");
    await m1.sql("select pg_wal_replay_pause()");
    try {
      // About 5 MB of WAL that m1 receives but does not replay.
      await member("m0").sql("create table lagging as select repeat('x', 1000) as x from generate_series(1, 5000)");
      await waitFor(
        "Patroni's /replica?lag=1MB on m1 to say 503",
        async () => (await ask(m1.restPort, "GET /replica?lag=1MB")) === 503,
        SETTLE_MS,
        100,
      );
      await differential("replay paused");
      expect(await ask(rs("m1").ports[1]!, "GET /replica?lag=1MB")).toBe(503);
      expect(await ask(rs("m1").ports[1]!, "GET /replica?lag=16MB")).toBe(200);
      // Ours, which Patroni ignores: a hold before rejoining.
      expect(await ask(m1.restPort, HELD)).toBe(503);
      expect(await ask(rs("m1").ports[1]!, HELD)).toBe(503);
      await m1.sql("select pg_wal_replay_resume()");
      await waitFor(
        "Patroni's /replica?lag=1MB&... on m1 to say 200 (it ignores the hold)",
        async () => {
          return (await ask(m1.restPort, HELD)) === 200;
        },
        SETTLE_MS,
        100,
      );
      const caughtUp = performance.now();
      expect(await ask(rs("m1").ports[1]!, HELD)).toBe(503);
      await waitFor(
        "replstatus's to say 200 after the hold",
        async () => (await ask(rs("m1").ports[1]!, HELD)) === 200,
        10_000,
        100,
      );
      expect(performance.now() - caughtUp).toBeGreaterThan(1000);
    } finally {
      await m1.sql("select pg_wal_replay_resume()");
      await member("m0").sql("drop table lagging");
      await cluster.ctl("resume", "--wait");
    }
  });

  // Patroni 3.0.2 under pause removes the leader key once its loop sees
  // PostgreSQL down ("PAUSE: removed leader lock because postgres is not
  // running"); until that loop, it answers /primary from the key alone.
  test("PostgreSQL stopped under a paused Patroni", async () => {
    await cluster.ctl("pause", "--wait");
    try {
      await member("m0").stopPostgres();
      // replstatus stops saying primary within its poll bound, whatever Patroni's next loop says.
      await waitFor(
        "replstatus's /primary on m0 to say 503",
        async () => (await ask(rs("m0").ports[1]!, "GET /primary")) === 503,
        2000,
        5,
      );
      await waitRaw("m0", "UNKNOWN");
      const onLeader: Partial<Record<Path, [number, number]>> = {};
      for (const p of [
        "GET /",
        "GET /primary",
        "GET /master",
        "GET /read-write",
        "GET /leader",
        "GET /read-only",
        "GET /read-only-sync",
        "GET /readiness",
        "GET /health",
        "OPTIONS /primary",
      ] as const) {
        onLeader[p] = [200, 503];
      }
      await differential("PostgreSQL stopped, paused", { m0: onLeader });
    } finally {
      await member("m0").startPostgres();
      await cluster.ctl("resume", "--wait");
    }
    // Any member may lead after the resume: the key was free while m0's PostgreSQL was down.
    await cluster.waitLeader();
    await cluster.waitReplicas(150_000);
    await differential("resumed");
  });

  test("etcd stopped: both stop saying primary once the ttl is over, and agree", async () => {
    await etcd.pause();
    try {
      // Patroni demotes m0 (it cannot renew the key); replstatus stops saying MASTER by then.
      await waitFor(
        "no MASTER anywhere",
        async () => {
          const answers = await Promise.all(cluster.members.map((m) => raw(m.name)));
          return !answers.includes("MASTER");
        },
        SETTLE_MS,
        50,
      );
      await differential("etcd stopped");
      const status = JSON.parse((await httpGet(rs("m1").ports[1]!, "/status")).body);
      expect(status.patroni.etcd).toBe("unreachable");
      expect(status.patroni.view).toBe("none");
    } finally {
      await etcd.resume();
    }
    await cluster.waitLeader();
    await cluster.waitReplicas();
  });
});

describe("haproxy with Patroni's published check lines, pointed at replstatus", () => {
  test("follows a switchover", async () => {
    const leader = (await cluster.leader())!;
    const next = cluster.members.find((m) => m.name !== leader && m.name !== "m2")!.name;
    await using hx = await startHaproxy({
      defaults: [
        "default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2 on-marked-down shutdown-sessions",
      ],
      proxies: {
        primary: [
          "option httpchk OPTIONS /primary",
          "http-check expect status 200",
          ...cluster.members.map((m) => `server ${m.name} 127.0.0.1:${m.pgPort} check port ${rs(m.name).ports[1]}`),
        ],
        replicas: [
          "option httpchk OPTIONS /replica?lag=16MB",
          "http-check expect status 200",
          ...cluster.members.map((m) => `server ${m.name} 127.0.0.1:${m.pgPort} check port ${rs(m.name).ports[1]}`),
        ],
      },
    });
    await hx.waitForServer("primary", leader, "UP");
    expect(await landsOn(hx.ports.primary!)).toEqual({ inRecovery: false, port: member(leader).pgPort });
    await hx.waitForServer("replicas", next, "UP");
    // m2 carries noloadbalance: out of the read pool (haproxy starts every server UP, then checks).
    await hx.waitForServer("replicas", "m2", "DOWN");

    await cluster.ctl("switchover", "--leader", leader, "--candidate", next, "--force");
    await cluster.waitLeader(next);
    await hx.waitForServer("primary", next, "UP", SETTLE_MS);
    await hx.waitForServer("primary", leader, "DOWN", SETTLE_MS);
    expect(await landsOn(hx.ports.primary!)).toEqual({ inRecovery: false, port: member(next).pgPort });
    if (leader !== "m2") await hx.waitForServer("replicas", leader, "UP", SETTLE_MS);
    expect((await hx.servers())["replicas/m2"]!.status).toBe("DOWN");
  });
});
