// The floor: the least a Bun server can do per connection (write a fixed banner and close).
// Every replstatus figure is read against this, measured in the same run with the same client.
// It runs in its own process; the first stdout line is `port=N` so a parent can find it.
//
//   bun bench/floor.ts [--port 0] [--host 127.0.0.1] [--text MASTER] [--backlog N] [--tick-ms N] [--drain]
//
// --backlog raises the listen backlog past Bun's fixed 512 (src/listen/backlog.ts); the default
// leaves the socket exactly as Bun.listen made it. --tick-ms adds an empty timer at that
// interval: the least a Bun process that polls something can cost when idle. --drain ends a
// connection as replstatus does (write, shut down the write side, close on the peer's FIN:
// src/listen/raw.ts) instead of closing at once: what the FIN-after-reply rule costs on bare Bun.
import { parseArgs } from "node:util";
import { setBacklog } from "../src/listen/backlog.ts";
import { announce } from "./announce.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    text: { type: "string", default: "MASTER" },
    backlog: { type: "string", default: "0" },
    "tick-ms": { type: "string", default: "0" },
    drain: { type: "boolean", default: false },
  },
  strict: true,
});

const port = Number(values.port);
const backlog = Number(values.backlog);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`floor: invalid value for --port: "${values.port}" (expected an integer 0..65535)`);
  process.exit(1);
}
if (!Number.isInteger(backlog) || backlog < 0) {
  console.error(`floor: invalid value for --backlog: "${values.backlog}" (expected an integer >= 0)`);
  process.exit(1);
}

const tickMs = Number(values["tick-ms"]);
if (!Number.isInteger(tickMs) || tickMs < 0) {
  console.error(`floor: invalid value for --tick-ms: "${values["tick-ms"]}" (expected an integer >= 0)`);
  process.exit(1);
}
if (tickMs > 0) setInterval(() => {}, tickMs);

const banner = Buffer.from(values.text);

// The data handler is a no-op on purpose: input is ignored, as in the raw protocol.
const closeAtOnce = {
  open(socket: Bun.Socket) {
    socket.end(banner);
  },
  data() {},
};
// Bun closes a socket whose write side is shut down when the peer's FIN arrives.
const drainToFin = {
  open(socket: Bun.Socket) {
    socket.write(banner);
    socket.shutdown();
  },
  data() {},
};

function listen() {
  try {
    return Bun.listen({
      hostname: values.host,
      port,
      allowHalfOpen: values.drain,
      socket: values.drain ? drainToFin : closeAtOnce,
    });
  } catch (e) {
    console.error(`floor: could not listen on ${values.host}:${port}: ${(e as Error).message}`);
    process.exit(1);
  }
}
const listener = listen();

if (backlog > 0) {
  // The same listen(2) call replstatus makes; `fd` is there at run time but not in Bun's types.
  const failed = setBacklog((listener as unknown as { fd: number }).fd, backlog);
  if (failed) {
    console.error(`floor: could not set the listen backlog: ${failed}`);
    process.exit(1);
  }
}

announce(listener);
