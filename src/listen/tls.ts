// TLS on a listener (`--listen tls+MODE:HOST:PORT`): the mode's protocol, unchanged, inside TLS, with the
// client-certificate rule enforced in `handshake` for every client and the certificate swapped in on SIGHUP. A plain
// listener is untouched, and node:crypto and node:tls load only where TLS is configured. ARCHITECTURE.md, "The
// listeners" (tls+).
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ClientCertRule, PeerTlsConfig, TlsConfig } from "../config/types.ts";
import type { Logger } from "../log.ts";
import { ReplstatusError, isError } from "../errors.ts";

/** Why a TLS client got no answer: the `reason` label of replstatus_tls_handshake_failures_total. */
export const TLS_FAILURES = [
  "not_tls",
  "no_client_certificate",
  "untrusted_client_certificate",
  "expired_client_certificate",
  "aborted",
  "other",
] as const;
export type TlsFailure = (typeof TLS_FAILURES)[number];
const NOT_TLS = 0;
const NO_CLIENT_CERTIFICATE = 1;
const UNTRUSTED = 2;
const EXPIRED = 3;
const ABORTED = 4;
const OTHER = 5;
/** A handshake that is not over this long after accept is cut (Bun's timeouts fire on a 4 s grid). */
export const HANDSHAKE_TIMEOUT_S = 4;

/** Bun.listen's `tls` options for every tls+ listener. */
export interface TlsOptions {
  cert: string;
  key: string;
  ca?: string;
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

export interface TlsMaterial {
  options: TlsOptions;
  rule: ClientCertRule;
  /** `CN=db1.example, valid until 2027-01-31`: for the start line and the reload log. */
  summary: string;
  /** The certificate's notAfter has passed: worth a warning, not a refusal. */
  expired: boolean;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new ReplstatusError("TLS_FAILED", `could not read ${what} ${path}: ${why}`);
  }
}

/** Reads and checks the files of `config`: a certificate, its key (they must match), the CA. */
export function loadTls(config: TlsConfig): TlsMaterial {
  const { createPrivateKey, X509Certificate } = process.getBuiltinModule("node:crypto");
  const cert = readPem(config.certFile, "certificate file");
  const key = readPem(config.keyFile, "key file");
  const ca = config.caFile === undefined ? undefined : readPem(config.caFile, "CA file");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ReplstatusError(
      "TLS_FAILED",
      `could not parse certificate file ${config.certFile}: ${(err as Error).message}`,
    );
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new ReplstatusError("TLS_FAILED", `could not parse key file ${config.keyFile}: ${(err as Error).message}`);
  }
  if (!matches) {
    throw new ReplstatusError(
      "TLS_FAILED",
      `could not use key file ${config.keyFile}: it is not the key of ${config.certFile}`,
      "a renewal replaces both files; give the key that was issued with the certificate",
    );
  }
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new ReplstatusError("TLS_FAILED", `could not parse CA file ${config.caFile}: ${(err as Error).message}`);
    }
  }
  const validTo = new Date(x509.validTo);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1] ?? x509.subject.replace(/\n/g, ", ");
  return {
    options: {
      cert,
      key,
      ...(ca === undefined ? {} : { ca }),
      requestCert: config.clientCert !== "none",
      rejectUnauthorized: config.clientCert === "required",
    },
    rule: config.clientCert,
    summary: `CN=${cn}, valid until ${validTo.toISOString().slice(0, 10)}, client certificates ${config.clientCert}`,
    expired: validTo.getTime() < Date.now(),
  };
}

/**
 * Puts `material` into a running listener; new handshakes use it, open
 * connections keep theirs. Throws TLS_FAILED when this Bun cannot do it.
 */
export function swapContext(server: TCPSocketListener<unknown>, material: TlsMaterial): void {
  const holder = process.getBuiltinModule("node:tls").createServer({
    requestCert: material.options.requestCert,
    rejectUnauthorized: material.options.rejectUnauthorized,
  }) as unknown as { setSecureContext?: (options: object) => void };
  if (typeof holder.setSecureContext !== "function") {
    throw new ReplstatusError(
      "TLS_FAILED",
      "could not swap the TLS context: this Bun has no tls.Server setSecureContext",
    );
  }
  try {
    holder.setSecureContext.call(Object.assign(Object.create(holder), { _handle: server }), material.options);
  } catch (err) {
    throw new ReplstatusError("TLS_FAILED", `could not swap the TLS context: ${(err as Error).message}`);
  }
}

/** Handshake failures per listener, and the reason each last logged. */
export interface TlsHandshakes {
  /** Per listener, TLS_FAILURES.length slots. */
  readonly failures: Float64Array;
  /** The rule in force; a SIGHUP may change it. */
  rule: ClientCertRule;
}

export function createTlsHandshakes(listenerCount: number, rule: ClientCertRule): TlsHandshakes {
  return { failures: new Float64Array(listenerCount * TLS_FAILURES.length), rule };
}

