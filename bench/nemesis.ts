// The nemesis run, full size: three database hosts (PostgreSQL, Patroni 3.0.2, an
// etcd member, replstatus --patroni), a haproxy host and a client host in
// network namespaces, at least 100 faults from a seeded plan, every write
// checked at the end (test/kit/nemesis/: lab, schedule, client, observer,
// checker). Prints the seed first: `--seed N` replays the same plan.
//
// Usage: bun bench/nemesis.ts [--seed N] [--faults 100] [--async] [--plain] [--route]
//                             [--json FILE] [--svg FILE]
//   --route  also replstatus route beside haproxy (push routing); otherwise haproxy's checks alone
//   --async  Patroni without synchronous_mode (acknowledged writes may be lost: reported)
//   --plain  replstatus without --patroni: the negative control, which cannot know the leader key
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { CheckResult } from "../test/kit/nemesis/check.ts";
import { runNemesis, type RunResult } from "../test/kit/nemesis/run.ts";
import { newSeed } from "../test/kit/nemesis/schedule.ts";
import { timelineSvg } from "./nemesis-svg.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    faults: { type: "string", default: "100" },
    async: { type: "boolean", default: false },
    plain: { type: "boolean", default: false },
    route: { type: "boolean", default: false },
    json: { type: "string" },
    svg: { type: "string" },
  },
});

const seed = values.seed === undefined ? newSeed() : Number(values.seed);
const t0 = performance.now();
const progress = (line: string) =>
  process.stderr.write(`nemesis [${((performance.now() - t0) / 1000).toFixed(0)}s]: ${line}\n`);
console.log(
  `seed ${seed} (replay: bun bench/nemesis.ts --seed ${seed}${values.async ? " --async" : ""}${values.plain ? " --plain" : ""}${values.route ? " --route" : ""})`,
);

const fmt = (ms: number) =>
  Number.isFinite(ms) ? (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`) : "-";

function label(o: RunResult["options"]): string {
  if (o.replstatus === "plain") return "replstatus plain (no store, no peers: the negative control)";
  return o.route ? "replstatus --patroni + replstatus route" : "replstatus --patroni, haproxy's checks only";
}

function report(r: RunResult, minutes: number): string[] {
  const c: CheckResult = r.check;
  const mode = `${label(r.options)}, ${r.options.strictSync ? "synchronous_mode_strict" : "asynchronous"}`;
  const lines = [
    `${r.faults.length} faults in ${minutes.toFixed(1)} min; ${mode}; stale-write bound ${fmt(r.boundMs)}, MASTER tolerance ${fmt(r.toleranceMs)}`,
    `writes: ${c.writes.sent} sent, ${c.writes.acked} acknowledged, ${c.writes.refused} refused, ${c.writes.unknown} unknown; leader changes: ${c.leaderChanges}`,
    `(a) acknowledged by a node without the leader key: ${c.a.stale} (${c.a.pooled} on pooled sessions), beyond the bound: ${c.a.beyondBound}; stale-primary window: ${fmt(c.a.windowMs)}`,
    ...c.a.episodes.map(
      (e) =>
        `    ${e.node} lost the key at +${fmt((e.lostAt ?? r.startedAt) - r.startedAt)}: ${e.writes} writes (${e.pooled} pooled), the last ${fmt(e.windowMs)} after; ${e.afterMarkedDown} after haproxy marked it down`,
    ),
    `(b) acknowledged writes missing from the final primary (${r.finalLeader}): ${c.b.checked ? c.b.lost : "not checked"}${c.b.lost ? ` (ids ${c.b.ids.join(", ")}...)` : ""}; rows per node: ${JSON.stringify(r.rowsPerNode)}`,
    `(d) MASTER answers the store contradicts: ${c.d.contradictions} of ${c.d.masters} MASTER samples (${c.d.samples} in all); the latest ${fmt(c.d.maxLagMs)} after the key left`,
    "(c) write unavailability per fault kind (longest time without an acknowledged new-connection write, from the fault to the next):",
    "",
    "| fault | n | p50 | max |",
    "| --- | --: | --: | --: |",
    ...c.c.map((g) => `| ${g.kind} | ${g.faults} | ${fmt(g.p50Ms)} | ${fmt(g.maxMs)} |`),
  ];
  const stuck = r.faults.filter((f) => f.recoveredMs === null);
  if (stuck.length)
    lines.push("", `not recovered within 30 s: ${stuck.map((f) => `${f.index + 1} ${f.kind}`).join(", ")}`);
  return lines;
}

const result = await runNemesis({
  seed,
  faults: Number(values.faults),
  strictSync: !values.async,
  replstatus: values.plain ? "plain" : "patroni",
  route: values.route,
  log: progress,
});
const minutes = (performance.now() - t0) / 60_000;
for (const line of report(result, minutes)) console.log(line);
if (values.json) {
  const { samples: _, writes: __, ...rest } = result;
  writeFileSync(values.json, `${JSON.stringify(rest, null, 1)}\n`);
}
if (values.svg) {
  const title = `nemesis seed ${seed}: ${result.faults.length} faults, ${label(result.options)}, ${values.async ? "async" : "strict sync"}`;
  writeFileSync(values.svg, timelineSvg(result, title));
}
