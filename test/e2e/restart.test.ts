// Restarts against a real primary and a real haproxy: the fast exit, a
// listening socket held across restarts as a systemd .socket unit holds it
// (LISTEN_FDS), and the operator override kept in a state file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json";
import { DEFAULT_BIND, DEFAULT_PORT } from "../../src/config/options.ts";
import { startHaproxy } from "../../src/demo/haproxy.ts";
import { startPrimary, waitFor, type PgPrimary } from "../../src/demo/pg.ts";
import { ACTIVATE, holdSocket, type HeldSocket } from "../kit/socket.ts";
import { answer, probe, waitForAnswer, type ProbeResult } from "../../src/demo/probe.ts";
import { cleanEnv, MAIN, ROOT, startResponder, type Responder } from "../../src/demo/responder.ts";
import { EXIT_BOUND_MS, withSlack } from "../kit/bounds.ts";
import { runCli } from "../kit/cli.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";

useTimeouts(120_000);

let pg: PgPrimary;
let dir: string;
beforeAll(async () => {
  pg = await startPrimary();
  dir = mkdtempSync(join(tmpdir(), "rs-restart-"));
}, HOOK_TIMEOUT_MS);
afterAll(async () => {
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, HOOK_TIMEOUT_MS);

/** replstatus on the held socket, as the service manager would start it. */
function onHeld(held: HeldSocket, extra: string[] = []): Promise<Responder> {
  return startResponder(["--listen", held.listen, "--db", pg.primary.url, ...extra], {}, ACTIVATE, {
    inheritFd: held.fd,
  });
}

/** SIGTERM; resolves to the exit code and the time it took. */
async function timedStop(r: Responder, signal: "SIGTERM" | "SIGINT" = "SIGTERM") {
  const t0 = performance.now();
  r.proc.kill(signal);
  const code = await r.proc.exited;
  return { code, ms: performance.now() - t0 };
}

/** A probe started every millisecond until stop(); resolves to every result. */
function probeEveryMs(port: number) {
  const results: ProbeResult[] = [];
  const pending = new Set<Promise<void>>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const p = probe(port).then((r) => void results.push(r));
      pending.add(p);
      void p.then(() => pending.delete(p));
      await Bun.sleep(1);
    }
  })();
  return async () => {
    running = false;
    await loop;
    await Promise.all(pending);
    return results;
  };
}

const cli = (args: string[]) => runCli(args);

describe("fast exit", () => {
  test("SIGTERM and SIGINT exit 0 at once, idle or with a poll in flight to a hung server", async () => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      await using r = await startResponder(["--listen", "127.0.0.1:0", "--db", pg.primary.url]);
      await waitForAnswer(r.ports[0]!, "MASTER");
      const { code, ms } = await timedStop(r, signal);
      expect(code).toBe(0);
      expect(ms).toBeLessThan(withSlack(EXIT_BOUND_MS));
      expect(r.log).toContain(`${signal}: shutting down`);
    }
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--db", pg.primary.url]);
    await waitForAnswer(r.ports[0]!, "MASTER");
    pg.primary.signalAll("SIGSTOP");
    try {
      // A poll went unanswered past its deadline; a new connection is being tried.
      await waitForAnswer(r.ports[0]!, "UNKNOWN");
      const { code, ms } = await timedStop(r);
      expect(code).toBe(0);
      expect(ms).toBeLessThan(withSlack(EXIT_BOUND_MS));
    } finally {
      pg.primary.signalAll("SIGCONT");
    }
  });
});

