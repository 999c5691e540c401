// End to end: the real CLI against a real primary and streaming standby.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { POLL_QUERY } from "../../src/poll/facts.ts";
import { initNode, waitFor } from "../../src/demo/pg.ts";
import { answer, probe, waitForAnswer } from "../../src/demo/probe.ts";
import { useTimeouts } from "../kit/timeouts.ts";
import { usePair } from "../kit/pair.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { SHUTDOWN_BOUND_MS, KILL_BOUND_MS, READY_BOUND_MS, staleBoundMs, withSlack } from "../kit/bounds.ts";

const STALE_AFTER_MS = 1000;

useTimeouts();

// The primary through the libpq environment (its socket), the standby through a URL (TCP).
const pair = usePair({
  args: (role, node) =>
    role === "primary"
      ? ["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]
      : ["--listen", "127.0.0.1:0", "--db", node.url],
  env: (role) => role === "primary",
});

describe("answers", () => {
  test("exact bytes, no newline, closed with a FIN", async () => {
    expect(await probe(pair.onPrimary.ports[0]!)).toEqual({ text: "MASTER", close: "fin" });
    expect(await probe(pair.onStandby.ports[0]!)).toEqual({ text: "STANDBY", close: "fin" });
  });

  test("IPv6 listener", async () => {
    expect(await probe(pair.onPrimary.ports[1]!, "::1")).toEqual({ text: "MASTER", close: "fin" });
  });

  test("a peer that sends first still gets the whole reply and a FIN, not a reset", async () => {
    for (const send of ["hello\n", "GET / HTTP/1.0\r\n\r\n", "x".repeat(32 * 1024)]) {
      expect(await probe(pair.onPrimary.ports[0]!, "127.0.0.1", send)).toEqual({ text: "MASTER", close: "fin" });
    }
  });

  test("peers that reset, or connect and never read, do not break the process", async () => {
    const port = pair.onPrimary.ports[0]!;
    const sockets = Array.from({ length: 50 }, (_, i) => {
      const s = connect({ port, host: "127.0.0.1" });
      s.on("error", () => {});
      // Half of them send garbage and reset at once; the rest stay open without reading.
      if (i % 2 === 0) s.on("connect", () => (s.write(Buffer.from([0, 255, 13, 10])), s.resetAndDestroy()));
      else s.pause();
      return s;
    });
    await waitFor("all probe sockets connected", () => sockets.every((s) => !s.connecting));
    expect(await answer(port)).toBe("MASTER");
    for (const s of sockets) s.destroy();
    expect(pair.onPrimary.proc.exitCode).toBeNull();
  });

  test("the standby never tries LISTEN", () => {
    expect(pair.onStandby.log).not.toContain("LISTEN");
    expect(pair.onStandby.log).not.toContain("poll failed");
  });
});

describe("the poller", () => {
  test("a NOTIFY on the channel makes a primary poll at once", async () => {
    // Over TCP, so its backend is told apart from the other responder's (socket) one.
    await using slow = await startResponder([
      "--listen",
      "127.0.0.1:0",
      "--poll-interval",
      "30s",
      "--stale-after",
      "60s",
      "--db",
      pair.pg.primary.url,
    ]);
    await waitForAnswer(slow.ports[0]!, "MASTER");
    const lastQuery = () =>
      pair.pg.primary.sql(
        "select query from pg_stat_activity where application_name = 'replstatus' and client_addr is not null",
      );
    // After the first poll saw a primary it sent LISTEN; the next poll is 30 s away.
    await waitFor("the LISTEN", async () => (await lastQuery()).startsWith("listen"));
    await pair.pg.primary.sql("notify replstatus");
    await waitFor(
      "a poll after the NOTIFY",
      async () => (await lastQuery()).startsWith(POLL_QUERY.split("\n")[0]!),
      5000,
    );
    expect(slow.log).not.toContain("could not LISTEN");
  });
});

describe("failures end MASTER", () => {
  test("SIGSTOP of every PostgreSQL process: UNKNOWN within stale-after, MASTER again after SIGCONT", async () => {
    const port = pair.onPrimary.ports[0]!;
    expect(await answer(port)).toBe("MASTER");
    const t0 = performance.now();
    pair.pg.primary.signalAll("SIGSTOP");
    try {
      await waitForAnswer(port, "UNKNOWN", withSlack(staleBoundMs(STALE_AFTER_MS)));
      // Fresh means the last good poll *started* less than stale-after ago. A primary polls every
      // stale-after / 4 (poll/worker/loop.ts), so that poll may have started up to a quarter before the stop;
      // 100 ms more for timers. Never UNKNOWN earlier than that.
      expect(performance.now() - t0).toBeGreaterThan(STALE_AFTER_MS - STALE_AFTER_MS / 4 - 100);
    } finally {
      pair.pg.primary.signalAll("SIGCONT");
    }
    await waitForAnswer(port, "MASTER", 10_000);
    await pair.onPrimary.waitForLog(/primary -> unknown \(no successful poll for 1s\)/);
  });

  test("fast shutdown: UNKNOWN promptly; a restart comes back", async () => {
    const port = pair.onPrimary.ports[0]!;
    const stopping = pair.pg.primary.stop("fast");
    await waitForAnswer(port, "UNKNOWN", withSlack(SHUTDOWN_BOUND_MS));
    await stopping;
    expect(await answer(port)).toBe("UNKNOWN");
    await pair.pg.primary.start();
    await waitForAnswer(port, "MASTER", 10_000);
  });

  test("kill -9 of the postmaster and its children: UNKNOWN promptly", async () => {
    const port = pair.onPrimary.ports[0]!;
    expect(await answer(port)).toBe("MASTER");
    const pid = pair.pg.primary.pid();
    pair.pg.primary.signalAll("SIGKILL");
    await waitForAnswer(port, "UNKNOWN", withSlack(KILL_BOUND_MS));
    // PostgreSQL refuses to start while the old postmaster's pid exists, even as a zombie.
    await waitFor("the killed postmaster to be reaped", () => !existsSync(`/proc/${pid}`));
    await pair.pg.primary.start();
    await waitForAnswer(port, "MASTER", 10_000);
  });
});

test("promotion flips the standby to MASTER", async () => {
  const port = pair.onStandby.ports[0]!;
  expect(await answer(port)).toBe("STANDBY");
  await pair.pg.standby.promote();
  await pair.pg.standby.waitPrimary();
  // PostgreSQL says primary now: the answer follows within a poll interval or so.
  await waitForAnswer(port, "MASTER", withSlack(READY_BOUND_MS));
  await pair.onStandby.waitForLog(/standby -> primary \(promoted\)/);
});

test("started before PostgreSQL: UNKNOWN, then MASTER once it is up", async () => {
  await using node = await initNode();
  await using r = await startResponder(["--listen", "127.0.0.1:0"], node.primary.env);
  await r.waitForLog(/poll failed: no server socket/);
  expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
  await node.primary.start();
  await waitForAnswer(r.ports[0]!, "MASTER", 10_000);
  await r.waitForLog(/unknown -> primary \(poll ok\)/);
});
