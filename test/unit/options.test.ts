// The option table on its own: every default is accepted by its option's kind,
// every kind turns its text into the value Config carries, and the unit helpers
// read and print what users type. The CLI tests in test/e2e/cli.test.ts show the same
// checks through the program.
import { describe, expect, test } from "bun:test";
import { isIP } from "node:net";
import { buildConfig, buildDemoConfig, parseArgv } from "../../src/config/load.ts";
import { OPTIONS } from "../../src/config/options.ts";
import { formatBytes, formatDuration, parseDurationMs, parseSizeBytes } from "../../src/units.ts";
import { formatAddress, ipVersion, parseListen, parsePeer, redactUrl, type ListenAddress } from "../../src/address.ts";

test.each(OPTIONS.filter((o) => o.default !== undefined).map((o) => [o.name, o.default!] as const))(
  "the default of --%s (%j) is accepted by its kind",
  (name, text) => {
    const option = OPTIONS.find((o) => o.name === name)!;
    expect(option.kind.parse(text)).not.toBeUndefined();
  },
);

test("every option has help; a switch (no placeholder) has no default", () => {
  for (const o of OPTIONS) {
    expect(o.help.length).toBeGreaterThan(0);
    if (o.arg === undefined) expect(o.default).toBeUndefined();
  }
});

test("every server option says what a reload does with it, and where its value lands in Config", () => {
  const c = buildConfig(
    parseArgv([
      "--listen",
      "tls+http:127.0.0.1:0",
      "--tls-cert",
      "c.pem",
      "--tls-key",
      "k.pem",
      "--allow",
      "10.0.0.0/8",
    ]),
    {},
  );
  for (const o of OPTIONS.filter((o) => !o.demo && o.route !== true && !o.status)) {
    expect([o.name, o.reload]).toEqual([o.name, expect.stringMatching(/^(live|reread|restart|fixed)$/)]);
    if (o.reload === "fixed") continue;
    const path = (o.field ?? o.part)!.split(".");
    const parent = path.slice(0, -1).reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], c);
    expect([o.name, path.at(-1)! in (parent as object)]).toEqual([o.name, true]);
  }
});

test("no flags: the defaults of the table, parsed", () => {
  const c = buildConfig(new Map(), {});
  expect(c.listen).toEqual([{ mode: "raw", host: "0.0.0.0", port: 5400 }]);
  expect([c.pollIntervalMs, c.staleAfterMs, c.connectTimeoutMs, c.lagGraceMs]).toEqual([50, 1000, 2000, 1000]);
  expect([c.peerIntervalMs, c.peerTimeoutMs, c.backlog, c.maxConnections]).toEqual([500, 300, 4096, 65_536]);
  expect(c.agent).toEqual({ role: "primary", weightByLag: false, lagForMinWeightBytes: 64 * 1024 ** 2 });
  expect([c.db, c.maxLagBytes, c.maxLagSeconds, c.allow, c.metricsListen, c.controlSocket]).toEqual(
    Array(6).fill(undefined),
  );
  expect(c.peers).toEqual([]);
  expect(c.logFormat).toBe("text");
});

test("flags over variables over the file, each parsed by its kind", () => {
  const file = {
    path: "/etc/replstatus.toml",
    values: new Map([
      ["max-lag-bytes", ["1GB"]],
      ["backlog", ["7"]],
    ]),
  };
  const c = buildConfig(
    parseArgv(["--listen", "http:[::1]:0", "--allow", "10.0.0.0/8", "--peer", "http://10.0.0.2:8008/"]),
    { REPLSTATUS_MAX_LAG_SECONDS: "2.5", REPLSTATUS_BACKLOG: "9", REPLSTATUS_METRICS_LISTEN: "127.0.0.1:9187" },
    file,
  );
  expect(c.listen).toEqual([{ mode: "http", host: "::1", port: 0 }]);
  expect(c.allow!.cidrs).toEqual(["10.0.0.0/8"]);
  expect(c.peers).toEqual(["http://10.0.0.2:8008"]);
  expect([c.maxLagBytes, c.maxLagSeconds, c.backlog]).toEqual([1024 ** 3, 2.5, 9]);
  expect(c.metricsListen).toEqual({ host: "127.0.0.1", port: 9187 });
});

