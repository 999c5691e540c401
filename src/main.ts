#!/usr/bin/env bun
// argv -> help | version | demo | route | status | drain|maint|ready | serve. The only place that
// prints a fatal error and exits, with its code's status (src/errors.ts); demo and status exit with
// their own (status: 1 for a disagreement, 3 for a /status it could not read).
import pkg from "../package.json";
import { helpText } from "./config/help.ts";
import { buildDemoConfig, buildStatusConfig, loadConfig, loadRouteConfig, parseArgv, type Raw } from "./config/load.ts";
import { defaultControlSocket, SUBCOMMANDS, type Subcommand } from "./config/options.ts";
import { type Config, type RouteConfig } from "./config/types.ts";
import { sendControl } from "./ops/control.ts";
import { loadPeerTls } from "./listen/tls.ts";
import { start, type Server } from "./serve.ts";
import { ReplstatusError } from "./errors.ts";

function fatal(message: string, hint: string | undefined, exitCode: number): never {
  process.stderr.write(`replstatus: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const env = process.env;
  // A sub-command is the first word; the flags after it use the same table.
  const command = (SUBCOMMANDS as readonly string[]).includes(argv[0] ?? "") ? (argv[0] as Subcommand) : undefined;
  const scope = command === "demo" || command === "route" || command === "status" ? command : "server";
  const raw = parseArgv(command ? argv.slice(1) : argv, scope);
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
  if (command === "route") return await route(await loadRouteConfig(raw, env), () => loadRouteConfig(raw, env));
  const config = await loadConfig(raw, env);
  if (command === "status") return await status(raw, config);
  if (command) return await setOverride(command, config);
  await serve(config, () => loadConfig(raw, env), env, raw.has("db"));
}

async function serve(
  config: Config,
  load: () => Promise<Config>,
  env: typeof process.env,
  dbOnCommandLine: boolean,
): Promise<void> {
  const server: Server = await start(config, {
    version: pkg.version,
    env,
    dbOnCommandLine,
    load,
    onFatal: (message, hint) => fatal(message, hint, 1),
  });
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

/** `replstatus status`: the table (or JSON) of one /status, this host's first http listener's unless --url. */
async function status(raw: Raw, config: Config): Promise<never> {
  const opts = buildStatusConfig(raw);
  // Loaded only here: the server does not carry it.
  const { localStatusUrl, runStatus } = await import("./ui/term.ts");
  const url = opts.url ?? localStatusUrl(config.listen);
  if (url === undefined) {
    fatal("no http listener in this host's configuration", "name one with --listen http:HOST:PORT, or pass --url", 2);
  }
  const tls = loadPeerTls(config.peerTls);
  process.exit(await runStatus({ url, watch: opts.watch, json: opts.json, tls }));
}

/** `replstatus route`: runs until SIGTERM or SIGINT; SIGHUP reads the configuration again. Loaded only here. */
async function route(config: RouteConfig, load: () => Promise<RouteConfig>): Promise<void> {
  const { startRoute } = await import("./route/serve.ts");
  const running = startRoute(config);
  const stop = async (signal: string) => {
    running.log.info(`${signal}: shutting down`);
    await running.stop();
    process.exit(0);
  };
  // One reload at a time; a bad configuration is one line, and the running one stays.
  let reloading = Promise.resolve();
  const reload = async () => {
    try {
      await running.reload(await load());
    } catch (err) {
      const hint = err instanceof ReplstatusError && err.hint ? ` (${err.hint})` : "";
      running.log.error(`SIGHUP: reload rejected, keeping the running configuration: ${(err as Error).message}${hint}`);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", () => void (reloading = reloading.then(reload)));
}

/** `replstatus drain|maint|ready`: one line on stdout and exit 0, or one error line and exit 1. */
async function setOverride(word: Subcommand, config: Config): Promise<void> {
  const path = config.controlSocket ?? defaultControlSocket(config.listen[0]!.port, process.env);
  const reply = await sendControl(path, word);
  if (reply.startsWith("error ")) fatal(reply.slice("error ".length), undefined, 1);
  if (reply !== word) fatal(`unexpected answer on ${path}: ${JSON.stringify(reply)}`, undefined, 1);
  process.stdout.write(`replstatus: override set to ${word}\n`);
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  // Every error a module reports (src/errors.ts): its line, its hint, its code's exit status.
  if (err instanceof ReplstatusError) fatal(err.message, err.hint, err.exitStatus);
  throw err;
}
