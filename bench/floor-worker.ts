// The floor (floor.ts) with the design's second thread: a bare Bun.listen that writes the banner
// and closes, plus one Worker that idles or, with --db, runs the poll query through postgres.js
// every 50 ms, as the poll worker does. What replstatus's two-thread design costs before any of
// replstatus's own code; memory.ts reads it beside the floor and replstatus. Prints `port=N`.
//
//   bun bench/floor-worker.ts [--db URL] [--interval-ms 50]
import { parseArgs } from "node:util";
import { announce } from "./announce.ts";

const POLL = "poll";

if (Bun.isMainThread) {
  const { values } = parseArgs({
    options: { db: { type: "string" }, "interval-ms": { type: "string", default: "50" } },
    strict: true,
  });
  const intervalMs = Number(values["interval-ms"]);
  if (!Number.isInteger(intervalMs) || intervalMs < 1) {
    console.error(
      `floor-worker: invalid value for --interval-ms: "${values["interval-ms"]}" (expected an integer >= 1)`,
    );
    process.exit(1);
  }
  const banner = Buffer.from("MASTER");
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.end(banner);
      },
      data() {},
    },
  });
  const worker = new Worker(import.meta.url);
  if (values.db) {
    worker.postMessage({ t: POLL, db: values.db, intervalMs });
    // Ready once the worker's first poll is done.
    await new Promise((resolve) => worker.addEventListener("message", resolve, { once: true }));
  }
  announce(listener);
} else {
  const self = globalThis as unknown as Worker;
  self.onmessage = async (event: MessageEvent<{ t: string; db: string; intervalMs: number }>) => {
    const { db, intervalMs } = event.data;
    // Loaded only when polling: the idle worker is a bare second thread.
    const { pollerLikeSql } = await import("./pgclient.ts");
    const { POLL_QUERY } = await import("../src/poll/facts.ts");
    const sql = pollerLikeSql(db);
    await sql.unsafe(POLL_QUERY, [false], { prepare: true });
    self.postMessage("ready");
    const tick = async () => {
      const t = performance.now();
      await sql.unsafe(POLL_QUERY, [false], { prepare: true });
      setTimeout(tick, Math.max(0, t + intervalMs - performance.now()));
    };
    void tick();
  };
}