describe("rejoin limits", () => {
  test("default: the leave limits, no hold", () => {
    const c = buildConfig(parseArgv(["--max-lag-bytes", "1MB"]), {});
    expect([c.rejoinLagBytes, c.rejoinLagSeconds, c.rejoinAfterMs]).toEqual([undefined, undefined, 0]);
  });

  test("each below its leave limit, from flags, variables or the file", () => {
    const c = buildConfig(
      parseArgv(["--max-lag-bytes", "1MB", "--rejoin-lag-bytes", "256kB", "--max-lag-seconds", "30"]),
      { REPLSTATUS_REJOIN_LAG_SECONDS: "10" },
      { path: "/etc/replstatus.toml", values: new Map([["rejoin-after", ["5s"]]]) },
    );
    expect([c.rejoinLagBytes, c.rejoinLagSeconds, c.rejoinAfterMs]).toEqual([256 * 1024, 10, 5000]);
  });

  test.each([
    [["--rejoin-lag-bytes", "1MB"], "--rejoin-lag-bytes needs --max-lag-bytes, the limit it is below"],
    [["--rejoin-lag-seconds", "5"], "--rejoin-lag-seconds needs --max-lag-seconds, the limit it is below"],
    [
      ["--max-lag-bytes", "1MB", "--rejoin-lag-bytes", "2MB"],
      "--rejoin-lag-bytes (2 MB) must be at most --max-lag-bytes (1 MB): a standby rejoins below the limit it leaves at",
    ],
    [
      ["--max-lag-seconds", "5", "--rejoin-lag-seconds", "9"],
      "--rejoin-lag-seconds (9 s) must be at most --max-lag-seconds (5 s): a standby rejoins below the limit it leaves at",
    ],
    [
      ["--rejoin-after", "2h"],
      'invalid value for --rejoin-after: "2h" (expected a duration 0s..3600s such as 5s or 30s)',
    ],
  ])("%j: %s", (argv, message) => {
    expect(() => buildConfig(parseArgv(argv), {})).toThrow(message);
  });
});

test.each([
  [["--bind", "[::1]"], "::1"],
  [["--bind", ""], "0.0.0.0"],
])("--bind %j listens on %s", (argv, host) => {
  expect(buildConfig(parseArgv(argv), {}).listen[0]!.host).toBe(host);
});

test.each([
  [[], { promoteAfterMs: 10_000, durationMs: undefined }],
  [["--promote-after", "0", "--duration", "1.5s"], { promoteAfterMs: 0, durationMs: 1500 }],
])("demo %j", (argv, expected) => {
  expect(buildDemoConfig(parseArgv(argv, "demo"))).toEqual(expected);
});

