// What `replstatus route` tells haproxy, as a pure function of what it knows:
// each node's stream and haproxy's own view of its servers (`show servers
// state`). The invariant: a push never makes a second server of a primary
// backend running. Only check results are pushed (`set server health`), which
// haproxy's next checks overwrite, so a router that stops leaves nothing
// forced behind; the one admin state used, `drain` for a lagging replica, is
// undone when its stream is lost. docs/routing.md says why each command.

/** srv_op_state of `show servers state` (haproxy's `enum srv_state`). */
export const OP_STOPPED = 0;
export const OP_RUNNING = 2;
/** srv_admin_state bits (`enum srv_admin`): forced, inherited, resolver, config and its own drain... */
export const ADMIN_FORCED_DRAIN = 0x08;
/** Every maintenance bit: forced, inherited, config, resolution, and HMAINT for a server being deleted. */
export const ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40 | 0x80;

/** One server as haproxy shows it. */
export interface HaproxyServer {
  opState: number;
  adminState: number;
}

/** One server as its node's stream shows it. */
export interface NodeView {
  /** The stream delivers events now; a lost or connecting stream knows nothing. */
  connected: boolean;
  /** The node's last answer (MASTER, STANDBY, ... as its raw listener says), its state and override. */
  state: string;
  override: string;
  /** Pushes of `health up` since the node last changed state. */
  upPushes: number;
}

export type BackendKind = "primary" | "replica";

export interface Command {
  server: string;
  /** The runtime API command, without the trailing newline. */
  line: string;
  why: string;
}

/**
 * A node that says primary while haproxy keeps taking it out (its checks
 * fail, e.g. haproxy cannot reach the node) is pushed up at most this often
 * per change of the node; then the checks decide.
 */
export const MAX_UP_PUSHES = 3;

/** Whether haproxy sends new sessions to the server: running and in no maintenance. */
export function writable(s: HaproxyServer): boolean {
  return s.opState === OP_RUNNING && (s.adminState & ADMIN_MAINT) === 0;
}

const isPrimary = (n: NodeView | undefined) => n?.connected === true && n.state === "primary";

/**
 * The commands for one backend, in order. `nodes` and `servers` are keyed by
 * server name; a server without a NodeView is not the router's. `shutdown`
 * adds `shutdown sessions server` to every take-out.
 */
export function decide(
  backend: string,
  kind: BackendKind,
  nodes: Map<string, NodeView>,
  servers: Map<string, HaproxyServer>,
  shutdown: boolean,
): Command[] {
  return kind === "primary"
    ? decidePrimary(backend, nodes, servers, shutdown)
    : decideReplica(backend, nodes, servers, shutdown);
}

function down(backend: string, server: string, why: string, shutdown: boolean): Command[] {
  const out = [{ server, line: `set server ${backend}/${server} health down`, why }];
  if (shutdown) out.push({ server, line: `shutdown sessions server ${backend}/${server}`, why });
  return out;
}

function decidePrimary(
  backend: string,
  nodes: Map<string, NodeView>,
  servers: Map<string, HaproxyServer>,
  shutdown: boolean,
): Command[] {
  const out: Command[] = [];
  const runningAfter = new Set<string>();
  // Out at once: every server whose node says anything but primary.
  for (const [name, s] of servers) {
    const node = nodes.get(name);
    if (node?.connected && node.state !== "primary" && s.opState === OP_RUNNING) {
      out.push(...down(backend, name, `node says ${node.state}`, shutdown));
    } else if (writable(s)) runningAfter.add(name);
  }
  // In at once: the one node that says primary, while no other server runs
  // and no other stream says primary too (then the checks decide).
  const primaries = [...nodes.keys()].filter((name) => servers.has(name) && isPrimary(nodes.get(name)));
  if (primaries.length !== 1) return out;
  const name = primaries[0]!;
  const s = servers.get(name)!;
  const node = nodes.get(name)!;
  if (s.opState === OP_RUNNING || (s.adminState & ADMIN_MAINT) !== 0 || node.upPushes >= MAX_UP_PUSHES) return out;
  if ([...runningAfter].some((other) => other !== name)) return out;
  out.push({ server: name, line: `set server ${backend}/${name} health up`, why: "node says primary" });
  return out;
}

function decideReplica(
  backend: string,
  nodes: Map<string, NodeView>,
  servers: Map<string, HaproxyServer>,
  shutdown: boolean,
): Command[] {
  const out: Command[] = [];
  for (const [name, s] of servers) {
    const node = nodes.get(name);
    if (!node) continue;
    const drained = (s.adminState & ADMIN_FORCED_DRAIN) !== 0;
    const maint = (s.adminState & ADMIN_MAINT) !== 0;
    // A lost stream: the checks decide, and a drain of ours is undone.
    if (!node.connected) {
      if (drained) out.push({ server: name, line: `set server ${backend}/${name} state ready`, why: "stream lost" });
      continue;
    }
    const serving = node.state === "standby" || node.state === "lagging";
    if (!serving) {
      if (s.opState === OP_RUNNING) out.push(...down(backend, name, `node says ${node.state}`, shutdown));
      continue;
    }
    const drain = node.state === "lagging" || node.override === "drain";
    if (drain && !drained) {
      out.push({ server: name, line: `set server ${backend}/${name} state drain`, why: `node says ${node.state}` });
    } else if (!drain && drained) {
      out.push({ server: name, line: `set server ${backend}/${name} state ready`, why: "node says standby" });
    }
    if (node.state === "standby" && s.opState !== OP_RUNNING && !maint && node.upPushes < MAX_UP_PUSHES) {
      out.push({ server: name, line: `set server ${backend}/${name} health up`, why: "node says standby" });
    }
  }
  return out;
}
