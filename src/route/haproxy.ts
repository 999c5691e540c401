// haproxy's runtime API over its unix stats socket (management guide,
// "Unix Socket commands"): one connection per batch, the commands of a batch
// joined by ";" so they run in order without another command between them,
// the output read until haproxy closes. The socket needs `level admin` for
// `set server`; it stays a local file (docs/routing.md, "Security").
import { connect } from "node:net";
import type { HaproxyServer } from "./rules.ts";

/** A command batch that has not ended after this long is given up. */
export const COMMAND_TIMEOUT_MS = 2000;

export interface Runtime {
  /** Runs `lines` in one batch; resolves to haproxy's output (empty for a `set server` that worked). */
  run(lines: string[]): Promise<string>;
  /** `show servers state BACKEND`, by server name. */
  serversState(backend: string): Promise<Map<string, HaproxyServer>>;
}

export function haproxyRuntime(socketPath: string): Runtime {
  function run(lines: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      let out = "";
      const socket = connect(socketPath, () => socket.end(lines.join(";") + "\n"));
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`haproxy did not answer within ${COMMAND_TIMEOUT_MS}ms on ${socketPath}`));
      }, COMMAND_TIMEOUT_MS);
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => (out += chunk));
      socket.on("close", () => {
        clearTimeout(timer);
        resolve(out);
      });
      socket.on("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new Error(`could not reach haproxy on ${socketPath}: ${err.code ?? err.message}`));
      });
    });
  }
  return {
    run,
    async serversState(backend) {
      return parseServersState(await run([`show servers state ${backend}`]));
    },
  };
}

/**
 * `show servers state` as haproxy 2.6 prints it: a version line, a header
 * line starting with "#", then one line per server: be_id be_name srv_id
 * srv_name srv_addr srv_op_state srv_admin_state ... Throws on anything else
 * (an unknown backend is "Can't find backend.").
 */
export function parseServersState(text: string): Map<string, HaproxyServer> {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines[0]?.trim() !== "1" || !lines[1]?.startsWith("# be_id")) {
    throw new Error(`unexpected answer to show servers state: ${JSON.stringify(text.trim().slice(0, 120))}`);
  }
  const servers = new Map<string, HaproxyServer>();
  for (const line of lines.slice(2)) {
    const f = line.split(" ");
    servers.set(f[3]!, { opState: Number(f[5]), adminState: Number(f[6]) });
  }
  return servers;
}
