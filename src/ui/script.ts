/// <reference lib="dom" />
// The status page's script, run in the browser (page.ts inlines it after
// model.ts, as plain JavaScript; the imports below are only for the type
// checker). It reads its own origin only: /status once a second while the page
// is visible, and /events for at-once updates where the server has them; it
// does nothing while the page is hidden. Text goes in through textContent only.
import { answerWord, clusterOf, disagreements, shortId, type Cluster, type NodeRow } from "./model.ts";

const POLL_MS = 1000;
/** With a live route stream, which carries every change, /status is only a check. */
const POLL_STREAMING_MS = 5000;
const STREAM_RETRY_MS = 10_000;
/**
 * The stream is opened this long after the page loaded, counted by a timer
 * (Chromium's virtual time moves timers, not the clock): its virtual time
 * (--virtual-time-budget, as with --dump-dom) stands still while a fetch is
 * open, so a stream from the start would keep a DOM dump from ever coming.
 */
const STREAM_AFTER_MS = 5000;
/** Lag samples kept per node for the sparkline: a ring of this many. */
const SPARK_SAMPLES = 60;
const SPARK_MIN_GAP_MS = 500;

interface Sample {
  t: number;
  bytes: number;
}

const lagHistory = new Map<string, Sample[]>();
let cluster: Cluster | undefined;
let lastOkAt = 0;
let failing: string | null = null;
let stream: EventSource | undefined;
let streaming = false;
/** Whether to (try to) open the stream now; timers set it. */
let streamWanted = false;
let timer: ReturnType<typeof setTimeout> | undefined;

function byId(id: string): HTMLElement {
  return document.getElementById(id)!;
}

