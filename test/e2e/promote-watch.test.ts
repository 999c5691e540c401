// A promotion seen from the data directory's signal files (src/poll/worker/postmaster.ts), long
// before the next poll would see it; a role that is not shown data_directory, which polls only;
// and a primary, whose polls only keep its answer fresh (four per --stale-after).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { probe, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS, useTimeouts } from "../kit/timeouts.ts";
import { metric, metricsPort } from "../kit/http.ts";

useTimeouts();

let pg: PgPair;
let watching: Responder;
let loginOnly: Responder;
let onPrimary: Responder;

beforeAll(async () => {
  pg = await startPair();
  await pg.primary.sql("create role rs_login login");
  await waitFor(
    "the role on the standby",
    async () => (await pg.standby.sql("select count(*) from pg_roles where rolname = 'rs_login'")) === "1",
  );
  // A minute between polls: only the watch can see the promotion within seconds.
  watching = await startResponder([
    "--listen",
    "127.0.0.1:0",
    "--db",
    pg.standby.url,
    "--poll-interval",
    "60s",
    "--stale-after",
    "120s",
  ]);
  const loginUrl = pg.standby.url.replace(`${pg.standby.user}@`, "rs_login@");
  loginOnly = await startResponder(["--listen", "127.0.0.1:0", "--db", loginUrl, "--poll-interval", "50ms"]);
  onPrimary = await startResponder([
    "--listen",
    "127.0.0.1:0",
    "--db",
    pg.primary.url,
    "--metrics-listen",
    "127.0.0.1:0",
  ]);
  await waitForAnswer(onPrimary.ports[0]!, "MASTER");
  await waitForAnswer(watching.ports[0]!, "STANDBY");
  await waitForAnswer(loginOnly.ports[0]!, "STANDBY");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await watching?.[Symbol.asyncDispose]();
  await loginOnly?.[Symbol.asyncDispose]();
  await onPrimary?.[Symbol.asyncDispose]();
  await pg?.stop();
}, HOOK_TIMEOUT_MS);

const polls = (r: Responder) => metric(metricsPort(r), "replstatus_poll_duration_seconds_count");

test("a primary polls every --stale-after / 4, not every --poll-interval (50 ms)", async () => {
  const before = await polls(onPrimary);
  const t0 = performance.now();
  await waitFor("3 s", () => performance.now() - t0 >= 3000, 10_000, 100);
  const n = (await polls(onPrimary)) - before;
  // About 12 at 250 ms; 60 at 50 ms. The worker reports its polls at least once a second.
  expect(n).toBeGreaterThanOrEqual(4);
  expect(n).toBeLessThanOrEqual(20);
  expect(await probe(onPrimary.ports[0]!)).toEqual({ text: "MASTER", close: "fin" });
});

test("a promotion is MASTER within seconds, with a minute between polls", async () => {
  await pg.standby.promote();
  // Generous: the watch usually takes a few ms; the next poll would come up to 60 s later.
  await waitFor("MASTER", async () => (await probe(watching.ports[0]!)).text === "MASTER", 5_000, 5);
  expect(await probe(watching.ports[0]!)).toEqual({ text: "MASTER", close: "fin" });
  expect(watching.log).toContain("standby -> primary (promoted)");
  // The role that cannot watch still sees it, at its next poll.
  await waitForAnswer(loginOnly.ports[0]!, "MASTER");
});
