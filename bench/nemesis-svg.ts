// The nemesis run's timeline as hand-written SVG text: the faults, the leader
// key, haproxy's view of each server, each replstatus's sampled answer, the
// write gaps (over a second without an acknowledged new-connection write) and the
// stale writes, on one time axis.
import type { RunResult } from "../test/kit/nemesis/run.ts";

const W = 1400;
const LEFT = 130;
const ROW = 16;
const HOLDER_COLOR: Record<string, string> = { db1: "#1f77b4", db2: "#ff7f0e", db3: "#2ca02c" };
const ANSWER_COLOR: Record<string, string> = { MASTER: "#2ca02c", STANDBY: "#c7e9c0", FENCED: "#d62728" };
const FAULT_COLOR: Record<string, string> = {
  "part-etcd": "#9467bd",
  "part-peers": "#8c564b",
  "part-lb": "#e377c2",
  "part-all": "#7f7f7f",
  "kill-postmaster": "#d62728",
  "kill-patroni": "#ff7f0e",
  "stop-postgres": "#bcbd22",
  "etcd-lost": "#17becf",
  switchover: "#1f77b4",
  failover: "#393b79",
  "restart-replstatus": "#637939",
};
const GAP_MS = 1000;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function timelineSvg(r: RunResult, title: string): string {
  const t0 = r.startedAt - 2000;
  const t1 = r.endedAt;
  const x = (t: number) => LEFT + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * (W - LEFT - 10);
  const out: string[] = [];
  let y = 30;
  const label = (text: string) =>
    out.push(`<text x="${LEFT - 6}" y="${y + ROW - 4}" text-anchor="end">${esc(text)}</text>`);
  const bar = (from: number, to: number, color: string, tip?: string) => {
    const w = Math.max(0.5, x(to) - x(from));
    out.push(
      `<rect x="${x(from).toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${ROW - 3}" fill="${color}">${tip ? `<title>${esc(tip)}</title>` : ""}</rect>`,
    );
  };
  /** Consecutive spans of one value from a list of (time, value) changes. */
  const spans = (
    changes: { at: number; v: string | undefined }[],
    color: (v: string | undefined) => string | undefined,
  ) => {
    changes.forEach((c, i) => {
      const c2 = color(c.v);
      if (c2) bar(c.at, changes[i + 1]?.at ?? t1, c2, c.v);
    });
  };

  label("faults");
  for (const f of r.faults)
    bar(
      f.start,
      Math.max(f.heal, f.start + 150),
      FAULT_COLOR[f.kind] ?? "#000",
      `${f.index + 1} ${f.kind} ${f.target ?? ""}`,
    );
  y += ROW + 4;
  label("leader key");
  spans(
    r.keys.map((k) => ({ at: k.at, v: k.holder })),
    (v) => (v ? HOLDER_COLOR[v] : "#ddd"),
  );
  y += ROW + 4;
  for (const server of ["db1", "db2", "db3"]) {
    label(`haproxy ${server} up`);
    spans(
      r.view.filter((e) => e.server === server).map((e) => ({ at: e.at, v: e.up ? "up" : undefined })),
      (v) => (v ? HOLDER_COLOR[server] : undefined),
    );
    y += ROW;
  }
  y += 4;
  for (const node of ["db1", "db2", "db3"]) {
    label(`replstatus ${node}`);
    const changes: { at: number; v: string }[] = [];
    for (const s of r.samples) {
      if (s.node !== node) continue;
      if (changes.at(-1)?.v !== s.text) changes.push({ at: s.from, v: s.text });
    }
    spans(changes, (v) => ANSWER_COLOR[v ?? ""] ?? "#bbb");
    y += ROW;
  }
  y += 4;
  label("write gaps > 1 s");
  const acks = r.writes
    .filter((w) => w.ok === true && w.kind === "new")
    .map((w) => w.done)
    .sort((a, b) => a - b);
  for (let i = 1; i < acks.length; i++)
    if (acks[i]! - acks[i - 1]! > GAP_MS)
      bar(acks[i - 1]!, acks[i]!, "#d62728", `${Math.round(acks[i]! - acks[i - 1]!)} ms`);
  y += ROW + 4;
  label("stale writes");
  for (const e of r.check.a.episodes) {
    const from = e.lostAt ?? t0;
    bar(
      from,
      from + e.windowMs,
      "#000",
      `${e.node}: ${e.writes} writes, ${Math.round(e.windowMs)} ms after the key left`,
    );
  }
  y += ROW + 8;
  // The time axis, a tick a minute.
  for (let m = 0; t0 + m * 60_000 <= t1; m++) {
    const tx = x(t0 + m * 60_000).toFixed(1);
    out.push(`<line x1="${tx}" x2="${tx}" y1="26" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${tx}" y="${y + 12}" text-anchor="middle">${m} min</text>`);
  }
  y += 24;
  const legend = Object.entries(FAULT_COLOR).map(([k, c]) => [k, c] as const);
  legend.forEach(([k, c], i) => {
    const lx = LEFT + (i % 6) * 205;
    const ly = y + Math.floor(i / 6) * 16;
    out.push(
      `<rect x="${lx}" y="${ly}" width="12" height="10" fill="${c}"/><text x="${lx + 16}" y="${ly + 9}">${esc(k)}</text>`,
    );
  });
  y += 40;
  const answers = Object.entries({ ...ANSWER_COLOR, "UNKNOWN / no answer": "#bbb" });
  answers.forEach(([k, c], i) => {
    const lx = LEFT + i * 205;
    out.push(
      `<rect x="${lx}" y="${y}" width="12" height="10" fill="${c}"/><text x="${lx + 16}" y="${y + 9}">${esc(k)}</text>`,
    );
  });
  y += 20;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="16" font-weight="bold" font-size="13">${esc(title)}</text>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}
