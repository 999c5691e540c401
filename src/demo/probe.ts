// One TCP (or unix socket, or TLS) client for the tests, the bench and the demo: connect,
// optionally send bytes first (as haproxy's tcp-check send does), read until
// the server closes, and say how it closed.
import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { waitFor } from "./pg.ts";

export type Where = { host: string; port: number; localAddress?: string } | { path: string };

export interface ProbeResult {
  text: string;
  /** "fin" when the server closed cleanly, "reset" on ECONNRESET, "timeout", else the error code. */
  close: string;
}

export function exchange(where: Where, send?: string | Uint8Array, timeoutMs = 5000): Promise<ProbeResult> {
  return collect((onConnect) => connect(where as { path: string }, onConnect), send, timeoutMs);
}

export interface TlsProbeResult extends ProbeResult {
  /** CN of the server's certificate, when the handshake got that far. */
  serverCn: string | undefined;
}

/** exchange() through TLS on 127.0.0.1:port; a close after the handshake's end counts as a clean one. */
export function tlsExchange(
  port: number,
  opts: ConnectionOptions & { send?: string } = {},
  timeoutMs = 5000,
): Promise<TlsProbeResult> {
  let serverCn: string | undefined;
  return collect(
    (onConnect) => {
      const socket = tlsConnect({ host: "127.0.0.1", port, ...opts }, () => {
        serverCn = (socket.getPeerCertificate()?.subject as { CN?: string } | undefined)?.CN;
        onConnect();
      });
      return socket;
    },
    opts.send,
    timeoutMs,
    true,
  ).then((r) => ({ ...r, serverCn }));
}

/** Sends once connected, reads until the server closes, and says how it closed. */
function collect(
  open: (onConnect: () => void) => Socket,
  send: string | Uint8Array | undefined,
  timeoutMs: number,
  closeIsClean = false,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (close: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), close });
    };
    const socket = open(() => {
      if (send !== undefined) socket.write(send);
    });
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => finish("fin"));
    if (closeIsClean) socket.on("close", () => finish("fin"));
    socket.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : (e.code ?? e.message)));
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
  });
}

/** A listener on `host:port`: what it wrote, and how it closed. */
export function probe(port: number, host = "127.0.0.1", send?: string | Uint8Array): Promise<ProbeResult> {
  return exchange({ host, port }, send);
}

/** What the server wrote before its FIN; rejects on anything but a clean close. */
export async function request(where: Where, send?: string, timeoutMs = 5000): Promise<string> {
  const r = await exchange(where, send, timeoutMs);
  if (r.close !== "fin") {
    const at = "path" in where ? where.path : `${where.host}:${where.port}`;
    throw new Error(`probe of ${at} ended with ${r.close} after ${JSON.stringify(r.text)}`);
  }
  return r.text;
}

/** The raw answer of a listener on `host:port`, or throws when the connection did not end with a FIN. */
export function answer(port: number, host = "127.0.0.1"): Promise<string> {
  return request({ host, port });
}

/** Polls the raw answer until it equals `want`; returns how long it took. */
export async function waitForAnswer(port: number, want: string, timeoutMs = 20_000): Promise<number> {
  const t0 = performance.now();
  let last = "";
  try {
    await waitFor(
      `answer ${want}`,
      async () => {
        last = await answer(port).catch((e: Error) => e.message);
        return last === want;
      },
      timeoutMs,
      2,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (last answer: ${JSON.stringify(last)})`);
  }
  return performance.now() - t0;
}
