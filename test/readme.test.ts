// README.md, --help and the option table must say the same thing.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { OPTIONS } from "../src/config/options.ts";
import { ROOT } from "../src/testkit/responder.ts";

const readme = readFileSync(join(ROOT, "README.md"), "utf8");

test.each(OPTIONS.filter((o) => o.arg !== undefined).map((o) => [o.name, o.default ?? ""] as const))(
  "README's flag table has --%s with default %j",
  (name, def) => {
    const row = readme.split("\n").find((l) => l.startsWith(`| \`--${name} `));
    expect(row).toBeDefined();
    const cells = row!.split("|").map((c) => c.trim());
    expect(cells[2]).toBe(def === "" ? "" : `\`${def}\``);
  },
);

test("README names no flag the program lacks", () => {
  const known = new Set(OPTIONS.map((o) => o.name));
  const named = [...readme.matchAll(/`--([a-z][a-z-]*)/g)].map((m) => m[1]!);
  expect(named.filter((n) => !known.has(n))).toEqual([]);
});
