// GET /events end to end: the real CLI beside a real primary and streaming
// standby, read by raw clients (exact bytes), a client that stops reading, a
// TLS client with a certificate, and across a stop and a promotion.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sendControl } from "../../src/ops/control.ts";
import { createSseReader } from "../../src/route/sse.ts";
import { openStream, type NodeEvent } from "../../src/route/stream.ts";
import { makeCerts } from "../kit/certs.ts";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { probe, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getStatus, metric, metricsPort } from "../kit/http.ts";

useTimeouts();

let pg: PgPair;
let dir: string;
let onPrimary: Responder;
let onStandby: Responder;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), `rs-events-${process.pid}-`));
  pg = await startPair();
  const common = ["--listen", "http:127.0.0.1:0", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
  onPrimary = await startResponder(
    [...common, "--event-heartbeat", "50ms", "--control-socket", join(dir, "primary.sock")],
    pg.primary.env,
  );
  onStandby = await startResponder(
    [...common, "--max-event-subscribers", "2", "--control-socket", join(dir, "standby.sock")],
    pg.standby.env,
  );
  await waitForAnswer(onPrimary.ports[1]!, "MASTER");
  await waitForAnswer(onStandby.ports[1]!, "STANDBY");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await onPrimary?.[Symbol.asyncDispose]();
  await onStandby?.[Symbol.asyncDispose]();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, HOOK_TIMEOUT_MS);

const HEAD =
  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";

interface Subscriber {
  /** Everything received, as latin1. */
  readonly text: string;
  readonly events: NodeEvent[];
  /** The `id:` of each event, in order. */
  readonly ids: string[];
  readonly comments: string[];
  readonly closed: boolean;
  close(): void;
}

/** A raw client of GET /events on 127.0.0.1:port that reads everything. */
function subscribe(port: number): Subscriber {
  let text = "";
  let closed = false;
  const events: NodeEvent[] = [];
  const ids: string[] = [];
  const comments: string[] = [];
  const reader = createSseReader(
    (e) => {
      ids.push(e.id ?? "");
      events.push(JSON.parse(e.data) as NodeEvent);
    },
    (c) => comments.push(c),
  );
  let fed = -1;
  const socket = connect(port, "127.0.0.1", () => socket.write("GET /events HTTP/1.1\r\nHost: test\r\n\r\n"));
  socket.on("data", (chunk: Buffer) => {
    text += chunk.toString("latin1");
    if (fed < 0) {
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      fed = end + 4;
    }
    reader.feed(text.slice(fed));
    fed = text.length;
  });
  socket.on("close", () => (closed = true));
  socket.on("error", () => {});
  return {
    get text() {
      return text;
    },
    events,
    ids,
    comments,
    get closed() {
      return closed;
    },
    close: () => socket.destroy(),
  };
}

/** A sample of a responder's /metrics (--metrics-listen). */
const sample = (r: Responder, name: string) => metric(metricsPort(r), name);

test("the first event is the state now, in the /status body, after the head and retry", async () => {
  const s = subscribe(onPrimary.ports[0]!);
  try {
    await waitFor("the first event", () => s.events.length >= 1);
    expect(s.text.startsWith(HEAD + "retry: 1000\n\n")).toBe(true);
    expect(s.text.slice(HEAD.length + "retry: 1000\n\n".length)).toMatch(/^id: \d+\nevent: state\ndata: \{.*\}\n\n/);
    const first = s.events[0]!;
    expect(first).toMatchObject({ role: "primary", state: "primary", answer: "MASTER", override: "ready" });
    expect(first.timeline).toBe(1);
    expect(first.system_identifier).toMatch(/^\d+$/);
    expect(s.ids[0]).toBe(String(first.seq));
    expect(Date.parse(first.at)).toBeLessThanOrEqual(Date.now());
    const status = await getStatus(onPrimary.ports[0]!);
    expect(Object.keys(first).sort()).toEqual([...Object.keys(status), "seq", "answer", "reason", "at"].sort());
  } finally {
    s.close();
  }
});

test("a heartbeat comment comes every --event-heartbeat while the state stands", async () => {
  const s = subscribe(onPrimary.ports[0]!);
  try {
    await waitFor("three heartbeats", () => s.comments.length >= 3, 5000);
    for (const c of s.comments) expect(Math.abs(Number(c) - Date.now())).toBeLessThan(5000);
    expect(s.events.length).toBe(1);
  } finally {
    s.close();
  }
});

test("HEAD /events gets the head alone and a FIN", async () => {
  const r = await probe(onPrimary.ports[0]!, "127.0.0.1", "HEAD /events HTTP/1.1\r\nHost: test\r\n\r\n");
  expect(r).toEqual({ text: HEAD, close: "fin" });
});

test("an override is an event, and the subscriber bound answers 503 until a stream ends", async () => {
  const a = subscribe(onStandby.ports[0]!);
  const b = subscribe(onStandby.ports[0]!);
  try {
    await waitFor("two streams", () => a.events.length === 1 && b.events.length === 1);
    const over = await probe(onStandby.ports[0]!, "127.0.0.1", "GET /events HTTP/1.1\r\nHost: test\r\n\r\n");
    expect(over.text).toStartWith("HTTP/1.1 503 Service Unavailable\r\n");
    expect(over.text).toEndWith('{"error":"too many event subscribers"}\n');
    expect(over.close).toBe("fin");
    expect(await sendControl(join(dir, "standby.sock"), "drain")).toBe("drain");
    await waitFor("the drain event", () => a.events.length === 2 && b.events.length === 2);
    expect(a.events[1]).toMatchObject({
      state: "standby",
      answer: "STANDBY",
      override: "drain",
      reason: "override drain",
    });
    expect(a.events[1]!.seq).toBe(a.events[0]!.seq + 1);
    expect(await sendControl(join(dir, "standby.sock"), "ready")).toBe("ready");
    await waitFor("the ready event", () => a.events.length === 3);
    a.close();
    await waitFor("a free slot", async () => (await sample(onStandby, "replstatus_event_subscribers")) === 1);
    const c = subscribe(onStandby.ports[0]!);
    await waitFor("a third stream once one ended", () => c.events.length === 1);
    expect(c.events[0]!.seq).toBe(a.events[2]!.seq);
    c.close();
  } finally {
    a.close();
    b.close();
  }
});

