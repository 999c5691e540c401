// Soak: N connections (default 1,000,000) against the real CLI, watching its
// resident memory. Plain script, not part of `bun test` (it takes minutes);
// test/e2e/soak.test.ts runs the same loop with a small count.
//
//   bun run soak                      # 1,000,000 connections, 64 at a time
//   SOAK_CONNECTIONS=200000 bun run soak
//   SOAK_JSON=1 bun run soak          # one JSON object on stdout
//
// Passes when resident memory after warm-up (the first tenth) stays within
// 10% of its value then. The server runs in its own process, never in ours.
import { readFileSync } from "node:fs";
import { exchange } from "../src/demo/probe.ts";
import { startResponder } from "../src/demo/responder.ts";

export interface SoakResult {
  connections: number;
  seconds: number;
  connectionsPerSecond: number;
  /** kB, at the end of warm-up. */
  rssWarmKb: number;
  rssMaxKb: number;
  rssEndKb: number;
  /** (max - warm) / warm */
  growth: number;
  /** Answers other than the expected text, and which (errors as <CODE>). */
  wrong: number;
  wrongTexts: Record<string, number>;
  /** RSS at every tenth of the run, kB. */
  samplesKb: number[];
}

export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]);
}

async function once(port: number): Promise<string> {
  const r = await exchange({ host: "127.0.0.1", port });
  return r.close === "fin" ? r.text : `${r.text}<${r.close}>`;
}

/**
 * Runs `total` connections, `concurrency` at a time, sampling RSS every
 * tenth; the first sample, after a tenth of the run, is the warm-up value.
 */
export async function soak(
  pid: number,
  port: number,
  want: string,
  total: number,
  concurrency = 64,
): Promise<SoakResult> {
  const step = Math.max(1, Math.floor(total / 10));
  let next = 0;
  let wrong = 0;
  const wrongTexts = new Map<string, number>();
  const samplesKb: number[] = [];
  let rssWarmKb = 0;
  let rssMaxKb = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const text = await once(port);
      if (text !== want) {
        wrong++;
        wrongTexts.set(text, (wrongTexts.get(text) ?? 0) + 1);
      }
      if (i > 0 && i % step === 0) {
        const rss = rssKb(pid);
        samplesKb.push(rss);
        if (i === step) rssWarmKb = rss;
        else rssMaxKb = Math.max(rssMaxKb, rss);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const rssEndKb = rssKb(pid);
  rssMaxKb = Math.max(rssMaxKb, rssEndKb);
  rssWarmKb ||= rssEndKb;
  return {
    connections: total,
    seconds,
    connectionsPerSecond: total / seconds,
    rssWarmKb,
    rssMaxKb,
    rssEndKb,
    growth: (rssMaxKb - rssWarmKb) / rssWarmKb,
    wrong,
    wrongTexts: Object.fromEntries(wrongTexts),
    samplesKb,
  };
}

if (import.meta.main) {
  const total = Number(process.env.SOAK_CONNECTIONS ?? 1_000_000);
  // No PostgreSQL needed: every answer is UNKNOWN, the path is the same.
  await using r = await startResponder(["--listen", "127.0.0.1:0"], { PGHOST: "/nonexistent", PGPORT: "5999" });
  const result = await soak(r.proc.pid, r.ports[0]!, "UNKNOWN", total);
  const ok = result.growth <= 0.1 && result.wrong === 0;
  if (process.env.SOAK_JSON) {
    console.log(JSON.stringify({ ...result, ok }));
  } else {
    console.log(
      [
        `connections       ${result.connections}`,
        `time              ${result.seconds.toFixed(1)} s (${result.connectionsPerSecond.toFixed(0)}/s)`,
        `wrong answers     ${result.wrong} ${result.wrong ? JSON.stringify(result.wrongTexts) : ""}`,
        `rss after warm-up ${(result.rssWarmKb / 1024).toFixed(1)} MB`,
        `rss max after     ${(result.rssMaxKb / 1024).toFixed(1)} MB (${(result.growth * 100).toFixed(1)}%)`,
        `rss at the end    ${(result.rssEndKb / 1024).toFixed(1)} MB`,
        `rss every tenth   ${result.samplesKb.map((kb) => (kb / 1024).toFixed(1)).join(" ")} MB`,
        ok ? "ok: flat within 10%" : "FAILED: memory grew more than 10% or answers were wrong",
      ].join("\n"),
    );
  }
  process.exitCode = ok ? 0 : 1;
}
