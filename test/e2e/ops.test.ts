// Hardening: the listen backlog, --allow, --max-connections, the open-file
// limit and the metrics endpoint, against the real CLI. No PostgreSQL is
// needed here: with none, every answer is UNKNOWN, which is enough to see who
// gets an answer and who does not.
import type { TCPSocketListenOptions } from "bun";
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import parsePrometheus from "parse-prometheus-text-format";
import { admits, buildAllowList, type AllowList } from "../../src/listen/allow.ts";
import { DEFAULT_TEXTS } from "../../src/config/options.ts";
import { gated, type Gate } from "../../src/listen/gate.ts";
import { rawHandler } from "../../src/listen/raw.ts";
import { buildResponses } from "../../src/listen/answers.ts";
import { waitFor } from "../../src/demo/pg.ts";
import { answer, probe } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { noDb, runCli } from "../kit/cli.ts";
import { answerFrom } from "../kit/client.ts";
import { metricsPort, scrape } from "../kit/http.ts";
import { tempDir } from "../kit/tmp.ts";

const noPg = tempDir("replstatus-nopg-");

/** Sockets that connect and then hold the connection open, reading nothing. */
async function holdOpen(port: number, count: number, host = "127.0.0.1"): Promise<Socket[]> {
  const sockets = Array.from({ length: count }, () => {
    const s = connect({ port, host });
    s.on("error", () => {});
    s.pause();
    return s;
  });
  await waitFor(`${count} connects`, () => sockets.every((s) => !s.connecting), 20_000);
  return sockets;
}

/** utime + stime of a process, in clock ticks (1/100 s on Linux), from /proc/PID/stat. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Send-Q of a listening socket: for LISTEN sockets ss shows the backlog there. */
function listenBacklog(port: number): number {
  const out = Bun.spawnSync(["ss", "-ltnH", `sport = :${port}`])
    .stdout.toString()
    .trim();
  return Number(out.split(/\s+/)[2]);
}

describe("listen backlog", () => {
  test("the kernel reports the configured backlog, and a burst of 1,000 connects is answered whole", async () => {
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--backlog", "2048"], noDb(noPg));
    const port = r.ports[0]!;
    expect(listenBacklog(port)).toBe(2048);
    await r.waitForLog(/info: listen backlog 2048; /);

    const results = await Promise.all(Array.from({ length: 1000 }, () => probe(port)));
    const bad = results.filter((x) => x.text !== "UNKNOWN" || x.close !== "fin");
    expect(bad).toEqual([]);
  });

  test("the default is 4096, or net.core.somaxconn when that is lower", async () => {
    await using r = await startResponder(["--listen", "127.0.0.1:0"], noDb(noPg));
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    expect(listenBacklog(r.ports[0]!)).toBe(Math.min(4096, somaxconn));
  });
});

