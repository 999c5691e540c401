// The etcd prefix mirror against a real etcd: it follows puts and deletes
// through the watch, reads the leader key's lease, notices etcd going away
// (one log line however many retries) and resyncs when it is back.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../../src/demo/proc.ts";
import { startMirror, type MirrorOptions } from "../../src/cluster/etcd.ts";
import { createLogger } from "../../src/log.ts";
import { b64, startEtcd } from "../kit/etcd.ts";

/** A mirror of `prefix` on one etcd, with the tests' short heartbeat, and its log lines. */
function mirrorOf(opts: Pick<MirrorOptions, "urls" | "prefix" | "timeoutMs" | "username" | "password" | "tls">) {
  const lines: string[] = [];
  const mirror = startMirror({
    leaseKey: "leader",
    heartbeatMs: 100,
    log: createLogger((l) => lines.push(l)),
    onChange() {},
    ...opts,
  });
  return { mirror, lines };
}

test("mirror: watch, lease, loss of contact and resync", async () => {
  await using etcd = await startEtcd();
  const put = (key: string, value: string, lease?: string) =>
    etcd.call("kv/put", { key: b64(`/service/t/${key}`), value: b64(value), ...(lease && { lease }) });
  await put("config", '{"ttl":10}');
  const { mirror, lines } = mirrorOf({ urls: [etcd.url], prefix: "/service/t/", timeoutMs: 300 });
  try {
    await waitFor("the first range", () => mirror.connected && mirror.kvs.get("config")?.value === '{"ttl":10}');
    // Not under the prefix: never mirrored.
    await etcd.call("kv/put", { key: b64("/service/t2/leader"), value: b64("x") });
    const { ID } = (await etcd.call("lease/grant", { TTL: 10 })) as { ID: string };
    await put("leader", "m0", ID);
    await waitFor("the leader key", () => mirror.kvs.get("leader")?.value === "m0");
    await waitFor("the lease's ttl", () => mirror.leaseTtlS !== undefined);
    expect(mirror.leaseTtlS).toBeGreaterThan(0);
    expect(mirror.leaseTtlS).toBeLessThanOrEqual(10);
    expect([...mirror.kvs.keys()].sort()).toEqual(["config", "leader"]);
    await etcd.call("kv/deleterange", { key: b64("/service/t/leader") });
    await waitFor("the delete", () => !mirror.kvs.has("leader"));

    await etcd.pause();
    await waitFor("the loss of contact", () => !mirror.connected, 5000);
    const contactAt = mirror.contactAt;
    // Several retries go by (100ms..2s backoff): one line per reason (lost, then refused).
    await waitFor("a few retries", () => Date.now() - contactAt > 1500, 5000);
    const lost = lines.filter((l) => l.includes("lost the watch"));
    expect(lost.length).toBeLessThanOrEqual(2);
    expect(lost.at(-1)).toContain("connection refused");
    expect(mirror.reason).toContain(etcd.url);

    await etcd.resume();
    await put("leader", "m1");
    await waitFor("the resync", () => mirror.connected && mirror.kvs.get("leader")?.value === "m1", 10_000);
    expect(lines.at(-1)).toContain("etcd: watching /service/t/ on");
  } finally {
    mirror.stop();
  }
});

test("mirror: with etcd auth on, a user and password get a token; without, the reason is logged", async () => {
  await using etcd = await startEtcd();
  await etcd.call("kv/put", { key: b64("/service/a/leader"), value: b64("m0") });
  await etcd.call("auth/role/add", { name: "root" });
  await etcd.call("auth/user/add", { name: "root", password: "s3cret" });
  await etcd.call("auth/user/grant", { user: "root", role: "root" });
  await etcd.call("auth/enable", {});
  const start = (username?: string, password?: string) =>
    mirrorOf({ urls: [etcd.url], username, password, prefix: "/service/a/", timeoutMs: 500 });
  const good = start("root", "s3cret");
  const none = start();
  try {
    await waitFor(
      "the authenticated range",
      () => good.mirror.connected && good.mirror.kvs.get("leader")?.value === "m0",
    );
    // The watch stream carries the token too: a later put arrives.
    const { token } = (await etcd.call("auth/authenticate", { name: "root", password: "s3cret" })) as { token: string };
    const put = await fetch(`${etcd.url}/v3/kv/put`, {
      method: "POST",
      headers: { authorization: token },
      body: JSON.stringify({ key: b64("/service/a/leader"), value: b64("m1") }),
    });
    expect(put.status).toBe(200);
    await waitFor("the watched put", () => good.mirror.kvs.get("leader")?.value === "m1");
    expect(good.mirror.connected).toBe(true);
    expect(good.lines).toEqual([]);
    await waitFor("the refusal", () => none.lines.length > 0);
    expect(none.mirror.connected).toBe(false);
    expect(none.lines[0]).toContain("etcd: lost the watch on /service/a/");
    expect(none.lines[0]).toMatch(/user name is empty|permission denied/);
  } finally {
    good.mirror.stop();
    none.mirror.stop();
  }
});

/** A CA and one certificate for 127.0.0.1 that serves and authenticates (serverAuth, clientAuth). */
function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const run = (args: string[]) => {
    const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.toString()}`);
  };
  run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=rs-test-ca",
  ]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"]);
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
  );
  run([
    "x509",
    "-req",
    "-in",
    "node.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "node.pem",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  ]);
  return { ca: join(dir, "ca.pem"), cert: join(dir, "node.pem"), key: join(dir, "node.key") };
}

test("mirror over https: the CA verifies etcd; with client-cert-auth, only a client certificate gets in", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rs-etcd-tls-"));
  try {
    const files = makeCerts(dir);
    await using etcd = await startEtcd({ ...files, clientCa: files.ca });
    expect(etcd.url).toStartWith("https://");
    await etcd.call("kv/put", { key: b64("/service/s/leader"), value: b64("m0") });
    const pem = (f: string) => readFileSync(f, "utf8");
    const start = (tls: { ca?: string; cert?: string; key?: string }) =>
      mirrorOf({ urls: [etcd.url], tls, prefix: "/service/s/", timeoutMs: 500 });
    const good = start({ ca: pem(files.ca), cert: pem(files.cert), key: pem(files.key) });
    const noCert = start({ ca: pem(files.ca) });
    try {
      await waitFor(
        "the range over https",
        () => good.mirror.connected && good.mirror.kvs.get("leader")?.value === "m0",
      );
      await etcd.call("kv/put", { key: b64("/service/s/leader"), value: b64("m1") });
      await waitFor("the watched put over https", () => good.mirror.kvs.get("leader")?.value === "m1");
      expect(good.lines).toEqual([]);
      await waitFor("the refusal without a client certificate", () => noCert.lines.length > 0);
      expect(noCert.mirror.connected).toBe(false);
    } finally {
      good.mirror.stop();
      noCert.mirror.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
