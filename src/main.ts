#!/usr/bin/env bun
// argv + environment -> config -> listeners and poller. The only place that
// prints fatal errors and exits: 2 for a bad configuration, 1 for a start-up
// failure (an address or control socket that cannot be served) and for a
// drain|maint|ready that finds no replstatus. demo exits with its own code.
import pkg from "../package.json";
import { agentHandler, weightBucket } from "./agent.ts";
import { raiseFdLimit, somaxconn } from "./backlog.ts";
import {
  buildConfig,
  buildDemoConfig,
  ConfigError,
  defaultControlSocket,
  envName,
  formatAddress,
  formatBytes,
  formatDuration,
  helpText,
  parseArgv,
  readConfigFile,
  redactUrl,
  SUBCOMMANDS,
  type Config,
  type Raw,
  type Subcommand,
} from "./config.ts";
import { ControlError, sendControl, startControl, type Control } from "./control.ts";
import { resolveTarget } from "./db.ts";
import { httpHandler } from "./http.ts";
import { createLagJudge } from "./lag.ts";
import { listen, ListenError, listenError, rawHandler, type Gate, type Listener } from "./listeners.ts";
import { createLogger, type Logger } from "./log.ts";
import { createMetrics, OVER_LIMIT, RESULTS } from "./metrics.ts";
import { startGuard } from "./peers.ts";
import { startPoller, type Poller } from "./poller.ts";
import { buildResponses } from "./responses.ts";
import { createStatus, STATE_NAMES } from "./states.ts";

