// Whether the tests' load slack (LOAD_SLACK_MS in test/kit/bounds.ts) is enough: the tests that assert a
// promised time bound, run again and again in a row beside a CPU hog on every core. Prints one line per run
// and the failure count; exits 1 when a run failed. See bench/README.md, "Tests and benchmarks".
//
//   bun bench/slack.ts [--runs 20] [--hogs N (default: one per core)] [--only chaos,restart]
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

/** The e2e files with a timing-bound test, and the names of those tests (bun test -t). */
const FILES = ["chaos", "responder", "http", "restart", "lifecycle", "fence", "haproxy", "partition"];
const TIMED = [
  "kill -9, restart, SIGSTOP",
  "SIGSTOP of every PostgreSQL",
  "fast shutdown: UNKNOWN promptly",
  "kill -9 of the postmaster and its children",
  "promotion flips the standby",
  "mid-head gets 400",
  "dripped past 2 s",
  "do not hold up the others",
  "SIGTERM and SIGINT exit 0",
  "smart shutdown with a client",
  "stopped for 10 s is MASTER again",
  "warm standby",
  "promote s2 and leave s1 running",
  "peer ",
  "after promoting the standby and stopping",
  "stops saying MASTER within",
  "documented availability over fencing",
];

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "20" },
    hogs: { type: "string", default: String(cpus().length) },
    only: { type: "string" },
  },
  strict: true,
});
const runs = Number(values.runs);
const hogs = Number(values.hogs);
const files = values.only?.split(",") ?? FILES;
const unknown = files.filter((f) => !FILES.includes(f));
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(hogs) || hogs < 0 || unknown.length > 0) {
  console.error(`slack: --runs and --hogs take integers; --only takes some of ${FILES.join(", ")}`);
  process.exit(2);
}

const root = join(import.meta.dir, "..");
const paths = files.map((f) => `test/e2e/${f}.test.ts`);
// Each hog is a busy loop in a process of its own, killed in the finally below (and by its own deadline).
const hogDeadlineS = runs * 900;
const spinning = Array.from({ length: hogs }, () =>
  Bun.spawn(["timeout", String(hogDeadlineS), "sh", "-c", "while :; do :; done"], {
    stdio: ["ignore", "ignore", "ignore"],
  }),
);
let failed = 0;
try {
  for (let i = 1; i <= runs; i++) {
    const t0 = performance.now();
    const test = Bun.spawn(["npx", "bun", "test", "--timeout", "120000", "-t", TIMED.join("|"), ...paths], {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err] = await Promise.all([new Response(test.stdout).text(), new Response(test.stderr).text()]);
    const code = await test.exited;
    const lines = `${out}\n${err}`.split("\n");
    // bun lists each failure twice (in place, and in the summary): once each here, with its first error line.
    const fails = [...new Set(lines.filter((l) => l.startsWith("(fail)")))].map((f) => {
      const at = lines.indexOf(f);
      const from = lines.slice(0, at).findLastIndex((l) => /^\((pass|fail)\)/.test(l)) + 1;
      const own = lines.slice(from, at).filter((l) => /^(error: |Expected|Received)/.test(l));
      return [f, ...own].join("\n    ");
    });
    const passes = lines.filter((l) => l.startsWith("(pass)")).length;
    // A renamed test would drop out of -t in silence: with every file run, each name must have run.
    const lost = values.only
      ? []
      : TIMED.filter((name) => !lines.some((l) => /^\((pass|fail)\)/.test(l) && l.includes(name)));
    if (code !== 0 || lost.length > 0) failed++;
    const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
    console.log(
      `run ${i}: exit ${code}, ${passes} passed, ${fails.length} failed, ` +
        `${((performance.now() - t0) / 1000).toFixed(0)} s, load average ${load}`,
    );
    for (const f of fails) console.log(`  ${f}`);
    for (const name of lost) console.log(`  no test named "${name}" ran`);
  }
} finally {
  for (const h of spinning) h.kill();
}
console.log(`${failed} of ${runs} runs failed, beside ${hogs} CPU hog(s)`);
process.exit(failed === 0 ? 0 : 1);
