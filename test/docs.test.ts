// README.md, docs/, --help and the option table must say the same thing, and
// what the docs show must work: links resolve, haproxy accepts every
// configuration they show.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { OPTIONS } from "../src/config/options.ts";
import { haproxyBinary } from "../src/testkit/haproxy.ts";
import { ROOT } from "../src/testkit/responder.ts";

const DOCS = [
  "README.md",
  "ARCHITECTURE.md",
  "bench/README.md",
  ...readdirSync(join(ROOT, "docs")).map((f) => `docs/${f}`),
];
const text = (path: string) => readFileSync(join(ROOT, path), "utf8");
/** The flag tables: docs/configuration.md's, and README's for `replstatus demo`. */
const flagTables = text("docs/configuration.md") + text("README.md");

test.each(OPTIONS.filter((o) => o.arg !== undefined).map((o) => [o.name, o.default ?? ""] as const))(
  "the flag tables have --%s with default %j",
  (name, def) => {
    const row = flagTables.split("\n").find((l) => l.startsWith(`| \`--${name} `));
    expect(row).toBeDefined();
    const cells = row!.split("|").map((c) => c.trim());
    expect(cells[2]).toBe(def === "" ? "" : `\`${def}\``);
  },
);

// bench/README.md is left out: it documents the bench's own flags.
test.each(DOCS.filter((path) => !path.startsWith("bench/")))("%s names no flag the program lacks", (path) => {
  const names = OPTIONS.map((o) => o.name);
  // `--tls-*` names a family: a prefix of known flags.
  const known = (n: string) => (n.endsWith("-") ? names.some((name) => name.startsWith(n)) : names.includes(n));
  const named = [...text(path).matchAll(/`--([a-z][a-z-]*)/g)].map((m) => m[1]!);
  expect(named.filter((n) => !known(n))).toEqual([]);
});

/** GitHub's anchor of a heading. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\w\- ]/g, "")
    .replaceAll(" ", "-");
}

test.each(DOCS)("every link of %s leads to a file of the repository, and to a heading there", (path) => {
  const broken: string[] = [];
  for (const [, link] of text(path).matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^https?:/.test(link!)) continue;
    const [file, anchor] = link!.split("#");
    const target = file ? normalize(join(dirname(path), file)) : path;
    let body: string;
    try {
      body = text(target);
    } catch {
      broken.push(`${link}: no file ${target}`);
      continue;
    }
    const headings = [...body.matchAll(/^#{1,6} (.*)$/gm)].map((m) => slug(m[1]!));
    if (anchor && target.endsWith(".md") && !headings.includes(anchor)) broken.push(`${link}: no heading #${anchor}`);
  }
  expect(broken).toEqual([]);
});

// A block that starts with a section keyword is a whole configuration (or a
// part that needs only global and defaults); haproxy -c checks it as it is. A
// backend alone is fine: haproxy then says it has no error but no listener.
const NO_LISTENER = "Configuration file has no error but will not start (no listener) => exit(2).";
const SECTION = /^(frontend|backend|listen|defaults|global)\b/;
const blocks = DOCS.flatMap((path) =>
  [...text(path).matchAll(/^```\w*\n([\s\S]*?)^```/gm)]
    .map((m) => m[1]!)
    .filter((block) => SECTION.test(block))
    .map((block, i) => [`${path} #${i + 1}`, block] as const),
);
const dir = mkdtempSync(join(tmpdir(), "rs-docs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the docs show haproxy configurations", () => {
  expect(blocks.length).toBeGreaterThan(3);
});

test.each(blocks)("haproxy -c accepts the configuration of %s", (name, block) => {
  const head =
    block.includes("\ndefaults") || block.startsWith("defaults")
      ? ""
      : "defaults\n\tmode tcp\n\ttimeout connect 1s\n\ttimeout client 1m\n\ttimeout server 1m\n\n";
  const file = join(dir, `${name.replace(/\W+/g, "_")}.cfg`);
  writeFileSync(file, head + block);
  const r = Bun.spawnSync([haproxyBinary(), "-c", "-f", file], { stdout: "pipe", stderr: "pipe" });
  const out = `${r.stdout}${r.stderr}`.trim();
  const ok = r.exitCode === 0 || (r.exitCode === 2 && out === NO_LISTENER);
  expect({ name, code: ok ? 0 : r.exitCode, out: ok ? "" : out }).toEqual({
    name,
    code: 0,
    out: "",
  });
});
