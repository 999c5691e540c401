// TLS listeners end to end: certificates made here by openssl, a real primary
// and standby, the real CLI with tls+raw, tls+agent and tls+http listeners
// requiring client certificates, and real haproxy checking them with
// check-ssl verify required + crt. Bad clients (plaintext, garbage, no
// certificate, another CA's, an expired one) get nothing and change nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { makeCerts, type CertPair, type Certs } from "../kit/certs.ts";
import { landsOn, startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { probe, tlsExchange } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { ACTIVATE, holdSocket } from "../kit/socket.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { scrape } from "../kit/http.ts";
import { usePair } from "../kit/pair.ts";

useTimeouts();
const INTER_MS = 100;
/** How long a healthy check-ssl backend is watched for flaps: about 40 checks per server. */
const WATCH_MS = 4000;

const tlsProbe = tlsExchange;
/** A TLS record (type 21, alert) of 2 bytes: fatal (2), illegal_parameter (47), as BoringSSL answers a bad hello. */
const ALERT_ILLEGAL_PARAMETER = "\x15\x03\x01\x00\x02\x02\x2f";

let certs: Certs;
let ca: string;
let server: CertPair;
let client: CertPair;
let hx: Haproxy;
/** The certificate files the responders read; a test renews them in place. */
let liveCert: string;
let liveKey: string;

const trustCa = (): ConnectionOptions => ({ ca: readFileSync(ca, "utf8") });
const withCert = (pair: CertPair): ConnectionOptions => ({
  ...trustCa(),
  cert: readFileSync(pair.cert, "utf8"),
  key: readFileSync(pair.key, "utf8"),
});

beforeAll(() => {
  certs = makeCerts();
  ca = certs.ca;
  server = certs.server("server", ["127.0.0.1"]);
  client = certs.client("haproxy");
  liveCert = `${certs.dir}/live.crt`;
  liveKey = `${certs.dir}/live.key`;
  copyFileSync(server.cert, liveCert);
  copyFileSync(server.key, liveKey);
});

// Waited on through the plain listener (the fourth).
const pair = usePair({
  args: () => [
    ...["--listen", "tls:127.0.0.1:0", "--listen", "tls+agent:127.0.0.1:0", "--listen", "tls+http:127.0.0.1:0"],
    ...["--listen", "127.0.0.1:0", "--tls-cert", liveCert, "--tls-key", liveKey, "--tls-ca", ca],
    ...["--tls-client-cert", "required"],
  ],
  raw: 3,
});

beforeAll(async () => {
  const crt = certs.combined(client);
  const ssl = `check-ssl verify required ca-file ${ca} crt ${crt}`;
  const servers = (i: number) => [
    `server pg1 127.0.0.1:${pair.pg.primary.port} check port ${pair.onPrimary.ports[i]} ${ssl}`,
    `server pg2 127.0.0.1:${pair.pg.standby.port} check port ${pair.onStandby.ports[i]} ${ssl}`,
  ];
  hx = await startHaproxy({
    defaults: [`default-server inter ${INTER_MS}ms fastinter ${INTER_MS}ms downinter ${INTER_MS}ms rise 2 fall 2`],
    proxies: {
      raw: ["option tcp-check", "tcp-check expect string MASTER", ...servers(0)],
      // haproxy's agent-check never speaks TLS (its agent checks use a raw
      // socket by design), so the agent line is read with a tcp-check here.
      agent: ["option tcp-check", 'tcp-check expect rstring "^up ready"', ...servers(1)],
      http: ["option httpchk GET /primary", "http-check expect status 200", ...servers(2)],
    },
  });
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await hx?.stop();
  certs?.[Symbol.dispose]();
}, HOOK_TIMEOUT_MS);

const POOLS = ["raw", "agent", "http"] as const;

describe("haproxy check-ssl verify required with a client certificate", () => {
  test.each(POOLS)(
    "%s: the primary is UP, the standby DOWN, and nothing flaps over many resumed sessions",
    async (pool) => {
      await hx.waitForServer(pool, "pg1", "UP");
      await hx.waitForServer(pool, "pg2", "DOWN");
      const before = await hx.showServers(pool);
      const deadline = performance.now() + WATCH_MS;
      while (performance.now() < deadline) {
        const now = await hx.showServers(pool);
        expect(now.pg1!.status).toBe("UP");
        expect(now.pg2!.status).toBe("DOWN");
        await Bun.sleep(50);
      }
      const after = await hx.showServers(pool);
      // chkfail: failed checks of a server that was UP. A server requiring client
      // certificates that cannot resume sessions fails every other check.
      expect(Number(after.pg1!.chkfail)).toBe(Number(before.pg1!.chkfail));
      // haproxy marks a check still under way with "* " before the last result.
      expect(after.pg1!.check_status!.replace(/^\* /, "")).toBe("L7OK");
      expect(await landsOn(hx.ports[pool]!)).toEqual({ inRecovery: false, port: pair.pg.primary.port });
    },
  );
});

describe("clients that get nothing", () => {
  /** The tls+raw listener's handshake failures for `reason`, from /metrics over https. */
  const metric = async (reason: string) => {
    const tls = { ca: Bun.file(ca), cert: Bun.file(client.cert), key: Bun.file(client.key) };
    const { values } = await scrape(pair.onPrimary.ports[2]!, { tls });
    const key = [...values.keys()].find((k) => k.includes(`tls+raw`) && k.includes(`reason="${reason}"`));
    return Number(key === undefined ? Number.NaN : values.get(key));
  };

  test("a good client gets MASTER through TLS, and the server's certificate", async () => {
    const r = await tlsProbe(pair.onPrimary.ports[0]!, withCert(client));
    expect(r).toEqual({ text: "MASTER", close: "fin", serverCn: "server" });
  });

  test.each([
    [
      "plaintext",
      "not_tls",
      async () => (await probe(pair.onPrimary.ports[0]!, "127.0.0.1", "GET / HTTP/1.1\r\n\r\n")).text,
      "",
    ],
    [
      "garbage",
      "not_tls",
      async () => (await probe(pair.onPrimary.ports[0]!, "127.0.0.1", "\x16\x03\x01\x00\x05garbage!")).text,
      ALERT_ILLEGAL_PARAMETER,
    ],
    [
      "no client certificate",
      "no_client_certificate",
      async () => (await tlsProbe(pair.onPrimary.ports[0]!, trustCa())).text,
      "",
    ],
    [
      "another CA's certificate",
      "untrusted_client_certificate",
      async () =>
        (await tlsProbe(pair.onPrimary.ports[0]!, withCert(certs.client("impostor", { fromOtherCa: true })))).text,
      "",
    ],
    [
      "an expired certificate",
      "expired_client_certificate",
      async () => (await tlsProbe(pair.onPrimary.ports[0]!, withCert(certs.client("old", { expired: true })))).text,
      "",
    ],
  ])("%s: no answer byte, counted as %s, logged, and the node keeps serving", async (_, reason, attempt, bytes) => {
    const before = await metric(reason);
    // Every byte the client read: nothing, or (raw garbage) TLS's own alert; decrypted, nothing.
    expect(await attempt()).toBe(bytes);
    await waitFor(`the ${reason} counter to rise`, async () => (await metric(reason)) > before, 5000);
    await pair.onPrimary.waitForLog(
      new RegExp(`tls handshake refused on tls\\+raw [^ ]+: ${reason.replaceAll("_", " ")}`),
    );
    expect((await tlsProbe(pair.onPrimary.ports[0]!, withCert(client))).text).toBe("MASTER");
    expect((await probe(pair.onPrimary.ports[3]!)).text).toBe("MASTER");
  });

  test("one log line per reason, however many failures", async () => {
    for (let i = 0; i < 20; i++) await probe(pair.onPrimary.ports[0]!, "127.0.0.1", "GET / HTTP/1.1\r\n\r\n");
    await waitFor("20 more not_tls failures", async () => (await metric("not_tls")) >= 20, 5000);
    const lines = pair.onPrimary.log.split("\n").filter((l) => l.includes("tls handshake refused"));
    // Each reason above once; not_tls twice at most (plaintext, then garbage, are the same reason).
    expect(lines.length).toBeLessThanOrEqual(5);
    expect(pair.onPrimary.proc.exitCode).toBeNull();
  });
});

describe("--tls-client-cert optional", () => {
  test("answers a client without a certificate, refuses one with a bad certificate", async () => {
    await using node = await startResponder(
      ["--listen", "tls:127.0.0.1:0", "--tls-cert", server.cert, "--tls-key", server.key, "--tls-ca", ca].concat([
        "--tls-client-cert",
        "optional",
      ]),
      pair.pg.primary.env,
    );
    const port = node.ports[0]!;
    await waitFor(
      "MASTER without a client certificate",
      async () => (await tlsProbe(port, trustCa())).text === "MASTER",
    );
    expect((await tlsProbe(port, withCert(client))).text).toBe("MASTER");
    expect((await tlsProbe(port, withCert(certs.client("impostor2", { fromOtherCa: true })))).text).toBe("");
  });
});

describe("SIGHUP", () => {
  test("a changed --tls-client-cert in the config file applies to new handshakes", async () => {
    const file = `${certs.dir}/replstatus.toml`;
    const write = (rule: string) =>
      Bun.write(
        file,
        `tls-cert = "${server.cert}"\ntls-key = "${server.key}"\ntls-ca = "${ca}"\ntls-client-cert = "${rule}"\n`,
      );
    await write("optional");
    await using node = await startResponder(["--listen", "tls:127.0.0.1:0", "--config", file], pair.pg.primary.env);
    const port = node.ports[0]!;
    await waitFor(
      "MASTER without a client certificate",
      async () => (await tlsProbe(port, trustCa())).text === "MASTER",
    );
    await write("required");
    node.proc.kill("SIGHUP");
    await node.waitForLog(/SIGHUP: tls\+ listeners now use .*client certificates required/);
    expect((await tlsProbe(port, trustCa())).text).toBe("");
    expect((await tlsProbe(port, withCert(client))).text).toBe("MASTER");
  });

  test("takes a renewed certificate without a restart; haproxy keeps the primary UP", async () => {
    const renewed = certs.server("renewed", ["127.0.0.1"]);
    copyFileSync(renewed.cert, liveCert);
    copyFileSync(renewed.key, liveKey);
    pair.onPrimary.proc.kill("SIGHUP");
    await pair.onPrimary.waitForLog(/SIGHUP: tls\+ listeners now use CN=renewed/);
    const r = await tlsProbe(pair.onPrimary.ports[0]!, withCert(client));
    expect(r).toEqual({ text: "MASTER", close: "fin", serverCn: "renewed" });
    for (const pool of POOLS) await hx.waitForServer(pool, "pg1", "UP");
  });

  test("a key that does not match the certificate is refused, and the running one kept", async () => {
    copyFileSync(client.key, liveKey);
    pair.onPrimary.proc.kill("SIGHUP");
    await pair.onPrimary.waitForLog(/SIGHUP: could not use key file .* it is not the key of .*; tls\+ listeners keep/);
    expect((await tlsProbe(pair.onPrimary.ports[0]!, withCert(client))).serverCn).toBe("renewed");
  });
});

describe("socket activation", () => {
  test("a tls+ listener on a socket passed by the service manager answers inside TLS", async () => {
    using held = holdSocket();
    await using node = await startResponder(
      ["--listen", `tls:${held.listen}`, "--tls-cert", server.cert, "--tls-key", server.key],
      pair.pg.primary.env,
      ACTIVATE,
      { inheritFd: held.fd },
    );
    await node.waitForLog(/socket activation: tls\+raw 127\.0\.0\.1:\d+ passed by the service manager/);
    await waitFor("MASTER through TLS", async () => (await tlsProbe(held.port, trustCa())).text === "MASTER");
    expect((await probe(held.port, "127.0.0.1", "GET / HTTP/1.1\r\n\r\n")).text).toBe("");
  });
});

describe("failover through check-ssl", () => {
  test("haproxy follows a promotion on every pool", async () => {
    await pair.pg.primary.stop("fast");
    await pair.pg.standby.promote();
    for (const pool of POOLS) {
      await hx.waitForServer(pool, "pg2", "UP", 20_000);
      await hx.waitForServer(pool, "pg1", "DOWN", 20_000);
    }
    expect(await landsOn(hx.ports.raw!)).toEqual({ inRecovery: false, port: pair.pg.standby.port });
  });
});
