// Makes docs/status-page.png: the status page on node2 of a PostgreSQL pair
// during a failover (node1 stopped, node2 promoted, node1 started again as
// a primary on the old timeline and fenced), in headless Chromium.
//
//   bun docs/status-page.ts [out.png] [width] [height]
import { join } from "node:path";
import { openPage } from "../test/kit/browser.ts";
import { freePort, startPair, waitFor } from "../src/demo/pg.ts";
import { startResponder } from "../src/demo/responder.ts";

const out = process.argv[2] ?? join(import.meta.dir, "status-page.png");
const width = Number(process.argv[3] ?? 1280);
const height = Number(process.argv[4] ?? 760);

/** The Answer cell of each row, as the page shows it. */
const ANSWERS = `Object.fromEntries([...document.querySelectorAll("#rows tr")].map((tr) => [tr.dataset.node, tr.cells[1].innerText]))`;

await using pg = await startPair();
const [http1, http2] = [await freePort(), await freePort()];
const node = (own: number, other: number) => [
  ...["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${own}`],
  ...["--peer", `http://127.0.0.1:${other}`, "--peer-interval", "100ms", "--peer-timeout", "300ms"],
];
await using s1 = await startResponder(node(http1, http2), pg.primary.env);
await using s2 = await startResponder(node(http2, http1), pg.standby.env);
void s1;
void s2;
await using page = await openPage(`http://127.0.0.1:${http2}/ui`, width, height);
const answers = () => page.evaluate<Record<string, string>>(ANSWERS);
const node1 = `127.0.0.1:${http1}`;
const node2 = `127.0.0.1:${http2}`;
await waitFor("node1 MASTER on the page", async () => (await answers())[node1] === "MASTER", 30_000);
await pg.primary.stop();
await pg.standby.promote();
await waitFor("node2 MASTER on the page", async () => (await answers())[node2] === "MASTER", 30_000);
// The old primary comes back on its own timeline: the guard fences it.
await pg.primary.start();
await waitFor("node1 FENCED on the page", async () => (await answers())[node1] === "FENCED", 30_000);
await page.screenshot(out);
console.log(`wrote ${out}`);
