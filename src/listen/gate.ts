// Bun.listen per address, and the gate every connection passes before its
// mode's handler (raw.ts, agent.ts, http/) sees it.
import type { SocketHandler, TCPSocketListener, TCPSocketListenOptions, TLSOptions } from "bun";
import { admits, type AllowList } from "./allow.ts";
import { setBacklog } from "./backlog.ts";
import { formatAddress, type ListenAddress } from "../address.ts";
import { ReplstatusError } from "../errors.ts";

/** Results of a connection, the `result` label; slot offsets within a listener's block. */
export const RESULTS = ["answered", "rejected_peer", "over_limit"] as const;
export const ANSWERED = 0;
export const REJECTED_PEER = 1;
export const OVER_LIMIT = 2;

/**
 * What every connection passes before its mode's handler sees it, whatever the
 * mode: shared by all listeners, its fields replaced in place by a reload.
 */
export interface Gate {
  /** Peers that get an answer; undefined: every peer. */
  allow: AllowList | undefined;
  /** Open sockets above this are closed at once, unanswered. */
  maxConnections: number;
  /** Sockets open now across listeners, rejected ones included until closed. */
  open: number;
  /** Metrics' per-listener counters, RESULTS.length slots per listener. */
  counters: Float64Array;
}

/**
 * Wraps a mode's handler once, at start-up, so that no mode can skip the
 * checks. Per connection: a count, a compare, with --allow one address check,
 * and one counter increment. A rejected socket is terminated before anything
 * is written, so no byte of an answer can leave; the mode's `close` may then
 * see a socket its `open` never saw, and must allow for that.
 */
export function gated<T>(handler: SocketHandler<T>, gate: Gate, index: number): SocketHandler<T> {
  const modeOpen = handler.open;
  const modeClose = handler.close;
  const counters = gate.counters;
  const slot = index * RESULTS.length;
  return {
    ...handler,
    open(socket) {
      if (++gate.open > gate.maxConnections) {
        counters[slot + OVER_LIMIT]!++;
        socket.terminate();
        return;
      }
      const allow = gate.allow;
      if (allow !== undefined && !admits(allow, socket.remoteAddress)) {
        counters[slot + REJECTED_PEER]!++;
        socket.terminate();
        return;
      }
      counters[slot + ANSWERED]!++;
      return modeOpen?.(socket);
    },
    close(socket, error) {
      gate.open--;
      return modeClose?.(socket, error);
    },
  };
}

export interface Listener {
  address: ListenAddress;
  /** For a TLS context swap (listen/tls.ts). */
  server: TCPSocketListener<unknown>;
  /** Why the listen backlog could not be set, if it could not. */
  backlogError: string | undefined;
  stop(): void;
}

export interface ListenOptions<T> {
  address: ListenAddress;
  /** A mode's handler; guarded here by `gate`. */
  handler: SocketHandler<T>;
  gate: Gate;
  /** The listener's place in the metrics. */
  index: number;
  /** The listen(2) backlog to set after Bun's fixed 512. */
  backlog: number;
  /** Each socket's initial data. */
  data: T;
  /** Accept on this listening socket, bound to `address` (listen/inherit.ts), instead of binding. */
  inheritedFd?: number;
  /** Serve inside TLS (a tls+ listener, listen/tls.ts). */
  tls?: TLSOptions;
}

/** Serves a mode's handler on an address, behind the gate; throws LISTEN_FAILED. */
export function listen<T>({
  address,
  handler,
  gate,
  index,
  backlog,
  data,
  inheritedFd,
  tls,
}: ListenOptions<T>): Listener {
  // ipv6Only is honoured by Bun.listen but missing from its listen types.
  const options: TCPSocketListenOptions<T> & { ipv6Only: boolean } = {
    hostname: address.host,
    port: address.port,
    // Two responders on one port would split the checks between two nodes.
    exclusive: true,
    // [::] and 0.0.0.0 can then both be listed, each serving its own family.
    ipv6Only: address.host.includes(":"),
    allowHalfOpen: true,
    data,
    socket: gated(handler, gate, index),
    ...(tls ? { tls } : {}),
  };
  let server: TCPSocketListener<T>;
  try {
    server = Bun.listen<T>(inheritedFd === undefined ? options : onFd(options, inheritedFd));
  } catch (err) {
    throw listenError(address, err);
  }
  // The listener's fd is there at run time but missing from its types.
  const fd = (server as unknown as { fd?: number }).fd;
  const backlogError = typeof fd === "number" ? setBacklog(fd, backlog) : "the listener has no fd";
  return {
    address: { ...address, port: server.port ?? address.port },
    server: server as TCPSocketListener<unknown>,
    backlogError,
    stop: () => server.stop(),
  };
}

// Bun.listen takes { fd } (missing from its types) and would bind instead if given an address.
function onFd<T>(options: TCPSocketListenOptions<T>, fd: number): TCPSocketListenOptions<T> {
  const { allowHalfOpen, data, socket, tls } = options;
  return { allowHalfOpen, data, socket, fd, ...(tls ? { tls } : {}) } as unknown as TCPSocketListenOptions<T>;
}

export function listenError(address: { host: string; port: number }, err: unknown): ReplstatusError {
  const code = (err as { code?: string }).code ?? "EUNKNOWN";
  const where = formatAddress(address);
  switch (code) {
    case "EADDRINUSE":
      return new ReplstatusError(
        "LISTEN_FAILED",
        `could not listen on ${where}: address in use`,
        "another process (bgw_replstatus, another replstatus) serves that port; stop it or choose another --port/--listen",
      );
    case "EADDRNOTAVAIL":
      return new ReplstatusError(
        "LISTEN_FAILED",
        `could not listen on ${where}: address not available on this host`,
        "use an address this host has, or 0.0.0.0",
      );
    case "EACCES":
      return new ReplstatusError("LISTEN_FAILED", `could not listen on ${where}: permission denied`);
    default:
      return new ReplstatusError("LISTEN_FAILED", `could not listen on ${where}: ${(err as Error).message}`);
  }
}
