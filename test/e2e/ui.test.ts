// The status page in a real browser (headless Chromium) against a real
// PostgreSQL pair, each node with its replstatus naming the other as a peer:
// what a person sees (the roles, a failover, a disagreement made on purpose),
// read from the rendered DOM, never from the JSON behind it.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpDom, openPage, type Page } from "../kit/browser.ts";
import { freePort, startPair, waitFor, type PgPair } from "../../src/demo/pg.ts";
import { answer, request } from "../../src/demo/probe.ts";
import { runCliAsync } from "../kit/cli.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";

const HOOK_TIMEOUT_MS = 180_000;
// Chromium alone took 32 s for a one-line page at a load average of 66 on this 2-core machine.
setDefaultTimeout(180_000);
/** The page's promise: a failover on screen within a second of the node answering MASTER. */
const FAILOVER_ON_SCREEN_MS = 1000;
/** Where screenshots go when asked for (UI_SCREENSHOTS=dir); none otherwise. */
const SHOTS = process.env.UI_SCREENSHOTS;

interface Seen {
  heading: string;
  findings: string[];
  live: string;
  /** Per node name, the visible cells by column. */
  rows: Record<string, Record<string, string>>;
  transitions: string[];
}

/** What a person sees, read in the page: visible text only (hidden columns are left out). */
const READ = `(() => {
  const text = (e) => (e ? e.innerText.replace(/\\s+/g, " ").trim() : "");
  const rows = {};
  for (const tr of document.querySelectorAll("#rows tr")) {
    const cells = {};
    for (const td of tr.cells) if (getComputedStyle(td).display !== "none") cells[td.dataset.label] = text(td);
    rows[tr.dataset.node] = cells;
  }
  return {
    heading: text(document.querySelector("#findings h2")),
    findings: [...document.querySelectorAll("#findings li")].map(text),
    live: text(document.getElementById("live")),
    rows,
    transitions: [...document.querySelectorAll("#transitions li")].map(text),
  };
})()`;

const decode = (s: string) =>
  s
    .replace(/<[^>]*>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();

/** The same from a --dump-dom snapshot (the sparkline's title text left out). */
function readDom(html: string): Pick<Seen, "heading" | "findings" | "rows"> {
  const rows: Seen["rows"] = {};
  for (const [, node, inner] of html.matchAll(/<tr[^>]*data-node="([^"]+)"[^>]*>(.*?)<\/tr>/gs)) {
    const cells: Record<string, string> = {};
    for (const [, label, content] of inner!.matchAll(/<td[^>]*data-label="([^"]+)"[^>]*>(.*?)<\/td>/gs)) {
      cells[label!] = decode(content!.replace(/<svg.*<\/svg>/s, ""));
    }
    rows[node!] = cells;
  }
  const findings = [...html.matchAll(/<li data-code="[^"]*">(.*?)<\/li>/gs)].map((m) => decode(m[1]!));
  const heading = decode(/<section id="findings"[^>]*><h2[^>]*>(.*?)<\/h2>/s.exec(html)?.[1] ?? "");
  return { heading, findings, rows };
}

