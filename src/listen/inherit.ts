// Listening sockets handed over by a service manager (systemd socket activation, sd_listen_fds(3): LISTEN_PID,
// LISTEN_FDS, fds from 3), each matched to its --listen address through libc before anything accepts on it; Bun.listen
// ({ fd }) serves it. ARCHITECTURE.md, "The listeners" (Restarts); docs/restarts.md.
import { ptr } from "bun:ffi";
import { libc } from "./libc.ts";
import { ipVersion } from "../address.ts";
import { ReplstatusError } from "../errors.ts";

/** The first passed fd (SD_LISTEN_FDS_START). */
const FIRST_FD = 3;
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const SOCK_STREAM = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

export interface InheritedSocket {
  fd: number;
  /** Literal IP address as getsockname(2) tells it (IPv6 without brackets). */
  host: string;
  port: number;
}

/**
 * The sockets passed to this process, in order; none when LISTEN_PID is not
 * this process. Clears the LISTEN_* variables, as sd_listen_fds(1) does, and
 * marks the fds close-on-exec. Throws LISTEN_FAILED for a passed fd that is
 * not a listening TCP socket.
 */
export function inheritedSockets(env: Record<string, string | undefined>): InheritedSocket[] {
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid === undefined || count === undefined || Number(pid) !== process.pid) return [];
  if (!/^\d{1,4}$/.test(count))
    throw new ReplstatusError("LISTEN_FAILED", `could not use LISTEN_FDS=${count}: not a count`);
  const sockets: InheritedSocket[] = [];
  for (let fd = FIRST_FD; fd < FIRST_FD + Number(count); fd++) sockets.push(describeSocket(fd));
  return sockets;
}

function describeSocket(fd: number): InheritedSocket {
  const bad = (cause: string) =>
    new ReplstatusError(
      "LISTEN_FAILED",
      `could not use inherited socket ${fd}: ${cause}`,
      "pass only listening TCP sockets (a .socket unit with ListenStream=HOST:PORT)",
    );
  const c = libc();
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (c.getsockopt(fd, SOL_SOCKET, SO_TYPE, ptr(value), ptr(length)) !== 0) throw bad("not a socket");
  if (value[0] !== SOCK_STREAM) throw bad("not a stream socket");
  if (c.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, ptr(value), ptr(length)) !== 0 || value[0] !== 1) {
    throw bad("not listening");
  }
  const addr = new Uint8Array(28);
  const addrLength = new Uint32Array([addr.byteLength]);
  if (c.getsockname(fd, ptr(addr), ptr(addrLength)) !== 0) throw bad("getsockname(2) failed");
  const view = new DataView(addr.buffer);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  let host: string;
  if (family === AF_INET) host = addr.subarray(4, 8).join(".");
  else if (family === AF_INET6) {
    const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false).toString(16));
    host = canonicalHost(groups.join(":"));
  } else throw bad("not an IPv4 or IPv6 socket");
  c.fcntl(fd, F_SETFD, FD_CLOEXEC);
  return { fd, host, port };
}

/** One spelling per address, so that "::1" and "0:0:0:0:0:0:0:1" compare equal. */
export function canonicalHost(host: string): string {
  return ipVersion(host) === 6 ? new URL(`http://[${host}]/`).hostname.slice(1, -1) : host;
}

/** The inherited socket bound to exactly `address`, taken out of `sockets`; undefined when none is. */
export function takeInherited(
  sockets: InheritedSocket[],
  address: { host: string; port: number },
): InheritedSocket | undefined {
  const host = canonicalHost(address.host);
  const i = sockets.findIndex((s) => s.port === address.port && s.host === host);
  return i === -1 ? undefined : sockets.splice(i, 1)[0];
}
