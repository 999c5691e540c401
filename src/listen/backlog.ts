// Kernel settings Bun has no option for, set through libc: the listen backlog
// of a listening socket, the open-file limit of the process, and the send
// buffer of an /events stream.
import { ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { libc } from "./libc.ts";

/** net.core.somaxconn: the kernel silently caps every backlog at it. */
export function somaxconn(): number | undefined {
  try {
    return Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim()) || undefined;
  } catch {
    return undefined;
  }
}

// Bun.listen passes a fixed backlog of 512 to listen(2): a burst of more
// simultaneous connects than that waits for SYN retransmits (1 s and more).
// On Linux listen(2) on a socket that is already listening only changes its
// backlog (net/ipv4/af_inet.c, inet_listen: "Really, if the socket is already
// in listen state we can only allow the backlog to be adjusted").
/** Calls listen(fd, backlog) again; returns an error text, or undefined when done. */
export function setBacklog(fd: number, backlog: number): string | undefined {
  try {
    return libc().listen(fd, backlog) === 0 ? undefined : "listen(2) failed";
  } catch (err) {
    return (err as Error).message;
  }
}

const RLIMIT_NOFILE = 7;

/**
 * Raises the soft open-file limit to the hard one where it is lower and
 * returns the soft limit in force (Bun usually raised it already at start).
 * Undefined when libc cannot be reached.
 */
export function raiseFdLimit(): number | undefined {
  try {
    const sys = libc();
    const limits = new BigUint64Array(2);
    if (sys.getrlimit(RLIMIT_NOFILE, limits) !== 0) return undefined;
    if (limits[0]! < limits[1]!) {
      const want = new BigUint64Array([limits[1]!, limits[1]!]);
      if (sys.setrlimit(RLIMIT_NOFILE, want) === 0) limits[0] = limits[1]!;
    }
    // RLIM_INFINITY is all ones.
    return limits[0]! > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(limits[0]!);
  } catch {
    return undefined;
  }
}

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;

/**
 * Fixes the socket's send buffer at `bytes` (the kernel doubles it for its own
 * bookkeeping, socket(7)), instead of letting it grow to net.ipv4.tcp_wmem's
 * maximum (4 MB here). Returns whether it was set.
 */
export function setSendBuffer(fd: number, bytes: number): boolean {
  try {
    return libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUF, ptr(new Int32Array([bytes])), 4) === 0;
  } catch {
    return false;
  }
}
