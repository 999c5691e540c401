// The split-brain guard over https: real PostgreSQL nodes, the real CLI with
// tls+http listeners that require client certificates, certificates made here
// by openssl. The impostor is a small https server started here: it stands in
// for whoever grabs a peer's address, not for replstatus.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { makeCerts, type CertPair, type Certs } from "../kit/certs.ts";
import { freePort, startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getStatus } from "../kit/http.ts";

useTimeouts();
const PEER_INTERVAL_MS = 100;
const PEER_TIMEOUT_MS = 500;
/** Peer answers take effect within an interval and a timeout; the rest is a busy machine's slack. */
const SETTLE_MS = 3000;

let certs: Certs;
let serverCert: CertPair;
let clientCert: CertPair;
let pg: PgPair;
let systemId: string;

const peerFlags = (...urls: string[]) => [
  ...urls.flatMap((u) => ["--peer", u]),
  ...["--peer-interval", `${PEER_INTERVAL_MS}ms`, "--peer-timeout", `${PEER_TIMEOUT_MS}ms`],
];
const tlsListen = (httpPort: number) => [
  ...["--listen", "127.0.0.1:0", "--listen", `tls+http:127.0.0.1:${httpPort}`],
  ...["--tls-cert", serverCert.cert, "--tls-key", serverCert.key, "--tls-ca", certs.ca],
  ...["--tls-client-cert", "required"],
];

/** A node's /status over https, read with the nodes' client certificate. */
const status = (port: number) =>
  getStatus(port, { tls: { ca: Bun.file(certs.ca), cert: Bun.file(clientCert.cert), key: Bun.file(clientCert.key) } });

beforeAll(async () => {
  certs = makeCerts();
  serverCert = certs.server("node", ["127.0.0.1"]);
  clientCert = certs.client("node-client");
  pg = await startPair();
  systemId = await pg.primary.sql("select system_identifier from pg_control_system()");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await pg?.stop();
  certs?.[Symbol.dispose]();
}, HOOK_TIMEOUT_MS);

describe("two nodes with mutual TLS between them", () => {
  test("each reads the other's /status over https with its client certificate", async () => {
    const [h1, h2] = [await freePort(), await freePort()];
    const mtls = ["--peer-ca", certs.ca, "--peer-cert", clientCert.cert, "--peer-key", clientCert.key];
    await using a = await startResponder(
      [...tlsListen(h1), ...peerFlags(`https://127.0.0.1:${h2}`), ...mtls],
      pg.primary.env,
    );
    await using b = await startResponder(
      [...tlsListen(h2), ...peerFlags(`https://127.0.0.1:${h1}`), ...mtls],
      pg.standby.env,
    );
    await waitForAnswer(a.ports[0]!, "MASTER");
    await waitForAnswer(b.ports[0]!, "STANDBY");
    await waitFor("a to see b's role", async () => (await status(h1)).peers[0].role === "standby", SETTLE_MS);
    await waitFor("b to see a's role", async () => (await status(h2)).peers[0].role === "primary", SETTLE_MS);
    expect((await status(h1)).peers[0]).toMatchObject({ result: "ok", role: "standby", system_identifier: systemId });
    expect((await status(h2)).peers[0]).toMatchObject({ result: "ok", role: "primary", timeline: 1 });
  });

  test("without --peer-cert, a node that requires client certificates cannot be read: bad_certificate", async () => {
    const h1 = await freePort();
    await using a = await startResponder(tlsListen(h1), pg.standby.env);
    await using c = await startResponder(
      ["--listen", "http:127.0.0.1:0", ...peerFlags(`https://127.0.0.1:${h1}`), "--peer-ca", certs.ca],
      pg.primary.env,
    );
    await c.waitForLog(/peer https:\/\/127\.0\.0\.1:\d+ failed TLS verification: .*; it does not count/);
    const s = await getStatus(c.ports[0]!);
    expect(s.peers[0]).toMatchObject({ result: "bad_certificate", role: null, timeline: null });
    expect(s.guard).toBe("no peer reachable");
    expect(a.proc.exitCode).toBeNull();
  });
});

describe("an impostor on a peer's address", () => {
  // A /status saying "primary on timeline 99, same cluster": what would fence a primary on timeline 1.
  function fakePeer(pair: CertPair): ReturnType<typeof Bun.serve> {
    return Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: Bun.file(pair.cert), key: Bun.file(pair.key) },
      fetch: () => Response.json({ role: "primary", state: "primary", timeline: 99, system_identifier: systemId }),
    });
  }

  test("with a certificate from another CA cannot fence the primary; one from the right CA can", async () => {
    using impostor = fakePeer(certs.server("impostor", ["127.0.0.1"], { fromOtherCa: true }));
    using trusted = fakePeer(certs.server("trusted", ["127.0.0.1"]));
    const impostorUrl = `https://127.0.0.1:${impostor.port}`;
    await using a = await startResponder(
      [...tlsListen(await freePort()), ...peerFlags(impostorUrl), "--peer-ca", certs.ca],
      pg.primary.env,
    );
    await waitForAnswer(a.ports[0]!, "MASTER");
    await a.waitForLog(/peer https:\/\/127\.0\.0\.1:\d+ failed TLS verification/);
    // Several rounds of the impostor's claim: the answer never changes.
    const until = performance.now() + 10 * PEER_INTERVAL_MS;
    while (performance.now() < until) expect(await answer(a.ports[0]!)).toBe("MASTER");
    const s = await status(a.ports[1]!);
    expect(s).toMatchObject({ state: "primary", fenced_by: null });
    expect(s.peers[0]).toMatchObject({ url: impostorUrl, result: "bad_certificate", timeline: null });
    expect(a.log).not.toContain("fenced");

    // The control: the same claim with a certificate from the right CA fences.
    await using b = await startResponder(
      [...tlsListen(await freePort()), ...peerFlags(`https://127.0.0.1:${trusted.port}`), "--peer-ca", certs.ca],
      pg.primary.env,
    );
    await waitForAnswer(b.ports[0]!, "FENCED", SETTLE_MS);
  });
});

describe("--isolation-after", () => {
  test("a primary whose only peer goes away answers FENCED within the bound, and MASTER once it is back", async () => {
    const h2 = await freePort();
    const peerArgs = [...tlsListen(h2), ...peerFlags(`https://127.0.0.1:1`)];
    let b = await startResponder(peerArgs, pg.standby.env);
    const isolationMs = 1000;
    await using a = await startResponder(
      [
        ...tlsListen(await freePort()),
        ...peerFlags(`https://127.0.0.1:${h2}`),
        ...["--peer-ca", certs.ca, "--peer-cert", clientCert.cert, "--peer-key", clientCert.key],
        ...["--isolation-after", `${isolationMs}ms`],
      ],
      pg.primary.env,
    );
    try {
      await waitForAnswer(a.ports[0]!, "MASTER");
      await b.stop();
      await waitForAnswer(a.ports[0]!, "FENCED", isolationMs + PEER_TIMEOUT_MS + SETTLE_MS);
      await a.waitForLog(/primary -> fenced \(isolated: no peer reached for [\d.]+s \(--isolation-after 1s\)\)/);
      expect((await status(a.ports[1]!)).isolation).toMatchObject({ after_ms: isolationMs, isolated: true });
      b = await startResponder(peerArgs, pg.standby.env);
      await waitForAnswer(a.ports[0]!, "MASTER", SETTLE_MS * 3);
      await a.waitForLog(/fenced -> primary \(a peer answers again, isolation over\)/);
    } finally {
      await b[Symbol.asyncDispose]();
    }
  });
});
