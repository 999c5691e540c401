// --tag without Patroni: ?tag_KEY=VALUE, noloadbalance, ?replication_state=
// and /readiness?lag= on the plain http listener, against a real primary and
// streaming standby.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startPair, type PgPair } from "../../src/demo/pg.ts";
import { waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { httpGet } from "../kit/patroni.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { usePair } from "../kit/pair.ts";

useTimeouts();

const ARGS = ["--listen", "http:127.0.0.1:0", "--listen", "127.0.0.1:0"];
const pair = usePair({
  args: (role) => [...ARGS, "--tag", "dc=east", ...(role === "standby" ? ["--tag", "rack=2"] : [])],
  raw: 1,
});
/** A second replstatus on the standby, kept out of load balancing. */
let hidden: Responder;

beforeAll(async () => {
  hidden = await startResponder([...ARGS, "--tag", "noloadbalance=true"], pair.pg.standby.env);
  await waitForAnswer(hidden.ports[1]!, "STANDBY");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await hidden?.[Symbol.asyncDispose]();
}, HOOK_TIMEOUT_MS);

const code = async (r: Responder, path: string, method = "GET") => (await httpGet(r.ports[0]!, path, method)).status;

test.each([
  ["/replica?tag_dc=east", 200],
  ["/replica?tag_dc=east&tag_rack=2", 200],
  ["/replica?tag_dc=west", 503],
  ["/replica?tag_zone=a", 503],
  ["/read-only?tag_dc=west", 503],
  ["/health?tag_dc=east", 200],
  ["/health?tag_dc=west", 503],
  ["/replica?replication_state=streaming", 200],
  ["/readiness?lag=16MB", 200],
  ["/readiness?lag=junk", 400],
  ["/replica", 200],
] as const)("standby tagged dc=east: %s is %d", async (path, want) => {
  expect(await code(pair.onStandby, path)).toBe(want);
});

test("tags never change the primary paths; they do apply to /read-only", async () => {
  expect(await code(pair.onPrimary, "/primary?tag_dc=west")).toBe(200);
  expect(await code(pair.onPrimary, "/read-only?tag_dc=east")).toBe(200);
  expect(await code(pair.onPrimary, "/read-only?tag_dc=west")).toBe(503);
  expect(await code(pair.onPrimary, "/readiness?lag=1")).toBe(200);
});

test("noloadbalance keeps a standby out of /replica and /read-only, not out of /health", async () => {
  expect(await code(hidden, "/replica")).toBe(503);
  expect(await code(hidden, "/replica", "OPTIONS")).toBe(503);
  expect(await code(hidden, "/replica?lag=16MB")).toBe(503);
  expect(await code(hidden, "/read-only")).toBe(503);
  expect(await code(hidden, "/health")).toBe(200);
  expect(await code(hidden, "/readiness")).toBe(200);
});
