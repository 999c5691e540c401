// The status page's and `replstatus status`'s rules (src/ui/model.ts) as a
// table: a /status body in, the rows and the disagreements in plain words out.
import { describe, expect, test } from "bun:test";
import type { ListenAddress } from "../../src/address.ts";
import { answerWord, clusterOf, disagreements, haproxyStatus, shortId } from "../../src/ui/model.ts";
import { localStatusUrl, report } from "../../src/ui/term.ts";

const SYSID = "7312345678901234567";
type Json = Record<string, unknown>;

/** A node's own /status fields. */
function node(state: string, more: Json = {}): Json {
  const role = state === "primary" || state === "fenced" ? "primary" : state === "unknown" ? null : "standby";
  return {
    role,
    state,
    polled: state === "fenced" ? "primary" : state,
    override: "ready",
    timeline: state === "unknown" ? null : 1,
    system_identifier: state === "unknown" ? null : SYSID,
    lag_bytes: role === "standby" ? 0 : null,
    replay_age_seconds: null,
    receiver: role === "standby" ? "streaming" : null,
    changed_at: "2026-12-06T07:00:00.000Z",
    fence: null,
    transitions: [],
    ...more,
  };
}

/** A guard's entry for a peer: its result, and what it kept of the peer's /status. */
function peer(port: number, peerNode: Json | null, result = "ok", detail = "answering"): Json {
  return {
    url: `http://127.0.0.1:${port}`,
    result,
    detail,
    role: peerNode?.role ?? null,
    state: peerNode?.state ?? null,
    timeline: peerNode?.timeline ?? null,
    system_identifier: peerNode?.system_identifier ?? null,
    age_ms: 10,
    node: peerNode,
  };
}

const withPeers = (self: Json, ...peers: Json[]) => ({ ...self, guard: "active", fenced_by: null, peers });

function patroni(self: Json, member: string, leader: string | null, members: Json[], view = "live"): Json {
  return { ...self, patroni: { scope: "demo", member, etcd: "connected", view, view_reason: null, leader, members } };
}
const member = (name: string, role: string, more: Json = {}) => ({
  name,
  role,
  state: "running",
  timeline: 1,
  lag_bytes: 0,
  ...more,
});

function route(servers: [string, Json | null, Json | null, string?][]): Json {
  return {
    kind: "route",
    servers: servers.map(([server, n, haproxy, stream]) => ({
      backend: "pg",
      server,
      url: `http://${server}:5401`,
      stream: stream ?? (n ? "connected" : "lost"),
      node: n,
      haproxy,
      last_push: null,
    })),
    updated_at: "2026-12-06T07:00:00.000Z",
  };
}
const UP = { op_state: 2, admin_state: 0, status: "UP" };
const DOWN = { op_state: 0, admin_state: 0, status: "DOWN" };

