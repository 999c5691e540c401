// Where an idle replstatus's resident memory goes, against the floor in the same run. Side by side,
// each in its own process, all idle after start-up:
// - the floor: a bare Bun.listen (floor.ts);
// - the floor plus one idle Worker (floor-worker.ts): the cost of a second JavaScript thread;
// - the floor plus one Worker polling through postgres.js every 50 ms: the design's own floor;
// - replstatus at its default settings.
// Each figure is the median of --samples readings of /proc/PID/status, one a second, after
// --settle-s: VmRSS, and its parts RssAnon (heaps, malloc, compiled code) and RssFile (mostly the
// pages of Bun's executable that were run). With --load, each then gets the rate part's load
// (loadgen.ts, c = 1, 16, 64, 256, --load-s each, interleaved): its peak RSS, and its RSS 10 s after.
//
//   bun bench/memory.ts [--db URL] [--settle-s 5] [--samples 5] [--load] [--load-s 1] [--json]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runLoad } from "./loadgen.ts";
import { floorCommand, startServer } from "./server.ts";
import { startPrimary, type PgPrimary } from "../src/demo/pg.ts";
import { startResponder } from "../src/demo/responder.ts";

const { values } = parseArgs({
  options: {
    db: { type: "string" },
    "settle-s": { type: "string", default: "5" },
    samples: { type: "string", default: "5" },
    load: { type: "boolean", default: false },
    "load-s": { type: "string", default: "1" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});
const settleS = Number(values["settle-s"]);
const samples = Number(values.samples);
const loadS = Number(values["load-s"]);
if (!(settleS >= 0) || !Number.isInteger(samples) || samples < 1 || !(loadS > 0)) {
  console.error("memory: --settle-s takes a number of seconds >= 0, --samples an integer >= 1, --load-s seconds > 0");
  process.exit(1);
}

interface Reading {
  rssKb: number;
  anonKb: number;
  fileKb: number;
}

function read(pid: number): Reading {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssKb: kb("VmRSS"), anonKb: kb("RssAnon"), fileKb: kb("RssFile") };
}

/** As the rate part: the load's concurrencies, and how long after it the RSS is read again. */
const CONCURRENCIES = [1, 16, 64, 256];
const AFTER_MS = 10_000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

let cluster: PgPrimary | undefined;
let url = values.db;
if (!url) {
  cluster = await startPrimary();
  url = cluster.primary.url;
}
const FLOOR_WORKER = new URL("./floor-worker.ts", import.meta.url).pathname;
const stops: (() => Promise<unknown>)[] = [];
try {
  const procs: { key: string; label: string; pid: number; port: number }[] = [];
  const add = async (key: string, label: string, argv: string[]) => {
    const s = await startServer(argv);
    stops.push(s.stop);
    procs.push({ key, label, pid: s.pid, port: s.port });
  };
  await add("floor", "floor: bare Bun.listen", floorCommand());
  await add("worker", "floor + an idle Worker", [process.execPath, FLOOR_WORKER]);
  await add("poll-worker", "floor + a Worker polling via postgres.js", [process.execPath, FLOOR_WORKER, "--db", url]);
  const replstatus = await startResponder(["--listen", "127.0.0.1:0", "--db", url]);
  stops.push(replstatus.stop);
  procs.push({
    key: "replstatus",
    label: "replstatus, default settings",
    pid: replstatus.proc.pid,
    port: replstatus.ports[0]!,
  });

  await Bun.sleep(settleS * 1000);
  const readings = procs.map(() => [] as Reading[]);
  for (let i = 0; i < samples; i++) {
    if (i > 0) await Bun.sleep(1000);
    procs.forEach((p, j) => readings[j]!.push(read(p.pid)));
  }
  const rows = procs.map((p, j) => ({
    key: p.key,
    label: p.label,
    rssKb: median(readings[j]!.map((r) => r.rssKb)),
    anonKb: median(readings[j]!.map((r) => r.anonKb)),
    fileKb: median(readings[j]!.map((r) => r.fileKb)),
    peakKb: Number.NaN,
    afterKb: Number.NaN,
  }));
  if (values.load) {
    for (const c of CONCURRENCIES) {
      for (const [j, p] of procs.entries()) {
        const r = await runLoad({ port: p.port, concurrency: c, durationS: loadS, serverPid: p.pid });
        const peak = r.serverRss?.peakKb ?? Number.NaN;
        rows[j]!.peakKb = Number.isNaN(rows[j]!.peakKb) ? peak : Math.max(rows[j]!.peakKb, peak);
      }
    }
    await Bun.sleep(AFTER_MS);
    procs.forEach((p, j) => (rows[j]!.afterKb = read(p.pid).rssKb));
  }
  const floor = rows[0]!;
  if (values.json) {
    console.log(JSON.stringify({ settleS, samples, loadS: values.load ? loadS : null, rows }, null, 2));
  } else {
    const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`.padStart(8);
    const x = (kb: number, of: number) => `${(kb / of).toFixed(2)}x`.padStart(6);
    const loaded = values.load ? `  ${"peak".padStart(8)} ${"".padStart(6)}  ${"10 s after".padStart(8)}` : "";
    console.log(
      `${"process".padEnd(42)}  ${"idle RSS".padStart(8)} ${"/floor".padStart(6)}  ${"anon".padStart(8)}  ${"file".padStart(8)}${loaded}`,
    );
    for (const r of rows) {
      const after = values.load
        ? `  ${mb(r.peakKb)} ${x(r.peakKb, floor.peakKb)}  ${mb(r.afterKb)} ${x(r.afterKb, floor.afterKb)}`
        : "";
      console.log(
        `${r.label.padEnd(42)}  ${mb(r.rssKb)} ${x(r.rssKb, floor.rssKb)}  ${mb(r.anonKb)}  ${mb(r.fileKb)}${after}`,
      );
    }
  }
} finally {
  await Promise.all(stops.map((stop) => stop()));
  await cluster?.stop();
}
