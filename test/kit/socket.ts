// A listening socket held the way a service manager's .socket unit holds it:
// bound and listening in this process, never accepted on here, passed to each
// replstatus started with it as fd 3 (LISTEN_FDS=1). Tests and the bench
// restart replstatus under it and see what a check sees meanwhile.
import { ptr } from "bun:ffi";
import { libc } from "../../src/listen/libc.ts";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

export interface HeldSocket extends Disposable {
  fd: number;
  port: number;
  /** `--listen` for replstatus: the address the socket is bound to. */
  listen: string;
  close(): void;
}

/** A listening TCP socket on 127.0.0.1 (port 0: a free one), as systemd's ListenStream= makes it. */
export function holdSocket(port = 0, backlog = 4096): HeldSocket {
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw new Error("testkit: socket(2) failed");
  const addr = new Uint8Array(16);
  const view = new DataView(addr.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  addr.set([127, 0, 0, 1], 4);
  const one = new Int32Array([1]);
  const length = new Uint32Array([addr.byteLength]);
  if (
    c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ptr(one), 4) !== 0 ||
    c.bind(fd, ptr(addr), addr.byteLength) !== 0 ||
    c.listen(fd, backlog) !== 0 ||
    c.getsockname(fd, ptr(addr), ptr(length)) !== 0
  ) {
    c.close(fd);
    throw new Error(`testkit: could not listen on 127.0.0.1:${port}`);
  }
  const bound = view.getUint16(2, false);
  let open = true;
  const close = () => {
    if (open) c.close(fd);
    open = false;
  };
  return { fd, port: bound, listen: `127.0.0.1:${bound}`, close, [Symbol.dispose]: close };
}

/**
 * The command prefix that passes fd 3 as systemd does: LISTEN_PID must be
 * the pid of the process that reads it, which only the process itself knows,
 * so a shell sets it and execs (the pid stays the same). Give the held fd
 * as the fourth stdio entry of Bun.spawn.
 */
export const ACTIVATE = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh"];
