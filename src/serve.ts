// The wiring: configuration in, a running responder out. Start-up order
// follows the data backwards (status, listeners, control socket, metrics,
// then the poller), so a failure to bind happens before any database work.
// Everything started is pushed on one stack, which is the only teardown path:
// for a start-up failure half-way and for a shutdown alike.
import type { SocketHandler } from "bun";
import { dirname } from "node:path";
import { createCell, currentState, OVERRIDE_NAMES, STATE_NAMES, type Cell, type Override, type State } from "./cell.ts";
import { startGuard, type Guard } from "./cluster/guard.ts";
import { defaultControlSocket } from "./config/options.ts";
import { type Config } from "./config/types.ts";
import { formatAddress, type ListenAddress } from "./address.ts";
import { agentHandler, weightBucket } from "./listen/agent.ts";
import { buildResponses, type Responses } from "./listen/answers.ts";
import { raiseFdLimit, somaxconn } from "./listen/backlog.ts";
import { listen, listenError, type Gate, type Listener } from "./listen/gate.ts";
import { rawHandler } from "./listen/raw.ts";
import { httpHandler } from "./listen/http/handler.ts";
import { createHolds } from "./listen/http/holds.ts";
import { createEvents, type Events } from "./listen/http/events.ts";
import { statusBody, type HttpContext } from "./listen/http/status.ts";
import { inheritedSockets, takeInherited } from "./listen/inherit.ts";
import {
  createTlsHandshakes,
  failureLogger,
  loadPeerTls,
  loadTls,
  secureHandler,
  type TlsMaterial,
  type TlsHandshakes,
} from "./listen/tls.ts";
import { createHistory, type History } from "./history.ts";
import { createLogger, type Logger } from "./log.ts";
import { prepareDir, startControl } from "./ops/control.ts";
import { fitFdLimit, logOverLimit } from "./ops/limits.ts";
import { createMetrics, type Metrics } from "./ops/metrics.ts";
import { overridePath, saveOverride, startingOverride } from "./ops/override.ts";
import { apply, reloadConfig, type Reloadable } from "./ops/reload.ts";
import { listenerName, reportStart } from "./ops/report.ts";
import { createLagJudge } from "./poll/lag.ts";
import type { PollFacts } from "./poll/facts.ts";
import type { PatroniView } from "./cluster/patroni-view.ts";
import type { PatroniAnswer } from "./listen/http/patroni.ts";
import { startPoller, type Poller } from "./poll/poller.ts";
import { configTarget } from "./poll/target.ts";
import { ReplstatusError } from "./errors.ts";

type Env = Record<string, string | undefined>;

