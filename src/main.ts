#!/usr/bin/env bun
// argv -> help | version | demo | drain|maint|ready | serve. The only place that
// prints fatal errors and exits: 2 for a bad configuration, 1 for a start-up
// failure (an address or control socket that cannot be served) and for a
// drain|maint|ready that finds no replstatus. demo exits with its own code.
import pkg from "../package.json";
import { helpText } from "./config/help.ts";
import { buildDemoConfig, parseArgv, type Raw } from "./config/load.ts";
import { defaultControlSocket, SUBCOMMANDS, type Subcommand } from "./config/options.ts";
import { ConfigError, type Config } from "./config/types.ts";
import { ClusterError } from "./config/debian-cluster.ts";
import { ListenError } from "./listen/gate.ts";
import { TlsError } from "./listen/tls.ts";
import { ControlError, sendControl } from "./ops/control.ts";
import { loadConfig } from "./ops/reload.ts";
import { start, type Server } from "./serve.ts";

function fatal(message: string, hint: string | undefined, exitCode: number): never {
  process.stderr.write(`replstatus: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const env = process.env;
  // A sub-command is the first word; the flags after it use the same table.
  const command = (SUBCOMMANDS as readonly string[]).includes(argv[0] ?? "") ? (argv[0] as Subcommand) : undefined;
  let raw: Raw;
  let config: Config;
  try {
    raw = parseArgv(command ? argv.slice(1) : argv, command === "demo" ? "demo" : "server");
    if (raw.has("help")) {
      process.stdout.write(helpText(pkg.version));
      return;
    }
    if (raw.has("version")) {
      process.stdout.write(`replstatus ${pkg.version} (bun ${Bun.version})\n`);
      return;
    }
    if (command === "demo") {
      const demo = buildDemoConfig(raw);
      // Loaded only here: it brings the cluster helpers and their exit hooks.
      const { runDemo } = await import("./demo/demo.ts");
      process.exit(await runDemo(demo));
    }
    config = await loadConfig(raw, env);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    throw err;
  }
  if (command) return await setOverride(command, config);
  await serve(config, () => loadConfig(raw, env), env, raw.has("db"));
}

async function serve(
  config: Config,
  load: () => Promise<Config>,
  env: typeof process.env,
  dbOnCommandLine: boolean,
): Promise<void> {
  let server: Server;
  try {
    server = await start(config, {
      version: pkg.version,
      env,
      dbOnCommandLine,
      load,
      onFatal: (message, hint) => fatal(message, hint, 1),
    });
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    if (err instanceof ClusterError) fatal(err.message, err.hint, 2);
    // The Patroni mode's etcd TLS files (cluster/patroni-view.ts, loaded only in that mode).
    if (err instanceof Error && "code" in err && err.code === "ETCD_TLS") fatal(err.message, undefined, 2);
    if (err instanceof ListenError || err instanceof ControlError || err instanceof TlsError) {
      fatal(err.message, err.hint, 1);
    }
    throw err;
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    await server.stop(signal);
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", () => void server.reload());
  // Last, once every handler is in place: tests and scripts take this as "ready".
  server.announce();
}

/** `replstatus drain|maint|ready`: one line on stdout and exit 0, or one error line and exit 1. */
async function setOverride(word: Subcommand, config: Config): Promise<void> {
  const path = config.controlSocket ?? defaultControlSocket(config.listen[0]!.port, process.env);
  let reply;
  try {
    reply = await sendControl(path, word);
  } catch (err) {
    if (err instanceof ControlError) fatal(err.message, err.hint, 1);
    throw err;
  }
  if (reply.startsWith("error ")) fatal(reply.slice("error ".length), undefined, 1);
  if (reply !== word) fatal(`unexpected answer on ${path}: ${JSON.stringify(reply)}`, undefined, 1);
  process.stdout.write(`replstatus: override set to ${word}\n`);
}

await main(process.argv.slice(2));
