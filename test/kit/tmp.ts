// Temp dirs of a test file: made at once, removed after its tests (or its describe block's), also
// when one fails; and numbered files written into one.
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A new dir under the system's temp dir, named `prefix` plus a unique tail; removed in afterAll. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes each text to the next file `<name><n><ext>` in `dir` (n from 0) and returns its path. */
export function numberedFiles(dir: string, name: string, ext: string): (text: string) => string {
  let n = 0;
  return (text) => {
    const path = join(dir, `${name}${n++}${ext}`);
    writeFileSync(path, text);
    return path;
  };
}
