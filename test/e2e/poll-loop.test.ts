// The poll loop (src/poll/worker/loop.ts) on its own, against a real primary: an answer that arrives
// as old as --stale-after is stale, never ok. The poll worker shows a promotion from an ok poll
// at once (src/cell.ts, promote), so an over-age answer must not reach it as one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { offersTls } from "../../src/poll/worker/connect.ts";
import { pollLoop, type Loop } from "../../src/poll/worker/loop.ts";
import { resolveTarget } from "../../src/poll/target.ts";
import { startPrimary, waitFor, type PgPrimary } from "../../src/demo/pg.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";

useTimeouts();

let pg: PgPrimary;
beforeAll(async () => {
  pg = await startPrimary();
}, HOOK_TIMEOUT_MS);
afterAll(async () => {
  await pg?.stop();
}, HOOK_TIMEOUT_MS);

test("a shortened --stale-after holds the answer standing and the poll in flight to the new bound", async () => {
  const events: string[] = [];
  let lastOkAt = 0;
  // A primary polls only to stay fresh: every 4000 / 4 = 1000 ms here.
  const loop: Loop = pollLoop(
    {
      target: resolveTarget(pg.primary.url, {}),
      connectTimeoutMs: 2000,
      channel: "replstatus_test",
      pollIntervalMs: 50,
      staleAfterMs: 4000,
    },
    {
      ok: () => {
        lastOkAt = performance.now();
        events.push("ok");
      },
      fail: (reason) => events.push(`fail ${reason}`),
      stale: () => events.push("stale"),
      warn: () => {},
      note: () => {},
    },
  );
  let backends: number[] = [];
  try {
    await waitFor("a first good poll", async () => events.includes("ok"));
    backends = (
      await pg.primary.sql(
        "select string_agg(pid::text, ',') from pg_stat_activity where application_name = 'replstatus'",
      )
    )
      .split(",")
      .map(Number);
    expect(backends.length).toBeGreaterThan(0);
    // Its backend stops answering: the next poll, due 1000 ms after the last, hangs under its
    // own deadline of 4 s.
    for (const pid of backends) process.kill(pid, "SIGSTOP");
    const before = events.length;
    await waitFor("the next poll to be under way", async () => performance.now() - lastOkAt > 1500, 10_000);
    expect(events.slice(before)).toEqual([]);
    // A reload shortens the bound to 200 ms while that poll is in flight: the last good
    // poll's answer is stale by the new bound at once, not 4 s after it.
    loop.retime({ pollIntervalMs: 50, staleAfterMs: 200, connectTimeoutMs: 2000 });
    await waitFor("the answer to go stale by the new bound", async () => events.slice(before).includes("stale"), 1000);
    expect(events.slice(before)).toEqual(["stale"]);
    const resumed = events.length;
    for (const pid of backends) process.kill(pid, "SIGCONT");
    backends = [];
    await waitFor("the poll in flight to end", async () => events.length > resumed);
    // Its answer arrives older than the bound: stale, never ok.
    expect(events[resumed]).toBe("stale");
    // The polls after it are fresh again.
    await waitFor("a good poll after it", async () => events.slice(resumed + 1).includes("ok"));
  } finally {
    for (const pid of backends) process.kill(pid, "SIGCONT");
    await loop.stop();
  }
});

test("the TLS question to a server that accepts but never answers ends its socket at the timeout", async () => {
  // A stand-in for a SIGSTOPped server, whose kernel still completes the handshake.
  let closed = 0;
  const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {}, close: () => void closed++ } });
  try {
    expect(await offersTls("127.0.0.1", silent.port, 100)).toBeUndefined();
    await waitFor("the client to close its socket", () => closed === 1, 5000);
  } finally {
    silent.stop(true);
  }
});

test("a connection's first poll that answers over age does not lose the system identifier", async () => {
  // system_id is read by a connection's first poll only (src/poll/facts.ts). With the
  // postmaster stopped the first poll waits for its backend, and its row arrives stale:
  // it is not handed on, so the next poll must ask for system_id again.
  const staleAfterMs = 300;
  const events: string[] = [];
  const systemIds: unknown[] = [];
  const pid = pg.primary.pid();
  process.kill(pid, "SIGSTOP");
  const startedAt = performance.now();
  const loop: Loop = pollLoop(
    {
      target: resolveTarget(pg.primary.url, {}),
      connectTimeoutMs: 10_000,
      channel: "replstatus_test",
      pollIntervalMs: 50,
      staleAfterMs,
    },
    {
      ok: (row) => {
        events.push("ok");
        systemIds.push(row.system_id);
      },
      fail: (reason) => events.push(`fail ${reason}`),
      stale: () => events.push("stale"),
      warn: () => {},
      note: () => {},
    },
  );
  try {
    await waitFor(
      "the first poll to outlive --stale-after",
      async () => performance.now() - startedAt > 3 * staleAfterMs,
    );
    process.kill(pid, "SIGCONT");
    await waitFor("a good poll", async () => events.includes("ok"));
    expect(events[0]).toBe("stale");
    const systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
    expect(systemIds[0]).toBe(systemId);
  } finally {
    process.kill(pid, "SIGCONT");
    await loop.stop();
  }
});