describe("disagreements, in plain words", () => {
  test.each([
    ["a healthy pair", withPeers(node("primary"), peer(5402, node("standby"))), []],
    ["a single node that is a primary", node("primary"), []],
    [
      "two nodes answer MASTER",
      withPeers(node("primary"), peer(5402, node("primary", { timeline: 2 }))),
      ["two nodes answer MASTER: this and 127.0.0.1:5402"],
    ],
    [
      "a peer stopped",
      withPeers(node("primary"), peer(5402, node("standby"), "refused", "connection refused")),
      ["127.0.0.1:5402 cannot be reached: connection refused"],
    ],
    [
      "the primary put in maint",
      withPeers(node("unknown", { polled: "primary", override: "maint" }), peer(5402, node("standby"))),
      [
        "no node answers MASTER",
        "this is a primary by its own poll but answers UNKNOWN: it is in maint (replstatus maint)",
      ],
    ],
    [
      "an old primary fenced by its peer",
      withPeers(
        node("fenced", { fence: "peer http://127.0.0.1:5402 is primary on timeline 2 (here 1)" }),
        peer(5402, node("primary", { timeline: 2 })),
      ),
      [
        "this is a primary by its own poll but answers FENCED: peer http://127.0.0.1:5402 is primary on timeline 2 (here 1)",
      ],
    ],
    [
      "no master, one node unreachable",
      withPeers(node("standby"), peer(5402, null, "timeout", "no answer within 300ms")),
      ["127.0.0.1:5402 cannot be reached: no answer within 300ms", "no reachable node answers MASTER"],
    ],
    [
      "a peer of another cluster",
      withPeers(
        node("primary"),
        peer(5402, node("standby", { system_identifier: "7399999999999999999" }), "other_cluster"),
      ),
      ["the nodes belong to different clusters: this (…234567); 127.0.0.1:5402 (…999999)"],
    ],
    [
      "Patroni: the store's leader answers STANDBY",
      patroni(node("standby"), "node2", "node2", [member("node1", "master"), member("node2", "replica")]),
      ["the store's leader node2 answers STANDBY"],
    ],
    [
      "Patroni: leader and answer agree; the other member is not asked",
      patroni(node("primary"), "node1", "node1", [member("node1", "master"), member("node2", "replica")]),
      [],
    ],
    [
      "Patroni: no leader key",
      patroni(node("standby"), "node2", null, [member("node2", "replica")]),
      ["the store has no leader", "no node answers MASTER"],
    ],
    [
      "Patroni: the store cut off",
      patroni(node("standby"), "node2", "node1", [member("node1", "master"), member("node2", "replica")], "kept"),
      ["the store's view is not live: no view of the store"],
    ],
    [
      "route: haproxy routes to a fenced node",
      route([
        ["node1", node("fenced", { fence: "a peer is primary on a higher timeline" }), UP],
        ["node2", node("primary", { timeline: 2 }), DOWN],
      ]),
      [
        "node1 is a primary by its own poll but answers FENCED: a peer is primary on a higher timeline",
        "haproxy routes to node1, which is FENCED",
      ],
    ],
    [
      "route: haproxy routes to two servers",
      route([
        ["node1", node("primary"), UP],
        ["node2", node("standby"), UP],
      ]),
      ["haproxy routes to node2, which is STANDBY", "haproxy routes to two servers: node1 and node2"],
    ],
    [
      "route: haproxy routes nowhere while node2 answers MASTER",
      route([
        ["node1", node("unknown"), DOWN],
        ["node2", node("primary", { timeline: 2 }), DOWN],
      ]),
      ["haproxy routes to no server, though node2 answers MASTER"],
    ],
    [
      "route: a lost stream",
      route([
        ["node1", node("primary"), UP],
        ["node2", null, DOWN, "lost"],
      ]),
      ["node2 cannot be reached: its event stream is lost"],
    ],
  ] as [string, Json, string[]][])("%s", (_, body, want) => {
    expect(disagreements(clusterOf(body, "this")).map((f) => f.text)).toEqual(want);
  });
});

