// Restarts, timed from the outside with a probe every millisecond. replstatus answering
// MASTER is sent SIGTERM and, as soon as it has exited, started again, as a service manager
// restarts a unit; that is done several times in a row, two ways, with the same build:
// - held: the listening socket is held by this process, as a systemd .socket unit holds it,
//   and passed to each replstatus (LISTEN_FDS); checks that arrive meanwhile wait in the
//   kernel's queue;
// - bind (the baseline): each replstatus binds the port itself, so the port is closed from
//   the old process's exit until the new one listens.
// Per restart: the longest gap between two answers (by arrival), the longest a probe waited,
// the probes that did not get MASTER, and the exit time (SIGTERM to exit). Also the exit time
// while PostgreSQL is SIGSTOPped, with a poll in flight that will never be answered.
//   bun bench/restart.ts [--restarts N] [--json]
import { parseArgs } from "node:util";
import { freePort, startPrimary, type PgNode } from "../src/demo/pg.ts";
import { ACTIVATE, holdSocket, type HeldSocket } from "../test/kit/socket.ts";
import { startResponder, type Responder } from "../src/demo/responder.ts";
import { fmtMs, fmtSpread, spread, type Spread } from "./stats.ts";
import { probe, waitAnswers } from "./targets.ts";

const PROBE_EVERY_MS = 1;
const PROBE_TIMEOUT_MS = 5000;
/** Steady answers between two restarts. */
const SETTLE_MS = 300;

export interface RestartCell {
  /** held | bind */
  mode: string;
  restarts: number;
  gapMs: Spread;
  waitMs: Spread;
  exitMs: Spread;
  probes: number;
  /** Probes that got anything but MASTER, by what they got. */
  failed: Record<string, number>;
}

export interface RestartResult {
  cells: RestartCell[];
  /** SIGTERM to exit with every PostgreSQL process SIGSTOPped. */
  hungExitMs: Spread;
}

interface Probed {
  startedAt: number;
  endedAt: number;
  text: string;
}

/** Starts a probe every millisecond until stop(); each result is kept. */
function prober(port: number) {
  const results: Probed[] = [];
  const pending = new Set<Promise<void>>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const startedAt = performance.now();
      const p = probe(port, PROBE_TIMEOUT_MS).then((text) => {
        results.push({ startedAt, endedAt: performance.now(), text });
        pending.delete(p);
      });
      pending.add(p);
      await Bun.sleep(PROBE_EVERY_MS);
    }
  })();
  return {
    results,
    async stop() {
      running = false;
      await loop;
      await Promise.all(pending);
    },
  };
}

function spawnResponder(node: PgNode, held: HeldSocket | undefined, port: number): Promise<Responder> {
  const args = ["--listen", held ? held.listen : `127.0.0.1:${port}`, "--db", node.url];
  return held ? startResponder(args, {}, ACTIVATE, { inheritFd: held.fd }) : startResponder(args);
}

async function stopTimed(r: Responder): Promise<number> {
  const t0 = performance.now();
  r.proc.kill("SIGTERM");
  await r.proc.exited;
  return performance.now() - t0;
}

/** Longest gap between consecutive MASTER arrivals within [from, to]. */
function longestGap(results: Probed[], from: number, to: number): number {
  const arrivals = results
    .filter((r) => r.text === "MASTER" && r.endedAt >= from && r.endedAt <= to)
    .map((r) => r.endedAt)
    .sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < arrivals.length; i++) gap = Math.max(gap, arrivals[i]! - arrivals[i - 1]!);
  return gap;
}

async function measureMode(node: PgNode, mode: "held" | "bind", restarts: number, log: (s: string) => void) {
  await using held = mode === "held" ? holdSocket() : undefined;
  const port = held?.port ?? (await freePort());
  let current = await spawnResponder(node, held, port);
  await waitAnswers([port], "MASTER");
  const probes = prober(port);
  const gaps: number[] = [];
  const exits: number[] = [];
  try {
    for (let i = 0; i < restarts; i++) {
      await Bun.sleep(SETTLE_MS);
      const from = performance.now() - SETTLE_MS / 2;
      exits.push(await stopTimed(current));
      current = await spawnResponder(node, held, port);
      await waitAnswers([port], "MASTER");
      await Bun.sleep(SETTLE_MS / 2);
      gaps.push(longestGap(probes.results, from, performance.now()));
      log(`restart ${mode} ${i + 1}/${restarts}: gap ${fmtMs(gaps.at(-1)!)}, exit ${fmtMs(exits.at(-1)!)}`);
    }
  } finally {
    await probes.stop();
    await stopTimed(current);
  }
  const failed: Record<string, number> = {};
  for (const r of probes.results) if (r.text !== "MASTER") failed[r.text] = (failed[r.text] ?? 0) + 1;
  return {
    mode,
    restarts,
    gapMs: spread(gaps),
    waitMs: spread([Math.max(...probes.results.map((r) => r.endedAt - r.startedAt))]),
    exitMs: spread(exits),
    probes: probes.results.length,
    failed,
  } satisfies RestartCell;
}

async function hungExit(node: PgNode, trials: number): Promise<Spread> {
  const times: number[] = [];
  for (let i = 0; i < trials; i++) {
    const r = await startResponder(["--listen", "127.0.0.1:0", "--db", node.url]);
    await waitAnswers([r.ports[0]!], "MASTER");
    node.signalAll("SIGSTOP");
    try {
      // A poll is due every 50 ms: after 200 ms one is in flight, never to be answered.
      await Bun.sleep(200);
      times.push(await stopTimed(r));
    } finally {
      node.signalAll("SIGCONT");
    }
  }
  return spread(times);
}

export async function measureRestart(node: PgNode, restarts: number, log: (s: string) => void) {
  const cells = [await measureMode(node, "held", restarts, log), await measureMode(node, "bind", restarts, log)];
  return { cells, hungExitMs: await hungExit(node, Math.min(restarts, 3)) } satisfies RestartResult;
}

export function restartTable(r: RestartResult): string {
  const rows = r.cells.map((c) =>
    [
      c.mode.padEnd(6),
      String(c.restarts).padStart(8),
      fmtSpread(c.gapMs, fmtMs).padEnd(28),
      fmtSpread(c.waitMs, fmtMs).padEnd(12),
      fmtSpread(c.exitMs, fmtMs).padEnd(28),
      `${c.probes}`.padStart(6),
      JSON.stringify(c.failed),
    ].join("  "),
  );
  return [
    "restart: probe every 1 ms; longest gap between answers across a restart, longest probe wait, exit after SIGTERM",
    `${"socket".padEnd(6)}  restarts  ${"longest gap".padEnd(28)}  ${"max wait".padEnd(12)}  ${"exit time".padEnd(28)}  probes  not MASTER`,
    ...rows,
    `exit time with PostgreSQL SIGSTOPped (a poll in flight): ${fmtSpread(r.hungExitMs, fmtMs)}`,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { restarts: { type: "string" }, json: { type: "boolean" } } });
  const restarts = Number(values.restarts ?? 5);
  await using pg = await startPrimary();
  const result = await measureRestart(pg.primary, restarts, (s) => console.error(s));
  console.log(values.json ? JSON.stringify(result, null, 2) : restartTable(result));
}
