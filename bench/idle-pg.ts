// The idle poll loop without the rest of replstatus, to see where an idle responder's CPU
// time goes. Prints `port=0` once connected (so server.ts can start it), then runs one query
// every --interval-ms until killed.
//
//   bun bench/idle-pg.ts --db URL [--interval-ms 50] [--client postgres|raw]
//
// postgres: the poller's query through postgres.js with the poller's options (prepared).
// raw: the same query as a simple-protocol Query message over a plain Bun socket, no driver:
//      what the round trip costs the process when nothing but the bytes are handled.
import { parseArgs } from "node:util";
import { pollerLikeSql } from "./pgclient.ts";
import { POLL_QUERY } from "../src/poll/facts.ts";

const { values } = parseArgs({
  options: {
    db: { type: "string" },
    "interval-ms": { type: "string", default: "50" },
    client: { type: "string", default: "postgres" },
  },
  strict: true,
});
if (!values.db) {
  console.error("idle-pg: --db URL is required");
  process.exit(1);
}
const intervalMs = Number(values["interval-ms"]);
const url = new URL(values.db);

function loop(once: () => Promise<unknown>): void {
  const tick = async () => {
    const t = performance.now();
    await once();
    setTimeout(tick, Math.max(0, t + intervalMs - performance.now()));
  };
  void tick();
}

if (values.client === "postgres") {
  const sql = pollerLikeSql(values.db);
  // As the poller asks once it knows the system identifier ($1 false).
  await sql.unsafe(POLL_QUERY, [false], { prepare: true });
  console.log("port=0");
  loop(() => sql.unsafe(POLL_QUERY, [false], { prepare: true }));
} else {
  // Startup (protocol 3.0, trust auth), then one 'Q' message per tick; a tick ends at
  // ReadyForQuery ('Z'). Message formats: PostgreSQL docs, "Message Formats" (55.7).
  const cstr = (s: string) => Buffer.from(`${s}\0`);
  const params = Buffer.concat([
    cstr("user"),
    cstr(decodeURIComponent(url.username)),
    cstr("database"),
    cstr(url.pathname.slice(1) || "postgres"),
    Buffer.from([0]),
  ]);
  const startup = Buffer.alloc(8);
  startup.writeInt32BE(8 + params.length, 0);
  startup.writeInt32BE(196608, 4);
  const body = cstr(POLL_QUERY.replace("$1::bool", "false"));
  const query = Buffer.alloc(5);
  query.write("Q", 0);
  query.writeInt32BE(4 + body.length, 1);
  const queryMsg = Buffer.concat([query, body]);
  let ready: (() => void) | undefined;
  const socket = await Bun.connect({
    hostname: url.hostname,
    port: Number(url.port || 5432),
    socket: {
      data(_s, chunk) {
        // ReadyForQuery is the last message of every exchange: 'Z', length 5, status byte.
        if (chunk.length >= 6 && chunk[chunk.length - 6] === 0x5a) ready?.();
      },
      close() {
        process.exit(1);
      },
    },
  });
  const exchange = (msg: Uint8Array) =>
    new Promise<void>((resolve) => {
      ready = resolve;
      socket.write(msg);
    });
  await exchange(Buffer.concat([startup, params]));
  console.log("port=0");
  loop(() => exchange(queryMsg));
}
