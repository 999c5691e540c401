// README.md, docs/, --help and the option table must say the same thing, and
// links resolve. That haproxy accepts every configuration the docs show:
// test/e2e/docs-haproxy.test.ts. What the docs and tests claim stays true: every
// figure in docs/benchmarks.md names the command that makes it, every command the
// docs name exists, every repository path a comment names exists, and no test
// skips or asserts only sometimes unless ALLOWED says why.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, normalize } from "node:path";
import pkg from "../../package.json";
import { OPTIONS } from "../../src/config/options.ts";
import { DOCS, text } from "../kit/docs.ts";
import { ROOT } from "../../src/demo/responder.ts";

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

/** The flags a list item of docs/configuration.md's reload section names, by the item's first words. */
function reloadList(lead: string): string[] {
  const section = text("docs/configuration.md").split("## Configuration file and reload")[1]!;
  const item = section.split("\n- ").find((i) => i.startsWith(lead));
  return [...(item ?? "").matchAll(/`--([a-z-]+)`/g)].map((m) => m[1]!);
}

test.each([
  ["applied in place", ["live"]],
  ["read again from their files", ["reread"]],
  ["reported as waiting for a restart", ["restart"]],
] as const)(
  "docs/configuration.md's reload list %j names exactly the table's %j options, in --help order",
  (lead, kinds) => {
    const want = OPTIONS.filter((o) => (kinds as readonly string[]).includes(String(o.reload))).map((o) => o.name);
    expect(reloadList(lead)).toEqual(want);
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

function filesUnder(dir: string, ext: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((f) => {
    const path = `${dir}/${f}`;
    if (f === "node_modules") return [];
    return statSync(join(ROOT, path)).isDirectory() ? filesUnder(path, ext) : path.endsWith(ext) ? [path] : [];
  });
}

/** A measured figure: a number with a unit or a ratio (`19.4k`, `0.38%`, `4.85 ms`, `1.08x`, `50.6 MB`). */
const FIGURE = /\d(?:[\d.,]*\d)?\s?(?:ms|µs|us|s|%|MB|kB|GB|k|x)(?![\w-])/;
/** A command that makes figures: `bun run bench ...`, `bun bench/<script> ...`, `bun test <file>`, `npm run <script>`. */
const COMMAND = /`((?:npx )?bun (?:run bench|bench\/|test )[^`]*|npm run [^`]*)`/g;

/** docs/benchmarks.md cut into rows: a table's rows one by one, a paragraph or a list item whole. */
function blocks(markdown: string): string[] {
  const out: string[] = [];
  let prose: string[] = [];
  const flush = () => (prose.length > 0 && out.push(prose.join(" ")), (prose = []));
  for (const line of markdown.split("\n")) {
    if (line.startsWith("|")) {
      flush();
      if (!/^\|[\s|:-]+\|$/.test(line)) out.push(line);
    } else if (line.trim() === "" || line.startsWith("#") || line.startsWith("- ")) {
      flush();
      if (line.startsWith("- ")) prose.push(line);
    } else prose.push(line);
  }
  flush();
  return out;
}

test("every figure in docs/benchmarks.md sits in a row or paragraph that names the command making it", () => {
  const orphans = blocks(text("docs/benchmarks.md")).filter(
    (b) => FIGURE.test(b.replace(/`[^`]*`/g, "")) && [...b.matchAll(COMMAND)].length === 0,
  );
  expect(orphans).toEqual([]);
});

const BENCH_PARTS = (/const PARTS = \[([^\]]*)\]/.exec(text("bench/run.ts"))?.[1] ?? "")
  .split(",")
  .map((p) => p.trim().replaceAll('"', ""));

/** Why a command the docs name cannot run as written, or undefined when it can. */
function commandProblem(command: string): string | undefined {
  const words = command.replace(/^npx /, "").split(/\s+/);
  if (words[0] === "npm" && words[1] === "run") {
    return words[2]! in pkg.scripts ? undefined : `no npm script ${words[2]}`;
  }
  if (words[1] === "run" && words[2] === "bench") {
    const only = words.indexOf("--only");
    const parts = only < 0 ? [] : words[only + 1]!.split(",");
    const unknown = parts.filter((p) => !BENCH_PARTS.includes(p));
    return unknown.length > 0 ? `no bench part ${unknown.join(", ")}` : undefined;
  }
  const file = words[1] === "test" ? words[2]! : words[1]!;
  return existsSync(join(ROOT, file)) ? undefined : `no file ${file}`;
}

test("the bench knows its parts", () => {
  expect(BENCH_PARTS).toContain("failover");
});

test.each(DOCS)("every bench or test command %s names runs a script of the repository", (path) => {
  const broken = [...text(path).matchAll(COMMAND)]
    .map((m) => m[1]!)
    .filter((c) => commandProblem(c) !== undefined)
    .map((c) => `${c}: ${commandProblem(c)}`);
  expect(broken).toEqual([]);
});

const CODE = ["src", "test", "bench", "packaging"].flatMap((d) => filesUnder(d, ".ts"));

/** The comments of a TypeScript file: line comments and the lines of block comments. */
function comments(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/\/\*[\s\S]*?\*\/|(?<![:"'`\\])\/\/.*$/gm)) out.push(m[0]);
  return out;
}

/**
 * A path of the repository: one under src, test, bench, docs, packaging or contrib, or a TypeScript or
 * Markdown file named by folder and file (resolved from the root, the comment's folder or src). A path
 * after a possessive (postgres 3.4's src/connection.js) is another project's.
 */
const PATH =
  /(?<![\w/.@:~-]|'s )((?:src|test|bench|docs|packaging|contrib)\/[\w./-]*[\w]|[\w-]+(?:\/[\w.-]+)+\.(?:ts|md))/g;

test.each(CODE)("every repository path a comment of %s names exists", (path) => {
  const here = dirname(path);
  const missing: string[] = [];
  for (const comment of comments(text(path))) {
    for (const [, p] of comment.matchAll(PATH)) {
      const candidates = [p!, join(here, p!), join("src", p!)];
      if (!candidates.some((c) => existsSync(join(ROOT, c)))) missing.push(p!);
    }
  }
  expect(missing).toEqual([]);
});

/**
 * Skips and assertions that hold only sometimes, allowed where a reason says why; keyed by the test file's
 * name and the condition as written. Anything else is a test that can pass without asserting.
 */
const ALLOWED: Record<string, string> = {
  "options.test.ts if (o.arg === undefined)": "a table case: a switch (no argument) has no default",
  "conninfo.test.ts if (want === undefined)": "a table case with an else: each case asserts one of the two",
  'ops.test.ts if (f.type === "COUNTER")': "a table case: only a counter's name must end in _total",
  "cli.test.ts if (o.default !== undefined)": "a table case: only an option with a default shows one in --help",
};

function conditionals(path: string, source: string): string[] {
  const name = basename(path);
  const found: string[] = [];
  for (const m of source.matchAll(/\.(skipIf|skip|todo|if|only)\b(\([^)]*\))?/g)) {
    if (/^\s*describe|test|it\b/.test(source.slice(source.lastIndexOf("\n", m.index) + 1, m.index))) {
      found.push(`${name} ${m[1]}${m[2] ?? ""}`);
    }
  }
  for (const m of source.matchAll(/\bif (\(.*\)) (\{|expect\()/g)) {
    // `if (c) expect(...)`, or `if (c) { ... }` with an expect inside the braces.
    let end = m.index! + m[0].length - 1;
    for (let depth = 0; m[2] === "{" && end < source.length; end++) {
      if (source[end] === "{") depth++;
      else if (source[end] === "}" && --depth === 0) break;
    }
    if (m[2] !== "{" || /\bexpect\(/.test(source.slice(m.index!, end))) found.push(`${name} if ${m[1]}`);
  }
  return found;
}

test("no test skips or asserts only under a condition, outside the allow list", () => {
  const tests = filesUnder("test", ".test.ts").filter((p) => !p.endsWith("unit/docs.test.ts"));
  const found = tests.flatMap((p) => conditionals(p, text(p)));
  expect(found.filter((f) => !(f in ALLOWED))).toEqual([]);
  // An entry nothing uses any more goes.
  expect(Object.keys(ALLOWED).filter((k) => !found.includes(k))).toEqual([]);
});

test("every package a test's hint says to install is one .ci/run installs", () => {
  const ci = text(".ci/run");
  // The table (command -> package), and PostgreSQL's server, which it installs apart.
  const installed = [...ci.matchAll(/^\s+\[[\w-]+\]=([\w.+-]+)$|missing\+=\((postgresql)\)/gm)].map(
    (m) => m[1] ?? m[2],
  );
  const hinted = ["test/kit", "test/e2e", "src/demo"]
    .flatMap((d) => filesUnder(d, ".ts"))
    .flatMap((p) => [...text(p).matchAll(/apt-get install -y ([a-z][\w.+-]*)/g)].map((m) => `${p}: ${m[1]}`));
  expect(hinted.length).toBeGreaterThan(3);
  expect(hinted.filter((h) => !installed.includes(h.split(": ")[1]!))).toEqual([]);
});
