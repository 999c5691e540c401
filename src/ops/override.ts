// The operator override kept on disk, so that a node put in drain or maint
// stays out across a restart, an upgrade, a crash. One file per responder
// (named by the first listener's port, as the control socket is) holding one
// word and a newline; no file means ready. It is read once at start-up, before
// the first answer, and written at every `replstatus drain|maint|ready`.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { MAINT, OVERRIDE_NAMES, READY, type Cell, type Override } from "../cell.ts";
import type { Logger } from "../log.ts";
import { prepareDir } from "./control.ts";

export function overridePath(dir: string, port: number): string {
  return `${dir}/replstatus-${port}.override`;
}

/** What the file says; a file that cannot be read or holds anything else is an error, to be taken as maint. */
export type SavedOverride = { override: Override } | { error: string };

const READ_LIMIT_BYTES = 64;

export function readOverride(path: string): SavedOverride {
  let text: string;
  try {
    text = readFileSync(path, "latin1");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") return { override: READY };
    return { error: e.code === "EACCES" ? "permission denied" : e.message };
  }
  const word = text.trim();
  const override = OVERRIDE_NAMES.indexOf(word as (typeof OVERRIDE_NAMES)[number]);
  if (override === -1) {
    return { error: `unexpected content ${JSON.stringify(text.slice(0, READ_LIMIT_BYTES))} (expected drain or maint)` };
  }
  return { override: override as Override };
}

/**
 * Saves the override: a new file renamed over the old one (a crash leaves
 * the old file or the new, never half of one), or no file for ready.
 * Returns an error text, or undefined when done.
 */
export function saveOverride(path: string, override: Override): string | undefined {
  const temp = `${path}.${process.pid}.tmp`;
  try {
    if (override === READY) {
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    } else {
      const fd = openSync(temp, "w", 0o600);
      try {
        writeSync(fd, `${OVERRIDE_NAMES[override]}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, path);
    }
    syncDir(dirname(path));
    return undefined;
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {}
    return (err as Error).message;
  }
}

// The rename or unlink is durable once the directory is.
function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The override to start with, and the line that says why; undefined when ready and nothing to say. */
export function startingOverride(
  path: string,
): { override: Override; level: "info" | "error"; line: string } | undefined {
  const saved = readOverride(path);
  if ("error" in saved) {
    return {
      override: MAINT,
      level: "error",
      line: `could not read override file ${path}: ${saved.error}; answering as under maint until replstatus ready, drain or maint`,
    };
  }
  if (saved.override === READY) return undefined;
  const word = OVERRIDE_NAMES[saved.override];
  return {
    override: saved.override,
    level: "info",
    line: `override ${word} kept from ${path} (replstatus ready clears it)`,
  };
}

/**
 * Applies the override saved before a restart (in --state-dir, else beside the control socket, named
 * by `port`); returns the file that keeps it. Throws CONTROL_FAILED for a state directory it cannot use.
 */
export function restoreOverride(
  stateDir: string | undefined,
  controlPath: string,
  port: number,
  cell: Cell,
  log: Logger,
): string {
  if (stateDir !== undefined) {
    prepareDir(stateDir, { what: "state directory", flag: "--state-dir", content: "the override file" });
  }
  const path = overridePath(stateDir ?? dirname(controlPath), port);
  const saved = startingOverride(path);
  if (saved) {
    cell.setOverride(saved.override);
    log[saved.level](saved.line);
  }
  return path;
}