describe("--allow", () => {
  test("peers outside the list are closed without a byte; the rest are answered", async () => {
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--allow", "127.0.0.1/32", "--metrics-listen", "127.0.0.1:0"],
      noDb(noPg),
    );
    const [v4, v6] = r.ports as [number, number];
    expect(await answer(v4)).toBe("UNKNOWN");
    // Another loopback address, through node:net's localAddress.
    expect(await answerFrom(v4, "127.0.0.2")).toBe("");
    expect((await probe(v6, "::1")).text).toBe("");
    // A peer that sends first gets nothing either.
    expect((await probe(v6, "::1", "GET / HTTP/1.0\r\n\r\n")).text).toBe("");

    const { values } = await scrape(metricsPort(r));
    expect(values.get(`replstatus_connections_total{listener="raw 127.0.0.1:${v4}",result="answered"}`)).toBe(1);
    expect(values.get(`replstatus_connections_total{listener="raw 127.0.0.1:${v4}",result="rejected_peer"}`)).toBe(1);
    expect(values.get(`replstatus_connections_total{listener="raw [::1]:${v6}",result="rejected_peer"}`)).toBe(2);
    expect(values.get("replstatus_rejected_peers_total")).toBe(3);
    await r.waitForLog(/; answering only 127\.0\.0\.1\/32\n/);
  });

  test("an IPv6 CIDR admits ::1", async () => {
    await using r = await startResponder(
      ["--listen", "[::1]:0", "--allow", "::1/128", "--allow", "10.0.0.0/8"],
      noDb(noPg),
    );
    expect(await answer(r.ports[0]!, "::1")).toBe("UNKNOWN");
  });

  // replstatus's own IPv6 listeners are IPv6-only; a dual-stack socket shows
  // what the guard does with the ::ffff:a.b.c.d form Bun reports there.
  test("on a dual-stack socket IPv4 peers are matched as their IPv4 address", async () => {
    const gate: Gate = {
      allow: buildAllowList(["127.0.0.1/32"]) as AllowList,
      maxConnections: 100,
      open: 0,
      counters: new Float64Array(3),
    };
    const responses = buildResponses(DEFAULT_TEXTS);
    using server = Bun.listen({
      hostname: "::",
      port: 0,
      ipv6Only: false,
      allowHalfOpen: true,
      data: 0,
      socket: gated(rawHandler(new Int32Array([0]), responses), gate, 0),
    } as TCPSocketListenOptions<number> & { ipv6Only: boolean });
    const peer = await new Promise<string>((resolve) => {
      const probeServer = Bun.listen({
        hostname: "::",
        port: 0,
        ipv6Only: false,
        socket: {
          open(s) {
            resolve(s.remoteAddress);
            s.end();
            probeServer.stop();
          },
          data() {},
        },
      } as TCPSocketListenOptions<undefined> & { ipv6Only: boolean });
      connect({ port: probeServer.port, host: "127.0.0.1" }).on("error", () => {});
    });
    expect(peer).toBe("::ffff:127.0.0.1");
    expect(await answer(server.port)).toBe("MASTER");
    expect(await answerFrom(server.port, "127.0.0.2")).toBe("");
    expect(await answerFrom(server.port, "::1", "::1")).toBe("");
    expect([...gate.counters]).toEqual([1, 2, 0]);
    await waitFor("every socket closed", () => gate.open === 0);
  });

  const list = (...cidrs: string[]) => buildAllowList(cidrs) as AllowList;
  test.each([
    [["127.0.0.1/32"], "127.0.0.1", true],
    [["127.0.0.1/32"], "127.0.0.2", false],
    [["127.0.0.0/8"], "127.255.1.2", true],
    [["10.1.2.3"], "10.1.2.3", true],
    [["10.0.0.0/8"], "11.0.0.1", false],
    [["0.0.0.0/0"], "203.0.113.9", true],
    // A dual-stack socket reports IPv4 peers in the mapped form (RFC 4291 section 2.5.5.2).
    [["127.0.0.1/32"], "::ffff:127.0.0.1", true],
    [["127.0.0.1/32"], "::ffff:127.0.0.2", false],
    [["::ffff:10.0.0.0/104"], "10.9.9.9", true],
    [["::1/128"], "::1", true],
    [["::1/128"], "127.0.0.1", false],
    [["127.0.0.1/32"], "::1", false],
    [["fd00::/8"], "fd12:3456::1", true],
    [["fd00::/8"], "fe80::1%eth0", false],
    [["fe80::/10"], "fe80::1%eth0", true],
    [["2001:db8::/32"], "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true],
    [["2001:db8::/32"], "2001:db9::", false],
    [["2001:db8:0:0:0:0:0:1/128"], "2001:db8::1", true],
    [["::/0"], "::ffff:1.2.3.4", false],
    [["10.0.0.0/8"], "not an address", false],
  ])("%j admits %s: %p", (cidrs, peer, want) => {
    expect(admits(list(...cidrs), peer)).toBe(want);
  });

  test.each(["10.0.0.0/33", "10.0.0/8", "::1/129", "::1::2", "010.0.0.1", "fe80::1%eth0", "10.0.0.0/", "host/8", ""])(
    "%j is refused at start-up",
    (bad) => {
      const r = runCli(["--allow", bad]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({
        code: 2,
        stderr: `replstatus: invalid value for --allow: ${JSON.stringify(bad)} (expected an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8, or an address)\n`,
      });
    },
  );
});

describe("limits", () => {
  test("connections over --max-connections are closed at once, counted and logged", async () => {
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--max-connections", "5", "--metrics-listen", "127.0.0.1:0"],
      noDb(noPg),
    );
    const port = r.ports[0]!;
    // Held sockets stay open on the server until they close or its drain timeout (2 s) cuts them.
    const held = await holdOpen(port, 5);
    try {
      expect((await probe(port)).text).toBe("");
      const { values } = await scrape(metricsPort(r));
      expect(values.get(`replstatus_connections_total{listener="raw 127.0.0.1:${port}",result="over_limit"}`)).toBe(1);
    } finally {
      for (const s of held) s.destroy();
    }
    await r.waitForLog(
      /warning: connection limit reached: \d+ open, closing new connections unanswered \(--max-connections 5\)/,
    );
    await waitFor("an answer again", async () => (await answer(port)) === "UNKNOWN");
    await r.waitForLog(/info: connections below the limit again; \d+ closed unanswered meanwhile/);
    const { values } = await scrape(metricsPort(r));
    await waitFor(
      "no open connections",
      async () => (await scrape(metricsPort(r))).values.get("replstatus_open_connections") === 0,
    );
    expect(values.get("replstatus_max_connections")).toBe(5);
  });

  // At the open-file limit Bun's accept loop spins at full CPU (EMFILE). With
  // max-connections kept below the limit, the accept queue is always emptied.
  test("under a low open-file limit a flood neither spins the CPU nor stops the answers", async () => {
    const limit = 64;
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], noDb(noPg), [
      "prlimit",
      `--nofile=${limit}:${limit}`,
    ]);
    await r.waitForLog(/; max connections 32 \(--max-connections 65536 lowered to fit\); open-file limit 64/);
    const port = r.ports[0]!;
    const before = cpuTicks(r.proc.pid);
    const t0 = performance.now();
    const held = await holdOpen(port, 300);
    try {
      await Bun.sleep(1000); // a window to measure CPU time over, not a wait for a condition
      const ticks = cpuTicks(r.proc.pid) - before;
      const windowTicks = ((performance.now() - t0) / 1000) * 100;
      // A spinning accept loop burns a whole core, i.e. as many ticks as the window.
      expect(ticks).toBeLessThan(windowTicks * 0.5);
    } finally {
      for (const s of held) s.destroy();
    }
    await waitFor("an answer again", async () => (await answer(port)) === "UNKNOWN");
    const { values } = await scrape(metricsPort(r));
    expect(
      values.get(`replstatus_connections_total{listener="raw 127.0.0.1:${port}",result="over_limit"}`),
    ).toBeGreaterThan(0);
    expect(values.get("replstatus_open_files_limit")).toBe(limit);
    await r.waitForLog(/warning: connection limit reached/);
  });
});