export interface StartOptions {
  version: string;
  env: Env;
  /** --db came from the command line, where any local user can read it (ps). */
  dbOnCommandLine?: boolean;
  /** Reads the configuration again, for a reload; throws CONFIG_INVALID. */
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

const PASSWORD_ON_COMMAND_LINE =
  "--db holds a password, which every user of this host can read in the process list; put it in ~/.pgpass (or the file PGPASSFILE names) instead, or use a service file or certificate authentication";

/**
 * Starts serving `config`. Throws CONFIG_INVALID (the database setting),
 * LISTEN_FAILED, CONTROL_FAILED or TLS_FAILED, after undoing whatever had been started.
 */
export async function start(config: Config, opts: StartOptions): Promise<Server> {
  const target = configTarget(config, opts.env);
  const log = createLogger(undefined, config.logFormat);
  if (target.passwordInDb && opts.dbOnCommandLine) log.warning(PASSWORD_ON_COMMAND_LINE);
  const history = createHistory();
  // Every change of the answer is logged, kept in the history and, once the listeners are open, streamed (GET /events).
  const logged = logChange(log, history);
  let announce = (_reason: string) => {};
  const cell = createCell((from, to, reason) => {
    logged(from, to, reason);
    announce(reason);
  });
  const responses = buildResponses(config.texts, config.agent);
  const metrics = createMetrics(config.listen.length);
  await using stack = new AsyncDisposableStack();

  // Started last; until then there are no facts.
  let poller: Poller | undefined;
  const facts = () => poller?.facts;
  const splitBrain = startSplitBrain(config, cell, facts, log, stack);
  const onLeader = (leader: string | null) => announce(`leader key: ${leader ?? "none"}`);
  const patroni = config.patroni && (await startPatroniMode(config, cell, facts, log, stack, onLeader));
  const fdLimit = raiseFdLimit();
  const gate: Gate = {
    allow: config.allow,
    maxConnections: fitFdLimit(config.maxConnections, fdLimit),
    open: 0,
    counters: metrics.connections,
  };
  const sources: Sources = { cell, responses, facts, metrics, splitBrain, patroni, history };
  const endpoints = openListeners(config, sources, gate, { env: opts.env, log }, stack);
  const { events } = endpoints;
  announce = events.changed;
  // Between the bind above and the first await below nothing is accepted
  // yet: the override on disk is in force before the first answer.
  const controlPath = config.controlSocket ?? defaultControlSocket(endpoints.firstPort, opts.env);
  const stateFile = restoreOverride(config, controlPath, endpoints.firstPort, cell, log);
  const save = overrideSaver(cell, history, stateFile, (override) => events.changed(`override ${override}`));
  const control = await startControl(controlPath, cell, log, save);
  stack.defer(() => control.stop());
  const metricsServer = config.metricsListen && serveMetrics(config.metricsListen, metrics);
  if (metricsServer) stack.defer(() => void metricsServer.stop(true));
  const overLimit = logOverLimit(metrics.connections, gate, log);
  stack.defer(() => clearInterval(overLimit));

  await fenceKnown(config, splitBrain, patroni);

  const first = firstOutcome(metrics);
  const lag = createLagJudge(config, log);
  poller = startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    cell,
    lag,
    log,
    observer: first.observer,
    onWorkerDeath: (message) => opts.onFatal(`the poll worker stopped: ${message}`, "a service manager restarts it"),
    onFacts: (f) => {
      const { agentConfig } = responses; // a reload replaces it (ops/reload.ts)
      if (agentConfig.weightByLag) cell.setWeightBucket(weightBucket(agentConfig, f));
      splitBrain?.evaluate();
      patroni?.view.evaluate();
      first.done();
    },
  });
  stack.defer(() => poller?.stop());
  metrics.attach({
    state: () => cell.state,
    stateChanges: () => cell.changes,
    facts,
    openConnections: () => gate.open,
    maxConnections: () => gate.maxConnections,
    fdLimit: () => fdLimit,
    guard: () => splitBrain,
    tls: () => endpoints.tlsHandshakes,
    events: () => events,
    ...(patroni && { extra: patroni.view.metrics }),
  });
  // A socket handed over by a service manager holds the checks that came
  // during the restart; they get the answer of this process's first poll
  // (or UNKNOWN once that has taken --stale-after), not an UNKNOWN of before.
  if (endpoints.inherited.includes(true)) await Promise.race([first.settled, Bun.sleep(config.staleAfterMs)]);
  const listeners = endpoints.openDeferred();
  metrics.listenerNames = listeners.map(listenerName);

  const teardown = stack.move();
  return {
    announce: () =>
      reportStart(log, config, {
        version: opts.version,
        listeners,
        inherited: listeners.filter((_, i) => endpoints.inherited[i]),
        database: target.display,
        controlPath: control.path,
        metricsPort: metricsServer ? metricsServer.port : undefined,
        backlog: Math.min(config.backlog, somaxconn() ?? config.backlog),
        maxConnections: gate.maxConnections,
        fdLimit,
        splitBrain,
        tls: endpoints.tls,
      }),
    stop: async (signal) => {
      log.info(`${signal}: shutting down`);
      // Stop accepting first, so no client is told anything after the poller is gone.
      for (const l of listeners) l.stop();
      await teardown.disposeAsync();
    },
    reload: reloader(config, opts, { responses, gate, poller, lag, log, fdLimit, tls: endpoints.reloadTls(listeners) }),
  };
}

/** Every change of the answered state is one log line, with the reason, and an entry of the history. */
function logChange(log: Logger, history: History) {
  return (from: State, to: State, reason: string) => {
    history.push(STATE_NAMES[from], STATE_NAMES[to], reason);
    log.info(`${STATE_NAMES[from]} -> ${STATE_NAMES[to]} (${reason})`, {
      from: STATE_NAMES[from],
      to: STATE_NAMES[to],
      reason,
    });
  };
}

