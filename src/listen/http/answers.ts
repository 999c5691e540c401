// Every http answer that does not carry live numbers, prebuilt per check and
// state. None depends on the configuration, so they are built once, at import.
import { FENCED, PRIMARY, STATE_NAMES, UNKNOWN } from "../../cell.ts";

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

// `OK[check][state]`: whether the answer is 200 or 503, per check of parse.ts
// (CHECK_PRIMARY..CHECK_READINESS). A fenced node is a primary that must take
// no traffic (src/cluster/): PostgreSQL answers, so /health and /readiness say
// 200, but no pool may use it.
//                 primary standby unknown lagging fenced
export const OK: boolean[][] = [
  [true, false, false, false, false], // primary
  [false, true, false, false, false], // replica: a lagging standby is not a good replica
  [true, true, false, false, false], // read-only: primary or a good replica
  [true, true, false, true, true], // health: PostgreSQL answers
  [true, true, true, true, true], // liveness: this process runs
  [true, true, false, true, true], // readiness: the state is known
];

export interface HttpResponses {
  /** [check][state]: the answer to GET and OPTIONS. */
  get: Uint8Array[][];
  /** [check][state]: the same without the body, for HEAD. */
  head: Uint8Array[][];
  badRequest: Uint8Array;
  badLag: Uint8Array;
  badRejoin: Uint8Array;
  notFound: Uint8Array;
  notFoundHead: Uint8Array;
  badMethod: Uint8Array;
  badVersion: Uint8Array;
  timeout: Uint8Array;
  tooLarge: Uint8Array;
}

export function render(code: number, body: string, withBody: boolean, extra = "", type = "application/json"): string {
  return (
    `HTTP/1.1 ${code} ${REASONS[code]}\r\n` +
    `Content-Type: ${type}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    "Cache-Control: no-store\r\n" +
    extra +
    "Connection: close\r\n\r\n" +
    (withBody ? body : "")
  );
}

/** An answer's bytes: UTF-8, as render() counts its body (a member name or a reason may be non-ASCII). */
export function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "utf8"));
}

/** PostgreSQL's role: a fenced node is still a primary, and says so to its peers. */
export function roleOf(state: number): string | null {
  return state === PRIMARY || state === FENCED ? "primary" : state === UNKNOWN ? null : "standby";
}

/** Why a fenced node answers 503; /status says which peer. */
const FENCED_REASON = "a peer of the same cluster is primary on a higher timeline, see /status";

function buildHttpResponses(): HttpResponses {
  const table = (withBody: boolean) =>
    OK.map((row) =>
      row.map((ok, state) => {
        const reason = state === FENCED ? { reason: FENCED_REASON } : {};
        const body = JSON.stringify({ role: roleOf(state), state: STATE_NAMES[state], ...reason }) + "\n";
        return bytes(render(ok ? 200 : 503, body, withBody));
      }),
    );
  const error = (code: number, message: string, withBody = true, extra = "") =>
    bytes(render(code, JSON.stringify({ error: message }) + "\n", withBody, extra));
  return {
    get: table(true),
    head: table(false),
    badRequest: error(400, "bad request"),
    badLag: error(400, "bad lag: expected ?lag=N with N in bytes, or with kB, MB, GB such as 16MB"),
    badRejoin: error(
      400,
      "bad rejoin: expected rejoin_lag=N (a size at most ?lag=, such as 512kB) and rejoin_after=DURATION (such as 5s, at most 3600s), each once, next to ?lag=",
    ),
    notFound: error(404, "not found"),
    notFoundHead: error(404, "not found", false),
    badMethod: error(405, "method not allowed", true, "Allow: GET, HEAD, OPTIONS\r\n"),
    badVersion: error(505, "http version not supported"),
    timeout: error(408, "request timeout"),
    tooLarge: error(431, "request header fields too large"),
  };
}

export const HTTP_ANSWERS: HttpResponses = buildHttpResponses();
