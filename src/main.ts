#!/usr/bin/env bun
// argv + environment -> config -> listeners and poller. The only place that
// prints fatal errors and exits: 2 for a bad configuration, 1 for a start-up
// failure (an address or control socket that cannot be served) and for a
// drain|maint|ready that finds no replstatus. demo exits with its own code.
import pkg from "../package.json";
import { agentHandler, weightBucket } from "./agent.ts";
import {
  buildConfig,
  buildDemoConfig,
  ConfigError,
  defaultControlSocket,
  formatAddress,
  formatBytes,
  formatDuration,
  helpText,
  parseArgv,
  redactUrl,
  SUBCOMMANDS,
  type Config,
  type Subcommand,
} from "./config.ts";
import { ControlError, sendControl, startControl, type Control } from "./control.ts";
import { resolveTarget } from "./db.ts";
import { httpHandler } from "./http.ts";
import { createLagJudge } from "./lag.ts";
import { listen, ListenError, rawHandler, type Listener } from "./listeners.ts";
import { createLogger } from "./log.ts";
import { startPoller, type Poller } from "./poller.ts";
import { buildResponses, createStatus, STATE_NAMES } from "./states.ts";

function fatal(message: string, hint: string | undefined, exitCode: number): never {
  process.stderr.write(`replstatus: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const env = process.env;
  // A sub-command is the first word; the flags after it use the same table.
  const command = (SUBCOMMANDS as readonly string[]).includes(argv[0] ?? "") ? (argv[0] as Subcommand) : undefined;
  let raw;
  let config;
  let target;
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
      const { runDemo } = await import("./demo.ts");
      process.exit(await runDemo(demo));
    }
    config = buildConfig(raw, env);
    if (command) return await setOverride(command, config);
    target = resolveTarget(config.db, env);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    throw err;
  }

  const log = createLogger();
  const status = createStatus((from, to, reason) => log.info(`${STATE_NAMES[from]} -> ${STATE_NAMES[to]} (${reason})`));
  const responses = buildResponses(config.texts, config.agent);
  // The poller starts after the listeners; until then there are no facts.
  let poller: Poller | undefined;
  const handlers = {
    raw: rawHandler(status.cell, responses),
    http: httpHandler({ status, facts: () => poller?.facts }, responses),
    agent: agentHandler(status.cell, responses),
  };

  const listeners: Listener[] = [];
  let control: Control;
  try {
    for (const address of config.listen) listeners.push(listen(address, handlers[address.mode]));
    control = await startControl(
      config.controlSocket ?? defaultControlSocket(listeners[0]!.address.port, env),
      status,
      log,
    );
  } catch (err) {
    for (const l of listeners) l.stop();
    if (err instanceof ListenError || err instanceof ControlError) fatal(err.message, err.hint, 1);
    throw err;
  }

  log.info(
    `replstatus ${pkg.version} serving ${listeners.map((l) => `${l.address.mode} ${formatAddress(l.address)}`).join(", ")}; ` +
      `database ${redactUrl(target.display)}; poll every ${formatDuration(config.pollIntervalMs)}, ` +
      `stale after ${formatDuration(config.staleAfterMs)}` +
      lagLimits(config) +
      `; control socket ${control.path}`,
  );

  poller = startPoller({
    target,
    pollIntervalMs: config.pollIntervalMs,
    staleAfterMs: config.staleAfterMs,
    connectTimeoutMs: config.connectTimeoutMs,
    channel: config.channel,
    status,
    lag: createLagJudge(config, log),
    log,
    ...(config.agent.weightByLag && { onFacts: (facts) => status.setWeightBucket(weightBucket(config.agent, facts)) }),
  });

  // Stop accepting first, so no client is told anything after the poller is
  // gone; then close the database connection politely.
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    for (const l of listeners) l.stop();
    control.stop();
    await poller?.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
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
  if (reply !== word) fatal(`unexpected answer on ${path}: ${JSON.stringify(reply)}`, undefined, 1);
  process.stdout.write(`replstatus: override set to ${word}\n`);
}

function lagLimits(config: Config): string {
  const limits = [
    config.maxLagBytes !== undefined && formatBytes(config.maxLagBytes),
    config.maxLagSeconds !== undefined && `${config.maxLagSeconds} s`,
  ].filter(Boolean);
  return limits.length ? `; lagging over ${limits.join(" or ")} for ${formatDuration(config.lagGraceMs)}` : "";
}

await main(process.argv.slice(2));
