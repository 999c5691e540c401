// The repository's documentation as the docs tests read it: every file and its text.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../src/demo/responder.ts";

/** README.md, ARCHITECTURE.md, bench/README.md and every file of docs/, as paths from the root. */
export const DOCS = [
  "README.md",
  "ARCHITECTURE.md",
  "bench/README.md",
  ...readdirSync(join(ROOT, "docs")).map((f) => `docs/${f}`),
];

/** The text of a file of the repository, by its path from the root. */
export const text = (path: string): string => readFileSync(join(ROOT, path), "utf8");
