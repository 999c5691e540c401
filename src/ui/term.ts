// `replstatus status`: the status page's table in a terminal, as `patronictl
// list` prints its own, from one /status (a node's or replstatus route's),
// with the same rules (model.ts). Exit 0 when nothing disagrees, 1 when
// something does (so it serves as a check itself), 3 when the /status could
// not be read. ARCHITECTURE.md, "The status page"; docs/status-page.md.
import type { ListenAddress } from "../address.ts";
import type { Cluster, Finding } from "./model.ts";
import { statusRules } from "./rules.ts";

const { answerWord, clusterOf, disagreements, hostOf, shortId } = statusRules();

/** How often --watch draws again. */
export const WATCH_MS = 1000;
/** The most a /status request may take. */
export const STATUS_TIMEOUT_MS = 3000;
export const EXIT_AGREE = 0;
export const EXIT_DISAGREE = 1;
export const EXIT_UNREADABLE = 3;

export interface StatusRun {
  /** Base URL of the http listener, without /status. */
  url: string;
  watch: boolean;
  json: boolean;
  /** For an https URL: the CA, certificate and key (--peer-ca, --peer-cert, --peer-key). */
  tls?: { ca?: string; cert?: string; key?: string };
  write?(text: string): void;
}

/** The URL of this host's first http listener (a wildcard address asked on loopback), or undefined without one. */
export function localStatusUrl(listen: readonly ListenAddress[]): string | undefined {
  const http = listen.find((a) => a.mode === "http");
  if (!http) return undefined;
  const host = http.host === "0.0.0.0" ? "127.0.0.1" : http.host === "::" ? "::1" : http.host;
  return `${http.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${http.port}`;
}

/** What one look found: the cluster and its disagreements, or why there is none. */
type Look = { cluster: Cluster; findings: Finding[] } | { error: string };

async function look(run: StatusRun): Promise<Look> {
  try {
    const res = await fetch(`${run.url}/status`, {
      signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
      headers: { accept: "application/json" },
      redirect: "manual",
      ...(run.tls && run.url.startsWith("https:") ? { tls: run.tls } : {}),
    });
    if (res.status !== 200) return { error: `HTTP ${res.status} from ${run.url}/status` };
    const cluster = clusterOf(await res.json(), hostOf(run.url));
    return { cluster, findings: disagreements(cluster) };
  } catch (err) {
    const e = err as { name?: string; message?: string };
    const why =
      e.name === "TimeoutError" ? `no answer within ${STATUS_TIMEOUT_MS / 1000} s` : (e.message ?? String(err));
    return { error: `could not read ${run.url}/status: ${why}` };
  }
}

