import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { startPair, waitFor } from "../../src/demo/pg.ts";

// A zombie still answers kill(pid, 0), so look at its state instead.
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

test("a pair replicates, promotes and leaves nothing behind", async () => {
  const pair = await startPair();
  const { primary, standby } = pair;
  const pids = [primary.pid(), standby.pid()];
  try {
    expect(await primary.sql("select pg_is_in_recovery()")).toBe("f");
    expect(await standby.sql("select pg_is_in_recovery()")).toBe("t");

    await primary.sql("create table fixture_check (id int); insert into fixture_check values (42)");
    await waitFor("the table to reach the standby", async () => {
      return (await standby.sql("select id from fixture_check").catch(() => "")) === "42";
    });

    await standby.promote();
    await standby.waitPrimary();
    expect(await standby.sql("select pg_is_in_recovery()")).toBe("f");
  } finally {
    await pair.stop();
  }
  expect(existsSync(pair.dir)).toBe(false);
  expect(pids.filter(alive)).toEqual([]);
});
