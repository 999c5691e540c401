#!/usr/bin/env bun
// argv + environment -> config -> listeners and poller. The only place that
// prints fatal errors and exits: 2 for a bad configuration, 1 for a start-up
// failure (an address that cannot be served).
import pkg from "../package.json";
import { buildConfig, ConfigError, formatAddress, formatDuration, helpText, parseArgv, redactUrl } from "./config.ts";
import { raiseFdLimit, somaxconn } from "./backlog.ts";
import { resolveTarget } from "./db.ts";
import { listen, ListenError, listenError, rawHandler, type Gate, type Listener } from "./listeners.ts";
import { createLogger, type Logger } from "./log.ts";
import { createMetrics, OVER_LIMIT, RESULTS } from "./metrics.ts";
import { startPoller } from "./poller.ts";
import { buildResponses, createStatus, STATE_NAMES } from "./states.ts";

function fatal(message: string, hint: string | undefined, exitCode: number): never {
  process.stderr.write(`replstatus: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const env = process.env;
  let raw;
  let config;
  let target;
  try {
    raw = parseArgv(argv);
    if (raw.has("help")) {
      process.stdout.write(helpText(pkg.version));
      return;
    }
    if (raw.has("version")) {
      process.stdout.write(`replstatus ${pkg.version} (bun ${Bun.version})\n`);
      return;
    }
    config = buildConfig(raw, env);
    target = resolveTarget(config.db, env);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    throw err;
  }

  const log = createLogger();
  const status = createStatus((from, to, reason) => log.info(`${STATE_NAMES[from]} -> ${STATE_NAMES[to]} (${reason})`));
  const responses = buildResponses(config.texts);
  const handler = rawHandler(status.cell, responses);
  const metrics = createMetrics(config.listen.length);

  // At the open-file limit Bun's accept loop spins at full CPU without telling
  // (EMFILE; measured with Bun 1.4.5), and there is no hook to learn of it. So
  // the defence is to never get there: a socket over --max-connections is
  // closed the moment it is accepted, and the limit is kept FD_RESERVE below
  // the open-file limit, leaving room for the runtime, the database connection
  // and the metrics endpoint.
  const fdLimit = raiseFdLimit();
  const maxConnections = fdLimit === undefined ? config.maxConnections : fitFdLimit(config.maxConnections, fdLimit);
  const gate: Gate = { allow: config.allow, maxConnections, open: 0, counters: metrics.connections };

  const effectiveBacklog = Math.min(config.backlog, somaxconn() ?? config.backlog);
  const listeners: Listener[] = [];
  try {
    for (const [i, address] of config.listen.entries()) {
      listeners.push(listen(address, handler, gate, i, config.backlog, 0));
    }
  } catch (err) {
    for (const l of listeners) l.stop();
    if (err instanceof ListenError) fatal(err.message, err.hint, 1);
    throw err;
  }
  metrics.listenerNames = listeners.map((l) => `${l.address.mode} ${formatAddress(l.address)}`);

  let metricsServer: ReturnType<typeof Bun.serve> | undefined;
  if (config.metricsListen) {
    try {
      metricsServer = Bun.serve({
        hostname: config.metricsListen.host,
        port: config.metricsListen.port,
        fetch: (req) =>
          new URL(req.url).pathname === "/metrics"
            ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } })
            : new Response("not found\n", { status: 404 }),
      });
    } catch (err) {
      for (const l of listeners) l.stop();
      const e = listenError(config.metricsListen, err);
      fatal(e.message, e.hint, 1);
    }
  }

  log.info(
    `replstatus ${pkg.version} serving ${listeners.map((l) => `${l.address.mode} ${formatAddress(l.address)}`).join(", ")}; ` +
      `database ${redactUrl(target.display)}; poll every ${formatDuration(config.pollIntervalMs)}, ` +
      `stale after ${formatDuration(config.staleAfterMs)}` +
      (metricsServer
        ? `; metrics http ${formatAddress({ host: config.metricsListen!.host, port: metricsServer.port! })}/metrics`
        : ""),
  );
  log.info(
    `listen backlog ${effectiveBacklog}` +
      (effectiveBacklog < config.backlog ? ` (--backlog ${config.backlog} capped by net.core.somaxconn)` : "") +
      `; max connections ${maxConnections}` +
      (maxConnections < config.maxConnections ? ` (--max-connections ${config.maxConnections} lowered to fit)` : "") +
      `; open-file limit ${fdLimit ?? "unknown"}` +
      (config.allow ? `; answering only ${config.allow.cidrs.join(", ")}` : ""),
  );
  for (const l of listeners) {
    if (l.backlogError) {
      log.warning(
        `could not set the listen backlog of ${formatAddress(l.address)}: ${l.backlogError}; it stays at 512`,
      );
    }
  }
  const overLimitTimer = watchOverLimit(metrics.connections, gate, log);

  const poller = startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    status,
    log,
    observer: metrics,
  });
  metrics.attach({
    state: () => status.state,
    stateChanges: () => status.changes,
    facts: () => poller.facts,
    openConnections: () => gate.open,
    maxConnections: () => gate.maxConnections,
    fdLimit: () => fdLimit,
  });

  // Stop accepting first, so no client is told anything after the poller is
  // gone; then close the database connection politely.
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    for (const l of listeners) l.stop();
    clearInterval(overLimitTimer);
    void metricsServer?.stop(true);
    await poller.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/** Open files the process needs besides client sockets: runtime, database, metrics. */
const FD_RESERVE = 32;

function fitFdLimit(maxConnections: number, fdLimit: number): number {
  return Math.max(1, Math.min(maxConnections, fdLimit - FD_RESERVE));
}

// Connections over the limit are counted on the hot path and logged here, once
// when it starts and once when it ends, never per connection.
function watchOverLimit(counters: Float64Array, gate: Gate, log: Logger): Timer {
  let last = 0;
  let limited = false;
  let atStart = 0;
  const timer = setInterval(() => {
    let total = 0;
    for (let i = OVER_LIMIT; i < counters.length; i += RESULTS.length) total += counters[i]!;
    if (total > last && !limited) {
      limited = true;
      atStart = last;
      log.warning(
        `connection limit reached: ${gate.open} open, closing new connections unanswered (--max-connections ${gate.maxConnections})`,
      );
    } else if (total === last && limited) {
      limited = false;
      log.info(`connections below the limit again; ${total - atStart} closed unanswered meanwhile`);
    }
    last = total;
  }, 1000);
  timer.unref();
  return timer;
}

await main(process.argv.slice(2));
