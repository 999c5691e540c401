// The status page, GET /ui: one self-contained HTML answer (CSS and script
// inline, nothing from another origin), built once on first use and then served
// from memory like every prebuilt answer. A process where nobody opens /ui never
// builds it. The script is model.ts and script.ts, type-stripped by Bun's
// transpiler: the rules the page applies are the ones `replstatus status` does.
// ARCHITECTURE.md, "The status page".
import { modelScript, plain } from "./rules.ts";
// @ts-expect-error: the file's text, a string (Bun's import attribute)
import scriptText from "./script.ts" with { type: "text" };

const scriptSource: string = scriptText;

const STYLE = `
:root { --fg:#1b1b1b; --bg:#fbfbfa; --muted:#5c5c5c; --line:#d8d8d4; --card:#fff;
  --primary:#0072B2; --standby:#009E73; --lagging:#E69F00; --fenced:#D55E00; --unknown:#6b6b6b; }
@media (prefers-color-scheme: dark) { :root { --fg:#eee; --bg:#161616; --muted:#aaa; --line:#3a3a3a; --card:#1f1f1f; } }
* { box-sizing: border-box; }
body { margin:0; padding:1rem; font:15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header h1 { font-size:1.3rem; margin:0; } header h1 small { font-weight:normal; color:var(--muted); }
#live { margin:.2rem 0 1rem; color:var(--muted); }
body.stale main { opacity:.55; } body.stale #live { color:var(--fenced); font-weight:600; }
h2 { font-size:1.05rem; margin:1.2rem 0 .4rem; }
.findings { border:1px solid var(--line); border-left:.5rem solid var(--standby); background:var(--card); padding:.2rem 1rem .6rem; }
.findings.bad { border-left-color:var(--fenced); } .findings h2 { margin:.5rem 0 .3rem; }
.findings ul { margin:.2rem 0; padding-left:1.2rem; } .findings li { margin:.2rem 0; font-weight:600; }
table { border-collapse:collapse; width:100%; background:var(--card); }
th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:.8rem; color:var(--muted); font-weight:600; }
tr.dim td { color:var(--muted); }
.name { font-weight:600; margin-right:.4rem; } .detail { color:var(--muted); font-size:.85rem; }
.tag { font-size:.75rem; border:1px solid var(--line); border-radius:.6rem; padding:0 .4rem; color:var(--muted); white-space:nowrap; }
.badge { display:inline-block; min-width:6.2rem; text-align:center; font-weight:700; letter-spacing:.03em; padding:.1rem .4rem; border-radius:.25rem; color:#fff; }
.badge.primary { background:var(--primary); } .badge.standby { background:var(--standby); }
.badge.lagging { background:var(--lagging); color:#000; } .badge.fenced { background:var(--fenced); }
.badge.unknown { background:var(--unknown); }
.badge.noanswer { background:transparent; color:var(--fg); border:2px dashed var(--fenced); }
.badge.unasked { background:transparent; color:var(--muted); border:1px dotted var(--muted); }
.warn { font-weight:700; color:var(--fenced); } .nowrap { white-space:nowrap; }
table.no-store [data-label="Role by the store"], table.no-haproxy [data-label="haproxy"] { display:none; }
.spark { width:7.5rem; height:1.4rem; display:block; } .spark polyline { fill:none; stroke:var(--primary); stroke-width:1.2; vector-effect:non-scaling-stroke; }
#transitions { list-style:none; padding:0; margin:0; }
#transitions li { display:flex; flex-wrap:wrap; gap:.2rem .8rem; padding:.3rem 0; border-bottom:1px solid var(--line); }
#transitions time { font-variant-numeric:tabular-nums; color:var(--muted); }
footer { margin-top:1.5rem; color:var(--muted); font-size:.8rem; }
@media (max-width: 760px) {
  table, thead, tbody, tr, td { display:block; } thead { display:none; }
  tr { border:1px solid var(--line); margin-bottom:.8rem; padding:.3rem .5rem; }
  td { border:0; padding:.15rem 0; display:flex; gap:.6rem; }
  td::before { content:attr(data-label); flex:0 0 9rem; color:var(--muted); font-size:.85rem; }
  td > * { min-width:0; } .tag { white-space:normal; }
  td:empty { display:none; }
}`;

/** The table's columns; script.ts fills the cells in this order. */
const COLUMNS = [
  "Node",
  "Answer",
  "Role by its poll",
  "Role by the store",
  "Timeline",
  "System id",
  "Replay lag",
  "Lag history",
  "WAL receiver",
  "Override",
  "Fence",
  "haproxy",
  "Since",
];

function sha256(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("base64");
}

function html(script: string): string {
  const head = COLUMNS.map((c) => `<th scope="col" data-label="${c}">${c}</th>`).join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>replstatus: the cluster at a glance</title><style>${STYLE}</style></head>
<body><header><h1>replstatus <small id="source"></small></h1><p id="live" role="status">loading /status…</p></header>
<main><section id="findings" class="findings" aria-live="polite"></section>
<section><h2>Nodes</h2><table id="nodes"><thead><tr>${head}</tr></thead><tbody id="rows"></tbody></table></section>
<section><h2>Last transitions</h2><ol id="transitions"></ol></section></main>
<footer>Read-only. This page reads /status and /events of the process that served it, nothing else; colours always come with words.</footer>
<script>${script}</script></body></html>
`;
}

interface Page {
  html: string;
  /** The answer's headers but Content-Length and Connection. */
  headers: Record<string, string>;
}

let page: Page | undefined;

/** The page and its headers, built on the first call (replstatus route serves it with Bun.serve). */
export function uiPage(): Page {
  if (page) return page;
  const script = `"use strict";(() => {\n${modelScript()}\n${plain(scriptSource)}\n})();`;
  // Same origin only, the inline script by its hash, the inline style, no framing.
  const csp =
    `default-src 'none'; script-src 'sha256-${sha256(script)}'; style-src 'unsafe-inline'; ` +
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  page = {
    html: html(script),
    headers: {
      "Content-Type": "text/html; charset=utf-8",
      "Cache-Control": "no-store",
      "Content-Security-Policy": csp,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
    },
  };
  return page;
}

let built: { get: Uint8Array; head: Uint8Array } | undefined;

function build(): { get: Uint8Array; head: Uint8Array } {
  const { html: text, headers: h } = uiPage();
  const body = Buffer.from(text, "utf8");
  const headers =
    "HTTP/1.1 200 OK\r\n" +
    Object.entries(h)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("") +
    `Content-Length: ${body.byteLength}\r\n` +
    "Connection: close\r\n\r\n";
  const head = new Uint8Array(Buffer.from(headers, "latin1"));
  const get = new Uint8Array(head.byteLength + body.byteLength);
  get.set(head);
  get.set(body, head.byteLength);
  return { get, head };
}

/** The whole HTTP answer to GET /ui (`withBody`) or HEAD /ui; built on the first call. */
export function uiResponse(withBody: boolean): Uint8Array {
  built ??= build();
  return withBody ? built.get : built.head;
}
