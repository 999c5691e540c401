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
import { startRouter, type Router, type RouteSettings } from "./router.ts";
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
  /**
   * Applies a configuration read again (SIGHUP): a new router takes over; a server in both keeps its
   * state in haproxy, one that went is handed back to haproxy's checks. --listen and --log-format stay
   * as started. Throws TlsError for bad --peer-* files, with the running router untouched.
   */
  reload(config: RouteConfig): Promise<void>;
  stop(): Promise<void>;
}

function routerSettings(config: RouteConfig): RouteSettings {
  return {
    haproxySocket: config.haproxySocket,
    servers: config.servers,
    replicaBackends: config.replicaBackends,
    shutdownSessions: config.shutdownSessions,
    reconcileIntervalMs: config.reconcileIntervalMs,
    streamTimeoutMs: config.streamTimeoutMs,
    tls: loadPeerTls(config.peerTls),
  };
}

const serverNames = (config: RouteConfig) => config.servers.map((s) => `${s.backend}/${s.server}=${s.url}`).join(", ");

/** Starts the router and its listener; throws TlsError for bad --peer-* files, a listen error as it comes. */
export function startRoute(config: RouteConfig): RouteProcess {
  const log = createLogger(undefined, config.logFormat);
  let current = config;
  let router = startRouter(routerSettings(config), log);
  const server = config.listen && serveStatus(config.listen, () => router);
  router.onChange(() => server?.changed());
  log.info(
    `replstatus route driving haproxy on ${config.haproxySocket}: ${serverNames(config)}` +
      (server ? `; status http ${config.listen!.host}:${server.port}` : ""),
  );
  return {
    log,
    port: server ? server.port : undefined,
    async reload(next) {
      const settings = routerSettings(next);
      const kindOf = (c: RouteConfig, backend: string) => c.replicaBackends.includes(backend);
      const kept = (backend: string, name: string) =>
        next.haproxySocket === current.haproxySocket &&
        kindOf(next, backend) === kindOf(current, backend) &&
        next.servers.some((t) => t.backend === backend && t.server === name);
      const fixed = [
        JSON.stringify(next.listen) !== JSON.stringify(current.listen) && "--listen",
        next.logFormat !== current.logFormat && "--log-format",
      ].filter(Boolean);
      await router.stop(kept);
      router = startRouter(settings, log);
      router.onChange(() => server?.changed());
      server?.changed();
      current = { ...next, listen: current.listen, logFormat: current.logFormat };
      log.info(`SIGHUP: reloaded; driving haproxy on ${next.haproxySocket}: ${serverNames(next)}`);
      if (fixed.length > 0) log.warning(`SIGHUP: ${fixed.join(" and ")} changed, waiting for a restart`);
    },
    async stop() {
      server?.stop(true);
      await router.stop();
    },
  };
}

function serveStatus(address: { host: string; port: number }, routerNow: () => Router) {
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
  const event = () => encoder.encode(`id: ${++seq}\nevent: route\ndata: ${JSON.stringify(routerNow().status())}\n\n`);
  const beat = setInterval(() => send(encoder.encode(`: ${Date.now()}\n\n`)), ROUTE_HEARTBEAT_MS);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = listenStatus(address, routerNow, subscribers, event);
  } catch (err) {
    clearInterval(beat);
    throw listenError(address, err);
  }
  return {
    port: server.port,
    /** The router's status changed: an event to every subscriber. */
    changed() {
      if (subscribers.size > 0) send(event());
    },
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
  routerNow: () => Router,
  subscribers: Set<ReadableStreamDefaultController<Uint8Array>>,
  event: () => Uint8Array,
) {
  const encoder = new TextEncoder();
  return Bun.serve({
    hostname: address.host,
    port: address.port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/status") return Response.json(routerNow().status(), { headers: { "cache-control": "no-store" } });
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
