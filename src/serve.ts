// The wiring: configuration in, a running responder out. Start-up order
// follows the data backwards (status, listeners, control socket, metrics,
// then the poller), so a failure to bind happens before any database work.
// Everything started is pushed on one stack, which is the only teardown path:
// for a start-up failure half-way and for a shutdown alike.
import { createStatus, STATE_NAMES, type Status } from "./cell.ts";
import { startGuard, type Guard } from "./cluster/peers.ts";
import { defaultControlSocket, type Config } from "./config/config.ts";
import { agentHandler, weightBucket } from "./listen/agent.ts";
import { buildResponses, type Responses } from "./listen/answers.ts";
import { raiseFdLimit, somaxconn } from "./listen/backlog.ts";
import { listen, listenError, type Gate, type Listener } from "./listen/gate.ts";
import { rawHandler } from "./listen/raw.ts";
import { httpHandler } from "./listen/http/handler.ts";
import { createLogger, type Logger } from "./log.ts";
import { startControl } from "./ops/control.ts";
import { fitFdLimit, watchOverLimit } from "./ops/limits.ts";
import { createMetrics, type Metrics } from "./ops/metrics.ts";
import { apply, reloadConfig, type Reloadable } from "./ops/reload.ts";
import { listenerName, reportStart } from "./ops/report.ts";
import { createLagJudge } from "./poll/lag.ts";
import type { PollFacts } from "./poll/facts.ts";
import { startPoller, type Poller } from "./poll/poller.ts";
import { resolveTarget } from "./poll/target.ts";

export interface StartOptions {
  version: string;
  env: Record<string, string | undefined>;
  /** --db came from the command line, where any local user can read it (ps). */
  dbOnCommandLine?: boolean;
  /** Reads the configuration again, for a reload; throws ConfigError. */
  load(): Promise<Config>;
  /** The process can no longer serve safely (the poll worker died): print and exit. */
  onFatal(message: string, hint: string): void;
}

export interface Server {
  /** Logs the start-up report: its "serving" line means ready. */
  announce(): void;
  /** Stops accepting, then tears down everything else. */
  stop(signal: string): Promise<void>;
  /** Reads the configuration again and applies what can change; one at a time. */
  reload(): Promise<void>;
}

/**
 * Starts serving `config`. Throws ConfigError (the database setting),
 * ListenError or ControlError, after undoing whatever had been started.
 */
