// One connection attempt's plan: the settings (files read afresh), and whether the bytes go over Bun's native socket
// in the clear or over node:tls, by sslmode as libpq does (PostgreSQL docs, "SSL Support"); never TLS over a unix
// socket.
import type { ConnectionOptions } from "node:tls";
import { connectSettings, nodeIo, type DbTarget } from "../target.ts";
import type { Settings } from "./libpq/settings.ts";
import { ReplstatusError } from "../../errors.ts";

export interface ConnectPlan {
  settings: Settings;
  /** node:tls options for postgres.js's `ssl`, or false for the clear (over Bun's native socket). */
  ssl: false | ConnectionOptions;
}

/** PostgreSQL's SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = new Uint8Array([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** What the poll loop keeps between attempts. */
export interface TlsState {
  /** sslmode=allow: this attempt is the one with TLS (the loop alternates after a failure). */
  allowTls: boolean;
  /** The server's answer to the last SSLRequest; the loop forgets it when an attempt fails. */
  offered: boolean | undefined;
}

/**
 * timeoutMs (--connect-timeout) bounds the SSLRequest unless the settings
 * have a connect_timeout. Throws CONNINFO_FILE or CONNINFO_INVALID for a file or a server that
 * cannot be used as configured.
 */
export async function planConnection(target: DbTarget, timeoutMs: number, state: TlsState): Promise<ConnectPlan> {
  const settings = connectSettings(target);
  const mode = settings.sslmode;
  if (settings.unixSocket || mode === "disable" || (mode === "allow" && !state.allowTls)) {
    return { settings, ssl: false };
  }
  // postgres.js sends its own SSLRequest, but takes a refusal for a yes
  // unless the mode is "prefer", and then fails with a bare ECONNRESET: so ask
  // first, on a connection of our own. XXX: a server that says yes logs
  // "could not accept SSL connection: EOF detected" for it, hence the answer
  // is kept until an attempt fails.
  state.offered ??= await offersTls(settings.connectHost, settings.port, settings.connectTimeoutMs ?? timeoutMs);
  const offered = state.offered;
  if (offered === false && mode !== "prefer" && mode !== "allow") {
    throw new ReplstatusError(
      "CONNINFO_INVALID",
      `server does not support SSL, but SSL was required (sslmode=${mode})`,
    );
  }
  // Not asked (the question got no answer): in the clear only where the mode
  // allows it, so a required TLS never falls back to the clear.
  if (offered === false || (offered === undefined && (mode === "prefer" || mode === "allow"))) {
    return { settings, ssl: false };
  }
  // Loaded only now: node:tls costs about 9 ms of start-up (measured), and most monitors use a unix socket.
  const { tlsOptions } = await import("./libpq/tls.ts");
  const { verify: _, ...ssl } = tlsOptions(settings, nodeIo(target.env));
  return { settings, ssl };
}

/** Whether the server answers "S" to an SSLRequest; undefined when it cannot be asked (the real connect will say why). */
export function offersTls(host: string, port: number, timeoutMs: number): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    let done = false;
    // Ended however the answer came, a timeout included: a server that completes the
    // handshake but never answers (SIGSTOPped) would otherwise keep one socket per attempt.
    let socket: { end(): void } | undefined;
    const finish = (value: boolean | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.end();
      resolve(value);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open: (s) => {
          socket = s;
          if (done) s.end();
          else s.write(SSL_REQUEST);
        },
        data: (_s, chunk) => finish(chunk[0] === 0x53),
        close: () => finish(undefined),
        error: () => finish(undefined),
        connectError: () => finish(undefined),
      },
    }).catch(() => finish(undefined));
  });
}
