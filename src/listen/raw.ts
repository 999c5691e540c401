// The raw protocol, bgw_replstatus's: on accept, write the current state's
// text and close; no request is read or needed.
import type { Socket, SocketHandler } from "bun";
import type { Responses } from "./answers.ts";
import { currentState } from "../cell.ts";

// A peer that sent bytes we never read would get a RST instead of our FIN when
// the socket closes, and a RST can destroy the reply in flight (ARCHITECTURE.md).
// So a reply is written, the write side shut down, and the input drained until
// the peer closes, within these bounds. Every mode does so.
export const DRAIN_TIMEOUT_S = 2;
export const DRAIN_LIMIT_BYTES = 64 * 1024;

/** Per-socket data: bytes drained so far. A number, so accept allocates nothing. */
type Drained = number;

/**
 * The hot path. `responses.raw` is indexed by state and prebuilt; the answer
 * word says which (cell.ts). One lookup, one write, one shutdown.
 */
export function rawHandler(slots: Int32Array, responses: Responses): SocketHandler<Drained> {
  return {
    open(socket) {
      socket.write(responses.raw[currentState(slots)]!);
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
