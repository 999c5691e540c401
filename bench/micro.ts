// mitata micro-benchmarks of the per-connection code paths and of the poll round trip.
//
//   bun bench/micro.ts [--db URL] [--json]
//
// Per connection: the raw listener's open() (on a stand-in socket that records nothing, so
// only the handler's own work is timed), the state lookup it does, and the --allow check
// (src/listen/allow.ts). Per poll: the poller's query (POLL_QUERY) through postgres.js,
// prepared, against a real primary: --db, else a throwaway primary started here.
// --json prints mitata's JSON (without samples) instead of its table (also MITATA_JSON=1).
import { parseArgs } from "node:util";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import postgres from "postgres";
import { startPrimary, type PgPrimary } from "../src/demo/pg.ts";
import { rawHandler } from "../src/listen/raw.ts";
import { POLL_QUERY } from "../src/poll/facts.ts";
import { buildResponses } from "../src/listen/answers.ts";
import { createCell, currentState, PRIMARY } from "../src/cell.ts";
import { admits, buildAllowList, type AllowList } from "../src/listen/allow.ts";
import { DEFAULT_TEXTS } from "../src/config/options.ts";

const { values } = parseArgs({
  options: { db: { type: "string" }, json: { type: "boolean", default: false } },
  strict: true,
});
const json = values.json || process.env.MITATA_JSON === "1";

const cell = createCell(() => {});
cell.set(PRIMARY, "bench");
const slots = cell.slots;
const responses = buildResponses(DEFAULT_TEXTS);
const handler = rawHandler(slots, responses);

// What open() touches on a real socket: write, shutdown, timeout.
let written = 0;
const socket = {
  data: 0,
  write(b: Uint8Array) {
    written += b.byteLength;
    return b.byteLength;
  },
  shutdown() {},
  timeout() {},
  terminate() {},
  remoteAddress: "127.0.0.1",
};
type Open = (s: unknown) => void;
const open = handler.open as unknown as Open;

group("per connection", () => {
  summary(() => {
    bench("state lookup: responses.raw[slots[0] & 0xff]", () => do_not_optimize(responses.raw[slots[0]! & 0xff]));
    bench("state lookup: Atomics.load", () => do_not_optimize(responses.raw[Atomics.load(slots, 0) & 0xff]));
    bench("state lookup: currentState(slots)", () => do_not_optimize(responses.raw[currentState(slots)]));
    bench("rawHandler open(): write, shutdown, timeout", () => open(socket));
  });
});

const list = buildAllowList(["10.0.0.0/8", "192.168.0.0/16", "127.0.0.1/32", "fd00::/8"]) as AllowList;
group("allowlist (--allow, 4 CIDRs)", () => {
  summary(() => {
    bench("admits 127.0.0.1", () => do_not_optimize(admits(list, "127.0.0.1")));
    bench("admits ::ffff:10.1.2.3", () => do_not_optimize(admits(list, "::ffff:10.1.2.3")));
    bench("rejects 203.0.113.9", () => do_not_optimize(admits(list, "203.0.113.9")));
    bench("admits fd00::1", () => do_not_optimize(admits(list, "fd00::1")));
  });
});

let cluster: PgPrimary | undefined;
let url = values.db;
if (!url) {
  cluster = await startPrimary();
  url = cluster.primary.url;
}
const sql = postgres(url, { max: 1, idle_timeout: 0, max_lifetime: null, fetch_types: false, onnotice: () => {} });
try {
  await sql.unsafe(POLL_QUERY, [false], { prepare: true });
  group("per poll", () => {
    bench("poll query round trip (postgres.js, prepared)", async () => {
      await sql.unsafe(POLL_QUERY, [false], { prepare: true });
    });
  });
  await run(json ? { format: { json: { samples: false, debug: false } } } : { colors: process.stdout.isTTY === true });
} finally {
  await sql.end({ timeout: 1 });
  await cluster?.stop();
}
do_not_optimize(written);
