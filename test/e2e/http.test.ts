// The http mode and lag limits, end to end: the real CLI against a real primary
// and streaming standby, probed with raw TCP clients so every byte is checked.
import { beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { bytes, render } from "../../src/listen/http/answers.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { answer, probe, waitForAnswer } from "../../src/demo/probe.ts";
import { useTimeouts } from "../kit/timeouts.ts";
import { usePair } from "../kit/pair.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { READ_DEADLINE_MS, SWEEP_MS } from "../../src/listen/http/handler.ts";
import { withSlack } from "../kit/bounds.ts";

useTimeouts();

const pair = usePair({ args: ["--listen", "http:127.0.0.1:0", "--listen", "127.0.0.1:0"], raw: 1 });
/** http ports */
let primaryHttp: number;
let standbyHttp: number;
beforeAll(() => {
  primaryHttp = pair.onPrimary.ports[0]!;
  standbyHttp = pair.onStandby.ports[0]!;
});

/** Sends a request, reads until the server closes; the close must be a FIN. */
async function request(port: number, send: string | Uint8Array): Promise<string> {
  const r = await probe(port, "127.0.0.1", send);
  if (r.close !== "fin") throw new Error(`request ended with ${r.close} after ${JSON.stringify(r.text)}`);
  return r.text;
}

const statusLine = (text: string) => text.slice(0, text.indexOf("\r\n"));
const body = (text: string) => text.slice(text.indexOf("\r\n\r\n") + 4);
const get = (path: string, version = "1.0") => `GET ${path} HTTP/${version}\r\n\r\n`;

const OK = "HTTP/1.1 200 OK";
const UNAVAILABLE = "HTTP/1.1 503 Service Unavailable";

test("a rendered answer's Content-Length is the length of the body it sends, non-ASCII too", () => {
  for (const body of ['{"member":"pg-1"}\n', '{"member":"nœud-ü"}\n', '{"reason":"東京"}\n']) {
    const answer = Buffer.from(bytes(render(200, body, true)));
    const split = answer.indexOf("\r\n\r\n");
    const length = Number(/Content-Length: (\d+)/.exec(answer.subarray(0, split).toString())?.[1]);
    expect(answer.subarray(split + 4).toString("utf8")).toBe(body);
    expect(length).toBe(answer.length - split - 4);
  }
});

describe("paths", () => {
  test.each([
    ["/", OK, UNAVAILABLE],
    ["/primary", OK, UNAVAILABLE],
    ["/master", OK, UNAVAILABLE],
    ["/leader", OK, UNAVAILABLE],
    ["/read-write", OK, UNAVAILABLE],
    ["/replica", UNAVAILABLE, OK],
    ["/standby", UNAVAILABLE, OK],
    ["/replica?lag=1GB", UNAVAILABLE, OK],
    ["/standby?lag=1073741824", UNAVAILABLE, OK],
    ["/read-only", OK, OK],
    ["/health", OK, OK],
    ["/liveness", OK, OK],
    ["/readiness", OK, OK],
    ["/status", OK, OK],
    ["/primary?unrelated=1", OK, UNAVAILABLE],
  ])("%s: primary %s, standby %s", async (path, onPrimaryLine, onStandbyLine) => {
    expect(statusLine(await request(primaryHttp, get(path)))).toBe(onPrimaryLine);
    expect(statusLine(await request(standbyHttp, get(path, "1.1")))).toBe(onStandbyLine);
  });

  test("a whole answer: headers, Connection: close, a JSON body", async () => {
    const body = '{"role":"primary","state":"primary"}\n';
    expect(await request(primaryHttp, get("/primary"))).toBe(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  test("/status and ?lag= carry live numbers", async () => {
    const status = JSON.parse(body(await request(standbyHttp, get("/status"))));
    expect(status).toMatchObject({ role: "standby", state: "standby", receiver: "streaming" });
    expect(status.lag_bytes).toBeGreaterThanOrEqual(0);
    expect(status.since_change_ms).toBeGreaterThan(0);
    expect(status.poll_age_ms).toBeLessThan(1000);
    const lag = JSON.parse(body(await request(standbyHttp, get("/replica?lag=16MB"))));
    expect(lag).toMatchObject({ role: "standby", state: "standby", receiver: "streaming" });
    const onPrimaryStatus = JSON.parse(body(await request(primaryHttp, get("/status"))));
    expect(onPrimaryStatus).toMatchObject({
      role: "primary",
      state: "primary",
      override: "ready",
      lag_bytes: null,
      receiver: null,
    });
  });

  test("/metrics: the Prometheus text of the same process", async () => {
    const text = await request(primaryHttp, get("/metrics"));
    expect(statusLine(text)).toBe(OK);
    expect(text).toContain("\r\nContent-Type: text/plain; version=0.0.4\r\n");
    expect(body(text)).toContain('replstatus_state{state="primary"} 1\n');
  });
});

describe("bad requests: exact status line, then a clean close", () => {
  const huge = "x".repeat(5000);
  test.each([
    ["bad method", "POST /primary HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"],
    ["bad method, lowercase", "get /primary HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"],
    ["unsupported version", "GET /primary HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported"],
    ["bad version", "GET /primary HTTP/1.x\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["no version (HTTP/0.9)", "GET /primary\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["no path", "GET HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["empty path", "GET  HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["absolute form", "GET http://db1/primary HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["asterisk form", "OPTIONS * HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["empty request", "\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["binary garbage", "\x00\x01\x02\xff\n\n", "HTTP/1.1 400 Bad Request"],
    ["CR inside the path", "GET /pri\rmary HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["non-ASCII path", "GET /prim\xe4ry HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["folded header", "GET /primary HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["header without colon", "GET /primary HTTP/1.1\r\nHost\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["bare CR in a header", "GET /primary HTTP/1.1\r\nX-A: 1\r2\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    ["unknown path", "GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"],
    ["trailing slash", "GET /primary/ HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"],
    ["absurd path", `GET /${"a/".repeat(1500)} HTTP/1.1\r\n\r\n`, "HTTP/1.1 404 Not Found"],
    ["huge header", `GET /primary HTTP/1.1\r\nX-Huge: ${huge}\r\n\r\n`, "HTTP/1.1 431 Request Header Fields Too Large"],
    ["endless request line", `GET /${huge}`, "HTTP/1.1 431 Request Header Fields Too Large"],
    ["lag without a value", get("/replica?lag="), "HTTP/1.1 400 Bad Request"],
    ["lag with a bad unit", get("/replica?lag=16XB"), "HTTP/1.1 400 Bad Request"],
    ["lag negative", get("/replica?lag=-1"), "HTTP/1.1 400 Bad Request"],
    ["lag twice", get("/replica?lag=1MB&lag=2MB"), "HTTP/1.1 400 Bad Request"],
    ["lag too large", get("/replica?lag=99999999999999GB"), "HTTP/1.1 400 Bad Request"],
  ])("%s", async (_, send, line) => {
    const text = await request(primaryHttp, Buffer.from(send, "latin1"));
    expect(statusLine(text)).toBe(line);
  });

  test("a client that closes its side mid-head gets 400 at once, not 408 later", async () => {
    const t0 = performance.now();
    const text = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = connect({ port: primaryHttp, host: "127.0.0.1", allowHalfOpen: true }, () =>
        socket.end("GET /pri"),
      );
      socket.on("data", (d: Buffer) => chunks.push(d));
      socket.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
      socket.on("error", reject);
    });
    expect(statusLine(text)).toBe("HTTP/1.1 400 Bad Request");
    // Answered on the FIN, not by the read deadline's sweep.
    expect(performance.now() - t0).toBeLessThan(READ_DEADLINE_MS);
  });

  test("405 says what is allowed", async () => {
    expect(await request(primaryHttp, "DELETE / HTTP/1.1\r\n\r\n")).toContain("\r\nAllow: GET, HEAD, OPTIONS\r\n");
  });

  test("400 for ?lag= says what is accepted", async () => {
    expect(body(await request(primaryHttp, get("/replica?lag=fast")))).toBe(
      '{"error":"bad lag: expected ?lag=N with N in bytes, or with kB, MB, GB such as 16MB"}\n',
    );
  });
});

describe("good requests in odd shapes", () => {
  test.each([
    ["bare LF lines", "GET /primary HTTP/1.0\nHost: db1\n\n", OK],
    ["mixed line ends", "GET /primary HTTP/1.1\r\nHost: db1\n\r\n", OK],
    ["HTTP/1.1 with headers", "GET /primary HTTP/1.1\r\nHost: db1:8008\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n", OK],
    ["OPTIONS, haproxy's default check", "OPTIONS / HTTP/1.0\r\n\r\n", OK],
    ["a body after the head is drained", "GET /primary HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", OK],
  ])("%s", async (_, send, line) => {
    expect(statusLine(await request(primaryHttp, send))).toBe(line);
  });

  test("HEAD: the head only, with the GET's Content-Length", async () => {
    const text = await request(primaryHttp, "HEAD /primary HTTP/1.1\r\n\r\n");
    expect(statusLine(text)).toBe(OK);
    expect(text).toEndWith("\r\nContent-Length: 37\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
    const missing = await request(primaryHttp, "HEAD /nope HTTP/1.1\r\n\r\n");
    expect(missing).toStartWith("HTTP/1.1 404 Not Found\r\n");
    expect(missing).toEndWith("\r\n\r\n");
  });

  test("pipelined requests: one answer, then close", async () => {
    const text = await request(primaryHttp, get("/primary") + get("/replica") + get("/nope"));
    expect(statusLine(text)).toBe(OK);
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
  });

  test.each([
    ["in the path", ["GET /prim", "ary HTTP/1.0\r\n\r\n"]],
    ["between CR and LF of the blank line", ["GET /primary HTTP/1.0\r\n\r", "\n"]],
    ["byte by byte", [...get("/primary")]],
  ])("a head split %s", async (_, pieces) => {
    expect(statusLine(await drip(primaryHttp, pieces, 20))).toBe(OK);
  });
});

/** Writes pieces with a gap between them; resolves with all bytes read once the server closes. */
function drip(port: number, pieces: string[], gapMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ port, host: "127.0.0.1" });
    let timer: Timer | undefined;
    let i = 0;
    const next = () => {
      if (i < pieces.length && !socket.destroyed) {
        socket.write(pieces[i++]!);
        timer = setTimeout(next, gapMs);
      }
    };
    socket.on("connect", next);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe("slow clients", () => {
  test("a head dripped past 2 s gets 408, about when the deadline passes", async () => {
    const t0 = performance.now();
    const text = await drip(primaryHttp, [...("GET /primary HTTP/1.0\r\nX-Slow: " + "y".repeat(100))], 100);
    const elapsedMs = performance.now() - t0;
    expect(statusLine(text)).toBe("HTTP/1.1 408 Request Timeout");
    // The deadline counts from the accept, after t0; the sweep that sends the 408 runs every SWEEP_MS.
    expect(elapsedMs).toBeGreaterThanOrEqual(READ_DEADLINE_MS);
    expect(elapsedMs).toBeLessThan(withSlack(READ_DEADLINE_MS + SWEEP_MS));
  });

  test("silent and slow clients do not hold up the others", async () => {
    const sockets = Array.from({ length: 100 }, (_, i) => {
      const s = connect({ port: primaryHttp, host: "127.0.0.1" });
      s.on("error", () => {});
      s.resume();
      // Half say nothing, half start a request and stop.
      if (i % 2) s.on("connect", () => s.write("GET /pri"));
      return s;
    });
    await waitFor("all slow sockets connected", () => sockets.every((s) => !s.connecting));
    const t0 = performance.now();
    expect(statusLine(await request(primaryHttp, get("/primary")))).toBe(OK);
    // Not held up: answered before any of them reaches its 408.
    expect(performance.now() - t0).toBeLessThan(READ_DEADLINE_MS);
    // Every one of them is answered 408 and closed by the server.
    await waitFor("the slow sockets to be closed", () => sockets.every((s) => s.readableEnded || s.destroyed), 10_000);
    for (const s of sockets) s.destroy();
    expect(pair.onPrimary.proc.exitCode).toBeNull();
  });
});

describe("lag limits", () => {
  const pause = () => pair.pg.standby.sql("select pg_wal_replay_pause()");
  const resume = () => pair.pg.standby.sql("select pg_wal_replay_resume()");
  // About 5 MB of WAL on the primary, which the standby receives but, paused, does not replay.
  const writeWal = () =>
    pair.pg.primary.sql(
      "drop table if exists wal_filler; create table wal_filler as select repeat('x', 1000) as x from generate_series(1, 5000)",
    );
  const lagBytes = async (port: number) => JSON.parse(body(await request(port, get("/status")))).lag_bytes as number;

  test("over --max-lag-bytes: LAGGING, /replica 503; back to STANDBY once replayed", async () => {
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0", "--max-lag-bytes", "1MB", "--lag-grace", "200ms"],
      pair.pg.standby.env,
    );
    const [raw, http] = [r.ports[0]!, r.ports[1]!];
    await waitForAnswer(raw, "STANDBY");
    await pause();
    try {
      await writeWal();
      await waitForAnswer(raw, "LAGGING", 10_000);
      expect(statusLine(await request(http, get("/replica")))).toBe(UNAVAILABLE);
      expect(statusLine(await request(http, get("/read-only")))).toBe(UNAVAILABLE);
      expect(statusLine(await request(http, get("/health")))).toBe(OK);
      expect(statusLine(await request(http, get("/replica?lag=1GB")))).toBe(OK);
      expect(JSON.parse(body(await request(http, get("/status"))))).toMatchObject({
        state: "lagging",
        role: "standby",
      });
    } finally {
      await resume();
    }
    await waitForAnswer(raw, "STANDBY", 10_000);
    await r.waitForLog(/standby -> lagging \(replay \d+(\.\d)? MB behind, limit 1 MB\)/);
    await r.waitForLog(/lagging -> standby \(replay \d+(\.\d)? (bytes|kB) behind, limit 1 MB\)/);
  });

  test("--lag-grace: a standby over the limit for less than the grace stays STANDBY", async () => {
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--max-lag-bytes", "1MB", "--lag-grace", "60s", "--listen", "http:127.0.0.1:0"],
      pair.pg.standby.env,
    );
    await waitForAnswer(r.ports[0]!, "STANDBY");
    await pause();
    try {
      await writeWal();
      await waitFor("the lag to show", async () => (await lagBytes(r.ports[1]!)) > 1024 * 1024, 10_000);
      expect(await answer(r.ports[0]!)).toBe("STANDBY");
      // The per-request limit applies at once, whatever the grace.
      expect(statusLine(await request(r.ports[1]!, get("/replica?lag=1MB")))).toBe(UNAVAILABLE);
    } finally {
      await resume();
    }
    expect(r.log).not.toContain("-> lagging");
  });

  test("without pg_read_all_stats: the role, and one warning", async () => {
    await pair.pg.primary.sql("drop role if exists lagless; create role lagless login");
    await waitFor(
      "the role on the standby",
      async () => (await pair.pg.standby.sql("select count(*) from pg_roles where rolname = 'lagless'")) === "1",
    );
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "http:127.0.0.1:0", "--max-lag-bytes", "1MB", "--lag-grace", "0"],
      { ...pair.pg.standby.env, PGUSER: "lagless" },
    );
    await waitForAnswer(r.ports[0]!, "STANDBY");
    await r.waitForLog(/warning: cannot read the standby's lag: .*GRANT pg_monitor/);
    // Lag cannot be judged: a per-request limit is not met, the configured one is not applied.
    expect(statusLine(await request(r.ports[1]!, get("/replica?lag=1GB")))).toBe(UNAVAILABLE);
    expect(statusLine(await request(r.ports[1]!, get("/replica")))).toBe(OK);
    await pause();
    try {
      await writeWal();
      // Many polls later: still the role, still one warning.
      await waitFor(
        "the write to reach the standby",
        async () => (await pair.pg.standby.sql("select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")) === "t",
      );
      expect(await answer(r.ports[0]!)).toBe("STANDBY");
    } finally {
      await resume();
    }
    expect(r.log.match(/cannot read the standby's lag/g)).toHaveLength(1);
  });

  test("with a limit, a standby whose WAL receiver stops streaming is LAGGING", async () => {
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--max-lag-bytes", "16MB", "--lag-grace", "0"],
      pair.pg.standby.env,
    );
    await waitForAnswer(r.ports[0]!, "STANDBY");
    await pair.pg.primary.stop("fast");
    try {
      await waitForAnswer(r.ports[0]!, "LAGGING", 10_000);
      await r.waitForLog(/standby -> lagging \((no WAL receiver running|WAL receiver \w+, not streaming)\)/);
    } finally {
      await pair.pg.primary.start();
    }
    // The receiver retries every wal_retrieve_retry_interval (5 s).
    await waitForAnswer(r.ports[0]!, "STANDBY", 20_000);
  });
});
