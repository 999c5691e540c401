// The few libc calls Bun has no option for, in one binding opened on first
// use: listen(2) again for the backlog, the open-file limit, and reading a
// passed socket's address (backlog.ts, inherit.ts; test/kit/socket.ts holds sockets
// with it too). Pointers are passed as numbers from bun:ffi's ptr().
import { dlopen, FFIType } from "bun:ffi";

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: number, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: number, len: number): number;
  getsockname(fd: number, addr: number, len: number): number;
  bind(fd: number, addr: number, len: number): number;
  listen(fd: number, backlog: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  close(fd: number): number;
  getrlimit(resource: number, limits: BigUint64Array): number;
  setrlimit(resource: number, limits: BigUint64Array): number;
}

let symbols: Libc | undefined;

/** The binding; throws when libc cannot be opened (callers say what it means for them). */
export function libc(): Libc {
  symbols ??= dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  }).symbols as unknown as Libc;
  return symbols;
}