describe("metrics", () => {
  test("the exposition parses, and follows the format's rules", async () => {
    // With a peer that refuses, so the split-brain guard's families are there too.
    await using r = await startResponder(
      ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--peer", "http://127.0.0.1:1"],
      noDb(noPg),
    );
    await answer(r.ports[0]!);
    await r.waitForLog(/poll failed/);
    const { text, values } = await scrape(metricsPort(r));
    const families = parsePrometheus(text);
    const byName = new Map(families.map((f) => [f.name, f]));
    expect([...byName.keys()].sort()).toEqual([
      "replstatus_connections_total",
      "replstatus_event_subscribers",
      "replstatus_event_subscribers_dropped_total",
      "replstatus_guard_active",
      "replstatus_last_poll_age_seconds",
      "replstatus_max_connections",
      "replstatus_open_connections",
      "replstatus_open_files_limit",
      "replstatus_peer_requests_total",
      "replstatus_peer_timeline",
      "replstatus_peer_up",
      "replstatus_peers_reachable",
      "replstatus_poll_duration_seconds",
      "replstatus_poll_errors_total",
      "replstatus_rejected_peers_total",
      "replstatus_standby_lag_bytes",
      "replstatus_standby_replay_age_seconds",
      "replstatus_state",
      "replstatus_state_changes_total",
      "replstatus_timeline",
    ]);
    // Counters end in _total; every family has HELP and TYPE once, before its samples.
    for (const f of families) {
      if (f.type === "COUNTER") expect(f.name).toEndWith("_total");
      expect(f.help.length).toBeGreaterThan(0);
    }
    const lines = text.trimEnd().split("\n");
    for (const f of families) {
      expect(lines.filter((l) => l === `# TYPE ${f.name} ${f.type.toLowerCase()}`)).toHaveLength(1);
      const typeAt = lines.indexOf(`# TYPE ${f.name} ${f.type.toLowerCase()}`);
      const firstSample = lines.findIndex(
        (l) => l.startsWith(f.name + "{") || l.startsWith(f.name + " ") || l.startsWith(f.name + "_"),
      );
      expect(firstSample).toBeGreaterThan(typeAt);
    }
    expect(byName.get("replstatus_state")!.metrics.map((m) => [m.labels!.state, m.value])).toEqual([
      ["primary", "0"],
      ["standby", "0"],
      ["unknown", "1"],
      ["lagging", "0"],
      ["fenced", "0"],
    ]);
    expect(values.get('replstatus_poll_errors_total{reason="refused"}')).toBeGreaterThan(0);
    expect(values.get("replstatus_last_poll_age_seconds")).toBe(Infinity);
    expect(values.get(`replstatus_connections_total{listener="raw 127.0.0.1:${r.ports[0]}",result="answered"}`)).toBe(
      1,
    );
  });

  test("an unknown path is a 404", async () => {
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], noDb(noPg));
    expect((await fetch(`http://127.0.0.1:${metricsPort(r)}/`)).status).toBe(404);
  });
});