describe("a held listening socket (socket activation)", () => {
  test("ten restarts under a probe every millisecond: no refusal, no reset, every answer MASTER; haproxy sees no DOWN", async () => {
    using held = holdSocket();
    await using haproxy = await startHaproxy({
      proxies: {
        pg: [
          "option tcp-check",
          "tcp-check expect string MASTER",
          `server s1 ${held.listen} check inter 100ms fall 2 rise 2`,
        ],
      },
    });
    let r = await onHeld(held);
    await r.waitForLog(new RegExp(`socket activation: raw ${held.listen} passed by the service manager`));
    await haproxy.waitForServer("pg", "s1", "UP");
    const stopProbes = probeEveryMs(held.port);
    try {
      for (let i = 0; i < 10; i++) {
        await waitForAnswer(held.port, "MASTER");
        expect((await timedStop(r)).code).toBe(0);
        r = await onHeld(held);
      }
      await waitForAnswer(held.port, "MASTER");
    } finally {
      const results = await stopProbes();
      await r[Symbol.asyncDispose]();
      const wrong = results.filter((p) => p.text !== "MASTER" || p.close !== "fin");
      expect(wrong).toEqual([]);
      expect(results.length).toBeGreaterThan(100);
    }
    const s1 = (await haproxy.showServers("pg")).s1!;
    expect(s1.status).toBe("UP");
    expect(s1.chkdown).toBe("0");
    expect(haproxy.log).not.toContain("is DOWN");
  });

  test("a restart while PostgreSQL is down: checks queued meanwhile get UNKNOWN, never the old MASTER", async () => {
    using held = holdSocket();
    const r = await onHeld(held);
    await waitForAnswer(held.port, "MASTER");
    expect((await timedStop(r)).code).toBe(0);
    await pg.primary.stop("immediate");
    try {
      // Queued in the held socket while no replstatus runs.
      const queued = probe(held.port);
      await using next = await onHeld(held);
      expect(await queued).toEqual({ text: "UNKNOWN", close: "fin" });
      expect(next.log).toContain("poll failed");
    } finally {
      await pg.primary.start();
    }
  });

  test("the real systemd-socket-activate passes the socket the same way", async () => {
    const tool = Bun.which("systemd-socket-activate");
    if (!tool) throw new Error("systemd-socket-activate is missing\nhint: apt-get install -y systemd");
    using spare = holdSocket();
    const address = spare.listen;
    spare.close();
    const proc = Bun.spawn([tool, "-l", address, process.execPath, MAIN, "--listen", address, "--db", pg.primary.url], {
      env: cleanEnv(),
      stdio: ["ignore", "ignore", "pipe"],
    });
    try {
      let log = "";
      void (async () => {
        for await (const chunk of proc.stderr) log += new TextDecoder().decode(chunk);
      })();
      await waitFor("systemd-socket-activate to listen", () => log.includes("Listening on"));
      // The first connection launches replstatus; it waits in the queue for the first poll.
      expect(await probe(spare.port)).toEqual({ text: "MASTER", close: "fin" });
      await waitFor("the socket activation line", () => log.includes("socket activation: raw"));
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  });

  test("an inherited socket that no --listen names is one line and exit 1; the held port cannot be bound twice", async () => {
    using held = holdSocket();
    using other = holdSocket();
    const run = (args: string[], fd: number) => {
      const { code, stderr } = runCli(args, {}, { wrap: ACTIVATE, inheritFd: fd });
      return { code, stderr };
    };
    expect(run(["--listen", held.listen, "--db", pg.primary.url], other.fd)).toEqual({
      code: 1,
      stderr:
        `replstatus: could not use inherited socket 3 (${other.listen}): no --listen address is ${other.listen}\n` +
        "hint: name the same addresses in the socket unit's ListenStream= and in --listen (or --bind and --port)\n",
    });
    // Without the socket passed, the port is in use: the guard against two responders on one port holds.
    const bind = cli(["--listen", held.listen, "--db", pg.primary.url]);
    expect(bind.code).toBe(1);
    expect(bind.stderr).toStartWith(`replstatus: could not listen on ${held.listen}: address in use\n`);
  });
});

describe("the override survives a restart", () => {
  test("maint is kept in the state file, read before the first answer, logged; ready clears it", async () => {
    const stateDir = join(dir, "state");
    using held = holdSocket();
    const flags = ["--listen", held.listen, "--state-dir", stateDir];
    const file = join(stateDir, `replstatus-${held.port}.override`);
    let r = await onHeld(held, ["--state-dir", stateDir]);
    try {
      await waitForAnswer(held.port, "MASTER");
      expect(cli(["maint", ...flags])).toEqual({ code: 0, stdout: "replstatus: override set to maint\n", stderr: "" });
      expect(readFileSync(file, "utf8")).toBe("maint\n");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(await answer(held.port)).toBe("UNKNOWN");

      expect((await timedStop(r)).code).toBe(0);
      const queued = probe(held.port);
      r = await onHeld(held, ["--state-dir", stateDir]);
      expect(await queued).toEqual({ text: "UNKNOWN", close: "fin" });
      expect(r.log).toContain(`info: override maint kept from ${file} (replstatus ready clears it)`);
      expect(await answer(held.port)).toBe("UNKNOWN");

      expect(cli(["ready", ...flags]).code).toBe(0);
      expect(existsSync(file)).toBe(false);
      await waitForAnswer(held.port, "MASTER");
      expect((await timedStop(r)).code).toBe(0);
      r = await onHeld(held, ["--state-dir", stateDir]);
      await waitForAnswer(held.port, "MASTER");
      expect(r.log).not.toContain("override");
    } finally {
      await r[Symbol.asyncDispose]();
    }
  });

  test.each([
    [
      "corrupt",
      (path: string) => writeFileSync(path, "garbage\n"),
      'unexpected content "garbage\\n" (expected drain or maint)',
    ],
    ["unreadable", (path: string) => mkdirSync(path), "EISDIR: illegal operation on a directory, read"],
  ])("a %s state file is one line and the node stays out until an operator decides", async (kind, spoil, cause) => {
    const stateDir = mkdtempSync(join(dir, "spoilt-"));
    chmodSync(stateDir, 0o700);
    using held = holdSocket();
    const file = join(stateDir, `replstatus-${held.port}.override`);
    spoil(file);
    await using r = await onHeld(held, ["--state-dir", stateDir]);
    expect(await answer(held.port)).toBe("UNKNOWN");
    const lines = r.log.split("\n").filter((l) => l.includes(file));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toEndWith(
      `error: could not read override file ${file}: ${cause}; answering as under maint until replstatus ready, drain or maint`,
    );
    if (kind === "unreadable") rmSync(file, { recursive: true });
    expect(cli(["ready", "--listen", held.listen, "--state-dir", stateDir]).code).toBe(0);
    await waitForAnswer(held.port, "MASTER");
  });
});

describe("an upgrade", () => {
  test("bun src/main.ts replaced by the single executable on the held socket: every probe answered MASTER", async () => {
    // The build script's command, with the output in a temp dir (as test/e2e/build.test.ts does).
    const binary = join(dir, "replstatus");
    const command = pkg.scripts.build.replace(/^bun /, "").replace("dist/replstatus", binary).split(" ");
    const build = Bun.spawn([process.execPath, ...command], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if ((await build.exited) !== 0) throw new Error(`build failed:\n${await new Response(build.stderr).text()}`);

    using held = holdSocket();
    await using old = await onHeld(held);
    await waitForAnswer(held.port, "MASTER");
    const stopProbes = probeEveryMs(held.port);
    let results: ProbeResult[];
    let upgraded: Responder | undefined;
    try {
      expect((await timedStop(old)).code).toBe(0);
      // As the service manager does: the new executable once the old process has exited. No Bun on the PATH.
      const args = ["--listen", held.listen, "--db", pg.primary.url];
      upgraded = await startResponder(args, { PATH: "/usr/bin:/bin" }, ACTIVATE, {
        command: [binary],
        inheritFd: held.fd,
      });
      await waitForAnswer(held.port, "MASTER");
    } finally {
      results = await stopProbes();
      await upgraded?.[Symbol.asyncDispose]();
    }
    expect(upgraded.proc.exitCode).toBe(0);
    expect(results.filter((p) => p.text !== "MASTER" || p.close !== "fin")).toEqual([]);
    await upgraded.waitForLog(new RegExp(`socket activation: raw ${held.listen} passed by the service manager`));
  });
});

test("the packaged units: the socket holds the default address, the service needs it and keeps its state", () => {
  const lines = (name: string) => readFileSync(join(ROOT, "packaging", "debian", name), "utf8").split("\n");
  expect(lines("replstatus.socket")).toContain(`ListenStream=${DEFAULT_BIND}:${DEFAULT_PORT}`);
  const service = lines("replstatus.service");
  for (const line of [
    "Requires=replstatus.socket",
    "After=replstatus.socket",
    "Restart=always",
    "StateDirectory=replstatus",
    "Environment=REPLSTATUS_STATE_DIR=/var/lib/replstatus",
  ]) {
    expect(service).toContain(line);
  }
});