function fatal(message: string, hint: string | undefined, exitCode: number): never {
  process.stderr.write(`replstatus: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const env = process.env;
  // A sub-command is the first word; the flags after it use the same table.
  const command = (SUBCOMMANDS as readonly string[]).includes(argv[0] ?? "") ? (argv[0] as Subcommand) : undefined;
  let raw: Raw;
  let config: Config;
  let target;
  try {
    raw = parseArgv(command ? argv.slice(1) : argv, command === "demo" ? "demo" : "server");
    if (raw.has("help")) {
      process.stdout.write(helpText(pkg.version));
      return;
    }
    if (raw.has("version")) {
      process.stdout.write(`replstatus ${pkg.version} (bun ${Bun.version})\n`);
      return;
    }
    if (command === "demo") {
      const demo = buildDemoConfig(raw);
      // Loaded only here: it brings the cluster helpers and their exit hooks.
      const { runDemo } = await import("./demo.ts");
      process.exit(await runDemo(demo));
    }
    config = buildConfig(raw, env, await configFile(raw, env));
    if (command) return await setOverride(command, config);
    target = resolveTarget(config.db, env);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    throw err;
  }

  const log = createLogger(undefined, config.logFormat);
  if (target.passwordInDb && raw.has("db")) {
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
  // The poller starts after the listeners; until then there are no facts.
  let poller: Poller | undefined;
  const metrics = createMetrics(config.listen.length);
  const guard =
    config.peers.length === 0
      ? undefined
      : startGuard({
          peers: config.peers,
          intervalMs: config.peerIntervalMs,
          timeoutMs: config.peerTimeoutMs,
          status,
          facts: () => poller?.facts,
          log,
        });
  const handlers = {
    raw: rawHandler(status.cell, responses),
    http: httpHandler(
      { status, facts: () => poller?.facts, metrics: () => metrics.render(), guard: guard && (() => guard.status()) },
      responses,
    ),
    agent: agentHandler(status.cell, responses),
  };

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
  let control: Control;
  try {
    for (const [i, address] of config.listen.entries()) {
      listeners.push(listen(address, handlers[address.mode], gate, i, config.backlog, 0));
    }
    control = await startControl(
      config.controlSocket ?? defaultControlSocket(listeners[0]!.address.port, env),
      status,
      log,
    );
  } catch (err) {
    for (const l of listeners) l.stop();
    if (err instanceof ListenError || err instanceof ControlError) fatal(err.message, err.hint, 1);
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
      control.stop();
      guard?.stop();
      const e = listenError(config.metricsListen, err);
      fatal(e.message, e.hint, 1);
    }
  }

  const overLimitTimer = watchOverLimit(metrics.connections, gate, log);

  // Every peer is asked once before this node's first poll (peers.ts): a
  // restarted old primary must be fenced from its first answer. The requests
  // end within --peer-timeout; the sleep only bounds a fetch that would not.
  if (guard) await Promise.race([guard.firstRound, Bun.sleep(config.peerTimeoutMs + 1000)]);

  const running = (poller = startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    status,
    lag: createLagJudge(config, log),
    log,
    observer: metrics,
    onWorkerDeath: (message) => fatal(`the poll worker stopped: ${message}`, "a service manager restarts it", 1),
    onFacts: (facts) => {
      if (config.agent.weightByLag) status.setWeightBucket(weightBucket(config.agent, facts));
      guard?.evaluate();
    },
  }));
  metrics.attach({
    state: () => status.state,
    stateChanges: () => status.changes,
    facts: () => running.facts,
    openConnections: () => gate.open,
    maxConnections: () => gate.maxConnections,
    fdLimit: () => fdLimit,
    guard: () => guard,
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
    control.stop();
    guard?.stop();
    await running.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  // One reload at a time; a SIGHUP during one is taken after it.
  let reloading: Promise<void> = Promise.resolve();
  process.on("SIGHUP", () => {
    reloading = reloading.then(async () => {
      const next = await reload(raw, log);
      if (next) {
        apply(config, next, { responses, gate, poller, log, fdLimit });
        config = next;
      }
    });
  });
  process.on("SIGINT", () => void shutdown("SIGINT"));

  // Last, once every handler is in place: tests and scripts take this line as "ready".
  log.info(
    `replstatus ${pkg.version} serving ${listeners.map((l) => `${l.address.mode} ${formatAddress(l.address)}`).join(", ")}; ` +
      `database ${redactUrl(target.display)}; poll every ${formatDuration(config.pollIntervalMs)}, ` +
      `stale after ${formatDuration(config.staleAfterMs)}` +
      lagLimits(config) +
      `; control socket ${control.path}` +
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
  if (guard) {
    log.info(
      `split-brain guard: asking ${config.peers.join(", ")} every ${formatDuration(config.peerIntervalMs)} ` +
        `(timeout ${formatDuration(config.peerTimeoutMs)}); ${guard.reachable()} of ${config.peers.length} answered`,
    );
    if (!config.listen.some((l) => l.mode === "http")) {
      log.warning(
        "split-brain guard: this node has no http listener, so its peers cannot see its timeline; add --listen http:HOST:PORT and name it in their --peer",
      );
    }
  }
  for (const l of listeners) {
    if (l.backlogError) {
      log.warning(
        `could not set the listen backlog of ${formatAddress(l.address)}: ${l.backlogError}; it stays at 512`,
      );
    }
  }
}

async function configFile(raw: Raw, env: Record<string, string | undefined>) {
  const path = raw.get("config")?.[0] ?? (env[envName("config")] || undefined);
  return path === undefined ? undefined : await readConfigFile(path);
}

/** Reads the configuration again (the file; flags and variables cannot change); undefined when rejected. */
async function reload(raw: Raw, log: Logger): Promise<Config | undefined> {
  try {
    const next = buildConfig(raw, process.env, await configFile(raw, process.env));
    resolveTarget(next.db, process.env);
    return next;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log.error(`SIGHUP: reload rejected, keeping the running configuration: ${err.message}`);
    return undefined;
  }
}

interface Running {
  responses: ReturnType<typeof buildResponses>;
  gate: Gate;
  poller: Poller;
  log: Logger;
  fdLimit: number | undefined;
}

// What can change in a running process is applied in place: the listeners
// hold the same Responses object and Gate, the poller its options. Addresses,
// the database and the channel belong to sockets and connections made at
// start, so a change there is reported and waits for a restart.
function apply(old: Config, next: Config, run: Running): void {
  const changed: string[] = [];
  const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
  const note = (name: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) changed.push(`${name} ${show(a)} -> ${show(b)}`);
  };
  for (const state of Object.keys(next.texts) as (keyof Config["texts"])[]) {
    note(`text-${state}`, old.texts[state], next.texts[state]);
  }
  note("allow", old.allow?.cidrs ?? "every peer", next.allow?.cidrs ?? "every peer");
  note("max-connections", old.maxConnections, next.maxConnections);
  note("poll-interval", formatDuration(old.pollIntervalMs), formatDuration(next.pollIntervalMs));
  note("stale-after", formatDuration(old.staleAfterMs), formatDuration(next.staleAfterMs));
  note("connect-timeout", formatDuration(old.connectTimeoutMs), formatDuration(next.connectTimeoutMs));
  note("log-format", old.logFormat, next.logFormat);

  note("agent-role", old.agent.role, next.agent.role);
  note("agent-lag-for-min-weight", old.agent.lagForMinWeightBytes, next.agent.lagForMinWeightBytes);

  Object.assign(run.responses, buildResponses(next.texts, next.agent));
  run.gate.allow = next.allow;
  run.gate.maxConnections =
    run.fdLimit === undefined ? next.maxConnections : fitFdLimit(next.maxConnections, run.fdLimit);
  run.poller.retime(next);
  run.log.format = next.logFormat;

  const restart: string[] = [];
  if (JSON.stringify(old.listen) !== JSON.stringify(next.listen)) restart.push("listen/port/bind");
  if (old.db !== next.db) restart.push("db");
  if (old.channel !== next.channel) restart.push("channel");
  if (old.backlog !== next.backlog) restart.push("backlog");
  if (JSON.stringify(old.metricsListen) !== JSON.stringify(next.metricsListen)) restart.push("metrics-listen");
  if (old.controlSocket !== next.controlSocket) restart.push("control-socket");
  if (old.agent.weightByLag !== next.agent.weightByLag) restart.push("agent-weight-by-lag");
  if (
    JSON.stringify(old.peers) !== JSON.stringify(next.peers) ||
    old.peerIntervalMs !== next.peerIntervalMs ||
    old.peerTimeoutMs !== next.peerTimeoutMs
  ) {
    restart.push("peer/peer-interval/peer-timeout");
  }
  if (
    old.maxLagBytes !== next.maxLagBytes ||
    old.maxLagSeconds !== next.maxLagSeconds ||
    old.lagGraceMs !== next.lagGraceMs
  ) {
    restart.push("max-lag-bytes/max-lag-seconds/lag-grace");
  }

  run.log.info(`SIGHUP: reloaded; ${changed.length ? changed.join(", ") : "nothing changed"}`);
  if (restart.length) {
    run.log.warning(`SIGHUP: ${restart.join(", ")} changed but only take effect after a restart`);
  }
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

/** `replstatus drain|maint|ready`: one line on stdout and exit 0, or one error line and exit 1. */
async function setOverride(word: Subcommand, config: Config): Promise<void> {
  const path = config.controlSocket ?? defaultControlSocket(config.listen[0]!.port, process.env);
  let reply;
  try {
    reply = await sendControl(path, word);
  } catch (err) {
    if (err instanceof ControlError) fatal(err.message, err.hint, 1);
    throw err;
  }
  if (reply !== word) fatal(`unexpected answer on ${path}: ${JSON.stringify(reply)}`, undefined, 1);
  process.stdout.write(`replstatus: override set to ${word}\n`);
}

function lagLimits(config: Config): string {
  const limits = [
    config.maxLagBytes !== undefined && formatBytes(config.maxLagBytes),
    config.maxLagSeconds !== undefined && `${config.maxLagSeconds} s`,
  ].filter(Boolean);
  return limits.length ? `; lagging over ${limits.join(" or ")} for ${formatDuration(config.lagGraceMs)}` : "";
}

await main(process.argv.slice(2));
