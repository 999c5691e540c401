// replstatus demo: a throwaway primary and standby, a replstatus for each, haproxy in front when it
// is installed, a status line per node, and a failover to watch. Everything lives in one temp dir
// and goes away at the end, on Ctrl-C and on SIGTERM (then through the exit hooks of cleanup.ts, which
// stop PostgreSQL, remove the dir and kill the child processes).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type DemoConfig } from "../config/types.ts";
import { formatDuration } from "../units.ts";
import { findHaproxy, startHaproxy, statsCommand, type Haproxy } from "./haproxy.ts";
import { startPair, waitFor, type PgNode, type PgPair } from "./pg.ts";
import { request } from "./probe.ts";
import { startResponder, type Responder } from "./responder.ts";

type Child = Responder | Haproxy;

interface Node {
  pg: PgNode;
  /** Name of the node at the start: "node1" is the primary, "node2" the standby. */
  name: string;
  rawPort: number;
  agentPort: number;
}

/** replstatus beside each PostgreSQL (raw and agent listeners), and haproxy in front when installed. */
async function startLab(pair: PgPair, children: Child[], say: (line: string) => void) {
  // Ours, not PostgreSQL's: the cluster dir belongs to the postgres OS user when run as root,
  // and replstatus refuses a control socket dir that another user owns.
  const runDir = join(pair.dir, "run");
  mkdirSync(runDir, { mode: 0o700 });
  const nodes: Node[] = [];
  for (const [name, pg] of [
    ["node1", pair.primary],
    ["node2", pair.standby],
  ] as const) {
    const child = await startNode(name, pg, runDir, say);
    children.push(child);
    const ports = child.ports;
    nodes.push({ pg, name, rawPort: ports[0]!, agentPort: ports[1]! });
    say(`${name}: PostgreSQL on 127.0.0.1:${pg.port}, replstatus raw on :${ports[0]}, agent on :${ports[1]}`);
  }

  const haproxy = await startRouting(nodes);
  if (haproxy) {
    children.push(haproxy);
    const port = haproxy.ports.pgcluster!;
    say(`haproxy: clients connect to 127.0.0.1:${port}; it routes to the node that answers MASTER`);
    say(`  try: psql -h 127.0.0.1 -p ${port} -U ${pair.primary.user} postgres -c 'select inet_server_port()'`);
  } else {
    say("haproxy is not installed: no routing to show (apt-get install haproxy)");
  }
  return { nodes, haproxy };
}

/** Runs the demo; resolves to the exit code. */
export async function runDemo(config: DemoConfig): Promise<number> {
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
  const tty = process.stdout.isTTY === true;
  let drawn = 0;
  const say = (line: string) => {
    // On a terminal the status block is redrawn in place; event lines go above it.
    if (tty && drawn > 0) process.stdout.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
    process.stdout.write(`${elapsed()}  ${line}\n`);
  };

  const children: Child[] = [];

  say("starting a PostgreSQL primary and a streaming standby (initdb, pg_basebackup)...");
  let pair: PgPair;
  try {
    pair = await startPair();
  } catch (err) {
    process.stderr.write(`replstatus: could not start the demo cluster: ${(err as Error).message}\n`);
    return 1;
  }
  say(`everything lives in ${pair.dir}`);

  try {
    const { nodes, haproxy } = await startLab(pair, children, say);

    const promoteAfter = config.promoteAfterMs;
    say(
      `failover ${promoteAfter === undefined ? "on Enter" : `in ${formatDuration(promoteAfter)}, or on Enter`}` +
        (config.durationMs === undefined
          ? "; Ctrl-C ends the demo"
          : `; the demo ends in ${formatDuration(config.durationMs)}`),
    );

    let promoting: Promise<void> | undefined;
    const promote = () => {
      promoting ??= failover(pair, nodes, say);
    };
    const started = performance.now();
    const promoteTimer = promoteAfter === undefined ? undefined : setTimeout(promote, promoteAfter);
    // The terminal echoes the Enter: one more line to move up over at the next redraw.
    const onKey = () => {
      if (tty && drawn > 0) drawn++;
      promote();
    };
    if (process.stdin.isTTY) process.stdin.on("data", onKey);

    // The status loop: probe every listener, ask PostgreSQL for the lag, haproxy for its view.
    const stepMs = tty ? 500 : 1000;
    for (;;) {
      const lines = await Promise.all(nodes.map((n) => statusLine(n, haproxy?.statsSocket)));
      if (tty && drawn > 0) process.stdout.write(`\x1b[${drawn}A\x1b[J`);
      for (const line of lines) process.stdout.write(`${elapsed()}  ${line}\n`);
      drawn = tty ? lines.length : 0;
      if (config.durationMs !== undefined && performance.now() - started >= config.durationMs) break;
      await Bun.sleep(stepMs);
    }
    clearTimeout(promoteTimer);
    process.stdin.off("data", onKey);
    if (process.stdin.isTTY) process.stdin.pause();
    await promoting;
  } catch (err) {
    say(`demo failed: ${(err as Error).message}`);
    await cleanUp(children, pair, say);
    return 1;
  }
  await cleanUp(children, pair, say);
  return 0;
}

