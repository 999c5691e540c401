// SIGHUP: read the configuration again, apply in place what a running process can change, and log
// what changed and what waits for a restart. Which is which is the option table's `reload` column
// (config/options.ts); the lists here are derived from it.
import { OPTIONS, type Option } from "../config/options.ts";
import { type Config } from "../config/types.ts";
import { buildResponses, type Responses } from "../listen/answers.ts";
import type { Gate } from "../listen/gate.ts";
import { reloadTls, type TlsHandshakes } from "../listen/tls.ts";
import type { TCPSocketListener } from "bun";
import type { Logger } from "../log.ts";
import type { Poller } from "../poll/poller.ts";
import type { LagJudge } from "../poll/lag.ts";
import { configTarget } from "../poll/target.ts";
import { fitFdLimit } from "./limits.ts";
import { isError } from "../errors.ts";

type Env = Record<string, string | undefined>;

/** Reads the configuration again (the file; flags and variables cannot change); undefined when rejected. */
export async function reloadConfig(load: () => Promise<Config>, env: Env, log: Logger): Promise<Config | undefined> {
  try {
    const next = await load();
    configTarget(next, env);
    return next;
  } catch (err) {
    if (!isError(err, "CONFIG_INVALID", "CLUSTER_INVALID")) throw err;
    log.error(`SIGHUP: reload rejected, keeping the running configuration: ${err.message}`);
    return undefined;
  }
}

/** The running parts a reload changes in place: listeners hold the same Responses and Gate. */
export interface Reloadable {
  responses: Responses;
  gate: Gate;
  poller: Poller;
  /** The lag rule, whose limits a reload changes from the next poll on. */
  lag: LagJudge;
  log: Logger;
  fdLimit: number | undefined;
  /** The tls+ listeners, whose certificate, key, CA and rule are read again; undefined: none. */
  tls: { handshakes: TlsHandshakes; servers: TCPSocketListener<unknown>[] } | undefined;
}

/**
 * Applies `next` over `old` and logs what changed, and what differs from `started` (the
 * configuration the process started with) and so waits for a restart.
 */
export function apply(old: Config, next: Config, live: Reloadable, started: Config): void {
  // --agent-weight-by-lag waits for a restart (restartOnly): the weight word stays as it was.
  const agent = { ...next.agent, weightByLag: live.responses.agentConfig.weightByLag };
  Object.assign(live.responses, buildResponses(next.texts, agent));
  live.gate.allow = next.allow;
  live.gate.maxConnections = fitFdLimit(next.maxConnections, live.fdLimit);
  live.poller.retime(next);
  live.lag.retune(next);
  live.log.format = next.logFormat;

  const changed = changes(old, next);
  live.log.info(`SIGHUP: reloaded; ${changed.length ? changed.join(", ") : "nothing changed"}`);
  const restart = restartOnly(started, next);
  if (restart.length) {
    live.log.warning(`SIGHUP: ${restart.join(", ")} changed but only take effect after a restart`);
  }
  if (next.tls && live.tls) reloadTls(next.tls, live.tls.servers, live.tls.handshakes, live.log);
}

/** Where `option` lands in `config` (its `field` or `part` in the table). */
function valueIn(config: Config, option: Option): unknown {
  let value: unknown = config;
  for (const key of (option.field ?? option.part)!.split(".")) value = (value as Record<string, unknown>)?.[key];
  return value;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function show(option: Option, value: unknown): string {
  if (value === undefined && option.unset !== undefined) return option.unset;
  if (option.kind.format && value !== undefined) return option.kind.format(value);
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The live options that changed, as `name old -> new`, in table order. */
function changes(old: Config, next: Config): string[] {
  return OPTIONS.filter((o) => o.reload === "live").flatMap((o) => {
    const [a, b] = [valueIn(old, o), valueIn(next, o)];
    return same(a, b) ? [] : [`${o.name} ${show(o, a)} -> ${show(o, b)}`];
  });
}

/** The restart options that changed, in table order; a group once, as all of its names ("db/cluster"). */
function restartOnly(old: Config, next: Config): string[] {
  const changed = new Set<string>();
  for (const o of OPTIONS) {
    if (o.reload === "restart" && !same(valueIn(old, o), valueIn(next, o))) changed.add(o.group ?? o.name);
  }
  const label = (group: string) =>
    OPTIONS.filter((o) => (o.group ?? o.name) === group)
      .map((o) => o.name)
      .join("/");
  return [...changed].map(label);
}

/**
 * SIGHUP's handler: reads the configuration with `load` and applies it over the running one; one
 * reload at a time, a SIGHUP during one is taken after it.
 */
export function createReloader(
  started: Config,
  load: () => Promise<Config>,
  env: Env,
  live: Reloadable,
): () => Promise<void> {
  let current = started;
  let reloading: Promise<void> = Promise.resolve();
  return () => {
    // Changes are told against the running settings; what waits for a restart, against the
    // started ones, so it is told again at every reload until then. A reload that throws is one
    // log line, and the next SIGHUP still reloads.
    reloading = reloading
      .then(async () => {
        const next = await reloadConfig(load, env, live.log);
        if (next) {
          apply(current, next, live, started);
          current = next;
        }
      })
      .catch((err: unknown) => live.log.error(`SIGHUP: reload failed, keeping the running configuration: ${err}`));
    return reloading;
  };
}