describe("rows", () => {
  test("a node with its peer: names, answers, roles, lag, transitions newest first", () => {
    const body = withPeers(
      node("primary", {
        transitions: [{ at: "2026-12-06T07:00:01.000Z", from: "standby", to: "primary", reason: "promoted" }],
      }),
      peer(
        5402,
        node("standby", {
          lag_bytes: 1024,
          replay_age_seconds: 0.5,
          transitions: [{ at: "2026-12-06T07:00:02.000Z", from: "unknown", to: "standby", reason: "polled" }],
        }),
      ),
    );
    const c = clusterOf(body, "127.0.0.1:5401");
    expect(c.mode).toBe("peers");
    expect(c.nodes.map((n) => [n.name, answerWord(n), n.polled, n.lagBytes, n.self])).toEqual([
      ["127.0.0.1:5401", "MASTER", "primary", null, true],
      ["127.0.0.1:5402", "STANDBY", "standby", 1024, false],
    ]);
    expect(c.transitions.map((t) => `${t.node} ${t.to}`)).toEqual(["127.0.0.1:5402 standby", "127.0.0.1:5401 primary"]);
  });

  test("Patroni: members only the store knows are rows of their own, not asked", () => {
    const c = clusterOf(
      patroni(node("primary"), "node1", "node1", [
        member("node1", "master"),
        member("node2", "replica", { lag_bytes: 64 }),
      ]),
      "x",
    );
    expect(c.nodes.map((n) => [n.name, n.reach, n.store, n.storeLagBytes, answerWord(n)])).toEqual([
      ["node1", "ok", "leader", 0, "MASTER"],
      ["node2", "not asked", "replica", 64, "?"],
    ]);
  });

  test("an event's raw text wins over the default word", () => {
    const c = clusterOf({ ...node("primary"), answer: "PRIMARY" }, "x");
    expect(answerWord(c.nodes[0]!)).toBe("PRIMARY");
  });

  test.each([
    [{ op_state: 2, admin_state: 0 }, "UP", true],
    [{ op_state: 2, admin_state: 1 }, "MAINT", false],
    [{ op_state: 2, admin_state: 8 }, "DRAIN", false],
    [{ op_state: 0, admin_state: 0 }, "DOWN", false],
    [{ op_state: 2, admin_state: 0, status: "UP 1/2" }, "UP 1/2", true],
  ])("haproxy %o is %s", (h, status, routed) => {
    expect(haproxyStatus(h)).toEqual({ status, routed });
  });

  test("short system identifiers", () => {
    expect([shortId(SYSID), shortId(null), shortId("42")]).toEqual(["…234567", "", "42"]);
  });

  test("not a JSON object", () => {
    expect(() => clusterOf([], "x")).toThrow("not a JSON object");
  });
});

describe("replstatus status's table (src/ui/term.ts)", () => {
  const NOW = Date.parse("2026-12-06T07:00:10.000Z");
  test("a pair: boxed rows, the columns somebody fills, the verdict", () => {
    const c = clusterOf(withPeers(node("primary"), peer(5402, node("standby", { lag_bytes: 2048 }))), "127.0.0.1:5401");
    expect(report({ cluster: c, findings: disagreements(c) }, "http://127.0.0.1:5401", NOW)).toBe(
      [
        "replstatus status of http://127.0.0.1:5401 (* is the node that answered)",
        "+ split-brain guard ---------+---------+----+-----------+--------+-----------+----------+-------+",
        "| Node             | Answer  | Poll    | TL | System id | Lag    | Receiver  | Override | Since |",
        "+------------------+---------+---------+----+-----------+--------+-----------+----------+-------+",
        "| 127.0.0.1:5401 * | MASTER  | primary | 1  | …234567   |        |           | ready    | 10 s  |",
        "| 127.0.0.1:5402   | STANDBY | standby | 1  | …234567   | 2.0 kB | streaming | ready    | 10 s  |",
        "+------------------+---------+---------+----+-----------+--------+-----------+----------+-------+",
        "",
        "No disagreement.",
        "",
      ].join("\n"),
    );
  });

  test("a disagreement is listed under the table; a node that cannot be reached says why", () => {
    const c = clusterOf(withPeers(node("primary"), peer(5402, null, "refused", "connection refused")), "x");
    const text = report({ cluster: c, findings: disagreements(c) }, "http://x", NOW);
    expect(text).toContain("| 127.0.0.1:5402 | NO ANSWER |");
    expect(text).toContain("connection refused |");
    expect(text).toEndWith("One disagreement:\n  ! 127.0.0.1:5402 cannot be reached: connection refused\n");
  });

  test.each([
    [[{ mode: "http", host: "0.0.0.0", port: 8008 }], "http://127.0.0.1:8008"],
    [
      [
        { mode: "raw", host: "10.0.0.1", port: 5400 },
        { mode: "http", host: "::", port: 8008, tls: true },
      ],
      "https://[::1]:8008",
    ],
    [[{ mode: "http", host: "10.0.0.1", port: 8008 }], "http://10.0.0.1:8008"],
    [[{ mode: "raw", host: "0.0.0.0", port: 5400 }], undefined],
  ] as [ListenAddress[], string | undefined][])("the local listener of %j is %s", (listen, url) => {
    expect(localStatusUrl(listen)).toBe(url);
  });
});
