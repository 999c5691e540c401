#!/usr/bin/env bun
// `bun run package`: dist/replstatus_<version>_<arch>.deb, built with Debian's
// own tools (dpkg-deb, dpkg-shlibdeps from dpkg-dev) from the files in
// packaging/debian and the executable of `bun run build`. No debhelper: the
// tree is small enough to lay out by hand, and this way it is all in one place.
//   bun packaging/build.ts [--out DIR]
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import pkg from "../package.json";

const ROOT = join(import.meta.dir, "..");
const DEBIAN = join(import.meta.dir, "debian");

/** Where each file of packaging/debian goes in the installed system, and its mode. */
const LAYOUT: [from: string, to: string, mode: number][] = [
  ["replstatus@.service", "lib/systemd/system/replstatus@.service", 0o644],
  ["replstatus.service", "lib/systemd/system/replstatus.service", 0o644],
  ["replstatus-route.service", "lib/systemd/system/replstatus-route.service", 0o644],
  ["replstatus.socket", "lib/systemd/system/replstatus.socket", 0o644],
  ["replstatus@.socket", "lib/systemd/system/replstatus@.socket", 0o644],
  ["replstatus-patroni@.service", "lib/systemd/system/replstatus-patroni@.service", 0o644],
  ["replstatus.default", "etc/default/replstatus", 0o644],
  ["example.toml", "etc/replstatus/example.toml", 0o644],
  ["copyright", "usr/share/doc/replstatus/copyright", 0o644],
  ["lintian-overrides", "usr/share/lintian/overrides/replstatus", 0o644],
];
const SCRIPTS = ["postinst", "prerm", "postrm"];

class PackageError extends Error {}

/** Runs a command; its stdout, or a PackageError with its stderr. */
function run(cmd: string[], cwd = ROOT): string {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new PackageError(`could not run ${cmd[0]}: ${(r.stderr.toString() || r.stdout.toString()).trim()}`);
  }
  return r.stdout.toString();
}

function put(root: string, to: string, data: string | Uint8Array, mode: number): void {
  const path = join(root, to);
  mkdirSync(join(path, ".."), { recursive: true, mode: 0o755 });
  writeFileSync(path, data);
  chmodSync(path, mode);
}

/**
 * The executable, compiled by the build script's own command. Only it goes
 * into the tree: the .map files written beside it are also inside it.
 */
function compile(root: string, work: string): string {
  const built = join(work, "build", "replstatus");
  const command = pkg.scripts.build.replace(/^bun /, "").replace("dist/replstatus", built).split(" ");
  run([process.execPath, ...command]);
  const path = join(root, "usr/bin/replstatus");
  put(root, "usr/bin/replstatus", readFileSync(built), 0o755);
  return path;
}

/** The changelog's first entry must be this version: dpkg and lintian read it. */
function checkChangelog(text: string): void {
  const m = /^replstatus \(([^)]+)\)/.exec(text);
  if (m?.[1] !== pkg.version) {
    throw new PackageError(
      `could not use packaging/debian/changelog: its first entry is ${JSON.stringify(m?.[1] ?? "")}, package.json says ${pkg.version}`,
    );
  }
}

