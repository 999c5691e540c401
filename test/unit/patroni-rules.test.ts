// The Patroni mode's rules on their own: store keys in, view out; view and a
// local poll in, fence and status codes out. The differential test in
// test/e2e/patroni.test.ts checks the same rules against a real Patroni.
import { describe, expect, test } from "bun:test";
import {
  checkStatus,
  clusterJson,
  currentView,
  fenceReason,
  parseQuery,
  readinessStatus,
  viewOf,
  type LocalNode,
  type StoreView,
} from "../../src/cluster/patroni-rules.ts";
import type { PollFacts } from "../../src/poll/facts.ts";
import { LAGGING, PRIMARY, STANDBY, STATE_NAMES, UNKNOWN, type State } from "../../src/cell.ts";
import { standbyFacts } from "../kit/facts.ts";

const MB = 1024 * 1024;
const member = (name: string, data: object): [string, { value: string }] => [
  `members/${name}`,
  { value: JSON.stringify(data) },
];
function keys(over: Record<string, string | undefined> = {}): Map<string, { value: string }> {
  const base: [string, { value: string }][] = [
    ["config", { value: JSON.stringify({ ttl: 10, loop_wait: 1, synchronous_mode: true }) }],
    ["leader", { value: "m0" }],
    ["status", { value: JSON.stringify({ optime: 100 * MB }) }],
    ["sync", { value: JSON.stringify({ leader: "m0", sync_standby: "m1" }) }],
    ["history", { value: '[[1,25165984,"no recovery target specified","2026-11-26T13:00:00+00:00","m1"]]' }],
    member("m0", {
      state: "running",
      role: "master",
      conn_url: "postgres://127.0.0.1:5432/postgres",
      api_url: "http://127.0.0.1:8008/patroni",
      xlog_location: 100 * MB,
      timeline: 2,
    }),
    member("m1", {
      state: "running",
      role: "replica",
      conn_url: "postgres://127.0.0.1:5433/postgres",
      api_url: "http://127.0.0.1:8009/patroni",
      xlog_location: 99 * MB,
      timeline: 2,
    }),
    member("m2", { state: "running", role: "replica", api_url: "http://127.0.0.1:8010/patroni" }),
  ];
  const map = new Map(base);
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) map.delete(k);
    else map.set(k, { value: v });
  }
  return map;
}

const facts = (over: Partial<PollFacts> = {}) =>
  standbyFacts({ receiverPid: 1, replayLsn: 100 * MB, systemId: "1", timeline: 2, ...over });

function node(
  name: string,
  polled: State,
  over: Partial<PollFacts> = {},
  tags: Record<string, string> = {},
): LocalNode {
  return {
    member: name,
    polled,
    facts: polled === UNKNOWN ? undefined : facts({ inRecovery: polled !== PRIMARY, ...over }),
    tags: { values: tags, noloadbalance: tags.noloadbalance === "true" },
  };
}

const view = (over?: Record<string, string | undefined>): StoreView => viewOf(keys(over));
// null: no view (a default parameter would turn undefined into the default).
const status = (path: string, local: LocalNode, v: StoreView | null = view()) => {
  const q = path.indexOf("?");
  return checkStatus(
    q < 0 ? path : path.slice(0, q),
    parseQuery(q < 0 ? "" : path.slice(q + 1)),
    local,
    v ?? undefined,
  );
};

describe("the view of the store", () => {
  test("keys become Patroni's Cluster", () => {
    const v = view();
    expect(v.leader).toBe("m0");
    expect([...v.members.keys()]).toEqual(["m0", "m1", "m2"]);
    expect(v.syncStandbys).toEqual(["m1"]);
    expect(v.config).toMatchObject({ ttlS: 10, synchronousMode: true, failsafeMode: false, paused: false });
    expect(v.leaderOptime).toBe(100 * MB);
    expect(v.history).toHaveLength(1);
  });
  test("the legacy optime/leader key, no config key: Patroni's defaults", () => {
    const v = view({ status: undefined, "optime/leader": "4096", config: undefined });
    expect(v.leaderOptime).toBe(4096);
    expect(v.config.ttlS).toBe(30);
  });
  test("/cluster in Patroni's shape", () => {
    expect(clusterJson(view())).toEqual({
      members: [
        {
          name: "m0",
          role: "leader",
          state: "running",
          api_url: "http://127.0.0.1:8008/patroni",
          host: "127.0.0.1",
          port: 5432,
          timeline: 2,
        },
        {
          name: "m1",
          role: "sync_standby",
          state: "running",
          api_url: "http://127.0.0.1:8009/patroni",
          host: "127.0.0.1",
          port: 5433,
          timeline: 2,
          lag: MB,
        },
        { name: "m2", role: "replica", state: "running", api_url: "http://127.0.0.1:8010/patroni", lag: "unknown" },
      ],
    });
  });
});

