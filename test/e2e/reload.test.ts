// --config files, SIGHUP reloads and JSON logs, against the real CLI.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { answer, probe } from "../../src/demo/probe.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { noDb, runCli } from "../kit/cli.ts";
import { answerFrom } from "../kit/client.ts";
import { numberedFiles, tempDir } from "../kit/tmp.ts";

const dir = tempDir("replstatus-conf-");

const configFile = numberedFiles(dir, "c", ".toml");

const run = runCli;

describe("--config", () => {
  test("flags beat variables, variables beat the file, the file beats defaults", async () => {
    const path = configFile('text-unknown = "FILE"\ntext-standby = "REPLICA"\npoll-interval = 100\n');
    for (const [args, env, want] of [
      [[], {}, "FILE"],
      [[], { REPLSTATUS_TEXT_UNKNOWN: "ENV" }, "ENV"],
      [["--text-unknown", "FLAG"], { REPLSTATUS_TEXT_UNKNOWN: "ENV" }, "FLAG"],
    ] as const) {
      await using r = await startResponder(["--listen", "127.0.0.1:0", "--config", path, ...args], {
        ...noDb(dir),
        ...env,
      });
      expect(await answer(r.ports[0]!)).toBe(want);
      expect(r.log).toContain("poll every 100ms");
    }
  });

  test.each([
    ["missing", undefined, "replstatus: could not read config file %s: no such file"],
    [
      "unknown key",
      'frobnicate = "x"\n',
      'replstatus: unknown key "frobnicate" in %s (keys are flag names without dashes, see --help)',
    ],
    [
      "a list for a single flag",
      'poll-interval = ["1s"]\n',
      'replstatus: invalid value for poll-interval in %s: ["1s"] (expected a string or a number)',
    ],
    [
      "a bad value",
      'max-connections = "many"\n',
      'replstatus: invalid value for max-connections in %s: "many" (expected an integer 1..1000000)',
    ],
  ])("%s: one line, exit 2", (_, text, line) => {
    const path = text === undefined ? join(dir, "none.toml") : configFile(text);
    const r = run(["--config", path]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 2,
      stdout: "",
      stderr: line.replace("%s", path) + "\n",
    });
  });

  test("a TOML syntax error is one line, exit 2", () => {
    const path = configFile("poll-interval = \n");
    const r = run(["--config", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith(`replstatus: could not read config file ${path}: `);
    expect(r.stderr.split("\n")).toHaveLength(2);
  });
});

describe("SIGHUP", () => {
  test("applies texts, the allow list and timings in place, and says what changed", async () => {
    const path = configFile('text-unknown = "DOWN"\n');
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--config", path], noDb(dir));
    const port = r.ports[0]!;
    expect(await answer(port)).toBe("DOWN");

    writeFileSync(path, 'text-unknown = "GONE"\nallow = ["127.0.0.2"]\npoll-interval = "200ms"\n');
    r.proc.kill("SIGHUP");
    await r.waitForLog(
      /info: SIGHUP: reloaded; poll-interval 50ms -> 200ms, text-unknown DOWN -> GONE, allow every peer -> \["127\.0\.0\.2\/32"\]\n/,
    );
    expect(await answerFrom(port, "127.0.0.2")).toBe("GONE");
    expect((await probe(port)).text).toBe("");
  });

  test("the lag limits and their hysteresis change in place, and it says so", async () => {
    const path = configFile('max-lag-bytes = "1MB"\n');
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--config", path], noDb(dir));
    writeFileSync(path, 'max-lag-bytes = "2MB"\nrejoin-lag-bytes = "512kB"\nrejoin-after = "5s"\n');
    r.proc.kill("SIGHUP");
    await r.waitForLog(
      /info: SIGHUP: reloaded; max-lag-bytes 1 MB -> 2 MB, rejoin-lag-bytes none -> 512 kB, rejoin-after 0s -> 5s\n/,
    );
    writeFileSync(path, 'max-lag-bytes = "2MB"\nrejoin-lag-bytes = "3MB"\n');
    r.proc.kill("SIGHUP");
    await r.waitForLog(
      /error: SIGHUP: reload rejected, keeping the running configuration: --rejoin-lag-bytes \(3 MB\) must be at most --max-lag-bytes \(2 MB\)/,
    );
    expect(r.log).not.toContain("only take effect after a restart");
  });

  test("a bad file is rejected with one line and the running configuration stays", async () => {
    const path = configFile('text-unknown = "DOWN"\n');
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--config", path], noDb(dir));
    writeFileSync(path, 'text-unknown = "GONE"\npoll-interval = "fast"\n');
    r.proc.kill("SIGHUP");
    await r.waitForLog(
      new RegExp(
        `error: SIGHUP: reload rejected, keeping the running configuration: invalid value for poll-interval in ${path}: "fast" \\(expected a duration 1ms\\.\\.60s such as 250ms or 2s\\)\n`,
      ),
    );
    expect(await answer(r.ports[0]!)).toBe("DOWN");
    expect(r.proc.exitCode).toBeNull();
  });

  test("addresses, the channel and the backlog wait for a restart, and it says so", async () => {
    const path = configFile('listen = ["127.0.0.1:0"]\nbacklog = 1000\n');
    await using r = await startResponder(["--config", path], noDb(dir));
    writeFileSync(path, 'listen = ["127.0.0.1:0", "[::1]:0"]\nbacklog = 2000\nchannel = "other"\n');
    r.proc.kill("SIGHUP");
    await r.waitForLog(
      /warning: SIGHUP: listen\/port\/bind, channel, backlog changed but only take effect after a restart\n/,
    );
    expect(r.log).toContain("info: SIGHUP: reloaded; nothing changed\n");
    expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
  });
});

test("--log-format json: every line is a JSON object with time, level and msg", async () => {
  await using r = await startResponder(["--listen", "127.0.0.1:0", "--log-format", "json"], noDb(dir));
  await r.waitForLog(/poll failed/);
  expect(await r.stop()).toBe(0);
  const lines = r.log
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  for (const line of lines) {
    expect(Object.keys(line).slice(0, 3)).toEqual(["time", "level", "msg"]);
    expect(Number.isNaN(Date.parse(line.time))).toBe(false);
  }
  expect(lines.map((l) => l.level)).toContain("warning");
  expect(lines.at(-1)!.msg).toBe("SIGTERM: shutting down");
});