describe("the status page in headless Chromium, on a pair with the split-brain guard", () => {
  let pg: PgPair;
  let s1: Responder;
  let s2: Responder;
  let page: Page;
  let http1: number;
  let http2: number;
  let runDir: string;
  let node1: string;
  let node2: string;
  const sock = (n: number) => join(runDir, `s${n}.sock`);
  const seen = () => page.evaluate<Seen>(READ);
  const shot = async (name: string) => SHOTS && (await page.screenshot(join(SHOTS, `${name}.png`)));

  beforeAll(async () => {
    runDir = mkdtempSync(join(tmpdir(), `rs-ui-${process.pid}-`));
    pg = await startPair();
    http1 = await freePort();
    http2 = await freePort();
    node1 = `127.0.0.1:${http1}`;
    node2 = `127.0.0.1:${http2}`;
    const args = (n: number, own: number, other: number) => [
      ...["--listen", "127.0.0.1:0", "--listen", `http:127.0.0.1:${own}`, "--control-socket", sock(n)],
      ...["--peer", `http://127.0.0.1:${other}`, "--peer-interval", "100ms", "--peer-timeout", "300ms"],
    ];
    s1 = await startResponder(args(1, http1, http2), pg.primary.env);
    s2 = await startResponder(args(2, http2, http1), pg.standby.env);
    await waitFor("node2 to see node1 as a primary", async () => {
      const s = (await (await fetch(`http://${node2}/status`)).json()) as any;
      return s.state === "standby" && s.peers[0].node?.state === "primary";
    });
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await page?.close();
    await s1?.[Symbol.asyncDispose]();
    await s2?.[Symbol.asyncDispose]();
    await pg?.stop();
    rmSync(runDir, { recursive: true, force: true });
  }, HOOK_TIMEOUT_MS);

  test("GET /ui: one self-contained page, same origin only, HEAD without the body", async () => {
    const res = await fetch(`http://${node1}/ui`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("content-security-policy")).toContain("connect-src 'self'");
    const html = await res.text();
    expect(html).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//);
    const head = await request({ host: "127.0.0.1", port: http1 }, "HEAD /ui HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
    expect(head).toContain(`Content-Length: ${Buffer.byteLength(html)}`);
  });

  test("--dump-dom: both nodes with their answers and roles, no disagreement", async () => {
    const dom = readDom(await dumpDom(`http://${node2}/ui`));
    expect(dom.heading).toBe("✓ No disagreement");
    expect(dom.rows[node1]).toMatchObject({ Answer: "MASTER", "Role by its poll": "primary", Timeline: "1" });
    expect(dom.rows[node2]).toMatchObject({
      Node: `${node2} this page's node`,
      Answer: "STANDBY",
      "Role by its poll": "standby",
      "WAL receiver": "streaming",
      Override: "ready",
    });
    expect(dom.rows[node2]!["Replay lag"]).toMatch(/^\d+(\.\d+)? (B|kB|MB)/);
  });

  test("live: the primary put in maint is named at the top, and cleared after ready", async () => {
    page = await openPage(`http://${node2}/ui`);
    await waitFor("the page to show both nodes", async () => (await seen()).rows[node1]?.Answer === "MASTER");
    const sysid = await pg.primary.sql("select system_identifier from pg_control_system()");
    expect((await seen()).rows[node1]).toMatchObject({ "System id": `…${sysid.slice(-6)}`, Timeline: "1" });
    expect((await seen()).live).toMatch(/^(○ polling \/status every 1 s|● live: following \/events); updated \d\d:/);
    expect((await runCliAsync(["maint", "--control-socket", sock(1)])).code).toBe(0);
    const s = (await waitFor("the maint disagreement on screen", async () => {
      const v = await seen();
      return v.findings.length === 2 ? v : undefined;
    })) as Seen;
    await shot("maint");
    expect(s.heading).toBe("⚠ 2 disagreements");
    expect(s.findings).toEqual([
      "no node answers MASTER",
      `${node1} is a primary by its own poll but answers UNKNOWN: it is in maint (replstatus maint)`,
    ]);
    expect(s.rows[node1]).toMatchObject({ Answer: "UNKNOWN", "Role by its poll": "primary", Override: "maint" });
    expect(s.transitions[0]).toMatch(
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${node1} ready → maint replstatus maint$`),
    );
    // replstatus status says the same in a terminal, and exits 1 on it.
    const cli = await runCliAsync(["status", "--url", `http://${node2}`]);
    expect(cli).toMatchObject({ code: 1, stderr: "" });
    expect(cli.stdout).toContain(`| ${node1}   | UNKNOWN | primary |`);
    expect(cli.stdout).toContain(
      `2 disagreements:\n  ! no node answers MASTER\n  ! ${node1} is a primary by its own poll`,
    );
    const json = await runCliAsync(["status", "--url", `http://${node2}`, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).disagreements.map((f: { code: string }) => f.code)).toEqual([
      "no-master",
      "primary-held-back",
    ]);
    expect((await runCliAsync(["ready", "--control-socket", sock(1)])).code).toBe(0);
    await waitFor("the page to clear", async () => (await seen()).heading === "✓ No disagreement");
    // Without --url: the first http --listen of the configuration given, as on the node itself.
    const local = await runCliAsync(["status", "--listen", `http:127.0.0.1:${http2}`]);
    expect(local).toMatchObject({ code: 0, stderr: "" });
    expect(local.stdout).toContain(`| ${node2} * | STANDBY |`);
    expect(local.stdout).toContain("No disagreement.");
  });

  test(`a failover on screen within ${FAILOVER_ON_SCREEN_MS} ms of the node answering MASTER`, async () => {
    // The page polls /status at first and follows /events from 5 s on (src/ui/script.ts).
    await waitFor("the page to follow /events", async () =>
      (await seen()).live.startsWith("● live: following /events"),
    );
    await pg.primary.stop();
    await waitFor("node1 to answer UNKNOWN", async () => (await answer(s1.ports[0]!)) === "UNKNOWN");
    await pg.standby.promote();
    await waitFor("node2 to answer MASTER", async () => (await answer(s2.ports[0]!)) === "MASTER", 30_000, 2);
    const answeredAt = performance.now();
    const s = (await waitFor(
      "node2 MASTER on screen",
      async () => {
        const v = await seen();
        return v.rows[node2]?.Answer === "MASTER" ? v : undefined;
      },
      10_000,
      5,
    )) as Seen;
    const onScreenMs = performance.now() - answeredAt;
    await shot("failover");
    console.log(`failover on screen ${onScreenMs.toFixed(0)} ms after node2 answered MASTER`);
    expect(onScreenMs).toBeLessThan(FAILOVER_ON_SCREEN_MS);
    expect(s.rows[node2]).toMatchObject({ "Role by its poll": "primary", Timeline: "2" });
    await waitFor("node1 UNKNOWN on screen", async () => (await seen()).rows[node1]?.Answer === "UNKNOWN");
    const after = await seen();
    expect(after.heading).toBe("✓ No disagreement");
    expect(after.transitions.some((t) => t.includes(`${node2} standby → primary`))).toBe(true);
  });

  test("a stopped peer is shown as unreachable, not hidden", async () => {
    await s1.stop();
    const s = (await waitFor("node1 unreachable on screen", async () => {
      const v = await seen();
      // A peer on its way out may time out first; once it is gone, the connection is refused.
      return v.rows[node1]?.Node === `${node1} connection refused` ? v : undefined;
    })) as Seen;
    await shot("peer-stopped");
    expect(s.rows[node1]!.Answer).toBe("NO ANSWER");
    expect(s.findings).toEqual([`${node1} cannot be reached: connection refused`]);
    // A phone's width: one card per node, the same words.
    await page.resize(390, 844);
    await shot("phone");
    const narrow = await seen();
    expect(narrow.rows[node2]!.Answer).toBe("MASTER");
    expect(await page.evaluate<string>(`getComputedStyle(document.querySelector("thead")).display`)).toBe("none");
  });
});
