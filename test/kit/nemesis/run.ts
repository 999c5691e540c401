// One nemesis run: the lab up, the client writing, the store watched and the
// answers sampled, the planned faults applied one after another (each held,
// healed, and the cluster given time to recover), then everything healed, the
// final primary's table read, and the checker run on it all.
import { waitFor } from "../../../src/demo/proc.ts";
import { withSlack } from "../bounds.ts";
import { check, type CheckResult, type FaultRecord, type Write } from "./check.ts";
import { createLab, PATRONI_CHECK_LINE, PORTS, type DbHost, type Lab, type LabOptions } from "./lab.ts";
export { removeLabs } from "./lab.ts";
import { now, sampleAnswers, watchStore } from "./observe.ts";
import { plan, type FaultKind, type PlannedFault } from "./schedule.ts";

export interface RunOptions {
  seed: number;
  faults: number;
  strictSync: boolean;
  replstatus: "patroni" | "plain";
  /** Also replstatus route on the load balancer (push routing); otherwise haproxy's checks alone. */
  route?: boolean;
  kinds?: readonly FaultKind[];
  checkLine?: string;
  /** (d): how long a MASTER may outlive the key; default the promised bound with the load slack. */
  toleranceMs?: number;
  log(line: string): void;
}

export interface FaultRun extends FaultRecord {
  index: number;
  target: string | undefined;
  direction: string;
  holdMs: number;
  heal: number;
  /** ms from the heal until leader, members and haproxy agreed again; null: not within RECOVER_MS. */
  recoveredMs: number | null;
  note: string;
}

export interface RunResult {
  seed: number;
  options: Omit<RunOptions, "log">;
  boundMs: number;
  toleranceMs: number;
  startedAt: number;
  endedAt: number;
  faults: FaultRun[];
  writes: Write[];
  keys: ReturnType<typeof watchStore>["keys"];
  samples: ReturnType<typeof sampleAnswers>["samples"];
  view: ReturnType<typeof sampleAnswers>["view"];
  finalLeader: string | undefined;
  rowsPerNode: Record<string, number | null>;
  check: CheckResult;
}

const RECOVER_MS = 30_000;
/** Leader key changed in etcd -> the raw answer changed: the Patroni mode's target (docs/patroni.md). */
const KEY_BOUND_MS = 50;
const SAMPLE_EVERY_MS = 100;

/** haproxy's mark-down time by its check line: fall checks, inter apart (fastinter defaults to inter). */
export function markDownMs(line: string): number {
  const ms = (v: string) => (v.endsWith("ms") ? Number(v.slice(0, -2)) : Number(v.replace(/s$/, "")) * 1000);
  const inter = ms(/\binter (\S+)/.exec(line)?.[1] ?? "2s");
  const fastinter = ms(/\bfastinter (\S+)/.exec(line)?.[1] ?? String(inter) + "ms");
  const fall = Number(/\bfall (\d+)/.exec(line)?.[1] ?? 3);
  return inter + (fall - 1) * fastinter;
}

