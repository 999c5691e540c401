#!/usr/bin/env bun
// argv + environment -> config -> listeners and poller. The only place that
// prints fatal errors and exits: 2 for a bad configuration, 1 for a start-up
// failure (an address that cannot be served).
import pkg from "../package.json";
import {
  buildConfig,
  ConfigError,
  formatAddress,
  formatBytes,
  formatDuration,
  helpText,
  parseArgv,
  redactUrl,
  type Config,
} from "./config.ts";
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
  let raw;
  let config;
  let target;
  try {
    raw = parseArgv(argv);
    if (raw.has("help")) {
      process.stdout.write(helpText(pkg.version));
      return;
    }
    if (raw.has("version")) {
      process.stdout.write(`replstatus ${pkg.version} (bun ${Bun.version})\n`);
      return;
    }
    config = buildConfig(raw, env);
    target = resolveTarget(config.db, env);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message, undefined, 2);
    throw err;
  }

  const log = createLogger();
  const status = createStatus((from, to, reason) => log.info(`${STATE_NAMES[from]} -> ${STATE_NAMES[to]} (${reason})`));
  const responses = buildResponses(config.texts);
  const rawMode = rawHandler(status.cell, responses);
  // The poller starts after the listeners; until then there are no facts.
  let poller: Poller | undefined;
  const httpMode = httpHandler({ status, facts: () => poller?.facts }, responses);

  const listeners: Listener[] = [];
  try {
    for (const address of config.listen) {
      listeners.push(address.mode === "http" ? listen(address, httpMode) : listen(address, rawMode));
    }
  } catch (err) {
    for (const l of listeners) l.stop();
    if (err instanceof ListenError) fatal(err.message, err.hint, 1);
    throw err;
  }

  log.info(
    `replstatus ${pkg.version} serving ${listeners.map((l) => `${l.address.mode} ${formatAddress(l.address)}`).join(", ")}; ` +
      `database ${redactUrl(target.display)}; poll every ${formatDuration(config.pollIntervalMs)}, ` +
      `stale after ${formatDuration(config.staleAfterMs)}` +
      lagLimits(config),
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
  });

  // Stop accepting first, so no client is told anything after the poller is
  // gone; then close the database connection politely.
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    for (const l of listeners) l.stop();
    await poller?.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

function lagLimits(config: Config): string {
  const limits = [
    config.maxLagBytes !== undefined && formatBytes(config.maxLagBytes),
    config.maxLagSeconds !== undefined && `${config.maxLagSeconds} s`,
  ].filter(Boolean);
  return limits.length ? `; lagging over ${limits.join(" or ")} for ${formatDuration(config.lagGraceMs)}` : "";
}

await main(process.argv.slice(2));
