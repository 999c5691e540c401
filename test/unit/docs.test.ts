// README.md, docs/, --help and the option table must say the same thing, and
// links resolve. That haproxy accepts every configuration the docs show:
// test/e2e/docs-haproxy.test.ts.
import { expect, test } from "bun:test";
import { dirname, join, normalize } from "node:path";
import { OPTIONS } from "../../src/config/options.ts";
import { DOCS, text } from "../kit/docs.ts";

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