export async function runNemesis(opts: RunOptions): Promise<RunResult> {
  const checkLine = opts.checkLine ?? PATRONI_CHECK_LINE;
  const labOpts: LabOptions = {
    strictSync: opts.strictSync,
    replstatus: opts.replstatus,
    ttlS: 8,
    loopWaitS: 1,
    retryTimeoutS: 3,
    checkLine,
    route: opts.route ?? false,
    log: opts.log,
  };
  // (a)'s bound: haproxy marks a server down at most fall x inter after its answer changed.
  const boundMs = withSlack(markDownMs(checkLine));
  const toleranceMs = opts.toleranceMs ?? withSlack(KEY_BOUND_MS);
  const faults = plan(opts.seed, opts.faults, opts.kinds);
  opts.log(
    `seed ${opts.seed}: ${faults.length} faults, replstatus ${opts.replstatus}${opts.route ? " + route" : ""}, ${opts.strictSync ? "strict sync" : "async"}`,
  );
  const lab = createLab(labOpts);
  await lab.start();
  const store = watchStore(lab);
  // The samples start once the history has its first entry, so that every one can be judged.
  await waitFor("the first read of the store", () => store.keys.length > 0, 30_000, 50).catch(async (err) => {
    await store.stop();
    await lab.remove();
    throw err;
  });
  const answers = sampleAnswers(lab, SAMPLE_EVERY_MS);
  const runs: FaultRun[] = [];
  try {
    const writes: Write[] = [];
    let lastAck = 0;
    lab.startClient((line) => {
      const w = parseWrite(line, lab.nodeOf);
      writes.push(w);
      if (w.ok === true && w.kind === "new") lastAck = Math.max(lastAck, w.done);
    });
    const recovered = recovery(
      store,
      answers,
      () => lastAck,
      lab.db.map((d) => d.name),
    );
    if ((await recovered(RECOVER_MS)) === null) throw new Error("the lab did not settle before the first fault");
    const startedAt = now();
    for (const [index, f] of faults.entries()) runs.push(await inject(lab, store, recovered, index, f, opts.log));
    await Bun.sleep(2000);
    const endedAt = now();
    await lab.stopClient();
    opts.log(`client stopped: ${writes.length} writes`);
    const settled = await recovered(RECOVER_MS * 2, true);
    const finalLeader = store.leader();
    opts.log(
      `${settled === null ? "NOT settled" : "settled"}: leader ${finalLeader}, haproxy up ${answers.up().join(",")}, ` +
        `members ${Object.entries(store.members())
          .map(([m, v]) => `${m} ${v.role}/${v.state}`)
          .join(", ")}`,
    );
    const { finalIds, rowsPerNode } = await readTables(lab, finalLeader, opts.log);
    await answers.stop();
    await store.stop();
    opts.log(`rows per node ${JSON.stringify(rowsPerNode)}`);
    const result = check({
      writes,
      keys: store.keys,
      samples: answers.samples,
      view: answers.view,
      faults: runs,
      end: endedAt,
      finalIds,
      boundMs,
      toleranceMs,
    });
    const { log: _, ...options } = opts;
    const out: RunResult = {
      seed: opts.seed,
      options,
      boundMs,
      toleranceMs,
      startedAt,
      endedAt,
      faults: runs,
      writes,
      keys: store.keys,
      samples: answers.samples,
      view: answers.view,
      finalLeader,
      rowsPerNode,
      check: result,
    };
    // NEMESIS_DUMP=FILE keeps the whole run (writes, samples, history) for a look afterwards.
    if (process.env.NEMESIS_DUMP) await Bun.write(process.env.NEMESIS_DUMP, JSON.stringify(out));
    return out;
  } finally {
    await answers.stop();
    await store.stop();
    await lab.stopClient().catch(() => {});
    await lab.remove();
  }
}

type Store = ReturnType<typeof watchStore>;
type Answers = ReturnType<typeof sampleAnswers>;

/**
 * Waits until writes work again: a leader holds the key, haproxy routes to it alone, and a write begun
 * after the call was acknowledged (under synchronous_mode_strict that needs a synchronous standby too).
 * With `all` (the end of the run, the client stopped, before the tables are read): every member runs
 * instead of a new write.
 */
function recovery(store: Store, answers: Answers, lastAck: () => number, members: string[]) {
  return async (deadlineMs: number, all = false): Promise<number | null> => {
    const t0 = now();
    while (now() - t0 < deadlineMs) {
      const leader = store.leader();
      const view = store.members();
      const running = !all || members.every((m) => view[m]?.state === "running");
      const up = answers.up();
      const wrote = all || lastAck() > t0;
      if (leader && running && up.length === 1 && up[0] === leader && wrote) return now() - t0;
      await Bun.sleep(100);
    }
    return null;
  };
}