test("a subscriber that stops reading is dropped; one that reads gets every event", async () => {
  const dropped = await sample(onPrimary, "replstatus_event_subscribers_dropped_total");
  const reading = subscribe(onPrimary.ports[0]!);
  const stalled = connect(onPrimary.ports[0]!, "127.0.0.1", () => {
    stalled.write("GET /events HTTP/1.1\r\nHost: test\r\n\r\n");
    stalled.pause();
  });
  stalled.on("error", () => {});
  const control = join(dir, "primary.sock");
  try {
    await waitFor("two streams", async () => (await sample(onPrimary, "replstatus_event_subscribers")) === 2);
    // Each override change is an event of about 500 bytes: the stalled one's buffers fill.
    let flips = 0;
    await waitFor(
      "the stalled subscriber dropped",
      async () => {
        for (let i = 0; i < 50; i++, flips++) await sendControl(control, flips % 2 === 0 ? "drain" : "ready");
        return (await sample(onPrimary, "replstatus_event_subscribers_dropped_total")) > dropped;
      },
      30_000,
    );
    if (flips % 2 === 1) (await sendControl(control, "ready"), flips++);
    expect(await sample(onPrimary, "replstatus_event_subscribers")).toBe(1);
    await waitFor(
      "every event read",
      () => reading.events.at(-1)?.reason === "override ready" && reading.events.length === flips + 1,
    );
    const seqs = reading.events.map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    expect(reading.closed).toBe(false);
  } finally {
    await sendControl(control, "ready");
    reading.close();
    stalled.destroy();
  }
});

test("--allow: a stream for a peer outside it is closed without a byte", async () => {
  await using r = await startResponder(["--listen", "http:127.0.0.1:0", "--allow", "10.0.0.0/8"], pg.primary.env);
  const got = await probe(r.ports[0]!, "127.0.0.1", "GET /events HTTP/1.1\r\nHost: test\r\n\r\n");
  expect(got.text).toBe("");
});

test("tls+http with a required client certificate: a stream for a client with one, none without", async () => {
  using certs = makeCerts();
  const server = certs.server("node", ["127.0.0.1"]);
  const client = certs.client("router");
  await using r = await startResponder(
    [
      ...["--listen", "tls+http:127.0.0.1:0", "--tls-cert", server.cert, "--tls-key", server.key],
      ...["--tls-ca", certs.ca, "--tls-client-cert", "required"],
    ],
    pg.primary.env,
  );
  const read = (file: string) => Bun.file(file).text();
  const tls = { ca: await read(certs.ca), cert: await read(client.cert), key: await read(client.key) };
  const seen = (t: typeof tls | { ca: string }) => {
    const events: NodeEvent[] = [];
    const states: string[] = [];
    const stream = openStream({
      url: `https://127.0.0.1:${r.ports[0]}`,
      tls: t,
      silenceMs: 2000,
      onEvent: (e) => events.push(e),
      onState: (s, why) => states.push(`${s}: ${why}`),
    });
    return { events, states, stream };
  };
  const withCert = seen(tls);
  const without = seen({ ca: tls.ca });
  try {
    // The first event may come before the responder's first poll: UNKNOWN, then MASTER.
    await waitFor("MASTER over TLS", () => withCert.events.at(-1)?.answer === "MASTER");
    expect(withCert.events.at(-1)).toMatchObject({ state: "primary", reason: "poll ok" });
    await waitFor("the stream without a certificate lost", () => without.states.some((s) => s.startsWith("lost")));
    expect(without.events).toEqual([]);
  } finally {
    withCert.stream.close();
    without.stream.close();
  }
});

// Last: it leaves the pair with a stopped primary and a promoted standby.
test("a stop and a promotion are events, in order, with the reason and the new timeline", async () => {
  const primary = subscribe(onPrimary.ports[0]!);
  const standby = subscribe(onStandby.ports[0]!);
  try {
    await waitFor("both streams", () => primary.events.length === 1 && standby.events.length === 1);
    await pg.primary.stop("fast");
    await waitFor("UNKNOWN on the old primary's stream", () => primary.events.at(-1)?.answer === "UNKNOWN");
    const stoppedAt = Date.now();
    await pg.standby.promote();
    await waitFor("MASTER on the new primary's stream", () => standby.events.at(-1)?.answer === "MASTER", 20_000);
    const down = primary.events.find((e) => e.answer === "UNKNOWN")!;
    const up = standby.events.at(-1)!;
    expect(down).toMatchObject({ state: "unknown", role: null, timeline: null });
    expect(up).toMatchObject({ state: "primary", role: "primary", reason: "promoted", timeline: 2 });
    expect(up.system_identifier).toBe(standby.events[0]!.system_identifier);
    expect(Date.parse(down.at)).toBeLessThanOrEqual(stoppedAt);
    expect(Date.parse(up.at)).toBeGreaterThanOrEqual(Date.parse(down.at));
    for (const s of [primary, standby]) {
      const seqs = s.events.map((e) => e.seq);
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    }
  } finally {
    primary.close();
    standby.close();
  }
});