function el(tag: string, cls?: string, text?: string): HTMLElement {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");
function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function ago(iso: string | null): string {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90
    ? `${s.toFixed(s < 10 ? 1 : 0)} s ago`
    : s < 5400
      ? `${Math.round(s / 60)} min ago`
      : `${(s / 3600).toFixed(1)} h ago`;
}

function formatBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = b / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function sample(c: Cluster): void {
  const now = Date.now();
  for (const n of c.nodes) {
    const bytes = n.lagBytes ?? n.storeLagBytes;
    if (n.reach !== "ok") continue;
    // A node that is no standby (any more) has no lag: its line starts again.
    if (bytes === null) {
      lagHistory.delete(n.name);
      continue;
    }
    let ring = lagHistory.get(n.name);
    if (!ring) lagHistory.set(n.name, (ring = []));
    if (ring.length > 0 && now - ring[ring.length - 1]!.t < SPARK_MIN_GAP_MS) continue;
    ring.push({ t: now, bytes });
    if (ring.length > SPARK_SAMPLES) ring.shift();
  }
}

function sparkline(name: string): Element {
  const ring = lagHistory.get(name) ?? [];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${SPARK_SAMPLES} 20`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...ring.map((s) => s.bytes));
  const title = document.createElementNS(ns, "title");
  title.textContent = ring.length
    ? `replay lag, last ${ring.length} samples, at most ${formatBytes(max)}`
    : "no samples yet";
  svg.appendChild(title);
  if (ring.length > 1) {
    const line = document.createElementNS(ns, "polyline");
    const x0 = SPARK_SAMPLES - ring.length;
    line.setAttribute("points", ring.map((s, i) => `${x0 + i},${(19 - (s.bytes / max) * 18).toFixed(1)}`).join(" "));
    svg.appendChild(line);
  }
  return svg;
}

/** CSS class of an answer word's badge; the word itself is always shown too. */
function badgeClass(n: NodeRow): string {
  if (n.reach === "unreachable") return "badge noanswer";
  if (n.reach !== "ok") return "badge unasked";
  return `badge ${n.answer ?? "unknown"}`;
}

function cell(tr: HTMLElement, label: string, content: string | Node, cls?: string): HTMLElement {
  const td = el("td", cls);
  td.dataset.label = label;
  if (typeof content === "string") td.textContent = content;
  else td.appendChild(content);
  tr.appendChild(td);
  return td;
}

function roleWord(polled: string | null): string {
  return polled === "primary"
    ? "primary"
    : polled === "standby" || polled === "lagging"
      ? "standby"
      : polled === null
        ? ""
        : "unknown";
}

function row(n: NodeRow): HTMLElement {
  const tr = el("tr", n.reach === "ok" ? "" : "dim");
  tr.dataset.node = n.name;
  const name = el("span", "name", n.name);
  const nameCell = el("div");
  nameCell.appendChild(name);
  if (n.self) nameCell.appendChild(el("span", "tag", "this page's node"));
  if (n.reach !== "ok")
    nameCell.appendChild(
      el("div", "detail", n.reach === "not asked" ? "known from the store only" : (n.detail ?? n.reach)),
    );
  cell(tr, "Node", nameCell);
  cell(tr, "Answer", el("span", badgeClass(n), answerWord(n)));
  cell(tr, "Role by its poll", roleWord(n.polled));
  cell(tr, "Role by the store", n.store === null ? "" : `${n.store}${n.storeState ? ` (${n.storeState})` : ""}`);
  cell(tr, "Timeline", n.timeline === null ? "" : String(n.timeline));
  const id = el("span", "", shortId(n.systemId));
  if (n.systemId) id.title = n.systemId;
  cell(tr, "System id", id, "nowrap");
  const lag =
    n.lagBytes !== null
      ? `${formatBytes(n.lagBytes)}${n.replayAgeS !== null ? `, ${n.replayAgeS.toFixed(1)} s` : ""}`
      : n.storeLagBytes !== null
        ? `${formatBytes(n.storeLagBytes)} (store)`
        : "";
  cell(tr, "Replay lag", lag, "nowrap");
  cell(tr, "Lag history", sparkline(n.name), "sparkcell");
  cell(tr, "WAL receiver", n.receiver ?? "");
  cell(tr, "Override", n.override ?? "", n.override && n.override !== "ready" ? "warn" : "");
  cell(tr, "Fence", n.fence ?? "");
  cell(tr, "haproxy", n.haproxy.map((h) => `${h.backend}/${h.server}: ${h.status}`).join(", "));
  cell(tr, "Since", ago(n.changedAt), "nowrap");
  return tr;
}

function modeText(c: Cluster): string {
  if (c.mode === "route") return "replstatus route: every server it follows, and haproxy's view";
  if (c.mode === "patroni") return `Patroni: the store's leader is ${c.leader ?? "nobody"}`;
  if (c.mode === "peers") return `split-brain guard with ${c.nodes.length - 1} peer${c.nodes.length > 2 ? "s" : ""}`;
  return "a single node (no peers, no store)";
}

function renderFindings(c: Cluster): void {
  const box = byId("findings");
  const found = disagreements(c);
  box.replaceChildren();
  box.className = found.length ? "findings bad" : "findings good";
  box.appendChild(
    el(
      "h2",
      "",
      found.length
        ? `⚠ ${found.length === 1 ? "One disagreement" : `${found.length} disagreements`}`
        : "✓ No disagreement",
    ),
  );
  if (!found.length) {
    const master = c.nodes.find((n) => n.reach === "ok" && n.answer === "primary");
    box.appendChild(
      el("p", "", master ? `${master.name} answers MASTER; the others agree.` : "Nothing to compare yet."),
    );
    return;
  }
  const ul = el("ul");
  for (const f of found) {
    const li = el("li", "", f.text);
    li.dataset.code = f.code;
    ul.appendChild(li);
  }
  box.appendChild(ul);
}

function renderTransitions(c: Cluster): void {
  const ol = byId("transitions");
  ol.replaceChildren();
  if (!c.transitions.length) ol.appendChild(el("li", "detail", "none yet"));
  for (const t of c.transitions) {
    const li = el("li");
    li.appendChild(el("time", "", clock(Date.parse(t.at))));
    li.appendChild(el("span", "name", t.node));
    li.appendChild(el("span", "", `${t.from} → ${t.to}`));
    li.appendChild(el("span", "detail", t.reason));
    ol.appendChild(li);
  }
}

function render(): void {
  const live = byId("live");
  document.body.classList.toggle("stale", failing !== null);
  const via = streaming ? "live: following /events" : `polling /status every ${POLL_MS / 1000} s`;
  live.textContent = failing
    ? `✗ cannot reach ${location.host}: ${failing}. ${lastOkAt ? `Showing what it said at ${clock(lastOkAt)}.` : ""}`
    : `${streaming ? "●" : "○"} ${via}; updated ${clock(lastOkAt)}`;
  if (!cluster) return;
  byId("source").textContent = modeText(cluster);
  renderFindings(cluster);
  const table = byId("nodes");
  table.classList.toggle("no-store", !cluster.nodes.some((n) => n.store !== null));
  table.classList.toggle("no-haproxy", !cluster.nodes.some((n) => n.haproxy.length > 0));
  byId("rows").replaceChildren(...cluster.nodes.map(row));
  renderTransitions(cluster);
}

function take(body: unknown): void {
  try {
    cluster = clusterOf(body, location.host);
  } catch (err) {
    failing = `bad answer: ${(err as Error).message}`;
    return render();
  }
  failing = null;
  lastOkAt = Date.now();
  sample(cluster);
  render();
}

async function poll(): Promise<void> {
  timer = undefined;
  try {
    const res = await fetch("status", { cache: "no-store", headers: { accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status} from /status`);
    take(await res.json());
  } catch (err) {
    failing = (err as Error).message || String(err);
    render();
  }
  schedule();
}

function schedule(): void {
  if (document.hidden || timer !== undefined) return;
  if (!stream && streamWanted) follow();
  const wait = streaming && cluster?.source === "route" ? POLL_STREAMING_MS : POLL_MS;
  timer = setTimeout(() => void poll(), wait);
}

/** /events: every change of the serving process's answer (or, from route, of any server) at once. */
function follow(): void {
  if (typeof EventSource === "undefined") return;
  const es = new EventSource("events");
  stream = es;
  const onEvent = (e: MessageEvent) => {
    try {
      take(JSON.parse(e.data as string));
    } catch {
      /* a bad event: the next poll shows the state */
    }
  };
  es.addEventListener("state", onEvent);
  es.addEventListener("route", onEvent);
  es.onopen = () => {
    streaming = true;
    render();
  };
  es.onerror = () => {
    streaming = false;
    // A server without /events (404) closes it for good: poll, and ask again later.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      stream = undefined;
      streamWanted = false;
      setTimeout(() => (streamWanted = true), STREAM_RETRY_MS);
    }
    render();
  };
}

function stop(): void {
  clearTimeout(timer);
  timer = undefined;
  stream?.close();
  stream = undefined;
  streaming = false;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) stop();
  else void poll();
});
setTimeout(() => (streamWanted = true), STREAM_AFTER_MS);
void poll();
