// Check storm: real haproxy, one backend of 100 servers that all check one responder with
// `inter 10ms`, `option tcp-check` and `tcp-check expect string MASTER`, as many haproxy
// processes checking one database host do. Two figures per run:
// - checks per second that passed: a `tcp-check set-var` after the expect step counts them in
//   a process-wide haproxy variable, read over the stats socket (`get var`), so the count comes
//   from the checker itself and works for a server we cannot instrument (the C original);
// - false DOWN events: the responder answers MASTER throughout, so every UP -> DOWN transition
//   (`chkdown` of `show stat`, summed over the servers) is a false one.
// No `timeout check` is set, so haproxy allows each check `inter` (10 ms) in all, as a
// configuration tuned for fast failover does (haproxy configuration manual, "timeout check").
//
// XXX: two haproxy threads can both read the counter before either writes it back, so the
// count can be a little low (it errs against the server, never for it).
import { findHaproxy, startHaproxy, statsCommand } from "../src/demo/haproxy.ts";
import { spread, type Spread } from "./stats.ts";

export const SERVERS = 100;

export interface StormRun {
  checksPerS: number;
  failedPerS: number;
  downEvents: number;
  /** Servers not UP when the window closed. */
  downAtEnd: number;
  elapsedS: number;
}

export interface StormCell {
  key: string;
  checksPerS: Spread;
  failedPerS: Spread;
  downEvents: Spread;
  runs: StormRun[];
}

export interface StormResult {
  servers: number;
  interMs: number;
  windowS: number;
  runsPerCell: number;
  cells: StormCell[];
}

/** The `storm` backend: SERVERS servers checking one responder, and the counter of passed checks. */
function storm(port: number, interMs: number): Parameters<typeof startHaproxy>[0] {
  const servers: string[] = [];
  for (let i = 1; i <= SERVERS; i++) servers.push(`server s${i} 127.0.0.1:${port} check inter ${interMs}ms`);
  return {
    global: ["set-var proc.checks_ok int(0)"],
    timeouts: ["timeout connect 1s", "timeout client 1s", "timeout server 1s"],
    backends: {
      storm: [
        "option tcp-check",
        "tcp-check expect string MASTER",
        "tcp-check set-var(proc.checks_ok) var(proc.checks_ok),add(1)",
        ...servers,
      ],
    },
  };
}

interface Snapshot {
  at: number;
  ok: number;
  failed: number;
  down: number;
  notUp: number;
}

async function snapshot(socket: string): Promise<Snapshot> {
  const at = performance.now();
  const [varText, stat] = await Promise.all([
    statsCommand(socket, "get var proc.checks_ok", 2000),
    statsCommand(socket, "show stat", 2000),
  ]);
  const ok = Number(/value=<(\d+)>/.exec(varText)?.[1] ?? Number.NaN);
  const lines = stat.split("\n");
  const head = (lines[0] ?? "").replace(/^# /, "").split(",");
  const col = (name: string) => head.indexOf(name);
  const [pxname, svname, chkfail, chkdown, status] = ["pxname", "svname", "chkfail", "chkdown", "status"].map(col);
  let failed = 0;
  let down = 0;
  let notUp = 0;
  for (const line of lines.slice(1)) {
    const f = line.split(",");
    if (f[pxname!] !== "storm" || f[svname!] === "BACKEND" || !f[svname!]) continue;
    failed += Number(f[chkfail!] || 0);
    down += Number(f[chkdown!] || 0);
    if (!(f[status!] ?? "").startsWith("UP")) notUp++;
  }
  return { at, ok, failed, down, notUp };
}

export interface StormOptions {
  interMs: number;
  /** Seconds between the two snapshots. */
  windowS: number;
  /** Seconds after start before the first snapshot. */
  warmupS: number;
}

/** One haproxy storm against 127.0.0.1:port; haproxy and its temp dir are gone on return. */
export async function stormOnce(port: number, o: StormOptions): Promise<StormRun> {
  await using hx = await startHaproxy(storm(port, o.interMs));
  await Bun.sleep(o.warmupS * 1000);
  const a = await snapshot(hx.statsSocket);
  await Bun.sleep(o.windowS * 1000);
  const b = await snapshot(hx.statsSocket);
  const s = (b.at - a.at) / 1000;
  return {
    checksPerS: Math.round((b.ok - a.ok) / s),
    failedPerS: Math.round((b.failed - a.failed) / s),
    downEvents: b.down - a.down,
    downAtEnd: b.notUp,
    elapsedS: s,
  };
}

export async function measureStorm(
  targets: { key: string; port: number }[],
  runs: number,
  o: StormOptions,
  log: (line: string) => void,
): Promise<StormResult> {
  const results = new Map<string, StormRun[]>();
  for (let run = 0; run < runs; run++) {
    for (const t of targets) {
      const r = await stormOnce(t.port, o);
      results.set(t.key, [...(results.get(t.key) ?? []), r]);
      log(
        `storm run ${run + 1}/${runs} ${t.key}: ${r.checksPerS} checks/s passed, ${r.failedPerS}/s failed, ` +
          `${r.downEvents} DOWN events, ${r.downAtEnd} servers not UP at the end`,
      );
    }
  }
  return {
    servers: SERVERS,
    interMs: o.interMs,
    windowS: o.windowS,
    runsPerCell: runs,
    cells: targets.map((t) => {
      const rs = results.get(t.key)!;
      return {
        key: t.key,
        checksPerS: spread(rs.map((r) => r.checksPerS)),
        failedPerS: spread(rs.map((r) => r.failedPerS)),
        downEvents: spread(rs.map((r) => r.downEvents)),
        runs: rs,
      };
    }),
  };
}

if (import.meta.main) {
  // bun bench/storm.ts PORT [SECONDS]: one storm against a responder already running.
  const port = Number(process.argv[2]);
  if (!findHaproxy()) {
    console.error("storm: haproxy not found\nhint: apt-get install -y haproxy");
    process.exit(1);
  }
  const r = await stormOnce(port, { interMs: 10, windowS: Number(process.argv[3] ?? 5), warmupS: 1 });
  console.log(JSON.stringify(r));
}
