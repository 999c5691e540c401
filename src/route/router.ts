// `replstatus route`: one stream per node (stream.ts), and for every change a
// reconcile of that node's backend against haproxy (rules.ts): read `show
// servers state`, push what the rules say, in one batch. Backends are
// reconciled one at a time, so the router's own pushes never interleave; a
// timer reconciles every backend again, which catches a check that undid a
// push, a haproxy reload, and anything missed. docs/routing.md.
import type { PeerTls } from "../cluster/guard.ts";
import type { Logger } from "../log.ts";
import { haproxyRuntime, type Runtime } from "./haproxy.ts";
import { decide, type BackendKind, type HaproxyServer, type NodeView } from "./rules.ts";
import { openStream, type NodeEvent, type Stream, type StreamState } from "./stream.ts";

export interface RouteTarget {
  backend: string;
  server: string;
  /** The node's http listener, http(s)://HOST:PORT. */
  url: string;
}

export interface RouteSettings {
  haproxySocket: string;
  servers: RouteTarget[];
  /** Backends that follow STANDBY; every other one is a primary backend. */
  replicaBackends: string[];
  /** Also `shutdown sessions server` when a server is taken out. */
  shutdownSessions: boolean;
  reconcileIntervalMs: number;
  /** A node stream silent this long is lost. */
  streamTimeoutMs: number;
  tls: PeerTls | undefined;
}

/** One server as the router sees it, for `GET /status` of its listener (contract in docs/routing.md). */
export interface MemberStatus {
  backend: string;
  /** "primary": the backend takes the node that answers MASTER; "replica": --replica-backend. */
  kind: BackendKind;
  server: string;
  url: string;
  stream: StreamState;
  node: NodeEvent | null;
  haproxy: { op_state: number; admin_state: number } | null;
  last_push: { command: string; at: string } | null;
}

export interface Router {
  status(): { kind: "route"; servers: MemberStatus[]; updated_at: string };
  /** Called after every change of status(). */
  onChange(listener: () => void): void;
  /**
   * Ends the streams; a drain of ours is undone. Servers `keep` names are left as they stand, pushing
   * nothing for them: a reload hands them to the next router.
   */
  stop(keep?: (backend: string, server: string) => boolean): Promise<void>;
}

interface Member extends MemberStatus {
  view: NodeView;
  handle: Stream;
  /**
   * Its stream has delivered an event or failed once. Until then the router knows nothing of the node and
   * pushes nothing for its server, which it leaves as it stands: a router started again, or reloaded,
   * resyncs from the node's first event instead of undoing what the one before it did.
   */
  heard: boolean;
}

export function startRouter(
  settings: RouteSettings,
  log: Logger,
  runtime: Runtime = haproxyRuntime(settings.haproxySocket),
): Router {
  const members: Member[] = [];
  const backends = [...new Set(settings.servers.map((t) => t.backend))];
  const kindOf = (backend: string): BackendKind => (settings.replicaBackends.includes(backend) ? "replica" : "primary");
  const listeners: (() => void)[] = [];
  let updatedAt = Date.now();
  const changed = () => {
    updatedAt = Date.now();
    for (const l of listeners) l();
  };
  const queue = createQueue((backend) => reconcile(backend));
  let lastError = "";

  for (const target of settings.servers) {
    const member: Member = {
      ...target,
      kind: kindOf(target.backend),
      stream: "connecting",
      node: null,
      haproxy: null,
      last_push: null,
      view: { connected: false, state: "unknown", override: "ready", upPushes: 0 },
      handle: undefined as unknown as Stream,
      heard: false,
    };
    member.handle = openStream({
      url: target.url,
      tls: settings.tls,
      silenceMs: settings.streamTimeoutMs,
      onEvent: (event) => {
        if (event.state !== member.view.state) member.view.upPushes = 0;
        member.view = { ...member.view, connected: true, state: event.state, override: String(event.override) };
        member.node = event;
        member.heard = true;
        queue.kick(target.backend);
        changed();
      },
      onState: (state, why) => {
        member.stream = state;
        if (state !== "connected") member.view = { ...member.view, connected: false };
        if (state === "lost") member.heard = true;
        if (state !== "connecting") log.info(`${target.backend}/${target.server}: stream ${state} (${why})`);
        if (state === "lost") queue.kick(target.backend);
        changed();
      },
    });
    members.push(member);
  }

  async function reconcile(backend: string): Promise<void> {
    try {
      const servers = await runtime.serversState(backend);
      const mine = members.filter((m) => m.backend === backend);
      const nodes = new Map(mine.filter((m) => m.heard).map((m) => [m.server, m.view]));
      const commands = decide(backend, kindOf(backend), nodes, servers, settings.shutdownSessions);
      if (commands.length > 0) {
        const out = (await runtime.run(commands.map((c) => c.line))).trim();
        const at = new Date().toISOString();
        for (const c of commands) {
          const m = mine.find((x) => x.server === c.server)!;
          m.last_push = { command: c.line, at };
          if (c.line.endsWith("health up")) m.view.upPushes++;
          log.info(`${backend}/${c.server}: ${c.line} (${c.why})`);
        }
        if (out) log.warning(`haproxy answered ${JSON.stringify(out)} to: ${commands.map((c) => c.line).join("; ")}`);
      }
      const after = commands.length > 0 ? await runtime.serversState(backend) : servers;
      record(mine, after);
      if (lastError) log.info(`haproxy answers again on ${settings.haproxySocket}`);
      lastError = "";
    } catch (err) {
      const message = (err as Error).message;
      if (message !== lastError) log.warning(`reconcile of backend ${backend} failed: ${message}; retrying`);
      lastError = message;
    }
  }

  function record(mine: Member[], servers: Map<string, HaproxyServer>): void {
    let any = false;
    for (const m of mine) {
      const s = servers.get(m.server);
      const next = s ? { op_state: s.opState, admin_state: s.adminState } : null;
      if (JSON.stringify(next) === JSON.stringify(m.haproxy)) continue;
      m.haproxy = next;
      any = true;
    }
    if (any) changed();
  }

  const timer = setInterval(() => {
    for (const b of backends) queue.kick(b);
  }, settings.reconcileIntervalMs);
  for (const b of backends) queue.kick(b);

  return {
    status: () => ({
      kind: "route",
      servers: members.map(({ view: _v, handle: _h, heard: _heard, ...status }) => status),
      updated_at: new Date(updatedAt).toISOString(),
    }),
    onChange: (listener) => void listeners.push(listener),
    async stop(keep = () => false) {
      clearInterval(timer);
      for (const m of members) m.handle.close();
      // A server no longer ours is not in any backend's view, so the rules leave it alone.
      members.splice(0, members.length, ...members.filter((m) => !keep(m.backend, m.server)));
      // Lost streams, heard or not: the rules undo a drain of a router's and push nothing else.
      for (const m of members) {
        m.view = { ...m.view, connected: false };
        m.heard = true;
      }
      await queue.idle();
      for (const b of new Set(members.map((m) => m.backend))) queue.kick(b);
      await queue.idle();
    },
  };
}

/** Runs `work` for one key at a time; a key kicked while waiting runs once. */
function createQueue(work: (key: string) => Promise<void>) {
  const pending = new Set<string>();
  let running: Promise<void> | undefined;
  async function drain(): Promise<void> {
    while (pending.size > 0) {
      const key = pending.values().next().value!;
      pending.delete(key);
      await work(key);
    }
    running = undefined;
  }
  return {
    kick(key: string): void {
      pending.add(key);
      running ??= drain();
    },
    idle: () => running ?? Promise.resolve(),
  };
}
