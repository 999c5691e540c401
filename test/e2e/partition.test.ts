// Real partitions: each node in its own network namespace, joined by veth
// links that the test cuts and heals (test/kit/netns.ts). n1 runs the
// primary and its replstatus, n2 the standby (streaming from n1 across their
// link) and its replstatus, n3 a witness: a replstatus with no PostgreSQL,
// whose only job is to be reachable. haproxy and the prober sit in the test's
// own namespace, joined to n1 and n2 by links that are never cut: the old
// primary is cut off from its peers, not from the load balancer.
//
// The prober asks both nodes for their raw answer every few milliseconds for
// the whole test and keeps every sample, so the assertions are about every
// moment, not about a final state.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLab, type Lab, type Link, type Namespace } from "../kit/netns.ts";
import { startHaproxy, type Haproxy } from "../../src/demo/haproxy.ts";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { probe } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { LAB_HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { getStatus } from "../kit/http.ts";
import { READY_BOUND_MS, withSlack } from "../kit/bounds.ts";

useTimeouts(90_000);
const RAW_PORT = 5400;
const HTTP_PORT = 8008;
const PEER_INTERVAL_MS = 100;
const PEER_TIMEOUT_MS = 300;
const ISOLATION_MS = 1000;
/** The isolation rule's bound from the cut, with the default --poll-interval (50 ms). */
const ISOLATION_BOUND_MS = PEER_INTERVAL_MS + ISOLATION_MS + 50;
/** How long each phase is watched. */
const WATCH_MS = withSlack(ISOLATION_MS + PEER_INTERVAL_MS + PEER_TIMEOUT_MS);

interface Sample {
  node: "n1" | "n2";
  /** performance.now() when the probe started and when its answer was complete. */
  from: number;
  to: number;
  text: string;
}

/** Probes both nodes' raw listeners in a loop until stopped; every answer is kept. */
function startProber(hosts: Record<"n1" | "n2", string>) {
  const samples: Sample[] = [];
  let stopped = false;
  const loop = async (node: "n1" | "n2") => {
    while (!stopped) {
      const from = performance.now();
      const r = await probe(RAW_PORT, hosts[node]);
      samples.push({ node, from, to: performance.now(), text: r.text || r.close });
      await Bun.sleep(2);
    }
  };
  const loops = [loop("n1"), loop("n2")];
  return {
    samples,
    /** Samples of `node` that started at or after `since`. */
    after: (node: "n1" | "n2", since: number) => samples.filter((s) => s.node === node && s.from >= since),
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Time between n2's first MASTER and n1's last MASTER after `since`: how long both said it. */
function overlapMs(samples: Sample[], since: number): number {
  const n2First = samples.find((s) => s.node === "n2" && s.from >= since && s.text === "MASTER");
  const n1Masters = samples.filter((s) => s.node === "n1" && s.from >= since && s.text === "MASTER");
  if (!n2First || n1Masters.length === 0) return 0;
  return Math.max(0, n1Masters.at(-1)!.to - n2First.from);
}

interface Nodes {
  lab: Lab;
  n1: Namespace;
  n2: Namespace;
  n3: Namespace;
  /** Links from the test's namespace (haproxy, prober) to n1 and n2. */
  h1: Link;
  h2: Link;
  /** The peers' links. */
  l12: Link;
  l13: Link;
  l23: Link;
  pg: PgPair;
  r1: Responder;
  r2: Responder;
  r3: Responder;
  dir: string;
  prober: ReturnType<typeof startProber>;
  stop(): Promise<void>;
}

async function startNodes(isolation: boolean): Promise<Nodes> {
  const lab = createLab();
  const dir = mkdtempSync(join(tmpdir(), "rs-partition-"));
  const started: Responder[] = [];
  let pg: PgPair | undefined;
  let prober: ReturnType<typeof startProber> | undefined;
  const stop = async () => {
    await prober?.stop();
    for (const r of started) await r[Symbol.asyncDispose]();
    await pg?.stop();
    lab.remove();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [n1, n2, n3] = [lab.namespace("n1"), lab.namespace("n2"), lab.namespace("n3")];
    const [h1, h2] = [lab.link(undefined, n1), lab.link(undefined, n2)];
    const [l12, l13, l23] = [lab.link(n1, n2), lab.link(n1, n3), lab.link(n2, n3)];
    pg = await startPair({
      primaryConf: ["listen_addresses = '*'"],
      hbaPrepend: ["host all all 169.254.0.0/16 trust", "host replication all 169.254.0.0/16 trust"],
      primaryWrap: n1.exec,
      standbyWrap: n2.exec,
      primaryHost: l12.aAddress,
    });
    const common = (name: string) => [
      ...["--listen", `0.0.0.0:${RAW_PORT}`, "--listen", `http:0.0.0.0:${HTTP_PORT}`],
      ...["--control-socket", join(dir, `${name}.sock`)],
      ...["--peer-interval", `${PEER_INTERVAL_MS}ms`, "--peer-timeout", `${PEER_TIMEOUT_MS}ms`],
      ...(isolation ? ["--isolation-after", `${ISOLATION_MS}ms`] : []),
    ];
    const peers = (...hosts: string[]) => hosts.flatMap((h) => ["--peer", `http://${h}:${HTTP_PORT}`]);
    const witness = ["--listen", `http:0.0.0.0:${HTTP_PORT}`, "--control-socket", join(dir, "n3.sock")];
    started.push(await startResponder([...witness, "--db", "postgres://nobody@127.0.0.1:1/none"], {}, n3.exec));
    started.push(
      await startResponder([...common("n1"), ...peers(l12.bAddress, l13.bAddress)], pg.primary.env, n1.exec),
    );
    started.push(
      await startResponder([...common("n2"), ...peers(l12.aAddress, l23.bAddress)], pg.standby.env, n2.exec),
    );
    const [r3, r1, r2] = started as [Responder, Responder, Responder];
    await waitFor("n1 MASTER", async () => (await probe(RAW_PORT, h1.bAddress)).text === "MASTER");
    await waitFor("n2 STANDBY", async () => (await probe(RAW_PORT, h2.bAddress)).text === "STANDBY");
    const bothPeersOk = async (host: string) => {
      const status = await getStatus(HTTP_PORT, { host });
      return (status.peers as { result: string }[]).every((p) => p.result === "ok");
    };
    await waitFor("n1 to reach both peers", () => bothPeersOk(h1.bAddress));
    await waitFor("n2 to reach both peers", () => bothPeersOk(h2.bAddress));
    prober = startProber({ n1: h1.bAddress, n2: h2.bAddress });
    return { lab, n1, n2, n3, h1, h2, l12, l13, l23, pg, r1, r2, r3, dir, prober, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Cuts n1 off, promotes n2; when the cut was made, and when PostgreSQL on n2 was a primary. */
async function cutAndPromote(nodes: Nodes): Promise<{ cutAt: number; promotedAt: number }> {
  const cutAt = performance.now();
  nodes.l12.cut();
  nodes.l13.cut();
  await nodes.pg.standby.promote();
  return { cutAt, promotedAt: performance.now() };
}

/** Waits until the prober has samples of both nodes started after `t`. */
async function watchUntil(nodes: Nodes, t: number): Promise<void> {
  await waitFor("the watch to end", () => performance.now() >= t, t - performance.now() + 10_000, 20);
  await waitFor(
    "a sample of each node after the watch",
    () => nodes.prober.after("n1", t).length > 0 && nodes.prober.after("n2", t).length > 0,
  );
}

describe("with --isolation-after: the old primary cut off from its peers", () => {
  let nodes: Nodes;
  let hx: Haproxy;
  let cutAt: number;

  beforeAll(async () => {
    nodes = await startNodes(true);
    hx = await startHaproxy({
      defaults: ["default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2"],
      proxies: {
        pgcluster: [
          "option tcp-check",
          "tcp-check expect string MASTER",
          `server pg1 ${nodes.h1.bAddress}:${nodes.pg.primary.port} check port ${RAW_PORT}`,
          `server pg2 ${nodes.h2.bAddress}:${nodes.pg.standby.port} check port ${RAW_PORT}`,
        ],
      },
    });
  }, LAB_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await hx?.stop();
    await nodes?.stop();
  }, LAB_HOOK_TIMEOUT_MS);

  test("stops saying MASTER within the rule's bound while the promoted node says it", async () => {
    await hx.waitForServer("pgcluster", "pg1", "UP");
    const cut = await cutAndPromote(nodes);
    cutAt = cut.cutAt;
    // n2 answers MASTER once its PostgreSQL is a primary; a loaded machine can take seconds to promote.
    const n2MasterBy = Math.max(cutAt + withSlack(ISOLATION_BOUND_MS), cut.promotedAt + withSlack(READY_BOUND_MS));
    await watchUntil(nodes, Math.max(cutAt + WATCH_MS, n2MasterBy + PEER_INTERVAL_MS));
    const n1Masters = nodes.prober.after("n1", cutAt).filter((s) => s.text === "MASTER");
    const lastMs = n1Masters.length ? n1Masters.at(-1)!.to - cutAt : 0;
    const overlap = overlapMs(nodes.prober.samples, cutAt);
    console.log(
      `isolation: n1's last MASTER ${Math.round(lastMs)} ms after the cut; both MASTER for ${Math.round(overlap)} ms`,
    );
    // docs/split-brain.md: --isolation-after after the last answer it had (up to a peer interval before the cut), plus
    // one poll interval.
    expect(lastMs).toBeLessThan(withSlack(ISOLATION_BOUND_MS));
    expect(overlap).toBeLessThan(withSlack(ISOLATION_BOUND_MS));
    expect(nodes.prober.after("n1", cutAt + withSlack(ISOLATION_BOUND_MS)).map((s) => s.text)).not.toContain("MASTER");
    expect(nodes.prober.after("n2", n2MasterBy).every((s) => s.text === "MASTER")).toBe(true);
    expect(nodes.prober.after("n1", cutAt + withSlack(ISOLATION_BOUND_MS)).at(-1)!.text).toBe("FENCED");
    await nodes.r1.waitForLog(/primary -> fenced \(isolated: no peer reached for [\d.]+s \(--isolation-after 1s\)\)/);
    await hx.waitForServer("pgcluster", "pg2", "UP");
    await hx.waitForServer("pgcluster", "pg1", "DOWN");
  });

  test("the link healed: n1 sees the new primary's timeline and stays FENCED, never MASTER", async () => {
    const healAt = performance.now();
    nodes.l12.heal();
    nodes.l13.heal();
    await nodes.r1.waitForLog(/split-brain guard: a peer answers again, isolation over/);
    await watchUntil(nodes, healAt + WATCH_MS);
    expect(nodes.prober.after("n1", healAt).map((s) => s.text)).not.toContain("MASTER");
    expect(nodes.prober.after("n2", healAt).every((s) => s.text === "MASTER")).toBe(true);
    const status = await getStatus(HTTP_PORT, { host: nodes.h1.bAddress });
    expect(status).toMatchObject({ state: "fenced", fenced_by: { timeline: 2 }, isolation: { isolated: false } });
  });

  test("a flapping link: n1 never says MASTER, n2 never stops", async () => {
    const flapAt = performance.now();
    // The stimulus: 8 cuts of 150..650 ms, each followed by 150 ms of link.
    for (let i = 0; i < 8; i++) {
      nodes.l12.cut();
      nodes.l13.cut();
      await Bun.sleep(150 + ((i * 71) % 500));
      nodes.l12.heal();
      nodes.l13.heal();
      await Bun.sleep(150);
    }
    await watchUntil(nodes, performance.now() + WATCH_MS);
    expect(nodes.prober.after("n1", flapAt).map((s) => s.text)).not.toContain("MASTER");
    expect(nodes.prober.after("n2", flapAt).every((s) => s.text === "MASTER")).toBe(true);
    expect(nodes.prober.after("n1", flapAt).length).toBeGreaterThan(100);
  });
});

describe("without --isolation-after: the documented availability over fencing", () => {
  let nodes: Nodes;

  beforeAll(async () => {
    nodes = await startNodes(false);
  }, LAB_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await nodes?.stop();
  }, LAB_HOOK_TIMEOUT_MS);

  test("the cut-off old primary keeps saying MASTER beside the promoted one, then is FENCED once the link heals", async () => {
    const { cutAt } = await cutAndPromote(nodes);
    await waitFor("n2 MASTER", async () => (await probe(RAW_PORT, nodes.h2.bAddress)).text === "MASTER");
    await watchUntil(nodes, performance.now() + WATCH_MS);
    // README, "Split-brain guard": with no peer reachable the node answers from its own view.
    expect(nodes.prober.after("n1", cutAt).every((s) => s.text === "MASTER")).toBe(true);
    const overlap = overlapMs(nodes.prober.samples, cutAt);
    console.log(`no isolation rule: both MASTER for ${Math.round(overlap)} ms, until the heal`);
    expect(overlap).toBeGreaterThan(WATCH_MS / 2);
    await nodes.r1.waitForLog(/split-brain guard: no peer reachable, answering from this node's own view/);

    const healAt = performance.now();
    nodes.l12.heal();
    nodes.l13.heal();
    await waitFor(
      "n1 FENCED",
      async () => (await probe(RAW_PORT, nodes.h1.bAddress)).text === "FENCED",
      withSlack(PEER_INTERVAL_MS + PEER_TIMEOUT_MS),
    );
    console.log(`no isolation rule: n1 FENCED within ${Math.round(performance.now() - healAt)} ms of the heal`);
  });
});
