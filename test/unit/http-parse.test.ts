// The strict HTTP request-head parser (src/listen/http/parse.ts) on its own: bytes in, the exact
// RequestHead out, for good requests and every rejection; and where a head ends, whole, split
// into segments, or past the size limit. test/e2e/http.test.ts sends the same through the real CLI.
import { describe, expect, test } from "bun:test";
import {
  BAD_METHOD,
  BAD_REQUEST,
  BAD_VERSION,
  CHECK_EVENTS,
  CHECK_HEALTH,
  CHECK_LIVENESS,
  CHECK_METRICS,
  CHECK_PRIMARY,
  CHECK_READ_ONLY,
  CHECK_READINESS,
  CHECK_REPLICA,
  CHECK_STATUS,
  HEAD_LIMIT_BYTES,
  headEnd,
  NOT_FOUND,
  parseHead,
  type RequestHead,
} from "../../src/listen/http/parse.ts";

const bytesOf = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));
const text = (buf: Uint8Array, from: number, to: number) =>
  from < 0 ? null : Buffer.from(buf.subarray(from, to)).toString("latin1");

/** What parseHead makes of a whole head, with the path and the query as text. */
function parse(head: string): { kind: number; head: boolean; path: string | null; query: string | null } {
  const buf = bytesOf(head);
  const end = headEnd(buf, 0, buf.length);
  expect(end).toBe(buf.length);
  // One RequestHead per handler, rewritten by every parse: start from another request's leftovers.
  const out: RequestHead = { kind: 99, head: true, queryFrom: 1, queryTo: 2, pathFrom: 3, pathTo: 4 };
  parseHead(buf, end, out);
  return {
    kind: out.kind,
    head: out.head,
    path: text(buf, out.pathFrom, out.pathTo),
    query: text(buf, out.queryFrom, out.queryTo),
  };
}

const get = (path: string, version = "1.1") => `GET ${path} HTTP/${version}\r\n\r\n`;

describe("good requests", () => {
  test.each([
    ["/", CHECK_PRIMARY],
    ["/primary", CHECK_PRIMARY],
    ["/master", CHECK_PRIMARY],
    ["/leader", CHECK_PRIMARY],
    ["/read-write", CHECK_PRIMARY],
    ["/replica", CHECK_REPLICA],
    ["/standby", CHECK_REPLICA],
    ["/read-only", CHECK_READ_ONLY],
    ["/health", CHECK_HEALTH],
    ["/liveness", CHECK_LIVENESS],
    ["/readiness", CHECK_READINESS],
    ["/status", CHECK_STATUS],
    ["/metrics", CHECK_METRICS],
    ["/events", CHECK_EVENTS],
  ])("GET %s: check %d", (path, kind) => {
    for (const version of ["1.0", "1.1"]) {
      expect(parse(get(path, version))).toEqual({ kind, head: false, path, query: null });
    }
  });

  test.each<[string, string, { kind: number; head: boolean; path: string | null; query: string | null }]>([
    [
      "a query, apart from the path",
      get("/replica?lag=1MB"),
      { kind: CHECK_REPLICA, head: false, path: "/replica", query: "lag=1MB" },
    ],
    ["an empty query", get("/replica?"), { kind: CHECK_REPLICA, head: false, path: "/replica", query: "" }],
    [
      "a query of several parameters",
      get("/read-only?lag=10MB&tag_dc=east"),
      { kind: CHECK_READ_ONLY, head: false, path: "/read-only", query: "lag=10MB&tag_dc=east" },
    ],
    [
      "headers as haproxy sends them",
      "GET /primary HTTP/1.1\r\nHost: db1\r\nUser-Agent: HAProxy\r\nConnection: close\r\n\r\n",
      { kind: CHECK_PRIMARY, head: false, path: "/primary", query: null },
    ],
    [
      "bare LF line ends",
      "GET /standby HTTP/1.1\nHost: db1\n\n",
      { kind: CHECK_REPLICA, head: false, path: "/standby", query: null },
    ],
    [
      "a header value with a tab, and an empty one",
      "GET /health HTTP/1.0\r\nX-A:\tb c\r\nX-Empty:\r\n\r\n",
      { kind: CHECK_HEALTH, head: false, path: "/health", query: null },
    ],
    [
      "header values of any byte above the controls (obs-text)",
      "GET /health HTTP/1.0\r\nX-Name: n\xe9ud\r\n\r\n",
      { kind: CHECK_HEALTH, head: false, path: "/health", query: null },
    ],
    [
      "HEAD: the same check, without the body",
      "HEAD /primary HTTP/1.1\r\n\r\n",
      { kind: CHECK_PRIMARY, head: true, path: "/primary", query: null },
    ],
    [
      "HEAD with a query",
      "HEAD /replica?lag=1MB HTTP/1.0\r\n\r\n",
      { kind: CHECK_REPLICA, head: true, path: "/replica", query: "lag=1MB" },
    ],
    [
      "OPTIONS: answered as GET (haproxy's default httpchk method)",
      "OPTIONS / HTTP/1.0\r\n\r\n",
      { kind: CHECK_PRIMARY, head: false, path: "/", query: null },
    ],
    [
      "an unknown path: 404, with the path kept for the Patroni mode",
      get("/cluster"),
      { kind: NOT_FOUND, head: false, path: "/cluster", query: null },
    ],
    [
      "a path is matched exactly: a trailing slash is another path",
      get("/primary/"),
      { kind: NOT_FOUND, head: false, path: "/primary/", query: null },
    ],
    [
      "a path is matched exactly: case counts",
      get("/PRIMARY"),
      { kind: NOT_FOUND, head: false, path: "/PRIMARY", query: null },
    ],
    [
      "HEAD of an unknown path",
      "HEAD /nope?x=1 HTTP/1.1\r\n\r\n",
      { kind: NOT_FOUND, head: true, path: "/nope", query: "x=1" },
    ],
  ])("%s", (_, head, want) => {
    expect(parse(head)).toEqual(want);
  });
});

