// A promotion on a real pair, watched by three responders on the standby: the
// poll worker shows it before the main thread hears of it (cell.ts, promote)
// only where the main thread would show MASTER too. Under the maint override
// and under a fence (the isolation rule, its only peer unreachable) no probe
// may hear MASTER across the promotion; a plain responder says MASTER and
// logs the promotion once. The word's writes one by one: test/unit/promote-cell.test.ts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { cleanEnv, MAIN, startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";

useTimeouts();
const PROBERS = 32;

let pg: PgPair;
let dir: string;
let plain: Responder;
let inMaint: Responder;
let fenced: Responder;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "replstatus-promote-"));
  pg = await startPair();
  const base = ["--listen", "127.0.0.1:0", "--db", pg.standby.url];
  plain = await startResponder([...base, "--control-socket", join(dir, "plain.sock")]);
  inMaint = await startResponder([...base, "--control-socket", join(dir, "maint.sock")]);
  // Nothing listens on port 1: the only peer is never reached, so the node is isolated from the start.
  fenced = await startResponder([
    ...base,
    "--control-socket",
    join(dir, "fenced.sock"),
    "--peer",
    "http://127.0.0.1:1",
    "--isolation-after",
    "1s",
  ]);
  const maint = Bun.spawn([process.execPath, MAIN, "maint", "--control-socket", join(dir, "maint.sock")], {
    env: cleanEnv(),
    stdout: "ignore",
    stderr: "ignore",
  });
  expect(await maint.exited).toBe(0);
  await waitForAnswer(plain.ports[0]!, "STANDBY");
  await inMaint.waitForLog(/unknown -> standby \(poll ok\)/);
  await waitForAnswer(fenced.ports[0]!, "STANDBY");
  await fenced.waitForLog(/split-brain guard: isolated/);
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all([plain, inMaint, fenced].map((r) => r?.[Symbol.asyncDispose]()));
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, HOOK_TIMEOUT_MS);

test("no MASTER across a promotion under maint or a fence; MASTER without them", async () => {
  const heard = { maint: new Set<string>(), fenced: new Set<string>() };
  let probes = 0;
  let promoted = false;
  // Probes without a pause, PROBERS at a time on each, from before the
  // promotion until every responder has seen it: they also keep the
  // listeners' thread busy, as a load does, so the worker's write comes well
  // before the main thread reads its message.
  const probe = async (port: number, into: Set<string>) => {
    while (!promoted) {
      into.add(await answer(port));
      probes++;
    }
  };
  const probing = Promise.all(
    Array.from({ length: PROBERS }, (_, i) =>
      i % 2 ? probe(inMaint.ports[0]!, heard.maint) : probe(fenced.ports[0]!, heard.fenced),
    ),
  );
  try {
    await waitFor("probes before the promotion", () => probes >= 20 * PROBERS, 10_000, 2);
    await pg.standby.promote();
    await plain.waitForLog(/standby -> primary \(promoted\)/);
    await inMaint.waitForLog(/standby -> primary \(promoted\)/);
    await fenced.waitForLog(/standby -> fenced \(isolated: /);
    // A few more rounds after the last of them.
    const after = probes + 20 * PROBERS;
    await waitFor("probes after the promotion", () => probes >= after, 10_000, 2);
  } finally {
    promoted = true;
    await probing;
  }
  expect([...heard.maint]).toEqual(["UNKNOWN"]);
  expect([...heard.fenced].sort()).toEqual(["FENCED", "STANDBY"]);
  expect(await answer(plain.ports[0]!)).toBe("MASTER");
  expect(plain.log.match(/-> primary/g)).toHaveLength(1);

  // The override lifted: the node under maint now says MASTER too.
  const ready = Bun.spawn([process.execPath, MAIN, "ready", "--control-socket", join(dir, "maint.sock")], {
    env: cleanEnv(),
    stdout: "ignore",
    stderr: "ignore",
  });
  expect(await ready.exited).toBe(0);
  expect(await answer(inMaint.ports[0]!)).toBe("MASTER");
});
