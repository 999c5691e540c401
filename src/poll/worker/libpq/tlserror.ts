// One line for a server certificate that did not check out. Apart from
// tls.ts so that the poll's error table (facts.ts, loaded on both threads)
// does not load node:tls, about 9 ms of start-up (measured).
import type { Settings } from "./settings.ts";

// What node:tls (and Bun's) call a server certificate that does not check out.
const TLS_VERIFY_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** One line for a server certificate that did not check out; undefined for any other error. */
export function describeTlsError(e: Error & { code?: string }, s: Settings): string | undefined {
  if (!e.code || !TLS_VERIFY_CODES.has(e.code)) return undefined;
  if (e.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the server's certificate is not for "${s.host}": ${e.message.replace(/\s+/g, " ").trim()}`;
  }
  const root = s.tls.rootcert === "system" ? "the system's trusted roots" : `root certificate file "${s.tls.rootcert}"`;
  return `could not verify the server's certificate against ${root}: ${e.message.replace(/\s+/g, " ").trim()}`;
}