function classify(err: Error | null | undefined): number {
  const text = `${(err as { code?: string } | undefined)?.code ?? ""} ${err?.message ?? ""}`;
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/.test(text)) return NO_CLIENT_CERTIFICATE;
  if (/CERT_HAS_EXPIRED|CERTIFICATE_EXPIRED/.test(text)) return EXPIRED;
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|EXCESSIVE_MESSAGE_SIZE|UNKNOWN_PROTOCOL|RECORD|PARSE|DECODE/.test(text))
    return NOT_TLS;
  if (/ECONNRESET|disconnected|EOF/.test(text)) return ABORTED;
  if (/CERT|VERIFY|ISSUER|SIGNATURE/.test(text)) return UNTRUSTED;
  return OTHER;
}

/**
 * After a completed handshake: -1 when the client may be answered, else the
 * failure. `verifyError` is Bun's verdict on the client's certificate (set
 * with success too: CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...).
 */
function refusal(socket: Socket<unknown>, rule: ClientCertRule, verifyError: Error | null | undefined): number {
  if (rule === "none" || socket.authorized) return -1;
  const cert = socket.getPeerCertificate() as { subject?: unknown } | null | undefined;
  const shown = cert != null && cert.subject !== undefined;
  if (!shown) return rule === "required" ? NO_CLIENT_CERTIFICATE : -1;
  return /EXPIRED/.test((verifyError as { code?: string } | null | undefined)?.code ?? "") ? EXPIRED : UNTRUSTED;
}

/**
 * The mode's handler inside TLS: `open` only starts the handshake deadline;
 * the mode's `open` runs once the handshake is done and the client passes the
 * rule. A failure is counted and the socket ended (the TLS stack has sent its
 * alert, if any); `onFailure` is told, to log it when the reason changes.
 */
export function secureHandler<T>(
  handler: SocketHandler<T>,
  handshakes: TlsHandshakes,
  index: number,
  onFailure: (index: number, failure: TlsFailure, detail: string, from: string) => void,
): SocketHandler<T> {
  const answer = handler.open!;
  const slot = index * TLS_FAILURES.length;
  return {
    ...handler,
    open(socket) {
      socket.timeout(HANDSHAKE_TIMEOUT_S);
    },
    handshake(socket, success, err) {
      const failure = success ? refusal(socket as Socket<unknown>, handshakes.rule, err) : classify(err);
      if (failure < 0) return answer(socket);
      handshakes.failures[slot + failure]!++;
      const detail = err?.message ?? (success ? "no certificate" : "handshake failed");
      onFailure(index, TLS_FAILURES[failure]!, detail.replace(/\s+/g, " "), socket.remoteAddress);
      socket.end();
    },
  };
}

/** One log line per listener and change of reason, never one per connection. */
export function failureLogger(
  names: () => string[],
  log: Logger,
): (index: number, failure: TlsFailure, detail: string, from: string) => void {
  const last: (TlsFailure | undefined)[] = [];
  return (index, failure, detail, from) => {
    if (last[index] === failure) return;
    last[index] = failure;
    log.warning(
      `tls handshake refused on ${names()[index]}: ${failure.replaceAll("_", " ")} (${detail}, from ${from}); counted in replstatus_tls_handshake_failures_total, logged again when the reason changes`,
      { listener: names()[index] ?? String(index), reason: failure },
    );
  };
}

/**
 * SIGHUP: reads the files again and swaps them into every tls+ listener. On
 * any error the running material stays, and the reason is logged.
 */
export function reloadTls(
  config: TlsConfig,
  servers: TCPSocketListener<unknown>[],
  handshakes: TlsHandshakes,
  log: Logger,
): void {
  let material: TlsMaterial;
  try {
    material = loadTls(config);
    for (const server of servers) swapContext(server, material);
  } catch (err) {
    if (!isError(err, "TLS_FAILED")) throw err;
    log.error(`SIGHUP: ${err.message}; tls+ listeners keep the certificate they had`);
    return;
  }
  handshakes.rule = material.rule;
  log.info(`SIGHUP: tls+ listeners now use ${material.summary}`);
  if (material.expired) log.warning(`the certificate ${config.certFile} has expired: clients that verify it refuse it`);
}

/** --peer-ca, --peer-cert, --peer-key as PEM text for fetch's `tls`; undefined when none is given. */
export function loadPeerTls(config: PeerTlsConfig): { ca?: string; cert?: string; key?: string } | undefined {
  if (config.caFile === undefined && config.certFile === undefined) return undefined;
  const ca = config.caFile === undefined ? undefined : readPem(config.caFile, "CA file");
  if (config.certFile === undefined || config.keyFile === undefined) return { ca };
  const cert = readPem(config.certFile, "certificate file");
  const key = readPem(config.keyFile, "key file");
  const { createPrivateKey, X509Certificate } = process.getBuiltinModule("node:crypto");
  try {
    if (new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) return { ca, cert, key };
  } catch (err) {
    throw new ReplstatusError("TLS_FAILED", `could not use --peer-cert ${config.certFile}: ${(err as Error).message}`);
  }
  throw new ReplstatusError(
    "TLS_FAILED",
    `could not use key file ${config.keyFile}: it is not the key of ${config.certFile}`,
  );
}
