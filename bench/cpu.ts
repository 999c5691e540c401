// CPU time of a process from /proc/PID/stat, for the idle and lifecycle parts.
import { readFileSync } from "node:fs";

/** The kernel's clock ticks per second (CLK_TCK), in which /proc/PID/stat counts CPU time. */
export const CLOCK_TICKS = (() => {
  const out = Bun.spawnSync(["getconf", "CLK_TCK"], { stderr: "ignore" });
  const n = Number(out.stdout.toString().trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime + stime of a process in seconds; with `children`, also those of its reaped children. */
export function cpuSeconds(pid: number, children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields 14 to 17 of stat(5), counted from the state field (3) after the command name.
  const f = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  return (f[11]! + f[12]! + (children ? f[13]! + f[14]! : 0)) / CLOCK_TICKS;
}