export async function start(config: Config, opts: StartOptions): Promise<Server> {
  const target = resolveTarget(config.db, opts.env);
  const log = createLogger(undefined, config.logFormat);
  if (target.passwordInDb && opts.dbOnCommandLine) {
    log.warning(
      "--db holds a password, which every user of this host can read in the process list; put it in ~/.pgpass (or the file PGPASSFILE names) instead, or use a service file or certificate authentication",
    );
  }
  const status = createStatus((from, to, reason) =>
    log.info(`${STATE_NAMES[from]} -> ${STATE_NAMES[to]} (${reason})`, {
      from: STATE_NAMES[from],
      to: STATE_NAMES[to],
      reason,
    }),
  );
  const responses = buildResponses(config.texts, config.agent);
  const metrics = createMetrics(config.listen.length);
  await using stack = new AsyncDisposableStack();

  // Started last; until then there are no facts.
  let poller: Poller | undefined;
  const facts = () => poller?.facts;
  const splitBrain = startSplitBrain(config, status, facts, log, stack);
  const fdLimit = raiseFdLimit();
  const gate: Gate = {
    allow: config.allow,
    maxConnections: fitFdLimit(config.maxConnections, fdLimit),
    open: 0,
    counters: metrics.connections,
  };
  const listeners = openListeners(config, { status, responses, facts, metrics, splitBrain }, gate, stack);
  metrics.listenerNames = listeners.map(listenerName);
  const control = await startControl(
    config.controlSocket ?? defaultControlSocket(listeners[0]!.address.port, opts.env),
    status,
    log,
  );
  stack.defer(() => control.stop());
  const metricsServer = config.metricsListen && serveMetrics(config.metricsListen, metrics);
  if (metricsServer) stack.defer(() => void metricsServer.stop(true));
  const overLimit = watchOverLimit(metrics.connections, gate, log);
  stack.defer(() => clearInterval(overLimit));

  // Every peer is asked once before this node's first poll (cluster/peers.ts):
  // a restarted old primary must be fenced from its first answer. The requests
  // end within --peer-timeout; the sleep only bounds a fetch that would not.
  if (splitBrain) await Promise.race([splitBrain.firstRound, Bun.sleep(config.peerTimeoutMs + 1000)]);

  poller = startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    status,
    lag: createLagJudge(config, log),
    log,
    observer: metrics,
    onWorkerDeath: (message) => opts.onFatal(`the poll worker stopped: ${message}`, "a service manager restarts it"),
    onFacts: (f) => {
      if (config.agent.weightByLag) status.setWeightBucket(weightBucket(config.agent, f));
      splitBrain?.evaluate();
    },
  });
  stack.defer(() => poller?.stop());
  metrics.attach({
    state: () => status.state,
    stateChanges: () => status.changes,
    facts,
    openConnections: () => gate.open,
    maxConnections: () => gate.maxConnections,
    fdLimit: () => fdLimit,
    guard: () => splitBrain,
  });

  const teardown = stack.move();
  return {
    announce: () =>
      reportStart(log, config, {
        version: opts.version,
        listeners,
        database: target.display,
        controlPath: control.path,
        metricsPort: metricsServer ? metricsServer.port : undefined,
        backlog: Math.min(config.backlog, somaxconn() ?? config.backlog),
        maxConnections: gate.maxConnections,
        fdLimit,
        splitBrain,
      }),
    stop: async (signal) => {
      log.info(`${signal}: shutting down`);
      // Stop accepting first, so no client is told anything after the poller is gone.
      for (const l of listeners) l.stop();
      await teardown.disposeAsync();
    },
    reload: reloader(config, opts, { responses, gate, poller, log, fdLimit }),
  };
}

function startSplitBrain(
  config: Config,
  status: Status,
  facts: () => PollFacts | undefined,
  log: Logger,
  stack: AsyncDisposableStack,
): Guard | undefined {
  if (config.peers.length === 0) return undefined;
  const splitBrain = startGuard({
    peers: config.peers,
    intervalMs: config.peerIntervalMs,
    timeoutMs: config.peerTimeoutMs,
    status,
    facts,
    log,
  });
  stack.defer(() => splitBrain.stop());
  return splitBrain;
}

interface Sources {
  status: Status;
  responses: Responses;
  facts: () => PollFacts | undefined;
  metrics: Metrics;
  splitBrain: Guard | undefined;
}

/** One listener per address, each behind the shared gate; throws ListenError. */
function openListeners(config: Config, s: Sources, gate: Gate, stack: AsyncDisposableStack): Listener[] {
  const { status, responses, metrics, splitBrain } = s;
  const handlers = {
    raw: rawHandler(status.cell, responses),
    http: httpHandler(
      {
        status,
        facts: s.facts,
        metrics: () => metrics.render(),
        guard: splitBrain && (() => splitBrain.status()),
      },
      responses,
    ),
    agent: agentHandler(status.cell, responses),
  };
  return config.listen.map((address, i) => {
    const l = listen(address, handlers[address.mode], gate, i, config.backlog, 0);
    stack.defer(() => l.stop());
    return l;
  });
}

/** Serialises reloads: a SIGHUP during one is taken after it. */
function reloader(config: Config, opts: StartOptions, live: Reloadable): () => Promise<void> {
  let current = config;
  let reloading: Promise<void> = Promise.resolve();
  return () => {
    reloading = reloading.then(async () => {
      const next = await reloadConfig(opts.load, opts.env, live.log);
      if (next) {
        apply(current, next, live);
        current = next;
      }
    });
    return reloading;
  };
}

/** --metrics-listen: /metrics alone, on its own address; throws ListenError. */
function serveMetrics(address: { host: string; port: number }, metrics: Metrics) {
  try {
    return Bun.serve({
      hostname: address.host,
      port: address.port,
      fetch: (req) =>
        new URL(req.url).pathname === "/metrics"
          ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } })
          : new Response("not found\n", { status: 404 }),
    });
  } catch (err) {
    throw listenError(address, err);
  }
}