describe("etcd out of reach", () => {
  const v = view();
  test.each([
    ["connected", { connected: true, contactAt: 1000, leaseTtlS: 5 }, 99_000, "m0", ""],
    [
      "never contacted",
      { connected: false, contactAt: 0, leaseTtlS: undefined },
      1000,
      undefined,
      "no answer from etcd yet",
    ],
    [
      "cut off within the lease",
      { connected: false, contactAt: 1000, leaseTtlS: 5 },
      5999,
      "m0",
      "etcd unreachable, within the ttl",
    ],
    [
      "cut off past the lease",
      { connected: false, contactAt: 1000, leaseTtlS: 5 },
      6000,
      undefined,
      "etcd unreachable past the leader key's lease",
    ],
    [
      "cut off past the ttl",
      { connected: false, contactAt: 1000, leaseTtlS: 5 },
      11_000,
      undefined,
      "etcd unreachable for longer than the ttl (10 s)",
    ],
  ] as const)("%s", (_, contact, now, leader, why) => {
    const r = currentView(v, contact, now);
    expect(r.view?.leader).toBe(leader);
    expect(r.why).toBe(why);
  });
  test("failsafe_mode keeps the leader past the ttl", () => {
    const fs = view({ config: JSON.stringify({ ttl: 10, failsafe_mode: true }) });
    const r = currentView(fs, { connected: false, contactAt: 1000, leaseTtlS: 5 }, 60_000);
    expect(r.view?.leader).toBe("m0");
  });
});

describe("fence (raw FENCED instead of MASTER)", () => {
  test.each([
    ["holds the key", view(), "m0", undefined],
    ["another member holds it", view(), "m1", "member m0 holds the leader key"],
    ["nobody holds it", view({ leader: undefined }), "m0", "no member holds the leader key (etcd down)"],
    ["no view", undefined, "m0", "no view of the leader key (etcd down)"],
  ] as const)("%s", (_, v, name, reason) => {
    expect(fenceReason(v, "etcd down", name)).toBe(reason);
  });
});

describe("REST status codes", () => {
  const leader = node("m0", PRIMARY);
  const sync = node("m1", STANDBY);
  const async = node("m2", STANDBY);
  const rows = [
    // path, node, code
    ["/", leader, 200],
    ["/primary", leader, 200],
    ["/master", leader, 200],
    ["/read-write", leader, 200],
    ["/leader", leader, 200],
    ["/standby-leader", leader, 503],
    ["/replica", leader, 503],
    ["/read-only", leader, 200],
    ["/health", leader, 200],
    ["/sync", leader, 503],
    ["/async", leader, 503],
    ["/read-only-sync", leader, 200],
    ["/standby", leader, 503],
    ["/primary?tag_dc=nowhere", leader, 200],
    ["/primary", sync, 503],
    ["/replica", sync, 200],
    ["/read-only", sync, 200],
    ["/sync", sync, 200],
    ["/synchronous", sync, 200],
    ["/async", sync, 503],
    ["/read-only-sync", sync, 200],
    ["/sync", async, 503],
    ["/async", async, 200],
    ["/asynchronous", async, 200],
    ["/read-only-sync", async, 503],
    ["/replica?lag=1MB", node("m1", STANDBY, { replayLsn: 98 * MB }), 503],
    ["/replica?lag=2MB", node("m1", STANDBY, { replayLsn: 98 * MB }), 200],
    ["/replica?lag=1MB", node("m1", STANDBY, { lagBytes: 3 * MB }), 503],
    ["/replica?lag=junk", node("m1", STANDBY, { replayLsn: 0 }), 200],
    ["/replica?lag=1MB", node("m1", LAGGING, { replayLsn: 100 * MB }), 200],
    ["/replica?replication_state=streaming", node("m1", STANDBY, { receiverStatus: "waiting" }), 503],
    ["/replica?tag_dc=east", node("m1", STANDBY, {}, { dc: "east" }), 200],
    ["/replica?tag_dc=west", node("m1", STANDBY, {}, { dc: "east" }), 503],
    ["/replica?tag_rack=1", node("m1", STANDBY, {}, { dc: "east" }), 503],
    ["/replica", node("m1", STANDBY, {}, { noloadbalance: "true" }), 503],
    ["/read-only", node("m1", STANDBY, {}, { noloadbalance: "true" }), 503],
    // Stricter than Patroni: the key without a fresh primary poll is not a primary.
    ["/primary", node("m0", UNKNOWN), 503],
    ["/leader", node("m0", UNKNOWN), 503],
    ["/health", node("m0", UNKNOWN), 503],
    ["/replica", node("m1", UNKNOWN), 503],
    // A primary that does not hold the key (fenced).
    ["/primary", node("m1", PRIMARY), 503],
    ["/read-only", node("m1", PRIMARY), 503],
    ["/health", node("m1", PRIMARY), 200],
  ] as const;
  const titled = rows.map(([path, local, code]) => {
    const tags = Object.entries(local.tags.values).map(([k, v]) => `${k}=${v}`);
    const title = `${path} on ${local.member} (${STATE_NAMES[local.polled]}${tags.length ? `, ${tags}` : ""})`;
    return [title, path, local, code] as const;
  });
  test.each(titled)("%s", (_, path, local, code) => {
    expect(status(path, local)).toBe(code);
  });

  test("without a view: no sync answers, a replica is still a replica", () => {
    expect(status("/sync", sync, null)).toBe(503);
    expect(status("/async", async, null)).toBe(503);
    expect(status("/replica", sync, null)).toBe(200);
    expect(status("/primary", leader, null)).toBe(503);
  });

  test.each([
    ["leader", leader, view(), "", 200],
    ["replica with a view", sync, view(), "", 200],
    ["replica without a view", sync, undefined, "", 503],
    ["replica over ?lag=", node("m1", STANDBY, { replayLsn: 0 }), view(), "lag=1MB", 503],
    ["PostgreSQL down", node("m1", UNKNOWN), view(), "", 503],
  ] as const)("/readiness: %s", (_, local, v, query, code) => {
    expect(readinessStatus(parseQuery(query), local, v)).toBe(code);
  });
});