const rejected = (kind: number) => ({ kind, head: false, path: null, query: null });

describe("rejections: the error, and nothing else taken from the head", () => {
  test.each([
    ["POST", "POST /primary HTTP/1.1\r\n\r\n"],
    ["PUT", "PUT /primary HTTP/1.1\r\n\r\n"],
    ["DELETE", "DELETE /primary HTTP/1.1\r\n\r\n"],
    ["CONNECT", "CONNECT /primary HTTP/1.1\r\n\r\n"],
    ["a method in lower case", "get /primary HTTP/1.1\r\n\r\n"],
    ["an unknown token", "FROB / HTTP/1.0\r\n\r\n"],
  ])("method %s: 405", (_, head) => {
    expect(parse(head)).toEqual(rejected(BAD_METHOD));
  });

  test.each([
    ["HTTP/2.0", get("/primary", "2.0")],
    ["HTTP/1.2", get("/primary", "1.2")],
    ["HTTP/0.9", get("/primary", "0.9")],
    ["HTTP/3.0 with a bad method too", "POST /primary HTTP/3.0\r\n\r\n"],
  ])("version %s: 505", (_, head) => {
    expect(parse(head)).toEqual(rejected(BAD_VERSION));
  });

  test.each([
    ["a version that is not HTTP/d.d", get("/primary", "1")],
    ["a version of two digits", get("/primary", "10.0")],
    ["a version with a suffix", get("/primary", "1.1x")],
    ["a version in lower case", "GET /primary http/1.1\r\n\r\n"],
    ["no version", "GET /primary\r\n\r\n"],
    ["an empty request line", "\r\n\r\n"],
    ["a request line of one word", "GET\r\n\r\n"],
    ["a leading space", " GET /primary HTTP/1.1\r\n\r\n"],
    ["two spaces after the method", "GET  /primary HTTP/1.1\r\n\r\n"],
    ["a trailing space", "GET /primary HTTP/1.1 \r\n\r\n"],
    ["a space in the target", "GET /pri mary HTTP/1.1\r\n\r\n"],
    ["a tab for a space", "GET\t/primary HTTP/1.1\r\n\r\n"],
    ["a target without its slash", "GET primary HTTP/1.1\r\n\r\n"],
    ["an absolute-form target", "GET http://db1/primary HTTP/1.1\r\n\r\n"],
    ["an asterisk target", "OPTIONS * HTTP/1.1\r\n\r\n"],
    ["a control byte in the target", "GET /prim\x01ary HTTP/1.1\r\n\r\n"],
    ["DEL in the target", "GET /prim\x7fary HTTP/1.1\r\n\r\n"],
    ["a non-ASCII byte in the target", "GET /n\xe9ud HTTP/1.1\r\n\r\n"],
    ["a CR inside the request line", "GET /primary\r HTTP/1.1\r\n\r\n"],
    ["a method with a non-token byte", "G@T /primary HTTP/1.1\r\n\r\n"],
    ["a header line without a colon", "GET /primary HTTP/1.1\r\nHost db1\r\n\r\n"],
    ["a header name with a space", "GET /primary HTTP/1.1\r\nHost name: db1\r\n\r\n"],
    ["a space before the colon", "GET /primary HTTP/1.1\r\nHost : db1\r\n\r\n"],
    ["an empty header name", "GET /primary HTTP/1.1\r\n: db1\r\n\r\n"],
    ["a folded header line (obs-fold)", "GET /primary HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n"],
    ["a control byte in a header value", "GET /primary HTTP/1.1\r\nX-A: b\x01c\r\n\r\n"],
    ["DEL in a header value", "GET /primary HTTP/1.1\r\nX-A: b\x7fc\r\n\r\n"],
    ["a bad header after good ones", "GET /primary HTTP/1.1\r\nHost: db1\r\nUser-Agent: x\r\nnope\r\n\r\n"],
    ["a bad header, also with a bad method", "POST /primary HTTP/1.1\r\nnope\r\n\r\n"],
  ])("%s: 400", (_, head) => {
    expect(parse(head)).toEqual(rejected(BAD_REQUEST));
  });
});