/** The control socket's save: a change of the override in the history, an event, the override file. */
function overrideSaver(cell: Cell, history: History, stateFile: string, announce: (override: string) => void) {
  let last: Override = cell.override;
  return (override: Override) => {
    if (override !== last)
      history.push(OVERRIDE_NAMES[last], OVERRIDE_NAMES[override], `replstatus ${OVERRIDE_NAMES[override]}`);
    last = override;
    announce(OVERRIDE_NAMES[override]);
    return saveOverride(stateFile, override);
  };
}

function startSplitBrain(
  config: Config,
  cell: Cell,
  facts: () => PollFacts | undefined,
  log: Logger,
  stack: AsyncDisposableStack,
): Guard | undefined {
  if (config.peers.length === 0) return undefined;
  const splitBrain = startGuard({
    peers: config.peers,
    intervalMs: config.peerIntervalMs,
    timeoutMs: config.peerTimeoutMs,
    cell,
    facts,
    log,
    tls: loadPeerTls(config.peerTls),
    isolationAfterMs: config.isolationAfterMs,
  });
  stack.defer(() => splitBrain.stop());
  return splitBrain;
}

/** The most the first poll waits for etcd's first answer in the Patroni mode. */
const ETCD_FIRST_ANSWER_MS = 1500;

/**
 * Every peer is asked once before this node's first poll (cluster/guard.ts):
 * a restarted old primary must be fenced from its first answer. The requests
 * end within --peer-timeout; the sleep only bounds a fetch that would not.
 * Likewise the Patroni mode waits for etcd's first answer (or first failure).
 */
async function fenceKnown(config: Config, splitBrain: Guard | undefined, patroni: PatroniMode | undefined) {
  if (splitBrain) await Promise.race([splitBrain.firstRound, Bun.sleep(config.peerTimeoutMs + 1000)]);
  if (patroni) await Promise.race([patroni.view.ready, Bun.sleep(ETCD_FIRST_ANSWER_MS)]);
}

interface PatroniMode {
  view: PatroniView;
  answer: PatroniAnswer;
}

// Loaded only in the Patroni mode (dynamic imports): the default footprint does not grow.
async function startPatroniMode(
  config: Config,
  cell: Cell,
  facts: () => PollFacts | undefined,
  log: Logger,
  stack: AsyncDisposableStack,
  onLeader: (leader: string | null) => void,
): Promise<PatroniMode> {
  const [{ startPatroniView }, { patroniHttp }] = await Promise.all([
    import("./cluster/patroni-view.ts"),
    import("./listen/http/patroni.ts"),
  ]);
  const settings = config.patroni!;
  const view = startPatroniView({ settings, cell, facts, log, onLeader });
  stack.defer(() => view.stop());
  const answer = patroniHttp({
    slots: cell.slots,
    facts,
    view,
    member: settings.member,
    tags: config.tags,
    holds: createHolds(),
  });
  return { view, answer };
}

interface Sources {
  cell: Cell;
  responses: Responses;
  facts: () => PollFacts | undefined;
  metrics: Metrics;
  splitBrain: Guard | undefined;
  patroni: PatroniMode | undefined;
  history: History;
}

interface Endpoints {
  /** Port of the first --listen address: it names the control socket and the override file. */
  firstPort: number;
  /** Per --listen address, whether its socket was inherited (opened by openDeferred()). */
  inherited: boolean[];
  /** Opens the inherited sockets; returns every listener, in --listen order. */
  openDeferred(): Listener[];
  /** The tls+ listeners' material and handshake failures; undefined without a tls+ listener. */
  tls: TlsMaterial | undefined;
  tlsHandshakes: TlsHandshakes | undefined;
  /** What a reload needs to swap the TLS material of `listeners`' tls+ ones. */
  reloadTls(listeners: Listener[]): Reloadable["tls"];
  /** GET /events on the http listeners. */
  events: Events;
}

/**
 * One listener per --listen address, each behind the shared gate: on the
 * socket a service manager passed for that address, or bound here (throws
 * LISTEN_FAILED). Inherited sockets are only opened by openDeferred(). A tls+
 * listener gets its own handler object (listen/tls.ts); a plain one keeps its
 * mode's as it is. Throws TLS_FAILED when the TLS files cannot be used.
 */
