// The poll's round trip on every supported PostgreSQL major (13 to 18), on a primary and on a
// streaming standby (where the query also joins pg_stat_wal_receiver).
//
//   bun bench/majors.ts [--majors 13,18] [--rounds 3] [--polls 1000] [--json]
//
// Per major, one throwaway pair (the test fixture), and per node one connection with the poller's
// options and transport (postgres.js over src/poll/worker/pgsocket.ts, prepared). Each round runs --polls
// sequential round trips of `select 1` (the floor: the protocol and the driver) and of POLL_QUERY
// with $1 false (as every poll after a connection's first). Figures are the median of the rounds'
// medians, with their spread; the baseline is major 15 (Debian's, the suite's) in the same run.
import { parseArgs } from "node:util";
import { POLL_QUERY } from "../src/poll/facts.ts";
import { MAJORS } from "../src/demo/pgbin.ts";
import { startPair } from "../src/demo/pg.ts";
import { pollerLikeSql } from "./pgclient.ts";
import { fmtSpread, spread, type Spread } from "./stats.ts";

const { values } = parseArgs({
  options: {
    majors: { type: "string", default: MAJORS.join(",") },
    rounds: { type: "string", default: "3" },
    polls: { type: "string", default: "1000" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const majors = values.majors.split(",").map(Number);
const rounds = Math.max(1, Number(values.rounds));
/** Bounded: at most 10,000 round trips per round. */
const polls = Math.min(10_000, Math.max(10, Number(values.polls)));
const BASELINE = 15;

interface Row {
  major: number;
  node: "primary" | "standby";
  select1Us: Spread;
  pollUs: Spread;
}

const connect = pollerLikeSql;

/** The median round trip of `polls` sequential runs of once(), in microseconds. */
async function medianUs(once: () => Promise<unknown>): Promise<number> {
  const us = new Float64Array(polls);
  for (let i = 0; i < polls; i++) {
    const t = performance.now();
    await once();
    us[i] = (performance.now() - t) * 1000;
  }
  return spread([...us]).median;
}

async function measure(url: string): Promise<{ select1Us: Spread; pollUs: Spread }> {
  const sql = connect(url);
  try {
    const select1 = () => sql.unsafe("select 1", [], { prepare: true });
    const poll = () => sql.unsafe(POLL_QUERY, [false], { prepare: true });
    for (let i = 0; i < 100; i++) await Promise.all([select1(), poll()]); // warm: plans, caches
    const select1Runs: number[] = [];
    const pollRuns: number[] = [];
    for (let r = 0; r < rounds; r++) {
      select1Runs.push(await medianUs(select1));
      pollRuns.push(await medianUs(poll));
    }
    return { select1Us: spread(select1Runs), pollUs: spread(pollRuns) };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

const rows: Row[] = [];
for (const major of majors) {
  await using pg = await startPair({ major });
  rows.push({ major, node: "primary", ...(await measure(pg.primary.url)) });
  rows.push({ major, node: "standby", ...(await measure(pg.standby.url)) });
}

if (values.json) {
  console.log(JSON.stringify({ rounds, polls, baseline: BASELINE, rows }, null, 2));
} else {
  const us = (n: number) => `${n.toFixed(0)} us`;
  const base = (node: string) => rows.find((r) => r.major === BASELINE && r.node === node)?.pollUs.median;
  console.log(`poll round trip, median of ${rounds} rounds x ${polls} polls (lowest..highest round)`);
  console.log(
    `${"major".padEnd(6)} ${"node".padEnd(8)} ${"select 1".padEnd(21)} ${"poll query".padEnd(21)} ` +
      `${"poll - select 1".padEnd(16)} vs ${BASELINE}`,
  );
  for (const r of rows) {
    const b = base(r.node);
    const ratio = b ? `${(r.pollUs.median / b).toFixed(2)}x` : "-";
    console.log(
      `${String(r.major).padEnd(6)} ${r.node.padEnd(8)} ${fmtSpread(r.select1Us, us).padEnd(21)} ` +
        `${fmtSpread(r.pollUs, us).padEnd(21)} ${us(r.pollUs.median - r.select1Us.median).padEnd(16)} ${ratio}`,
    );
  }
}
