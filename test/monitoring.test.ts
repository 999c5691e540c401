// The monitoring that ships in contrib/: the alert rules against their promtool
// unit tests.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../src/testkit/responder.ts";

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