function bytesText(b: number | null): string {
  if (b === null) return "";
  if (b < 1024) return `${b} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = b / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function sinceText(iso: string | null, nowMs: number): string {
  if (!iso) return "";
  const s = Math.max(0, (nowMs - Date.parse(iso)) / 1000);
  return s < 90
    ? `${s.toFixed(s < 10 ? 1 : 0)} s`
    : s < 5400
      ? `${Math.round(s / 60)} min`
      : `${(s / 3600).toFixed(1)} h`;
}

/** The table, boxed as `patronictl list` boxes its own; columns nobody fills are left out. */
export function table(c: Cluster, nowMs = Date.now()): string {
  const columns: [string, (n: Cluster["nodes"][number]) => string][] = [
    ["Node", (n) => `${n.name}${n.self ? " *" : ""}`],
    ["Answer", (n) => answerWord(n)],
    ["Poll", (n) => (n.polled === "lagging" ? "standby" : (n.polled ?? ""))],
    ["Store", (n) => (n.store === null ? "" : `${n.store}${n.storeState ? ` (${n.storeState})` : ""}`)],
    ["TL", (n) => (n.timeline === null ? "" : String(n.timeline))],
    ["System id", (n) => shortId(n.systemId)],
    [
      "Lag",
      (n) =>
        n.lagBytes !== null
          ? bytesText(n.lagBytes)
          : n.storeLagBytes !== null
            ? `${bytesText(n.storeLagBytes)} (store)`
            : "",
    ],
    ["Replay age", (n) => (n.replayAgeS === null ? "" : `${n.replayAgeS.toFixed(1)} s`)],
    ["Receiver", (n) => n.receiver ?? ""],
    ["Override", (n) => n.override ?? ""],
    ["haproxy", (n) => n.haproxy.map((h) => `${h.backend}/${h.server} ${h.status}`).join(", ")],
    ["Since", (n) => sinceText(n.changedAt, nowMs)],
    [
      "Note",
      (n) =>
        n.reach === "ok"
          ? (n.fence ?? "")
          : n.reach === "not asked"
            ? "known from the store only"
            : (n.detail ?? n.reach),
    ],
  ];
  const cells = c.nodes.map((n) => columns.map(([, f]) => f(n)));
  const used = columns.map((_, i) => i < 2 || cells.some((row) => row[i] !== ""));
  const heads = columns.map(([h]) => h).filter((_, i) => used[i]);
  const rows = cells.map((row) => row.filter((_, i) => used[i]));
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((v, i) => v.padEnd(widths[i]!)).join(" | ")} |`;
  const rule = `+${widths.map((w) => "-".repeat(w + 2)).join("+")}+`;
  const title = `+ ${c.mode === "route" ? "replstatus route" : c.mode === "patroni" ? `Patroni, leader ${c.leader ?? "none"}` : c.mode === "peers" ? "split-brain guard" : "a single node"} `;
  const top = title.length < rule.length ? title + rule.slice(title.length) : rule;
  return [top, line(heads), rule, ...rows.map(line), rule].join("\n") + "\n";
}

/** The whole text of one look: the table, the disagreements, the last transitions. */
export function report(l: Look, url: string, nowMs = Date.now()): string {
  if ("error" in l) return `replstatus: ${l.error}\n`;
  const out = [`replstatus status of ${url} (* is the node that answered)`, table(l.cluster, nowMs)];
  if (l.findings.length === 0) out.push("No disagreement.");
  else
    out.push(
      `${l.findings.length === 1 ? "One disagreement" : `${l.findings.length} disagreements`}:`,
      ...l.findings.map((f) => `  ! ${f.text}`),
    );
  if (l.cluster.transitions.length > 0) {
    out.push("", "Last transitions:");
    for (const t of l.cluster.transitions.slice(0, 5))
      out.push(`  ${t.at}  ${t.node}  ${t.from} -> ${t.to}  (${t.reason})`);
  }
  return out.join("\n") + "\n";
}

function json(l: Look): string {
  if ("error" in l) return JSON.stringify({ error: l.error }) + "\n";
  return JSON.stringify({ ...l.cluster, disagreements: l.findings }) + "\n";
}

const exitOf = (l: Look) => ("error" in l ? EXIT_UNREADABLE : l.findings.length > 0 ? EXIT_DISAGREE : EXIT_AGREE);

/** Runs `replstatus status`; resolves to the exit code (with --watch, the last look's, after SIGINT or SIGTERM). */
export async function runStatus(run: StatusRun): Promise<number> {
  const write = run.write ?? ((text: string) => void process.stdout.write(text));
  const render = (l: Look) => (run.json ? json(l) : report(l, run.url));
  if (!run.watch) {
    const l = await look(run);
    if ("error" in l && !run.json) process.stderr.write(render(l));
    else write(render(l));
    return exitOf(l);
  }
  let stopped = false;
  const stop = () => (stopped = true);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const clear = process.stdout.isTTY && !run.json ? "\x1b[H\x1b[2J" : "";
  let code = EXIT_AGREE;
  while (!stopped) {
    const startedAt = Date.now();
    const l = await look(run);
    code = exitOf(l);
    write(clear + (run.json ? "" : `${new Date().toISOString()}\n`) + render(l));
    const waitMs = startedAt + WATCH_MS - Date.now();
    for (let t = 0; t < waitMs && !stopped; t += 50) await Bun.sleep(Math.min(50, waitMs - t));
  }
  return code;
}
