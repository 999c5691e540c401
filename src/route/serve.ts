// `replstatus route`'s own listener (--listen http:HOST:PORT), for the status
// page and scripts: GET /status (the router's view of every server: its
// stream, the node's last event, haproxy's state, the last push) and GET
// /events (the same object as Server-Sent Events, `event: route`, at every
// change, with a heartbeat comment). A subscriber that does not keep up is
// dropped; nothing is queued for it beyond the stream's small buffer.
import { listenError } from "../listen/gate.ts";
import { loadPeerTls } from "../listen/tls.ts";
import { createLogger, type Logger } from "../log.ts";
import type { RouteConfig } from "../config/types.ts";
import { startRouter, type Router } from "./router.ts";
import { uiPage } from "../ui/page.ts";

/** Subscribers of the router's /events at most; more get 503. */
export const MAX_ROUTE_SUBSCRIBERS = 16;
export const ROUTE_HEARTBEAT_MS = 250;
/** Events a subscriber may fall behind before it is dropped. */
const BEHIND_LIMIT_EVENTS = 64;

export interface RouteProcess {
  log: Logger;
  /** The port of --listen, when given. */
  port: number | undefined;
  stop(): Promise<void>;
}

/** Starts the router and its listener; throws TlsError for bad --peer-* files, a listen error as it comes. */
export function startRoute(config: RouteConfig): RouteProcess {
  const log = createLogger(undefined, config.logFormat);
  const router = startRouter(
    {
      haproxySocket: config.haproxySocket,
      servers: config.servers,
      replicaBackends: config.replicaBackends,
      shutdownSessions: config.shutdownSessions,
      reconcileIntervalMs: config.reconcileIntervalMs,
      streamTimeoutMs: config.streamTimeoutMs,
      tls: loadPeerTls(config.peerTls),
    },
    log,
  );
  const server = config.listen && serveStatus(config.listen, router);
  const names = config.servers.map((s) => `${s.backend}/${s.server}=${s.url}`).join(", ");
  log.info(
    `replstatus route driving haproxy on ${config.haproxySocket}: ${names}` +
      (server ? `; status http ${config.listen!.host}:${server.port}` : ""),
  );
  return {
    log,
    port: server ? server.port : undefined,
    async stop() {
      server?.stop(true);
      await router.stop();
    },
  };
}

function serveStatus(address: { host: string; port: number }, router: Router) {
  const subscribers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const encoder = new TextEncoder();
  let seq = 0;
  const send = (chunk: Uint8Array) => {
    for (const c of subscribers) {
      if ((c.desiredSize ?? 0) < -BEHIND_LIMIT_EVENTS) {
        subscribers.delete(c);
        c.close();
      } else c.enqueue(chunk);
    }
  };
  const event = () => encoder.encode(`id: ${++seq}\nevent: route\ndata: ${JSON.stringify(router.status())}\n\n`);
  router.onChange(() => {
    if (subscribers.size > 0) send(event());
  });
  const beat = setInterval(() => send(encoder.encode(`: ${Date.now()}\n\n`)), ROUTE_HEARTBEAT_MS);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = listenStatus(address, router, subscribers, event);
  } catch (err) {
    clearInterval(beat);
    throw listenError(address, err);
  }
  return {
    port: server.port,
    stop(closeActive: boolean) {
      clearInterval(beat);
      for (const c of subscribers) c.close();
      subscribers.clear();
      void server.stop(closeActive);
    },
  };
}

function listenStatus(
  address: { host: string; port: number },
  router: Router,
  subscribers: Set<ReadableStreamDefaultController<Uint8Array>>,
  event: () => Uint8Array,
) {
  const encoder = new TextEncoder();
  return Bun.serve({
    hostname: address.host,
    port: address.port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/status") return Response.json(router.status(), { headers: { "cache-control": "no-store" } });
      if (path === "/ui") return new Response(uiPage().html, { headers: uiPage().headers });
      if (path !== "/events") return new Response('{"error":"not found"}\n', { status: 404 });
      if (subscribers.size >= MAX_ROUTE_SUBSCRIBERS) {
        return new Response('{"error":"too many event subscribers"}\n', { status: 503 });
      }
      let mine: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>(
        {
          start(controller) {
            mine = controller;
            subscribers.add(controller);
            controller.enqueue(encoder.encode("retry: 1000\n\n"));
            controller.enqueue(event());
          },
          cancel() {
            subscribers.delete(mine);
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, {
        headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
      });
    },
  });
}