/** Stops the primary and promotes the standby; says so, and says why when it fails. */
async function failover(pair: PgPair, nodes: Node[], say: (line: string) => void): Promise<void> {
  try {
    say(
      `failover: stopping ${nodes[0]!.name} (pg_ctl stop -m fast), then promoting ${nodes[1]!.name} (pg_ctl promote)`,
    );
    await pair.primary.stop("fast");
    await pair.standby.promote();
    say(`failover: ${nodes[1]!.name} was promoted; watch its answer turn MASTER and haproxy follow`);
  } catch (err) {
    say(`failover failed: ${(err as Error).message}`);
  }
}

async function cleanUp(children: Child[], pair: PgPair, say: (line: string) => void): Promise<void> {
  say("cleaning up: stopping haproxy, replstatus and PostgreSQL, removing the temp dir");
  await Promise.all(children.map((c) => c[Symbol.asyncDispose]()));
  children.length = 0;
  await pair.stop();
}

/** The command that runs this program: `bun main.ts`, or the compiled binary alone. */
function self(): string[] {
  return Bun.main.startsWith("/$bunfs/") ? [process.execPath] : [process.execPath, Bun.main];
}

/** A replstatus for one node, raw and agent listeners; its log lines, without the timestamp, are the demo's events. */
function startNode(name: string, pg: PgNode, dir: string, say: (line: string) => void): Promise<Responder> {
  const args = ["--listen", "127.0.0.1:0", "--listen", "agent:127.0.0.1:0", "--db", pg.url];
  return startResponder([...args, "--control-socket", join(dir, `${name}.control.sock`)], {}, [], {
    command: self(),
    onLine: (line) => {
      if (line && !line.includes(" serving ")) say(`${name} replstatus: ${line.replace(/^\S+ /, "")}`);
    },
  });
}

/** haproxy in front of both nodes with the tcp-check configuration of the README; undefined when not installed. */
async function startRouting(nodes: Node[]): Promise<Haproxy | undefined> {
  if (!findHaproxy()) return undefined;
  const haproxy = await startHaproxy({
    timeouts: ["timeout connect 1s", "timeout client 1h", "timeout server 1h"],
    proxies: {
      pgcluster: [
        "option tcp-check",
        "tcp-check expect string MASTER",
        "default-server inter 200ms fastinter 100ms rise 2 fall 2 on-marked-down shutdown-sessions",
        ...nodes.map((n) => `server ${n.name} 127.0.0.1:${n.pg.port} check port ${n.rawPort}`),
      ],
    },
  });
  // haproxy 2.6 starts every server UP until its checks say otherwise (it has no init-state):
  // wait for its first verdicts, so the first status lines do not show the standby as a target.
  await waitFor("haproxy's first checks", async () => {
    const states = await Promise.all(nodes.map((n) => haproxyStatus(haproxy.statsSocket, n.name)));
    return states.every((s) => s === "DOWN" || s.startsWith("UP ("));
  });
  return haproxy;
}

async function statusLine(node: Node, statsSocket: string | undefined): Promise<string> {
  const [raw, agent, lag, routed] = await Promise.all([
    request({ host: "127.0.0.1", port: node.rawPort }, undefined, 2000).then(
      (text) => text.trim(),
      () => "(no answer)",
    ),
    request({ host: "127.0.0.1", port: node.agentPort }, undefined, 2000).then(
      (text) => text.trim(),
      () => "(no answer)",
    ),
    node.pg
      .sql(
        "select case when pg_is_in_recovery() then pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) end",
      )
      .then((bytes) => (bytes === "" ? "-" : `${bytes} B`))
      .catch(() => "down"),
    statsSocket ? haproxyStatus(statsSocket, node.name) : Promise.resolve(""),
  ]);
  const cells = [
    node.name.padEnd(6),
    `raw ${raw.padEnd(8)}`,
    `agent ${JSON.stringify(agent).padEnd(24)}`,
    `replay lag ${lag.padEnd(8)}`,
  ];
  if (statsSocket) cells.push(`haproxy ${routed}`);
  return cells.join("  ");
}

async function haproxyStatus(statsSocket: string, server: string): Promise<string> {
  try {
    const [header, ...rows] = (await statsCommand(statsSocket, "show stat", 2000)).trim().split("\n");
    const keys = header!.replace(/^# /, "").split(",");
    const row = rows.map((r) => r.split(",")).find((r) => r[0] === "pgcluster" && r[1] === server);
    const status = row?.[keys.indexOf("status")] ?? "?";
    return status.startsWith("UP") ? `${status} (routes here)` : status;
  } catch {
    return "?";
  }
}
