// The router against a recorded haproxy (a Runtime that keeps the commands it is given) and a node's
// GET /events served here, so that the test decides when the first event comes: a router leaves a
// server as it stands until its node's stream has spoken or failed, and a stop hands back only what a
// reload does not keep.
import { afterEach, expect, test } from "bun:test";
import { waitFor } from "../../src/demo/proc.ts";
import { createLogger } from "../../src/log.ts";
import type { Runtime } from "../../src/route/haproxy.ts";
import { startRouter, type Router } from "../../src/route/router.ts";
import { ADMIN_FORCED_DRAIN, OP_RUNNING, type HaproxyServer } from "../../src/route/rules.ts";

/** haproxy as the runtime API shows it: a state per server that the commands change, and every command run. */
function recordedHaproxy(servers: Record<string, HaproxyServer>) {
  const commands: string[] = [];
  let reads = 0;
  const runtime: Runtime = {
    run: async (lines) => {
      commands.push(...lines);
      for (const line of lines) {
        const [, name, what] = /^set server (\S+) (state drain|state ready|health up|health down)$/.exec(line) ?? [];
        const s = servers[name!];
        if (!s) continue;
        if (what === "state drain") s.adminState |= ADMIN_FORCED_DRAIN;
        if (what === "state ready") s.adminState &= ~ADMIN_FORCED_DRAIN;
        if (what === "health up") s.opState = OP_RUNNING;
        if (what === "health down") s.opState = 0;
      }
      return "";
    },
    serversState: async (backend) => {
      reads++;
      return new Map(
        Object.entries(servers)
          .filter(([k]) => k.startsWith(`${backend}/`))
          .map(([k, s]) => [k.slice(backend.length + 1), s]),
      );
    },
  };
  return { runtime, commands, reads: () => reads };
}

/** A node's /events that sends nothing until send(): the first event is the test's to give. */
function heldNode() {
  const waiting: ((event: string) => void)[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch() {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("retry: 1000\n\n"));
          waiting.push((event) => controller.enqueue(new TextEncoder().encode(event)));
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    connected: () => waiting.length > 0,
    send(state: string) {
      const data = { seq: 1, state, answer: state.toUpperCase(), reason: "test", at: new Date().toISOString() };
      for (const w of waiting) w(`id: 1\nevent: state\ndata: ${JSON.stringify({ ...data, override: "ready" })}\n\n`);
    },
    stop: () => void server.stop(true),
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function route(url: string, runtime: Runtime): Router {
  const router = startRouter(
    {
      haproxySocket: "/nonexistent/admin.sock",
      servers: [{ backend: "replicas", server: "r1", url }],
      replicaBackends: ["replicas"],
      shutdownSessions: false,
      reconcileIntervalMs: 10,
      streamTimeoutMs: 5000,
      tls: undefined,
    },
    createLogger(() => {}),
    runtime,
  );
  cleanups.push(() => router.stop());
  return router;
}

test("a drain left by an earlier router stands until the node's first event, which decides", async () => {
  const haproxy = recordedHaproxy({ "replicas/r1": { opState: OP_RUNNING, adminState: ADMIN_FORCED_DRAIN } });
  const node = heldNode();
  cleanups.push(node.stop);
  route(node.url, haproxy.runtime);
  await waitFor("the stream open, and five reconciles", () => node.connected() && haproxy.reads() >= 5);
  expect(haproxy.commands).toEqual([]);
  node.send("standby");
  await waitFor("a command", () => haproxy.commands.length > 0);
  expect(haproxy.commands).toEqual(["set server replicas/r1 state ready"]);
});

test("a node whose stream fails is handed back to the checks: a drain is undone", async () => {
  const haproxy = recordedHaproxy({ "replicas/r1": { opState: OP_RUNNING, adminState: ADMIN_FORCED_DRAIN } });
  // A port nothing listens on: the first connect fails, and the stream is lost.
  const gone = heldNode();
  gone.stop();
  route(gone.url, haproxy.runtime);
  await waitFor("a command", () => haproxy.commands.length > 0);
  expect(haproxy.commands).toEqual(["set server replicas/r1 state ready"]);
});

test("a stop that keeps a server pushes nothing for it; a plain stop undoes the drain", async () => {
  for (const keep of [true, false]) {
    const haproxy = recordedHaproxy({ "replicas/r1": { opState: OP_RUNNING, adminState: ADMIN_FORCED_DRAIN } });
    const node = heldNode();
    cleanups.push(node.stop);
    const router = route(node.url, haproxy.runtime);
    await waitFor("the stream open", () => node.connected());
    const before = haproxy.reads();
    node.send("lagging");
    await waitFor("two reconciles after the event", () => haproxy.reads() >= before + 2);
    await router.stop(() => keep);
    expect(haproxy.commands).toEqual(keep ? [] : ["set server replicas/r1 state ready"]);
  }
});
