// The single executable of `bun run build`, run where no Bun is on the PATH.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json";
import { waitFor } from "../../src/demo/pg.ts";
import { answer } from "../../src/demo/probe.ts";
import { cleanEnv, ROOT } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS } from "../kit/timeouts.ts";

let dir: string;
let binary: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "replstatus-build-"));
  binary = join(dir, "replstatus");
  // The build script's command, with the output moved out of the tree.
  const command = pkg.scripts.build.replace(/^bun /, "").replace("dist/replstatus", binary).split(" ");
  const build = Bun.spawn([process.execPath, ...command], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if ((await build.exited) !== 0) throw new Error(`build failed:\n${await new Response(build.stderr).text()}`);
}, HOOK_TIMEOUT_MS);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// No Bun, no node_modules: only the system's directories.
const bare = () => ({ ...cleanEnv(), PATH: "/usr/bin:/bin", PGHOST: dir, PGPORT: "5999" });

/** The executable serving with `args`, its stderr gathered as it comes. */
function serve(...args: string[]) {
  const proc = Bun.spawn([binary, ...args], { env: bare(), cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const served = { proc, log: "", [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose]() };
  void (async () => {
    for await (const chunk of proc.stderr) served.log += new TextDecoder().decode(chunk);
  })();
  return served;
}

test("--version", () => {
  const r = Bun.spawnSync([binary, "--version"], { env: bare(), cwd: dir });
  expect({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() }).toEqual({
    code: 0,
    stdout: `replstatus ${pkg.version} (bun ${Bun.version})\n`,
    stderr: "",
  });
});

test("serves, sets the backlog through libc, and stops on SIGTERM", async () => {
  await using served = serve("--listen", "127.0.0.1:0", "--backlog", "1234");
  const { proc } = served;
  const log = () => served.log;
  await waitFor("the backlog line", () => log().includes("info: listen backlog 1234;"));
  expect(log()).not.toContain("could not set the listen backlog");
  // The poll runs in a worker, which the executable must carry (the build's second entrypoint).
  await waitFor("the poll worker's first failure", () => log().includes("warning: poll failed: no server socket at "));
  const port = Number(/serving raw 127\.0\.0\.1:(\d+);/.exec(log())![1]);
  expect(await answer(port)).toBe("UNKNOWN");
  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
});

test("the systemd unit restarts always, as an unprivileged user, with PG* from an environment file", () => {
  const unit = readFileSync(join(ROOT, "packaging", "debian", "replstatus.service"), "utf8");
  for (const line of [
    "User=replstatus",
    "Restart=always",
    "LimitNOFILE=65536",
    "EnvironmentFile=-/etc/default/replstatus",
    "ExecReload=/bin/kill -HUP $MAINPID",
  ]) {
    expect(unit.split("\n")).toContain(line);
  }
});

test("serves the status page and runs `status` with the rules it embeds", async () => {
  await using served = serve("--listen", "http:127.0.0.1:0");
  const { proc } = served;
  const log = () => served.log;
  await waitFor("the listen line", () => /serving http 127\.0\.0\.1:\d+;/.test(log()));
  const url = `http://127.0.0.1:${/serving http 127\.0\.0\.1:(\d+);/.exec(log())![1]}`;
  const page = await fetch(`${url}/ui`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("function disagreements(");
  await waitFor("the poll worker's first failure", () => log().includes("warning: poll failed: "));
  const status = Bun.spawnSync([binary, "status", "--url", url], { env: bare(), cwd: dir });
  expect({ code: status.exitCode, stderr: status.stderr.toString() }).toEqual({ code: 1, stderr: "" });
  expect(status.stdout.toString()).toContain("| UNKNOWN | unknown | ready");
  expect(status.stdout.toString()).toContain("! no node answers MASTER");
  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
});
