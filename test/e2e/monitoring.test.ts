// The monitoring that ships in contrib/: the alert rules against their promtool
// unit tests, then the rules and the Grafana dashboard's queries in a real
// Prometheus scraping two real replstatus nodes of a throwaway pair.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track, trackDir, untrack, untrackDir } from "../../src/demo/cleanup.ts";
import { freePort, startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { ROOT, startResponder, type Responder } from "../../src/demo/responder.ts";

const PROMETHEUS_DIR = join(ROOT, "contrib", "prometheus");
const RULES = join(PROMETHEUS_DIR, "replstatus-rules.yml");

interface RulesFile {
  groups: { name: string; rules: { alert: string; expr: string; for?: string }[] }[];
}

function rulesFile(): RulesFile {
  return Bun.YAML.parse(readFileSync(RULES, "utf8")) as RulesFile;
}

function run(cmd: string[], cwd = ROOT) {
  const r = Bun.spawnSync(cmd, { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("alert rules", () => {
  test("promtool check rules: valid, every rule an alert", () => {
    const r = run(["promtool", "check", "rules", RULES]);
    expect(r).toMatchObject({ code: 0, stdout: expect.stringContaining("SUCCESS: 8 rules found") });
  });

  test("promtool test rules: every alert fires after its for:, not before, and not on look-alikes", () => {
    const r = run(["promtool", "test", "rules", "replstatus-rules.test.yml"], PROMETHEUS_DIR);
    expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({
      code: 0,
      out: "Unit Testing:  replstatus-rules.test.yml\n  SUCCESS\n\n",
    });
  });

  test("the unit tests cover every alert of the rules file", () => {
    const alerts = rulesFile().groups.flatMap((g) => g.rules.map((r) => r.alert));
    const tests = Bun.YAML.parse(readFileSync(join(PROMETHEUS_DIR, "replstatus-rules.test.yml"), "utf8")) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const firing = new Set(
      tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)),
    );
    expect(alerts.filter((a) => !firing.has(a))).toEqual([]);
  });
});

interface Panel {
  title: string;
  type: string;
  datasource: { type: string; uid: string };
  targets: { expr: string; legendFormat: string }[];
}
interface Dashboard {
  title: string;
  uid: string;
  templating: { list: { name: string; type: string; query: string | { query: string }; allValue?: string }[] };
  panels: Panel[];
}

const dashboard = JSON.parse(readFileSync(join(ROOT, "contrib", "grafana", "replstatus.json"), "utf8")) as Dashboard;

/** A panel's query as Grafana sends it with every node selected. */
function expand(expr: string): string {
  return expr.replaceAll("$job", "replstatus").replaceAll("$instance", ".*").replaceAll("$__rate_interval", "5s");
}

test("the dashboard takes its Prometheus from a variable, and selects by job and node", () => {
  const variables = dashboard.templating.list.map((v) => `${v.name}:${v.type}`);
  expect(variables).toEqual(["datasource:datasource", "job:query", "instance:query"]);
  expect(dashboard.templating.list[0]!.query).toBe("prometheus");
  expect(dashboard.templating.list[2]!.allValue).toBe(".*");
  for (const panel of dashboard.panels) {
    expect({ panel: panel.title, datasource: panel.datasource }).toEqual({
      panel: panel.title,
      datasource: { type: "prometheus", uid: "${datasource}" },
    });
    for (const t of panel.targets) {
      const selects = t.expr.includes('job=~"$job", instance=~"$instance"');
      expect({ panel: panel.title, selects }).toEqual({ panel: panel.title, selects: true });
    }
  }
});

describe("a real Prometheus scraping two real nodes", () => {
  let pg: PgPair;
  let dir: string;
  let prometheus: Bun.Subprocess | undefined;
  let api: string;
  const nodes: { r: Responder; target: string }[] = [];

  /** GET /api/v1/<path>; the data, or throws with Prometheus' error. */
  async function get<T>(path: string): Promise<T> {
    const res = await fetch(`${api}/api/v1/${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus: ${path}: ${body.error}`);
    return body.data;
  }
  type Vector = { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
  const query = (q: string) => get<Vector>(`query?query=${encodeURIComponent(q)}`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "replstatus-prometheus-"));
    trackDir(dir);
    pg = await startPair();
    // Each node names the other as its peer, so the guard's metrics are there too.
    const http = [await freePort(), await freePort()];
    const metrics = [await freePort(), await freePort()];
    for (const [i, node] of [pg.primary, pg.standby].entries()) {
      const args = ["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${http[i]}`];
      args.push("--metrics-listen", `127.0.0.1:${metrics[i]}`, "--peer", `http://127.0.0.1:${http[1 - i]}`);
      nodes.push({ r: await startResponder(args, node.env), target: `127.0.0.1:${metrics[i]}` });
    }
    // The shipped rules with every for: at 1s, so that an UNKNOWN node alerts within the test.
    const rules = readFileSync(RULES, "utf8").replace(/^(\s+for:) \S+$/gm, "$1 1s");
    writeFileSync(join(dir, "rules.yml"), rules);
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }",
        "rule_files: [rules.yml]",
        "scrape_configs:",
        "  - job_name: replstatus",
        `    static_configs: [{ targets: [${nodes.map((n) => `"${n.target}"`).join(", ")}] }]`,
        "",
      ].join("\n"),
    );
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = Bun.spawn(
      [
        "prometheus",
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { cwd: dir, stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    track(prometheus.pid);
    await waitFor("prometheus to be ready", async () => (await fetch(`${api}/-/ready`)).ok, 60_000, 100);
    await waitFor("both targets up", async () => (await query("up == 1")).result.length === 2, 30_000, 200);
  }, 180_000);

  afterAll(async () => {
    if (prometheus) {
      prometheus.kill("SIGTERM");
      await prometheus.exited;
      untrack(prometheus.pid);
    }
    for (const { r } of nodes) await r[Symbol.asyncDispose]();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
    untrackDir(dir);
  });

  test("every panel's query parses and returns data", async () => {
    const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: expand(t.expr) })));
    for (const q of queries) {
      // A parse error is an answer, not a wait: get() throws it at once.
      await query(q.expr);
      await waitFor(
        `data for "${q.panel}": ${q.expr}`,
        async () => (await query(q.expr)).result.length > 0,
        30_000,
        250,
      );
    }
  });

  test("the state panel reads MASTER (1) for the primary and STANDBY (2) for the standby", async () => {
    const expr = expand(dashboard.panels.find((p) => p.title === "State per node")!.targets[0]!.expr);
    const byNode = Object.fromEntries((await query(expr)).result.map((s) => [s.metric.instance, s.value[1]]));
    expect(byNode).toEqual({ [nodes[0]!.target]: "1", [nodes[1]!.target]: "2" });
    const info = await query("replstatus_cluster_info");
    const ids = new Set(info.result.map((s) => s.metric.system_identifier));
    expect({ series: info.result.length, clusters: ids.size }).toEqual({ series: 2, clusters: 1 });
  });

  test("the variables' label queries find the job and both nodes", async () => {
    const jobs = await get<string[]>(`label/job/values?match[]=replstatus_state`);
    const instances = await get<string[]>(
      `label/instance/values?match[]=${encodeURIComponent('replstatus_state{job=~"replstatus"}')}`,
    );
    expect({ jobs, instances: instances.sort() }).toEqual({
      jobs: ["replstatus"],
      instances: nodes.map((n) => n.target).sort(),
    });
  });

  test("the shipped rules are loaded, and ReplstatusUnknown fires when a node goes UNKNOWN", async () => {
    type Rules = { groups: { name: string; rules: { name: string; health: string }[] }[] };
    const shipped = rulesFile().groups.flatMap((g) => g.rules.map((r) => `${r.alert} ok`));
    const loaded = await waitFor("every rule evaluated, without error", async () => {
      const now = (await get<Rules>("rules")).groups.flatMap((g) => g.rules.map((r) => `${r.name} ${r.health}`));
      return now.every((r) => r.endsWith(" ok")) && now;
    });
    expect(loaded).toEqual(shipped);
    type Alerts = { alerts: { labels: Record<string, string>; state: string }[] };
    const firing = async () =>
      (await get<Alerts>("alerts")).alerts
        .filter((a) => a.state === "firing")
        .map((a) => `${a.labels.alertname} ${a.labels.instance ?? ""}`);
    expect(await firing()).toEqual([]);

    await pg.standby.stop();
    await nodes[1]!.r.waitForLog(/-> unknown/);
    await waitFor(
      "ReplstatusUnknown to fire",
      async () => (await firing()).includes(`ReplstatusUnknown ${nodes[1]!.target}`),
      30_000,
      250,
    );
    const alerts = await query('ALERTS{alertname="ReplstatusUnknown", alertstate="firing"}');
    expect(alerts.result.map((s) => s.metric.instance)).toEqual([nodes[1]!.target]);
    expect((await firing()).filter((a) => a.startsWith("ReplstatusMoreThanOnePrimary"))).toEqual([]);
  });
});
