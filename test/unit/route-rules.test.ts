// The router's rules (src/route/rules.ts) as a table: what each combination of
// node streams and haproxy states makes it push, and above all what it never
// pushes (a second writable server in a primary backend).
import { expect, test } from "bun:test";
import {
  decide,
  MAX_UP_PUSHES,
  writable,
  type BackendKind,
  type HaproxyServer,
  type NodeView,
} from "../../src/route/rules.ts";
import { parseServersState } from "../../src/route/haproxy.ts";

const UP: HaproxyServer = { opState: 2, adminState: 0 };
const DOWN: HaproxyServer = { opState: 0, adminState: 0 };
const DRAINED: HaproxyServer = { opState: 2, adminState: 0x08 };
const MAINT: HaproxyServer = { opState: 0, adminState: 0x01 };

const node = (state: string, opts: Partial<NodeView> = {}): NodeView => ({
  connected: true,
  state,
  override: "ready",
  upPushes: 0,
  ...opts,
});
const LOST = node("primary", { connected: false });

function run(
  kind: BackendKind,
  views: Record<string, NodeView>,
  servers: Record<string, HaproxyServer>,
  shutdown = false,
): string[] {
  return decide("b", kind, new Map(Object.entries(views)), new Map(Object.entries(servers)), shutdown).map(
    (c) => c.line,
  );
}

test.each([
  ["steady: the primary up, the standby down", { a: node("primary"), b: node("standby") }, { a: UP, b: DOWN }, []],
  [
    "a promotion: the new primary in at once",
    { a: node("unknown"), b: node("primary") },
    { a: DOWN, b: DOWN },
    ["set server b/b health up"],
  ],
  [
    "the old primary still up and saying unknown: out first, then the new one in",
    { a: node("unknown"), b: node("primary") },
    { a: UP, b: DOWN },
    ["set server b/a health down", "set server b/b health up"],
  ],
  [
    "the old primary still up, its stream lost: the new one waits for the checks",
    { a: LOST, b: node("primary") },
    { a: UP, b: DOWN },
    [],
  ],
  [
    "two streams say primary: nothing in, the checks decide",
    { a: node("primary"), b: node("primary") },
    { a: DOWN, b: DOWN },
    [],
  ],
  [
    "another server of the backend, not the router's, is up: nothing in",
    { b: node("primary") },
    { a: UP, b: DOWN },
    [],
  ],
  ["a server in maintenance is never put in", { a: node("primary") }, { a: MAINT }, []],
  ["a fenced primary is taken out", { a: node("fenced") }, { a: UP }, ["set server b/a health down"]],
  ["a standby up in a primary backend is taken out", { a: node("standby") }, { a: UP }, ["set server b/a health down"]],
  [
    "pushed up MAX_UP_PUSHES times already: the checks decide",
    { a: node("primary", { upPushes: MAX_UP_PUSHES }) },
    { a: DOWN },
    [],
  ],
  ["a lost stream: nothing pushed", { a: LOST }, { a: DOWN }, []],
] as [string, Record<string, NodeView>, Record<string, HaproxyServer>, string[]][])(
  "primary backend: %s",
  (_, views, servers, want) => {
    expect(run("primary", views, servers)).toEqual(want);
  },
);

test("primary backend: a take-out also shuts the sessions with the flag", () => {
  expect(run("primary", { a: node("unknown") }, { a: UP }, true)).toEqual([
    "set server b/a health down",
    "shutdown sessions server b/a",
  ]);
});

test("primary backend: in no case is a server put in while another is writable", () => {
  const states = ["primary", "standby", "unknown", "fenced", "lagging"];
  const haproxy = [UP, DOWN, DRAINED, MAINT];
  const violations: string[] = [];
  for (const sa of states)
    for (const sb of states)
      for (const ha of haproxy)
        for (const hb of haproxy)
          for (const lostA of [false, true]) {
            const views = { a: node(sa, { connected: !lostA }), b: node(sb) };
            const lines = run("primary", views, { a: ha, b: hb });
            const up: Record<string, boolean> = { a: writable(ha), b: writable(hb) };
            for (const l of lines) {
              const [self, other] = l.includes("b/a ") ? ["a", "b"] : ["b", "a"];
              const putIn = l.endsWith("health up");
              violations.push(...(putIn && up[other!] ? [`${JSON.stringify({ views, ha, hb })}: ${l}`] : []));
              up[self!] = putIn || (up[self!]! && !l.endsWith("health down"));
            }
          }
  expect(violations).toEqual([]);
});

test.each([
  ["a standby down: in", { a: node("standby") }, { a: DOWN }, ["set server b/a health up"]],
  ["a lagging standby: drained, not taken out", { a: node("lagging") }, { a: UP }, ["set server b/a state drain"]],
  ["back under the lag limit: ready", { a: node("standby") }, { a: DRAINED }, ["set server b/a state ready"]],
  [
    "an operator's drain on the node: drained",
    { a: node("standby", { override: "drain" }) },
    { a: UP },
    ["set server b/a state drain"],
  ],
  ["a primary in a replica backend: out", { a: node("primary") }, { a: UP }, ["set server b/a health down"]],
  ["a lost role: out", { a: node("unknown") }, { a: UP }, ["set server b/a health down"]],
  [
    "a lost stream undoes a drain",
    { a: node("lagging", { connected: false }) },
    { a: DRAINED },
    ["set server b/a state ready"],
  ],
  ["a lost stream pushes nothing else", { a: node("standby", { connected: false }) }, { a: DOWN }, []],
] as [string, Record<string, NodeView>, Record<string, HaproxyServer>, string[]][])(
  "replica backend: %s",
  (_, views, servers, want) => {
    expect(run("replica", views, servers)).toEqual(want);
  },
);

test("show servers state as haproxy 2.6 prints it", () => {
  const text =
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n" +
    "3 push 1 p1 127.0.0.1 2 0 1 1 12 6 3 3 14 0 0 0 - 5432 - 0 0 - - 0\n" +
    "3 push 2 p2 127.0.0.1 0 8 1 1 12 6 2 0 6 0 0 0 - 5433 - 0 0 - - 0\n\n";
  expect([...parseServersState(text)]).toEqual([
    ["p1", { opState: 2, adminState: 0 }],
    ["p2", { opState: 0, adminState: 8 }],
  ]);
  expect(() => parseServersState("Can't find backend.\n")).toThrow(/unexpected answer/);
});
