// What the docs show must work with the real haproxy: every configuration block
// of README.md, ARCHITECTURE.md, bench/README.md and docs/ passes `haproxy -c`.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { haproxyBinary } from "../../src/demo/haproxy.ts";
import { DOCS, text } from "../kit/docs.ts";
import { tempDir } from "../kit/tmp.ts";

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
const dir = tempDir("rs-docs-");

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
