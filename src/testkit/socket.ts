// A listening socket held the way a service manager's .socket unit holds it:
// bound and listening in this process, never accepted on here, passed to each
// replstatus started with it as fd 3 (LISTEN_FDS=1). Tests and the bench
// restart replstatus under it and see what a check sees meanwhile.
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

let libc:
  | {
      socket(domain: number, type: number, protocol: number): number;
      setsockopt(fd: number, level: number, name: number, value: number, len: number): number;
      bind(fd: number, addr: number, len: number): number;
      listen(fd: number, backlog: number): number;
      getsockname(fd: number, addr: number, len: number): number;
      close(fd: number): number;
    }
  | undefined;

function sys() {
  libc ??= dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols as unknown as typeof libc;
  return libc!;
}

export interface HeldSocket extends Disposable {
  fd: number;
  port: number;
  /** `--listen` for replstatus: the address the socket is bound to. */
  listen: string;
  close(): void;
}

/** A listening TCP socket on 127.0.0.1 (port 0: a free one), as systemd's ListenStream= makes it. */
export function holdSocket(port = 0, backlog = 4096): HeldSocket {
  const c = sys();
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