function openListeners(
  config: Config,
  s: Sources,
  gate: Gate,
  { env, log }: { env: Env; log: Logger },
  stack: AsyncDisposableStack,
): Endpoints {
  const { cell, responses, metrics, splitBrain, patroni } = s;
  const tls = config.tls && loadTls(config.tls);
  const tlsHandshakes = config.tls && createTlsHandshakes(config.listen.length, config.tls.clientCert);
  const onTlsFailure = failureLogger(() => metrics.listenerNames, log);
  const http: HttpContext = {
    cell,
    facts: s.facts,
    metrics: () => metrics.render(),
    guard: splitBrain && (() => splitBrain.status()),
    tags: config.tags,
    holds: createHolds(),
    history: s.history,
    ...(patroni && { patroni: patroni.answer, extraStatus: patroni.view.status }),
  };
  const raw = new TextDecoder("latin1");
  const events = createEvents(
    { body: () => statusBody(http), answer: () => raw.decode(responses.raw[currentState(cell.slots)]) },
    config.events,
  );
  http.events = events;
  stack.defer(() => events.stop());
  const handlers = {
    raw: rawHandler(cell.slots, responses),
    http: httpHandler(http, responses),
    agent: agentHandler(cell.slots, responses),
  };
  const inherited = inheritedSockets(env);
  const open = (address: ListenAddress, i: number, fd?: number) => {
    const handler = address.tls
      ? secureHandler<number>(handlers[address.mode] as SocketHandler<number>, tlsHandshakes!, i, onTlsFailure)
      : handlers[address.mode];
    const l = listen(address, handler, gate, i, config.backlog, 0, fd, address.tls && tls!.options);
    stack.defer(() => l.stop());
    return l;
  };
  const matched = config.listen.map((address) => takeInherited(inherited, address));
  const unused = inherited[0];
  if (unused) {
    const where = formatAddress(unused);
    throw new ReplstatusError(
      "LISTEN_FAILED",
      `could not use inherited socket ${unused.fd} (${where}): no --listen address is ${where}`,
      "name the same addresses in the socket unit's ListenStream= and in --listen (or --bind and --port)",
    );
  }
  const slots = config.listen.map((address, i): Listener | { address: ListenAddress; fd: number } => {
    const socket = matched[i];
    return socket ? { address, fd: socket.fd } : open(address, i);
  });
  return {
    firstPort: slots[0]!.address.port,
    inherited: slots.map((slot) => "fd" in slot),
    openDeferred: () => slots.map((slot, i) => ("fd" in slot ? open(slot.address, i, slot.fd) : slot)),
    tls,
    tlsHandshakes,
    reloadTls: (listeners) =>
      tlsHandshakes && {
        handshakes: tlsHandshakes,
        servers: listeners.filter((l) => l.address.tls).map((l) => l.server),
      },
    events,
  };
}

/** Applies the override saved before a restart; returns the file that keeps it. Throws CONTROL_FAILED. */
function restoreOverride(config: Config, controlPath: string, port: number, cell: Cell, log: Logger): string {
  if (config.stateDir !== undefined) {
    prepareDir(config.stateDir, { what: "state directory", flag: "--state-dir", content: "the override file" });
  }
  const path = overridePath(config.stateDir ?? dirname(controlPath), port);
  const saved = startingOverride(path);
  if (saved) {
    cell.setOverride(saved.override);
    log[saved.level](saved.line);
  }
  return path;
}

/** The first poll's outcome, a success or a failure, as a promise; the observer passes everything on to `metrics`. */
function firstOutcome(metrics: Metrics) {
  let done!: () => void;
  const settled = new Promise<void>((resolve) => (done = resolve));
  const observer = {
    observePoll: (durationMs: number) => metrics.observePoll(durationMs),
    pollError: (err: unknown) => {
      metrics.pollError(err);
      done();
    },
  };
  return { settled, done: () => done(), observer };
}

/** Serialises reloads: a SIGHUP during one is taken after it. */
function reloader(config: Config, opts: StartOptions, live: Reloadable): () => Promise<void> {
  let current = config;
  let reloading: Promise<void> = Promise.resolve();
  return () => {
    // Changes are told against the running settings; what waits for a restart, against the
    // started ones, so it is told again at every reload until then. A reload that throws is one
    // log line, and the next SIGHUP still reloads.
    reloading = reloading
      .then(async () => {
        const next = await reloadConfig(opts.load, opts.env, live.log);
        if (next) {
          apply(current, next, live, config);
          current = next;
        }
      })
      .catch((err: unknown) => live.log.error(`SIGHUP: reload failed, keeping the running configuration: ${err}`));
    return reloading;
  };
}

/** --metrics-listen: /metrics alone, on its own address; throws LISTEN_FAILED. */
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
