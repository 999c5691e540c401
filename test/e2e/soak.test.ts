// The soak loop of bench/soak.ts with a count that fits in the suite.
import { expect, test } from "bun:test";
import { soak } from "../../bench/soak.ts";
import { startResponder } from "../../src/demo/responder.ts";

test("20,000 connections after a warm-up of 10,000: every answer right, resident memory flat within 10%", async () => {
  await using r = await startResponder(["--listen", "127.0.0.1:0"], { PGHOST: "/nonexistent", PGPORT: "5999" });
  // In a short run the first garbage collections fall inside the measurement; warm up first.
  expect((await soak(r.proc.pid, r.ports[0]!, "UNKNOWN", 10_000, 32)).wrong).toBe(0);
  const result = await soak(r.proc.pid, r.ports[0]!, "UNKNOWN", 20_000, 32);
  expect(result.wrong).toBe(0);
  expect(result.growth).toBeLessThanOrEqual(0.1);
}, 90_000);