describe("units", () => {
  test.each([
    ["250ms", 250],
    ["2s", 2000],
    ["1.5s", 1500],
    ["40", 40],
    ["1.5", undefined],
    ["2m", undefined],
    ["", undefined],
  ])("parseDurationMs(%j) = %p", (text, ms) => expect(parseDurationMs(text)).toBe(ms));

  test.each([
    [1500, "1500ms"],
    [2000, "2s"],
    [0, "0s"],
  ])("formatDuration(%p) = %s", (ms, text) => expect(formatDuration(ms)).toBe(text));

  test.each([
    ["16MB", 16 * 1024 ** 2],
    ["512kb", 512 * 1024],
    ["1 GB", 1024 ** 3],
    ["100", 100],
    ["64 MiB", undefined],
    ["-1", undefined],
    ["99999999999999TB", undefined],
  ])("parseSizeBytes(%j) = %p", (text, n) => expect(parseSizeBytes(text)).toBe(n));

  test.each([
    [512, "512 bytes"],
    [1536, "1.5 kB"],
    [20 * 1024 ** 2, "20 MB"],
  ])("formatBytes(%p) = %s", (n, text) => expect(formatBytes(n)).toBe(text));

  test.each<[string, ListenAddress | undefined]>([
    ["127.0.0.1:5400", { mode: "raw", host: "127.0.0.1", port: 5400 }],
    ["agent:[fd00::1]:0", { mode: "agent", host: "fd00::1", port: 0 }],
    ["tls:127.0.0.1:5400", { mode: "raw", host: "127.0.0.1", port: 5400, tls: true }],
    ["tls+http:[::1]:8443", { mode: "http", host: "::1", port: 8443, tls: true }],
    ["tls+tls:127.0.0.1:5400", undefined],
    ["::1:5400", undefined],
    ["localhost:5400", undefined],
    ["127.0.0.1:65536", undefined],
  ])("parseListen(%j)", (text, address) => {
    const parsed = parseListen(text);
    expect(typeof parsed === "string" ? undefined : parsed).toEqual(address);
  });

  // The listeners' thread checks addresses without node:net; ipVersion must
  // answer what node:net's isIP answers, case by case.
  test.each<[string, 0 | 4 | 6]>([
    ["1.2.3.4", 4],
    ["0.0.0.0", 4],
    ["255.255.255.255", 4],
    ["256.1.1.1", 0],
    ["01.2.3.4", 0],
    ["1.2.3", 0],
    ["1.2.3.4.5", 0],
    ["1..3.4", 0],
    [" 1.2.3.4", 0],
    ["", 0],
    ["::", 6],
    ["::1", 6],
    ["1::", 6],
    ["FE80::abcd", 6],
    ["1:2:3:4:5:6:7:8", 6],
    ["1:2:3:4:5:6:7::", 6],
    ["::2:3:4:5:6:7:8", 6],
    ["0000:0000:0000:0000:0000:0000:0000:0000", 6],
    ["::ffff:1.2.3.4", 6],
    ["1:2:3:4:5:6:1.2.3.4", 6],
    ["1:2:3:4:5::1.2.3.4", 6],
    ["fe80::1%eth0", 6],
    ["fe80::1%a.b:c-d", 6],
    [":::", 0],
    ["1::2::3", 0],
    [":1::2", 0],
    ["1::2:", 0],
    ["1:2:3:4:5:6:7", 0],
    ["1:2:3:4:5:6:7:8:9", 0],
    ["1:2:3:4:5:6::1.2.3.4", 0],
    ["1.2.3.4::", 0],
    ["::01.2.3.4", 0],
    ["12345::", 0],
    ["g::", 0],
    ["fe80::1%", 0],
    ["fe80::1%eth 0", 0],
    ["[::1]", 0],
    ["1.2.3.4%z", 0],
  ])("ipVersion(%j) = %p, as node:net's isIP", (text, version) => {
    expect(ipVersion(text)).toBe(version);
    expect(isIP(text)).toBe(version);
  });

  test("ipVersion agrees with node:net's isIP on generated texts", () => {
    // Valid groups, empty ones (for "::") and near misses, joined by ":"; a fixed seed.
    const GROUPS = ["", "", "0", "ffff", "db8", "A", "1.2.3.4", "255.0.0.01", "%z", "10000", "g"];
    let seed = 12;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
    const disagree: string[] = [];
    const found = [0, 0, 0, 0, 0, 0, 0];
    for (let i = 0; i < 50_000; i++) {
      const text = Array.from({ length: random(11) }, () => GROUPS[random(GROUPS.length)]).join(":");
      found[isIP(text)]!++;
      if (ipVersion(text) !== isIP(text)) disagree.push(text);
    }
    expect(disagree).toEqual([]);
    // The texts reach both families, not only refusals.
    expect(found[4]).toBeGreaterThan(100);
    expect(found[6]).toBeGreaterThan(100);
  });

  test("formatAddress brackets IPv6 only", () => {
    expect(formatAddress({ host: "::1", port: 1 })).toBe("[::1]:1");
    expect(formatAddress({ host: "10.0.0.1", port: 1 })).toBe("10.0.0.1:1");
  });

  test.each([
    ["http://10.0.0.2:8008/", "http://10.0.0.2:8008"],
    ["http://[fd00::2]:8008", "http://[fd00::2]:8008"],
    ["http://u:p@10.0.0.2:8008", undefined],
    ["http://10.0.0.2:8008/status", undefined],
    ["https://10.0.0.2:8008", "https://10.0.0.2:8008"],
    ["ftp://10.0.0.2:8008", undefined],
  ])("parsePeer(%j) = %p", (text, url) => expect(parsePeer(text)).toBe(url));

  test("redactUrl hides the password only", () => {
    expect(redactUrl("postgres://u:secret@h:5432/db")).toBe("postgres://u:***@h:5432/db");
    expect(redactUrl("postgres://u@h/db")).toBe("postgres://u@h/db");
  });
});
