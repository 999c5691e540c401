// A throwaway OS user for a test, as the package's own `replstatus` user is:
// no home, no shell, in no group of PostgreSQL's, so that it cannot read a
// data directory (0700 postgres). Named with the test's pid, removed after the
// test, and at exit if the test never gets there.
import { atExit } from "../../src/demo/cleanup.ts";

export interface OsUser extends AsyncDisposable {
  name: string;
  uid: number;
  /** A command prefix that runs what follows as this user, with no other groups. */
  wrap: string[];
}

function sh(cmd: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: (r.stdout.toString() + r.stderr.toString()).trim() };
}

/** Makes the user `rs<tag><pid>` (root only). */
export function throwawayUser(tag: string): OsUser {
  if (process.getuid?.() !== 0) throw new Error("testkit: a throwaway OS user needs root");
  const name = `rs${tag}${process.pid}`;
  const made = sh([
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--home-dir",
    "/nonexistent",
    "--shell",
    "/usr/sbin/nologin",
    name,
  ]);
  if (made.code !== 0) throw new Error(`testkit: could not add the OS user ${name}: ${made.out}`);
  const remove = () => {
    sh(["userdel", name]);
    sh(["groupdel", name]);
  };
  const cancel = atExit(remove);
  const uid = Number(sh(["id", "-u", name]).out);
  return {
    name,
    uid,
    wrap: ["setpriv", `--reuid=${name}`, `--regid=${name}`, "--clear-groups", "--"],
    async [Symbol.asyncDispose]() {
      remove();
      cancel();
    },
  };
}
