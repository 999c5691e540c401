// Bun.listen per address. The raw protocol is bgw_replstatus's: on accept,
// write the current state's text and close; no request is read or needed.
import type { Socket, SocketHandler, TCPSocketListener, TCPSocketListenOptions } from "bun";
import { formatAddress, type ListenAddress } from "./config.ts";
import type { Responses } from "./states.ts";

/** Thrown when an address cannot be served; main.ts prints it and exits 1. */
export class ListenError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

// A peer that sent bytes we never read would get a RST instead of our FIN when
// the socket closes, and a RST can destroy the reply in flight (DESIGN.md
// section 7). So the raw reply is written, the write side shut down, and the
// input drained until the peer closes, within these bounds.
export const DRAIN_TIMEOUT_S = 2;
export const DRAIN_LIMIT_BYTES = 64 * 1024;

/** Per-socket data: bytes drained so far. A number, so accept allocates nothing. */
type Drained = number;

/**
 * The hot path. `responses.raw` is indexed by state and prebuilt; `cell[0]`
 * is the current state. One lookup, one write, one shutdown.
 */
export function rawHandler(cell: Int32Array, responses: Responses): SocketHandler<Drained> {
  return {
    open(socket) {
      socket.write(responses.raw[cell[0]!]!);
      socket.shutdown();
      socket.timeout(DRAIN_TIMEOUT_S);
    },
    data(socket, chunk) {
      socket.data += chunk.byteLength;
      if (socket.data > DRAIN_LIMIT_BYTES) socket.terminate();
    },
    // The reply went out long ago; a peer that never closes is cut off.
    timeout(socket: Socket<Drained>) {
      socket.terminate();
    },
    error() {},
  };
}

export interface Listener {
  address: ListenAddress;
  stop(): void;
}

/** `data` is each new socket's socket.data before the handler's open() runs. */
export function listen<T = Drained>(address: ListenAddress, handler: SocketHandler<T>, data = 0 as T): Listener {
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
    socket: handler,
  };
  let server: TCPSocketListener<T>;
  try {
    server = Bun.listen<T>(options);
  } catch (err) {
    throw listenError(address, err);
  }
  return {
    address: { ...address, port: server.port },
    stop: () => server.stop(),
  };
}

function listenError(address: ListenAddress, err: unknown): ListenError {
  const code = (err as { code?: string }).code ?? "EUNKNOWN";
  const where = formatAddress(address);
  switch (code) {
    case "EADDRINUSE":
      return new ListenError(
        `could not listen on ${where}: address in use`,
        code,
        "another process (bgw_replstatus, another replstatus) serves that port; stop it or choose another --port/--listen",
      );
    case "EADDRNOTAVAIL":
      return new ListenError(
        `could not listen on ${where}: address not available on this host`,
        code,
        "use an address this host has, or 0.0.0.0",
      );
    case "EACCES":
      return new ListenError(`could not listen on ${where}: permission denied`, code);
    default:
      return new ListenError(`could not listen on ${where}: ${(err as Error).message}`, code);
  }
}
