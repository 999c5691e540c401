// postmaster.pid's status line and the refusal texts, on their own: a table of
// files and errors in, statuses and log texts out. test/e2e/lifecycle.test.ts shows
// them against real PostgreSQL servers.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { classifyPollError, describe as describeError } from "../../src/poll/facts.ts";
import { readPmStatus, watchPostmaster } from "../../src/poll/worker/postmaster.ts";
import { tempDir } from "../kit/tmp.ts";

const dir = tempDir("replstatus-pm-");

/** A postmaster.pid as PostgreSQL 15 writes it, with `status` on line 8 (absent: not written yet). */
function pidFile(pid: number, status: string | undefined, port = 5432): string {
  const lines = [
    String(pid),
    dir,
    "1764160000",
    String(port),
    "/var/run/postgresql",
    "127.0.0.1",
    "  5432001         0",
  ];
  return [...lines, ...(status === undefined ? [] : [status])].join("\n") + "\n";
}

/** A pid that no process has. */
function deadPid(): number {
  const proc = Bun.spawnSync(["true"]);
  return proc.pid;
}

describe("postmaster.pid's status", () => {
  test.each<[string, string | undefined, string]>([
    ["ready", pidFile(process.pid, "ready   "), "ready"],
    ["a hot or warm standby", pidFile(process.pid, "standby "), "standby"],
    ["any shutdown, smart ones included", pidFile(process.pid, "stopping"), "stopping"],
    ["start-up, crash recovery", pidFile(process.pid, "starting"), "starting"],
    ["the status line not written yet", pidFile(process.pid, undefined), "starting"],
    ["a postmaster killed with SIGKILL left its file", pidFile(deadPid(), "ready   "), "down"],
    ["no file: the server is down", undefined, "down"],
    ["the file of a server on another port: not this server's", pidFile(process.pid, "stopping", 5433), "unreadable"],
  ])("%s", (_, text, expected) => {
    const dataDir = mkdtempSync(join(dir, "d-"));
    if (text !== undefined) writeFileSync(join(dataDir, "postmaster.pid"), text);
    expect(readPmStatus(dataDir, 5432)).toBe(expected as never);
  });
});

describe("whose postmaster.pid: the server of the connection settings", () => {
  const dataDir = mkdtempSync(join(dir, "aim-"));
  writeFileSync(join(dataDir, "postmaster.pid"), pidFile(process.pid, "ready   "));

  test.each<[string, string | undefined, [string, number][], string]>([
    ["a socket directory: data_directory is taken", undefined, [["/run/postgresql", 5432]], "ready"],
    ["localhost: taken", undefined, [["localhost", 5432]], "ready"],
    ["another host: not taken", undefined, [["10.0.0.9", 5432]], "unreadable"],
    ["another host, but PGDATA names it: taken", "SELF", [["10.0.0.9", 5432]], "ready"],
    ["this host on another port: not that server's file", undefined, [["/run/postgresql", 5433]], "unreadable"],
    [
      "the settings moved to another host: the old directory is forgotten",
      undefined,
      [
        ["/run/postgresql", 5432],
        ["10.0.0.9", 5432],
      ],
      "unreadable",
    ],
  ])("%s", (_, pgdata, aims, expected) => {
    const pm = watchPostmaster(pgdata === "SELF" ? dataDir : pgdata, () => {});
    try {
      for (const [host, port] of aims) {
        pm.aim(host, port);
        // What the first poll of each connection tells.
        pm.learn(dataDir);
      }
      expect(pm.status()).toBe(expected as never);
    } finally {
      pm.close();
    }
  });
});

const pgError = (code: string, message: string, detail?: string) =>
  Object.assign(new Error(message), { code, ...(detail && { detail }) });

describe("refusals in the log", () => {
  test.each<[Error, string, string]>([
    [
      pgError("57P03", "the database system is shutting down"),
      "the database system is shutting down",
      "starting_or_stopping",
    ],
    [
      pgError("57P03", "the database system is starting up"),
      "the database system is starting up",
      "starting_or_stopping",
    ],
    [
      pgError("57P03", "the database system is not accepting connections", "Hot standby mode is disabled."),
      "the database system is not accepting connections: hot standby mode is disabled",
      "starting_or_stopping",
    ],
    [
      pgError(
        "57P03",
        "the database system is not yet accepting connections",
        "Consistent recovery state has not been yet reached.",
      ),
      "the database system is not yet accepting connections: consistent recovery state has not been yet reached",
      "starting_or_stopping",
    ],
    [pgError("53300", "sorry, too many clients already"), "sorry, too many clients already", "too_many_connections"],
    [
      Object.assign(new Error("connect ENOENT /run/postgresql/.s.PGSQL.5432"), {
        code: "ENOENT",
        address: "/run/postgresql/.s.PGSQL.5432",
      }),
      "no server socket at /run/postgresql/.s.PGSQL.5432 (is PostgreSQL running? set PGHOST/PGPORT or --db)",
      "refused",
    ],
  ])("%#", (err, text, reason) => {
    expect(describeError(err)).toBe(text);
    expect(classifyPollError(err)).toBe(reason as never);
  });
});
