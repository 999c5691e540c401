// A PostgreSQL primary and streaming standby with a replstatus on each node: the set-up most e2e
// files share. Started, then waited on until the primary's replstatus answers MASTER and the
// standby's STANDBY; stopped in one call, also when the start fails half-way. usePair() does both
// in beforeAll and afterAll for a file or a describe block.
import { afterAll, beforeAll } from "bun:test";
import { startPair, type PgNode, type PgOptions, type PgPair } from "../../src/demo/pg.ts";
import { waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS } from "./timeouts.ts";

export type Role = "primary" | "standby";

export interface ServedPair extends AsyncDisposable {
  pg: PgPair;
  /** The replstatus on the primary, on the standby. */
  onPrimary: Responder;
  onStandby: Responder;
}

export interface ServedPairOptions {
  /** The flags of both replstatus processes (listeners first), or of each node. */
  args: string[] | ((role: Role, node: PgNode) => string[]);
  /** Whether a node's replstatus gets its libpq environment (default: yes); no when its flags say where (--db). */
  env?: (role: Role) => boolean;
  /** The index of the raw listener among the ports, waited on for MASTER and STANDBY; default 0. */
  raw?: number;
  pg?: PgOptions;
}

/** Starts the pair and a replstatus on each node; resolves once both answer as their roles. */
export async function startServedPair(opts: ServedPairOptions): Promise<ServedPair> {
  const pg = await startPair(opts.pg);
  const started: Responder[] = [];
  const stop = async () => {
    for (const r of started) await r[Symbol.asyncDispose]();
    await pg.stop();
  };
  const start = async (role: Role, node: PgNode) => {
    const args = typeof opts.args === "function" ? opts.args(role, node) : opts.args;
    const r = await startResponder(args, (opts.env?.(role) ?? true) ? node.env : {});
    started.push(r);
    return r;
  };
  try {
    const onPrimary = await start("primary", pg.primary);
    const onStandby = await start("standby", pg.standby);
    await waitForAnswer(onPrimary.ports[opts.raw ?? 0]!, "MASTER");
    await waitForAnswer(onStandby.ports[opts.raw ?? 0]!, "STANDBY");
    return { pg, onPrimary, onStandby, [Symbol.asyncDispose]: stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** startServedPair in beforeAll, stopped in afterAll; the fields are set from the first test on. */
export function usePair(opts: ServedPairOptions): ServedPair {
  const pair = {} as ServedPair;
  beforeAll(async () => {
    Object.assign(pair, await startServedPair(opts));
  }, HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await pair[Symbol.asyncDispose]?.();
  }, HOOK_TIMEOUT_MS);
  return pair;
}
