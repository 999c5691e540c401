// `show servers state BACKEND` in a tight loop, in a process of its own (so a
// busy test process does not slow it): one line per change of the writable
// servers, `<epoch ms> <n samples so far> <names,comma-separated>`, and the
// sample count on SIGTERM as `<epoch ms> <n> end`.
//   bun test/kit/sampler.ts SOCKET BACKEND
import { existsSync } from "node:fs";
import { haproxyRuntime } from "../../src/route/haproxy.ts";
import { writable } from "../../src/route/rules.ts";

const [socket, backend] = process.argv.slice(2) as [string, string];
const runtime = haproxyRuntime(socket);
let samples = 0;
let last: string | undefined;
let running = true;
process.on("SIGTERM", () => (running = false));
const parent = process.ppid;
while (running) {
  const servers = await runtime.serversState(backend).catch(() => undefined);
  if (!servers) {
    // haproxy gone, or the test that started it: nothing more to sample.
    if (!existsSync(socket) || process.ppid !== parent) break;
    await Bun.sleep(1);
    continue;
  }
  samples++;
  const up = [...servers]
    .filter(([, s]) => writable(s))
    .map(([name]) => name)
    .join(",");
  if (up !== last) process.stdout.write(`${Date.now()} ${samples} ${up || "-"}\n`);
  last = up;
}
process.stdout.write(`${Date.now()} ${samples} end\n`);
