// The nemesis run, short: the whole routing path (client -> haproxy ->
// PostgreSQL, with Patroni, etcd and replstatus --patroni deciding) in network
// namespaces under the first 10 faults of a fixed seed, every write checked
// (test/kit/nemesis/). It fails on (a) a write acknowledged by a node that had
// lost the leader key longer ago than haproxy's checks can take to mark it down
// (fall x inter of Patroni's published line, plus the load slack), (b) any
// acknowledged write lost under synchronous_mode_strict, or (d) a MASTER the
// store contradicts; with haproxy's checks alone, then with replstatus route
// pushing into haproxy. The full size, and the negative control (replstatus in
// its plain mode, which the checker must catch), are bench/nemesis.ts's
// (docs/benchmarks.md); the checker's own cases are test/unit/nemesis-check.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { requireTool } from "../kit/tools.ts";
import { removeLabs, runNemesis, type RunResult } from "../kit/nemesis/run.ts";
import { useTimeouts } from "../kit/timeouts.ts";

useTimeouts(600_000);
/** Its first 10 faults: part-etcd, kill-postmaster, kill-patroni (11 s, past the ttl), switchover, failover, ... */
const SEED = 35;

// A missing tool fails with the package to install; the lab itself says when namespaces cannot be made.
for (const [command, pkg] of [
  ["patroni", "patroni"],
  ["etcd", "etcd-server"],
  ["haproxy", "haproxy"],
  ["nft", "nftables"],
]) {
  requireTool(command!, pkg!);
}

const t0 = performance.now();
const log = (line: string) => console.error(`nemesis [${((performance.now() - t0) / 1000).toFixed(0)}s]: ${line}`);
// A run the test's timeout abandoned still removes its lab.
afterAll(removeLabs);

function summary(r: RunResult): string {
  const c = r.check;
  return [
    `seed ${r.seed}, ${r.faults.length} faults, replstatus ${r.options.replstatus}: ${c.writes.acked} of ${c.writes.sent} writes acknowledged, ${c.leaderChanges} leader changes`,
    `(a) ${c.a.stale} stale (${c.a.beyondBound} beyond ${r.boundMs} ms), window ${Math.round(c.a.windowMs)} ms`,
    `(b) ${c.b.lost} lost (checked: ${c.b.checked}); (d) ${c.d.contradictions} of ${c.d.masters} MASTER samples contradicted, latest ${Math.round(c.d.maxLagMs)} ms after the key left`,
    `(c) ${c.c.map((g) => `${g.kind} max ${Math.round(g.maxMs)} ms`).join(", ")}`,
    ...c.d.examples.map((s) => {
      const near = r.keys.filter((k) => Math.abs(k.at - s.from) < 15_000);
      return `  MASTER from ${s.node} at +${Math.round(s.from - r.startedAt)} ms; the key: ${near.map((k) => `${k.holder ?? "none"} at +${Math.round(k.at - r.startedAt)}`).join(", ")}`;
    }),
    ...r.faults.map(
      (f) =>
        `  ${f.index + 1} at +${Math.round(f.start - r.startedAt)} ms: ${f.kind} ${f.target ?? ""} ${f.direction} held ${f.holdMs} ms, recovered ${f.recoveredMs === null ? "no" : `${Math.round(f.recoveredMs)} ms`} ${f.note}`,
    ),
  ].join("\n");
}

describe("nemesis: three Patroni hosts, haproxy and a client under random faults", () => {
  test.each([
    ["haproxy's checks only", false],
    ["replstatus route beside haproxy", true],
  ])(
    "replstatus --patroni, synchronous_mode_strict, %s: no stale write beyond the bound, none lost, no MASTER without the key",
    async (_, route) => {
      const r = await runNemesis({ seed: SEED, faults: 10, strictSync: true, replstatus: "patroni", route, log });
      console.log(summary(r));
      expect(r.check.writes.acked).toBeGreaterThan(100);
      expect(r.check.leaderChanges).toBeGreaterThan(0);
      expect(r.check.b.checked).toBe(true);
      expect({ a: r.check.a.beyondBound, b: r.check.b.lost, d: r.check.d.contradictions }).toEqual({
        a: 0,
        b: 0,
        d: 0,
      });
    },
  );
});