async function inject(
  lab: Lab,
  store: Store,
  recovered: (ms: number, all?: boolean) => Promise<number | null>,
  index: number,
  f: PlannedFault,
  log: (line: string) => void,
): Promise<FaultRun> {
  const leaderName = store.leader();
  const leader = lab.db.find((d) => d.name === leaderName);
  const replicas = lab.db.filter((d) => d !== leader);
  const target = f.target === "leader" && leader ? leader : replicas[f.pick % replicas.length]!;
  const others = (h: DbHost) => lab.db.filter((d) => d !== h);
  const start = now();
  let note = "";
  let heal: () => Promise<void> = async () => {};
  let who: string | undefined = target.name;
  try {
    switch (f.kind) {
      case "part-etcd":
        heal = lab.partition(target, others(target), f.direction, [PORTS.etcd, PORTS.etcdPeer]);
        break;
      case "part-peers":
        heal = lab.partition(target, others(target), f.direction);
        break;
      case "part-lb":
        heal = lab.partition(target, [lab.lb], f.direction);
        break;
      case "part-all":
        heal = lab.partition(target, [...others(target), lab.lb, lab.client], f.direction);
        break;
      case "kill-postmaster":
        lab.killPostmaster(target);
        break;
      case "kill-patroni":
        heal = lab.killPatroni(target);
        break;
      case "stop-postgres":
        heal = lab.stopPostgres(target);
        break;
      case "etcd-lost":
        heal = lab.killEtcd(target);
        break;
      case "switchover": {
        const to = replicas[f.pick % replicas.length]!;
        who = `${leaderName}->${to.name}`;
        await lab.patronictl(to, "switchover", "--leader", leaderName ?? "", "--candidate", to.name, "--force");
        break;
      }
      case "failover": {
        const to = replicas[f.pick % replicas.length]!;
        who = `->${to.name}`;
        await lab.patronictl(to, "failover", "--candidate", to.name, "--force");
        break;
      }
      case "restart-replstatus":
        await lab.restartReplstatus(target);
        break;
    }
  } catch (err) {
    note = (err as Error).message.split("\n").slice(0, 2).join(" ").slice(0, 160);
  }
  if (f.holdMs > 0) await Bun.sleep(f.holdMs);
  await heal().catch((err: Error) => (note ||= `heal: ${err.message.slice(0, 120)}`));
  const healAt = now();
  const recoveredMs = await recovered(RECOVER_MS);
  const partition = f.kind.startsWith("part-") ? ` ${f.direction}` : "";
  log(
    `fault ${index + 1}: ${f.kind}${partition} ${who ?? ""} held ${f.holdMs} ms; ` +
      `${recoveredMs === null ? "NOT recovered" : `recovered ${Math.round(recoveredMs)} ms after the heal`}` +
      `${note ? ` (${note})` : ""}`,
  );
  await Bun.sleep(f.gapMs);
  return {
    index,
    kind: f.kind,
    target: who,
    direction: f.kind.startsWith("part-") ? f.direction : "",
    holdMs: f.holdMs,
    start,
    heal: healAt,
    recoveredMs,
    note,
  };
}

/** One line of the client's; the node's address becomes its member name. */
function parseWrite(line: string, nodeOf: Record<string, string>): Write {
  const w = JSON.parse(line) as Write;
  if (w.node !== undefined) w.node = nodeOf[w.node.replace(/\/32$/, "")] ?? w.node;
  return w;
}

async function readTables(lab: Lab, leader: string | undefined, log: (line: string) => void) {
  const rowsPerNode: Record<string, number | null> = {};
  for (const d of lab.db) {
    rowsPerNode[d.name] = await lab
      .psql(d, "select count(*) from nemesis_writes", 30_000)
      .then(Number)
      .catch((err: Error) => {
        log(`could not count the rows on ${d.name}: ${err.message.split("\n")[0]}`);
        return null;
      });
  }
  const host = lab.db.find((d) => d.name === leader);
  if (!host) return { finalIds: undefined, rowsPerNode };
  const text = await lab
    .psql(host, "copy (select id from nemesis_writes) to stdout", 60_000)
    .catch((err: Error) => log(`could not read the final primary ${leader}: ${err.message.split("\n")[0]}`));
  return { finalIds: typeof text === "string" ? new Set(text.split("\n").map(Number)) : undefined, rowsPerNode };
}
