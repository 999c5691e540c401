// The connection service file (PostgreSQL docs, "The Connection Service File"): INI-style sections of keyword=value
// lines; the user's file first, then PGSYSCONFDIR's; the first file holding the service wins, and fills only what the
// connection string left unset.
import { checkKeyword, type Conninfo } from "./conninfo.ts";
import { ReplstatusError } from "../../../errors.ts";

/**
 * The settings of `name` in the text of one service file, or undefined when
 * the file has no such section. Throws CONNINFO_FILE naming the file and
 * line for a line libpq would refuse.
 */
export function findService(text: string, path: string, name: string): Conninfo | undefined {
  let found: Conninfo | undefined;
  let inSection = false;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `service file "${path}", line ${n + 1}`;
    if (line.startsWith("[")) {
      // The section is done: libpq stops at the next one.
      if (found) return found;
      if (!line.endsWith("]")) throw new ReplstatusError("CONNINFO_FILE", `syntax error in ${where}`);
      inSection = line.slice(1, -1) === name;
      if (inSection) found = {};
      continue;
    }
    if (!inSection) continue;
    const eq = line.indexOf("=");
    if (eq < 0) throw new ReplstatusError("CONNINFO_FILE", `syntax error in ${where}`);
    const key = line.slice(0, eq).trim();
    if (key === "service")
      throw new ReplstatusError("CONNINFO_FILE", `nested service specifications not supported in ${where}`);
    const keyword = checkKeyword(key, where, "CONNINFO_FILE");
    // The first setting of a keyword wins, as in libpq.
    if (found![keyword] === undefined) found![keyword] = line.slice(eq + 1);
  }
  return found;
}

/** Where libpq looks, in order: the user's file, then the system's. */
export function serviceFiles(env: Record<string, string | undefined>, home: string): string[] {
  return [env.PGSERVICEFILE || `${home}/.pg_service.conf`, `${env.PGSYSCONFDIR || SYSCONFDIR}/pg_service.conf`];
}

/** libpq's compiled-in sysconfdir on Debian and Ubuntu (pg_config --sysconfdir). */
export const SYSCONFDIR = "/etc/postgresql-common";
