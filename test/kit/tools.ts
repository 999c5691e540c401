// The tools a test needs from the machine: a missing one fails the test with the Debian package to install
// (the one .ci/run installs for it), never skips it.
import { existsSync } from "node:fs";

/** The path of `command` (also looked for in /usr/sbin and /sbin), or an error naming `debianPackage`. */
export function requireTool(command: string, debianPackage: string): string {
  const found = Bun.which(command) ?? ["/usr/sbin", "/sbin"].map((d) => `${d}/${command}`).find((p) => existsSync(p));
  if (!found) throw new Error(`${command} is missing\nhint: apt-get install -y ${debianPackage}`);
  return found;
}