// A man page made from --help, so that it says what the executable does.
function manPage(binary: string, date: string): Uint8Array {
  const help = run([binary, "--help"]);
  const escape = (line: string) => line.replace(/\\/g, "\\e").replace(/^([.'])/, "\\&$1");
  const page = [
    `.TH REPLSTATUS 1 "${date}" "replstatus ${pkg.version}" "User Commands"`,
    ".SH NAME",
    "replstatus \\- tells a load balancer whether this PostgreSQL node is the primary",
    ".SH SYNOPSIS",
    "\\fBreplstatus\\fR [\\fIflags\\fR]",
    ".SH DESCRIPTION",
    ".nf",
    ...help.trimEnd().split("\n").map(escape),
    ".fi",
    ".SH FILES",
    "/etc/replstatus/VERSION-NAME.toml, read by the units replstatus@VERSION-NAME and",
    "replstatus-patroni@VERSION-NAME (which also reads /etc/patroni/VERSION-NAME.yml);",
    "/etc/default/replstatus, read by the unit replstatus.",
    "",
  ].join("\n");
  return gzipSync(page, { level: 9 });
}

// dpkg's Installed-Size: KiB, each file rounded up, as dpkg-gencontrol counts.
function installedSizeKiB(dir: string): number {
  let kib = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) kib += entry.name === "DEBIAN" ? 0 : 1 + installedSizeKiB(path);
    else kib += Math.ceil(statSync(path).size / 1024);
  }
  return kib;
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** The shared libraries' packages, by dpkg-shlibdeps, which wants a debian/control beside it. */
function depends(binary: string, work: string): string {
  mkdirSync(join(work, "debian"));
  writeFileSync(join(work, "debian/control"), "Source: replstatus\n\nPackage: replstatus\nArchitecture: any\n");
  const out = run(["dpkg-shlibdeps", "-O", "-e", binary], work);
  const m = /^shlibs:Depends=(.*)$/m.exec(out);
  if (!m) throw new PackageError(`could not find the executable's library dependencies: dpkg-shlibdeps said ${out}`);
  return m[1]!.trim();
}

function control(root: string, work: string, binary: string, arch: string): void {
  const text = readDebian("control")
    .replace("@VERSION@", pkg.version)
    .replace("@ARCH@", arch)
    .replace("@DEPENDS@", depends(binary, work))
    .replace("@INSTALLED_SIZE@", String(installedSizeKiB(root)));
  put(root, "DEBIAN/control", text, 0o644);
  put(root, "DEBIAN/conffiles", readDebian("conffiles"), 0o644);
  for (const script of SCRIPTS) put(root, `DEBIAN/${script}`, readDebian(script), 0o755);
  // md5sums of everything but the conffiles, as dh_md5sums writes it.
  const skip = new Set(readDebian("conffiles").trim().split("\n"));
  const sums = files(root)
    .map((path) => "/" + relative(root, path))
    .filter((path) => !path.startsWith("/DEBIAN/") && !skip.has(path))
    .map(
      (path) =>
        `${createHash("md5")
          .update(readFileSync(root + path))
          .digest("hex")}  ${path.slice(1)}`,
    );
  put(root, "DEBIAN/md5sums", sums.join("\n") + "\n", 0o644);
}

function readDebian(name: string): string {
  return readFileSync(join(DEBIAN, name), "utf8");
}

/** Builds the package into outDir; returns its path. */
export async function buildPackage(outDir = join(ROOT, "dist")): Promise<string> {
  const arch = run(["dpkg", "--print-architecture"]).trim();
  const changelog = readDebian("changelog");
  checkChangelog(changelog);
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(outDir, ".package-"));
  try {
    const root = join(work, "root");
    mkdirSync(root, { mode: 0o755 });
    const binary = compile(root, work);
    for (const [from, to, mode] of LAYOUT) put(root, to, readDebian(from), mode);
    put(root, "usr/share/doc/replstatus/changelog.gz", gzipSync(changelog, { level: 9 }), 0o644);
    const date = /  (\w{3}, \d+ \w{3} \d{4})/.exec(changelog)?.[1] ?? "";
    put(root, "usr/share/man/man1/replstatus.1.gz", manPage(binary, date), 0o644);
    control(root, work, binary, arch);
    const deb = join(outDir, `replstatus_${pkg.version}_${arch}.deb`);
    // gzip: xz takes minutes over a 100 MB executable on a busy 2-core machine.
    run(["dpkg-deb", "--build", "--root-owner-group", "-Zgzip", root, deb]);
    return deb;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const i = process.argv.indexOf("--out");
  try {
    const deb = await buildPackage(i === -1 ? undefined : process.argv[i + 1]);
    process.stdout.write(`${deb}\n`);
  } catch (err) {
    if (!(err instanceof PackageError)) throw err;
    process.stderr.write(`replstatus: ${err.message}\n`);
    process.exit(1);
  }
}
