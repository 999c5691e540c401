// Real network partitions for the tests: Linux network namespaces joined by
// veth links, with link-local addresses (169.254.R.x, one /30 per link, R
// picked so that no address of this host's namespace collides), and links cut
// and healed with `ip link set ... down/up` on both ends, which removes the
// route: a connect fails at once (ENETUNREACH) and open connections stall.
//
// Every name starts with rsn<pid>, the pid of the process that made it, so a
// later run can tell the leftovers of a crashed one (its pid is gone) from a
// run still going, and remove them. Needs root and iproute2.
import { existsSync } from "node:fs";
import { atExit } from "../../src/demo/cleanup.ts";

export interface Namespace {
  name: string;
  /** argv prefix that runs a command inside: `ip netns exec NAME`. It execs, so the pid is the command's. */
  exec: string[];
}

export interface Link {
  /** Interface names of each end. */
  a: string;
  b: string;
  /** Address of each end (no prefix length). */
  aAddress: string;
  bAddress: string;
  /** Both ends down: the route goes, nothing crosses. */
  cut(): void;
  heal(): void;
  readonly up: boolean;
}

export interface Lab extends AsyncDisposable {
  prefix: string;
  /** A namespace with its loopback up. */
  namespace(name: string): Namespace;
  /** A veth link between two namespaces; undefined is the test's own namespace. */
  link(a: Namespace | undefined, b: Namespace | undefined): Link;
  /** Kills what runs in the namespaces and removes them and the links; idempotent. */
  remove(): void;
}

function ip(args: string[]): string {
  const r = Bun.spawnSync(["ip", ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`testkit: ip ${args.join(" ")} failed: ${r.stderr.toString().trim()}`);
  }
  return r.stdout.toString();
}

function tryIp(args: string[]): void {
  Bun.spawnSync(["ip", ...args], { stdout: "ignore", stderr: "ignore" });
}

/** Whether this machine lets the tests make namespaces: root, ip, and a kernel that allows it. */
export function netnsAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  if (!Bun.which("ip")) return "needs iproute2 (apt-get install -y iproute2)";
  if (!existsSync("/proc/self/ns/net")) return "the kernel has no network namespaces";
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killIn(ns: string): void {
  const pids = Bun.spawnSync(["ip", "netns", "pids", ns], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  for (const pid of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** Removes namespaces and links left by runs whose process is gone. */
export function sweepLeftovers(): void {
  const dead = (name: string) => {
    const m = /^rsn(\d+)/.exec(name);
    return m !== null && !alive(Number(m[1]));
  };
  const namespaces = Bun.spawnSync(["ip", "netns", "list"], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  for (const name of namespaces.split("\n").map((l) => l.split(" ")[0]!)) {
    if (!name || !dead(name)) continue;
    killIn(name);
    tryIp(["netns", "del", name]);
  }
  const links = Bun.spawnSync(["ip", "-o", "link", "show"], { stdout: "pipe", stderr: "ignore" }).stdout.toString();
  for (const line of links.split("\n")) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1];
    if (name && dead(name)) tryIp(["link", "del", name]);
  }
}

/** A third octet R such that no address of this namespace is in 169.254.R.0/24. */
function freeOctet(): number {
  const used = ip(["-4", "-o", "addr", "show"]);
  for (let tries = 0; tries < 100; tries++) {
    const r = 16 + Math.floor(Math.random() * 224);
    if (!used.includes(`169.254.${r}.`)) return r;
  }
  throw new Error("testkit: could not find a free 169.254.R.0/24 for the test links");
}

export function createLab(): Lab {
  const why = netnsAvailable();
  if (why) throw new Error(`testkit: could not make network namespaces: ${why}`);
  sweepLeftovers();
  const prefix = `rsn${process.pid}`;
  const octet = freeOctet();
  // With a root-side link down, its /30 route goes and the default route would
  // carry the packets off the host: this catches them here instead.
  // XXX: a run killed by SIGKILL leaves this route behind (it carries no pid to sweep by); it is harmless.
  const catchAll = ["route", "add", "unreachable", `169.254.${octet}.0/24`];
  const namespaces: string[] = [];
  const rootLinks: string[] = [];
  let links = 0;
  let removed = false;
  // An interrupted run removes the lab too (cleanup.ts).
  const forget = atExit(() => lab.remove());

  const lab: Lab = {
    prefix,
    namespace(name) {
      const full = `${prefix}-${name}`;
      ip(["netns", "add", full]);
      namespaces.push(full);
      ip(["-n", full, "link", "set", "lo", "up"]);
      return { name: full, exec: ["ip", "netns", "exec", full] };
    },
    link(a, b) {
      const k = links++;
      if (k >= 63) throw new Error("testkit: at most 63 links per lab");
      // Interface names are at most 15 bytes: rsn + pid (up to 7) + l + k + a|b.
      const [aName, bName] = [`${prefix}l${k}a`, `${prefix}l${k}b`];
      const [aAddress, bAddress] = [`169.254.${octet}.${4 * k + 1}`, `169.254.${octet}.${4 * k + 2}`];
      if (k === 0) ip(catchAll);
      ip(["link", "add", aName, "type", "veth", "peer", "name", bName]);
      const ends: [string, Namespace | undefined, string][] = [
        [aName, a, aAddress],
        [bName, b, bAddress],
      ];
      const on = (ns: Namespace | undefined) => (ns ? ["-n", ns.name] : []);
      for (const [name, ns, address] of ends) {
        if (ns) ip(["link", "set", name, "netns", ns.name]);
        else rootLinks.push(name);
        ip([...on(ns), "addr", "add", `${address}/30`, "dev", name]);
        ip([...on(ns), "link", "set", name, "up"]);
      }
      let up = true;
      const set = (state: "up" | "down") => {
        for (const [name, ns, address] of ends) {
          ip([...on(ns), "link", "set", name, state]);
          // Down removes the address's route; up brings it back without asking.
          if (state === "up") tryIp([...on(ns), "addr", "replace", `${address}/30`, "dev", name]);
        }
        up = state === "up";
      };
      return {
        a: aName,
        b: bName,
        aAddress,
        bAddress,
        cut: () => set("down"),
        heal: () => set("up"),
        get up() {
          return up;
        },
      };
    },
    remove() {
      if (removed) return;
      removed = true;
      forget();
      for (const ns of namespaces) killIn(ns);
      for (const ns of namespaces) tryIp(["netns", "del", ns]);
      for (const name of rootLinks) tryIp(["link", "del", name]);
      if (links > 0) tryIp(["route", "del", "unreachable", `169.254.${octet}.0/24`]);
    },
    async [Symbol.asyncDispose]() {
      lab.remove();
    },
  };
  return lab;
}