describe("where the head ends", () => {
  test.each([
    ["CRLF CRLF", "GET / HTTP/1.0\r\n\r\n", 18],
    ["LF LF", "GET / HTTP/1.0\n\n", 16],
    ["LF CRLF", "GET / HTTP/1.0\n\r\n", 17],
    ["CRLF LF", "GET / HTTP/1.0\r\n\n", 17],
    ["with headers", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", 27],
    ["bytes after the head are not part of it", "GET / HTTP/1.0\r\n\r\nGET /replica HTTP/1.0\r\n\r\n", 18],
    ["no blank line yet", "GET / HTTP/1.0\r\nHost: a\r\n", -1],
    ["the blank line's LF not there yet", "GET / HTTP/1.0\r\n\r", -1],
    ["a request line alone", "GET / HTTP/1.0", -1],
    ["nothing", "", -1],
  ])("%s: %d", (_, head, end) => {
    const buf = bytesOf(head);
    expect(headEnd(buf, 0, buf.length)).toBe(end);
  });

  // The http listener searches a first segment up to HEAD_LIMIT_BYTES and answers 431 when no
  // head ends within them.
  const padded = (length: number) => {
    const start = "GET /primary HTTP/1.1\r\nX-Pad: ";
    return start + "p".repeat(length - start.length - 4) + "\r\n\r\n";
  };

  test.each([
    ["exactly the limit: a head", HEAD_LIMIT_BYTES, HEAD_LIMIT_BYTES],
    ["one byte over: none within the limit (431)", HEAD_LIMIT_BYTES + 1, -1],
    ["far over: none within the limit (431)", 4 * HEAD_LIMIT_BYTES, -1],
  ])("a head of %s", (_, length, end) => {
    const buf = bytesOf(padded(length));
    expect(buf.length).toBe(length);
    expect(headEnd(buf, 0, Math.min(buf.length, HEAD_LIMIT_BYTES))).toBe(end);
  });

  test("a head at the limit parses as the request it is", () => {
    expect(parse(padded(HEAD_LIMIT_BYTES))).toEqual({
      kind: CHECK_PRIMARY,
      head: false,
      path: "/primary",
      query: null,
    });
  });

  // A head in segments: each new segment is searched from two bytes before it, so a blank line
  // split between segments (CR LF | CR LF, CR LF CR | LF, LF | LF) is found with its last byte.
  test.each([
    "GET /replica?lag=1MB HTTP/1.1\r\nHost: db1\r\n\r\n",
    "GET /replica HTTP/1.1\nHost: db1\n\n",
    "HEAD / HTTP/1.0\n\r\n",
  ])("split anywhere, also byte by byte: %j ends where it ends whole", (head) => {
    const buf = bytesOf(head);
    const whole = headEnd(buf, 0, buf.length);
    for (let split = 1; split < buf.length; split++) {
      expect(headEnd(buf, 0, split)).toBe(-1);
      expect(headEnd(buf, Math.max(0, split - 2), buf.length)).toBe(whole);
    }
    let found = -1;
    let len = 0;
    while (found < 0) {
      const from = Math.max(0, len - 2);
      len++;
      found = headEnd(buf, from, len);
    }
    expect({ found, len }).toEqual({ found: whole, len: buf.length });
  });
});
