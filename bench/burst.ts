// Bursts: `--conns` connections opened at the same instant, in `--waves` waves, as when many
// haproxy processes check at once. What matters here is the tail: a connect that finds the
// accept queue full has its SYN dropped and retried 1 s later.
//
//   bun bench/burst.ts [--conns 1000] [--waves 3] [--gap-ms 3000] [--procs 4]
//                      [--backlog 4096] [--port N --server-pid PID] [--json]
//
// Without --port it measures bench/floor.ts twice: as Bun.listen leaves it (backlog 512) and
// with the backlog raised to --backlog (src/listen/backlog.ts), and prints the ratio between them.
//
// A burst is only a burst if the connects land faster than the server accepts. One Bun
// process issues a connect about every 40 us; the server drains one about as fast, so the
// queue barely grows. Four processes (more than the 2 cores, on purpose) open 1,000 quickly
// enough to overflow a 512 queue, as a C client does; `listen-overflows` in the output is
// the kernel's count of SYNs dropped on a full queue.
import { parseArgs } from "node:util";
import { formatResult, runLoad, type LoadResult } from "./loadgen.ts";
import { floorCommand, startServer } from "./server.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    "server-pid": { type: "string", default: "0" },
    conns: { type: "string", default: "1000" },
    waves: { type: "string", default: "3" },
    "gap-ms": { type: "string", default: "3000" },
    procs: { type: "string", default: "4" },
    backlog: { type: "string", default: "4096" },
    expect: { type: "string", default: "MASTER" },
    json: { type: "boolean", default: false },
  },
  strict: true,
});

function int(name: keyof typeof values, min: number, max: number): number {
  const raw = String(values[name]);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    console.error(`burst: invalid value for --${name}: "${raw}" (expected an integer ${min}..${max})`);
    process.exit(1);
  }
  return n;
}

const conns = int("conns", 1, 50_000);
const waves = int("waves", 1, 100);
const gapMs = int("gap-ms", 100, 60_000);
const procs = int("procs", 1, 64);
const backlog = int("backlog", 1, 1 << 20);
const port = int("port", 0, 65535);
const serverPid = int("server-pid", 0, 2 ** 31);

function burst(target: number, pid: number): Promise<LoadResult> {
  return runLoad({
    host: values.host,
    port: target,
    serverPid: pid,
    concurrency: conns,
    procs,
    expect: values.expect,
    waves,
    waveGapMs: gapMs,
    // Long enough to see a second SYN retransmit (1 s + 2 s) rather than cut it off.
    timeoutMs: 10_000,
  });
}

const rows: { name: string; result: LoadResult }[] = [];
if (port !== 0) {
  rows.push({ name: `${values.host}:${port}`, result: await burst(port, serverPid) });
} else {
  for (const [name, flags] of [
    ["floor, backlog 512 (Bun's)", []],
    [`floor, backlog ${backlog}`, ["--backlog", String(backlog)]],
  ] as const) {
    await using floor = await startServer(floorCommand("--host", values.host, "--text", values.expect, ...flags));
    rows.push({ name, result: await burst(floor.port, floor.pid) });
  }
}

if (values.json) {
  console.log(JSON.stringify({ conns, waves, gapMs, procs, rows }));
} else {
  console.log(`burst: ${conns} connections at once, ${waves} waves ${gapMs} ms apart`);
  for (const { name, result } of rows) console.log(`${name}: ${formatResult(result)}`);
  const [base, other] = rows;
  if (base && other && other.result.latencyMs.p999 > 0) {
    const ratio = (k: "p999" | "max") => (base.result.latencyMs[k] / other.result.latencyMs[k]).toFixed(1);
    console.log(`baseline / raised: p99.9 ${ratio("p999")}x, max ${ratio("max")}x`);
  }
}
