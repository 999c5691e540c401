// The wiring: configuration in, a running responder out. Start-up order
// follows the data backwards (status, listeners, control socket, metrics,
// then the poller), so a failure to bind happens before any database work.
// Everything started is pushed on one stack, which is the only teardown path:
// for a start-up failure half-way and for a shutdown alike.
import type { SocketHandler } from "bun";
import { createCell, currentState, OVERRIDE_NAMES, STATE_NAMES, type State, type Cell } from "./cell.ts";
import { startGuard, type Guard } from "./cluster/guard.ts";
import { defaultControlSocket } from "./config/options.ts";
import { type Config } from "./config/types.ts";
import { formatAddress, type ListenAddress } from "./address.ts";
import { agentHandler, weightBucket } from "./listen/agent.ts";
import { buildResponses, type Responses } from "./listen/answers.ts";
import { raiseFdLimit, somaxconn } from "./listen/backlog.ts";
import { listen, type Gate, type Listener } from "./listen/gate.ts";
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
import { startControl } from "./ops/control.ts";
import { fitFdLimit, logOverLimit } from "./ops/limits.ts";
import { createMetrics, serveMetrics, type Metrics } from "./ops/metrics.ts";
import { restoreOverride, saveOverride } from "./ops/override.ts";
import { createReloader, type Reloadable } from "./ops/reload.ts";
import { listenerName, reportStart } from "./ops/report.ts";
import { createLagJudge, type LagJudge } from "./poll/lag.ts";
import type { PollFacts } from "./poll/facts.ts";
import type { PatroniView } from "./cluster/patroni-view.ts";
import type { PatroniAnswer } from "./listen/http/patroni.ts";
import { startPoller, type Poller } from "./poll/poller.ts";
import { configTarget, type DbTarget } from "./poll/target.ts";
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
  // Every change of the answer is logged, kept in the history and, once the listeners are open, streamed (GET /events).
  const history = createHistory();
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
  const gate = gateOf(config, metrics, fdLimit);
  const lag = createLagJudge(config, log);
  const sources: Sources = { cell, responses, facts, lag, metrics, splitBrain, patroni, history };
  const endpoints = openListeners(config, sources, gate, { env: opts.env, log }, stack);
  const { events } = endpoints;
  announce = events.changed;
  const ops = { ...sources, gate, events, log, env: opts.env };
  const { control, metricsServer } = await startOps(config, ops, endpoints, stack);

  await fenceKnown(config, splitBrain, patroni);

  const first = firstOutcome(metrics);
  poller = startPolling(config, target, { ...sources, log, first, onFatal: opts.onFatal });
  stack.defer(() => poller?.stop());
  attachMetrics(metrics, { ...sources, gate, fdLimit, endpoints });
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
    reload: createReloader(config, opts.load, opts.env, {
      responses,
      gate,
      poller,
      lag,
      log,
      fdLimit,
      tls: endpoints.reloadTls(listeners),
    }),
  };
}

/**
 * The control socket (with the override saved before a restart in force first: between the bind of
 * the listeners and the first await here nothing is accepted yet), --metrics-listen, and the log line
 * of the connection limit. Throws CONTROL_FAILED or LISTEN_FAILED.
 */
async function startOps(
  config: Config,
  s: Sources & { gate: Gate; events: Events; log: Logger; env: Env },
  endpoints: Endpoints,
  stack: AsyncDisposableStack,
) {
  const controlPath = config.controlSocket ?? defaultControlSocket(endpoints.firstPort, s.env);
  const stateFile = restoreOverride(config.stateDir, controlPath, endpoints.firstPort, s.cell, s.log);
  // A change of the override goes to the history before its event, so the event carries it.
  let last = s.cell.override;
  const control = await startControl(controlPath, s.cell, s.log, (override) => {
    const [from, to] = [OVERRIDE_NAMES[last], OVERRIDE_NAMES[override]];
    if (from !== to) s.history.push(from, to, `replstatus ${to}`);
    last = override;
    s.events.changed(`override ${to}`);
    return saveOverride(stateFile, override);
  });
  stack.defer(() => control.stop());
  const metricsServer = config.metricsListen && serveMetrics(config.metricsListen, s.metrics);
  if (metricsServer) stack.defer(() => void metricsServer.stop(true));
  const overLimit = logOverLimit(s.metrics.connections, s.gate, s.log);
  stack.defer(() => clearInterval(overLimit));
  return { control, metricsServer };
}

/** The poll worker, whose facts re-judge the agent weight and the fences after every poll. */
function startPolling(
  config: Config,
  target: DbTarget,
  s: Sources & {
    log: Logger;
    first: ReturnType<typeof firstOutcome>;
    onFatal: StartOptions["onFatal"];
  },
): Poller {
  const { cell, responses, splitBrain, patroni, first } = s;
  return startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    cell,
    lag: s.lag,
    log: s.log,
    observer: first.observer,
    onWorkerDeath: (message) => s.onFatal(`the poll worker stopped: ${message}`, "a service manager restarts it"),
    onFacts: (f) => {
      const { agentConfig } = responses; // a reload replaces it (ops/reload.ts)
      if (agentConfig.weightByLag) cell.setWeightBucket(weightBucket(agentConfig, f));
      splitBrain?.evaluate();
      patroni?.view.evaluate();
      first.done();
    },
  });
}

/** What every connection passes first (listen/gate.ts): --allow, and --max-connections fitted to the open-file limit. */
function gateOf(config: Config, metrics: Metrics, fdLimit: number | undefined): Gate {
  return {
    allow: config.allow,
    maxConnections: fitFdLimit(config.maxConnections, fdLimit),
    open: 0,
    counters: metrics.connections,
  };
}

/** What /metrics reads at each scrape. */
function attachMetrics(
  metrics: Metrics,
  s: Sources & { gate: Gate; fdLimit: number | undefined; endpoints: Endpoints },
): void {
  metrics.attach({
    state: () => s.cell.state,
    stateChanges: () => s.cell.changes,
    facts: s.facts,
    openConnections: () => s.gate.open,
    maxConnections: () => s.gate.maxConnections,
    fdLimit: () => s.fdLimit,
    guard: () => s.splitBrain,
    tls: () => s.endpoints.tlsHandshakes,
    events: () => s.endpoints.events,
    ...(s.patroni && { extra: s.patroni.view.metrics }),
  });
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
  lag: LagJudge;
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
    rejoinInMs: () => s.lag.rejoinInMs(Date.now()),
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
    const l = listen({
      address,
      handler,
      gate,
      index: i,
      backlog: config.backlog,
      data: 0,
      inheritedFd: fd,
      ...(address.tls && { tls: tls!.options }),
    });
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
