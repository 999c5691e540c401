// The Patroni kit (test/kit/patroni.ts) on its own: a real etcd and a two-member Patroni 3.0.2
// cluster come up, a switchover moves the leader key, and stop() leaves
// nothing behind.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { waitFor } from "../../src/demo/proc.ts";
import { startEtcd } from "../kit/etcd.ts";
import { httpGet, startPatroni } from "../kit/patroni.ts";

test("etcd + Patroni: leader, replica, switchover, clean stop", async () => {
  const etcd = await startEtcd();
  let dir = "";
  try {
    const cluster = await startPatroni({ etcd });
    dir = cluster.dir;
    try {
      const [m0, m1] = cluster.members as [(typeof cluster.members)[0], (typeof cluster.members)[0]];
      expect(await cluster.leader()).toBe("m0");
      expect((await httpGet(m0.restPort, "/primary")).status).toBe(200);
      await waitFor("m1's REST to say replica", async () => (await httpGet(m1.restPort, "/replica")).status === 200);
      expect(await m1.sql("select pg_is_in_recovery()")).toBe("t");

      await cluster.ctl("switchover", "--leader", "m0", "--candidate", "m1", "--force");
      await cluster.waitLeader("m1");
      expect(await m1.sql("select pg_is_in_recovery()")).toBe("f");
      await waitFor("m0 to be a replica again", async () => (await httpGet(m0.restPort, "/replica")).status === 200);
    } finally {
      await cluster.stop();
    }
    expect(existsSync(dir)).toBe(false);
  } finally {
    await etcd.stop();
  }
  expect(existsSync(etcd.dataDir)).toBe(false);
});
