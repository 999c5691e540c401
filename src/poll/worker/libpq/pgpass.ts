// The password file (PostgreSQL docs, "The Password File"): lines of
// hostname:port:database:username:password, the first match wins, `*` matches
// anything in the first four fields, `\` escapes `:` and `\`. A host name of
// localhost also matches a connection over the default socket directory. On
// Unix the file is ignored, with a warning, when group or others may read it.

/** What a line is matched against. */
export interface PassKey {
  /** The host setting: a name, an address, or a socket directory. */
  host: string;
  port: string;
  dbname: string;
  user: string;
}

/** The fields of one line, unescaped; undefined for a comment or a short line. */
export function splitPassLine(line: string): string[] | undefined {
  if (line.startsWith("#")) return undefined;
  const fields: string[] = [];
  let field = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) {
      field += line[++i];
    } else if (c === ":" && fields.length < 4) {
      fields.push(field);
      field = "";
    } else if (c === ":") {
      // libpq ends the password at an unescaped colon.
      break;
    } else {
      field += c;
    }
  }
  if (fields.length < 4) return undefined;
  fields.push(field);
  return fields;
}

/**
 * The password of the first line that matches, or undefined. `socketDirs`
 * are the directories that count as "the default socket directory", for which
 * a line's host `localhost` matches.
 */
export function lookupPassword(text: string, key: PassKey, socketDirs: readonly string[]): string | undefined {
  const host = key.host === "" || socketDirs.includes(key.host) ? "localhost" : key.host;
  const wanted = [host, key.port, key.dbname, key.user];
  for (const raw of text.split("\n")) {
    const fields = splitPassLine(raw.replace(/\r$/, ""));
    if (!fields) continue;
    if (wanted.every((w, i) => fields[i] === "*" || fields[i] === w)) return fields[4];
  }
  return undefined;
}

/** Why a password file is ignored (a warning), from its stat mode; undefined when it may be used. */
export function passFileProblem(path: string, mode: number): string | undefined {
  if ((mode & 0o170000) !== 0o100000) return `password file "${path}" is not a plain file`;
  if ((mode & 0o077) !== 0) {
    return `password file "${path}" has group or world access; permissions should be u=rw (0600) or less`;
  }
  return undefined;
}
