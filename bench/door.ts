// What seeing a smart shutdown costs where replstatus cannot read postmaster.pid (the package's own
// OS user and a 0700 data directory): a new connection every --stale-after / 2 (the door check,
// src/poll/worker/loop.ts) against the watched file. Not part of `bun run bench`:
//
//   bun bench/door.ts [--seconds N] [--attempts N] [--json]
//
// - per attempt, over the local socket as the door check makes it (postgres.js, an empty query):
//   the server's CPU (the postmaster and its reaped children) for one let in, and for one refused
//   with 57P03 during a smart shutdown (a fork and a FATAL line);
// - idle on a primary at the defaults, over --seconds: replstatus as root (postmaster.pid watched)
//   and as a throwaway OS user that cannot read it: sessions started per second
//   (pg_stat_database.sessions), the server's CPU (the postmaster, its reaped children and the
//   poll's backend) and replstatus's own, each as % of one core.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { throwawayUser } from "../test/kit/osuser.ts";
import { startPrimary, waitFor, type PgNode } from "../src/demo/pg.ts";
import { waitForAnswer } from "../src/demo/probe.ts";
import { startResponder } from "../src/demo/responder.ts";
import { cpuSeconds } from "./cpu.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    attempts: { type: "string", default: "200" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const SECONDS = Number(values.seconds);
const ATTEMPTS = Number(values.attempts);

/** The door check's own way in: a new postgres.js connection and an empty query. */
async function knock(node: PgNode): Promise<string | undefined> {
  const sql = postgres({ ...socketOf(node), max: 1, onnotice: () => {}, fetch_types: false });
  try {
    await sql.unsafe("");
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    await sql.end({ timeout: 0 });
  }
}

function socketOf(node: PgNode) {
  return { host: node.socketDir, port: node.port, user: node.user, database: "postgres" };
}

/** Server CPU seconds per attempt of `n` attempts made by `attempt`. */
async function perAttempt(node: PgNode, n: number, attempt: () => Promise<unknown>): Promise<number> {
  const pm = node.pid();
  const before = cpuSeconds(pm, true);
  for (let i = 0; i < n; i++) await attempt();
  // The last children are reaped a moment after they exit.
  await Bun.sleep(200);
  return (cpuSeconds(pm, true) - before) / n;
}

const fatalLines = (node: PgNode) =>
  readFileSync(node.logFile, "utf8")
    .split("\n")
    .filter((l) => l.includes("FATAL:")).length;

const pct = (cpuS: number, s: number) => Number(((cpuS / s) * 100).toFixed(2));
const results: Record<string, number> = {};
await using user = throwawayUser("bd");
await using pg = await startPrimary();
const node = pg.primary;
await pg.primary.sql("select 1");
// As a Debian host: the socket reachable, the data directory not.
for (const dir of [pg.dir, node.socketDir]) Bun.spawnSync(["chmod", "0711", dir]);

for (const [key, wrap] of [
  ["postmaster.pid watched (root)", []],
  ["door check (an OS user that cannot read it)", user.wrap],
] as const) {
  await using r = await startResponder(["--listen", "127.0.0.1:0"], { ...node.env, HOME: "/nonexistent" }, [...wrap]);
  await waitForAnswer(r.ports[0]!, "MASTER");
  await Bun.sleep(3000);
  const backend = Number(
    await node.sql(
      "select pid from pg_stat_activity where application_name = 'replstatus' and state is not null limit 1",
    ),
  );
  const sessions = async () =>
    Number(await node.sql("select sessions from pg_stat_database where datname = 'postgres'"));
  const pm = node.pid();
  const [s0, pm0, be0, rs0] = [await sessions(), cpuSeconds(pm, true), cpuSeconds(backend), cpuSeconds(r.proc.pid)];
  await Bun.sleep(SECONDS * 1000);
  const [s1, pm1, be1, rs1] = [await sessions(), cpuSeconds(pm, true), cpuSeconds(backend), cpuSeconds(r.proc.pid)];
  // Two psql sessions of this script's own (the backend's pid, the count) are not replstatus's.
  results[`${key}: new sessions/s`] = Number(((s1 - s0 - 2) / SECONDS).toFixed(2));
  results[`${key}: server CPU % of a core`] = pct(pm1 - pm0 + (be1 - be0), SECONDS);
  results[`${key}: of it the poll's backend`] = pct(be1 - be0, SECONDS);
  results[`${key}: replstatus CPU % of a core`] = pct(rs1 - rs0, SECONDS);
}

results["let in: server CPU ms/attempt"] = Number(
  ((await perAttempt(node, ATTEMPTS, () => knock(node))) * 1000).toFixed(2),
);
const client = postgres({ ...socketOf(node), max: 1, onnotice: () => {} });
await client`select 1`;
process.kill(node.pid(), "SIGTERM");
await waitFor("the refusal", async () => (await knock(node)) === "57P03");
const fatal0 = fatalLines(node);
results["refused (57P03): server CPU ms/attempt"] = Number(
  ((await perAttempt(node, ATTEMPTS, () => knock(node))) * 1000).toFixed(2),
);
results["refused (57P03): FATAL lines/attempt"] = (fatalLines(node) - fatal0) / ATTEMPTS;
await client.end({ timeout: 1 });
results["load average (1 min) at the end"] = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

if (values.json) console.log(JSON.stringify({ seconds: SECONDS, attempts: ATTEMPTS, results }, null, 2));
else for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(70)} ${v}`);
