// Raise the listen backlog of a socket Bun.listen has already opened.
//
// Bun.listen calls listen(fd, 512) and offers no option to change it, so a burst of more
// than 512 simultaneous connects overflows the accept queue and the extra SYNs are dropped;
// their clients retransmit after 1 s (RFC 6298 initial RTO), which shows up as 1 s tails.
// On Linux, calling listen() again on a socket that is already listening only updates its
// backlog (net/ipv4/af_inet.c, inet_listen), capped by net.core.somaxconn. The same holds on
// macOS and the BSDs (solisten). Nothing else about the socket changes.
//
// XXX: reads errno right after the call, through the libc accessor; nothing runs in between
// on this thread, but it is not an atomic pair.
import { dlopen, FFIType, read } from "bun:ffi";
import { readFileSync } from "node:fs";

type Libc = {
  listen: (fd: number, backlog: number) => number;
  errnoPtr: () => number | bigint | null;
};

let libc: Libc | null = null;

function openLibc(): Libc {
  if (libc) return libc;
  const darwin = process.platform === "darwin";
  const errnoName = darwin ? "__error" : "__errno_location";
  const names = darwin ? ["libc.dylib", "/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"];
  let lastError: unknown;
  for (const name of names) {
    try {
      const lib = dlopen(name, {
        listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
        [errnoName]: { args: [], returns: FFIType.ptr },
      });
      const errnoFn = lib.symbols[errnoName] as unknown as () => number | null;
      libc = { listen: lib.symbols.listen as (fd: number, b: number) => number, errnoPtr: errnoFn };
      return libc;
    } catch (e) {
      lastError = e;
    }
  }
  throw Object.assign(new Error(`could not load libc (${names.join(", ")}): ${(lastError as Error)?.message}`), {
    code: "ERR_LIBC",
  });
}

/** The kernel's cap on listen backlogs (net.core.somaxconn), or null where it is unknown. */
export function somaxconn(): number | null {
  try {
    const n = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * Set the listen backlog of the already-listening socket `fd` (e.g. `listener.fd` of a
 * `Bun.listen` listener) to `backlog` connections.
 *
 * Returns the backlog the kernel will use: `backlog`, capped by net.core.somaxconn where that
 * can be read. Throws an error with `code` (`EBADF`, `ENOTSOCK`, `EOPNOTSUPP`, `ERR_LIBC`, ...)
 * when the call fails.
 */
export function raiseBacklog(fd: number, backlog: number): number {
  if (!Number.isInteger(fd) || fd < 0) {
    throw Object.assign(new Error(`invalid listening socket fd: ${fd}`), { code: "EBADF" });
  }
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 0x7fffffff) {
    throw Object.assign(new Error(`invalid listen backlog: ${backlog}`), { code: "EINVAL" });
  }
  const c = openLibc();
  if (c.listen(fd, backlog) !== 0) {
    const p = c.errnoPtr();
    const errno = p ? read.i32(p as number) : 0;
    const code = ERRNO_CODES[errno] ?? `errno ${errno}`;
    throw Object.assign(new Error(`could not set listen backlog on fd ${fd}: ${code}`), {
      code,
      errno,
    });
  }
  const cap = somaxconn();
  return cap === null ? backlog : Math.min(backlog, cap);
}

/** The listening socket's fd of a Bun.listen listener (present at run time, not in the types). */
export function listenerFd(listener: object): number {
  const fd = (listener as { fd?: unknown }).fd;
  if (typeof fd !== "number") {
    throw Object.assign(new Error("listener has no fd"), { code: "ERR_NO_FD" });
  }
  return fd;
}

// The errno values listen() can report, Linux numbering then macOS where they differ.
const ERRNO_CODES: Record<number, string> =
  process.platform === "darwin"
    ? { 9: "EBADF", 22: "EINVAL", 38: "ENOTSOCK", 45: "EOPNOTSUPP", 48: "EADDRINUSE" }
    : { 9: "EBADF", 22: "EINVAL", 88: "ENOTSOCK", 95: "EOPNOTSUPP", 98: "EADDRINUSE" };
