// The rate chart, as hand-written SVG text: connections per second (left) and p99 latency
// (right, log scale) by concurrency, one line per server, medians with min..max whiskers.
import type { RateResult } from "./rate.ts";
import type { Spread } from "./stats.ts";

const SERIES: { key: string; label: string; color: string }[] = [
  { key: "replstatus", label: "replstatus", color: "#1f77b4" },
  { key: "bgw", label: "C bgw_replstatus", color: "#d62728" },
  { key: "floor", label: "bare Bun.listen (floor)", color: "#7f7f7f" },
];

const W = 440;
const H = 300;
const PAD = { left: 64, right: 16, top: 36, bottom: 44 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

interface Panel {
  title: string;
  unit: string;
  log: boolean;
  pick: (key: string, c: number) => Spread | undefined;
}

function panel(r: RateResult, p: Panel, x0: number): string[] {
  const cs = r.concurrencies;
  const keys = SERIES.filter((s) => r.cells.some((c) => c.key === s.key));
  const all = keys.flatMap((s) => cs.map((c) => p.pick(s.key, c)?.max ?? Number.NaN)).filter(Number.isFinite);
  const lows = keys.flatMap((s) => cs.map((c) => p.pick(s.key, c)?.min ?? Number.NaN)).filter((v) => v > 0);
  const top = niceMax(Math.max(...all, 0));
  const bottom = p.log ? 10 ** Math.floor(Math.log10(Math.min(...lows, top / 10))) : 0;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const xOf = (i: number) => x0 + PAD.left + (cs.length === 1 ? plotW / 2 : (i * plotW) / (cs.length - 1));
  const yOf = (v: number) => {
    const f = p.log
      ? (Math.log10(Math.max(v, bottom)) - Math.log10(bottom)) / (Math.log10(top) - Math.log10(bottom))
      : v / top;
    return PAD.top + plotH * (1 - f);
  };
  const out: string[] = [];
  out.push(`<text x="${x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
  // Grid and y labels.
  const ticks: number[] = [];
  if (p.log) for (let v = bottom; v <= top * 1.0001; v *= 10) ticks.push(v);
  else for (let i = 0; i <= 4; i++) ticks.push((top * i) / 4);
  for (const v of ticks) {
    const y = yOf(v).toFixed(1);
    const label = v >= 1000 ? `${v / 1000}k` : String(Number(v.toPrecision(3)));
    out.push(`<line x1="${x0 + PAD.left}" x2="${x0 + W - PAD.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 + PAD.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label}</text>`);
  }
  out.push(
    `<text x="${x0 + 14}" y="${PAD.top + plotH / 2}" transform="rotate(-90 ${x0 + 14} ${PAD.top + plotH / 2})" text-anchor="middle">${esc(p.unit)}</text>`,
  );
  cs.forEach((c, i) => {
    out.push(`<text x="${xOf(i)}" y="${H - PAD.bottom + 18}" text-anchor="middle">${c}</text>`);
  });
  out.push(`<text x="${x0 + PAD.left + plotW / 2}" y="${H - 8}" text-anchor="middle">concurrent connections</text>`);
  for (const s of keys) {
    const pts: string[] = [];
    cs.forEach((c, i) => {
      const v = p.pick(s.key, c);
      if (!v || !Number.isFinite(v.median)) return;
      const x = xOf(i).toFixed(1);
      pts.push(`${x},${yOf(v.median).toFixed(1)}`);
      out.push(
        `<line x1="${x}" x2="${x}" y1="${yOf(v.min).toFixed(1)}" y2="${yOf(v.max).toFixed(1)}" stroke="${s.color}" stroke-width="1.5"/>`,
      );
      out.push(`<circle cx="${x}" cy="${yOf(v.median).toFixed(1)}" r="3" fill="${s.color}"/>`);
    });
    out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
  }
  return out;
}

export function rateSvg(r: RateResult, subtitle: string): string {
  const pick = (f: "connsPerS" | "p99Ms") => (key: string, c: number) =>
    r.cells.find((x) => x.key === key && x.concurrency === c)?.[f];
  const keys = SERIES.filter((s) => r.cells.some((c) => c.key === s.key));
  const body = [
    ...panel(r, { title: "connections per second", unit: "conn/s", log: false, pick: pick("connsPerS") }, 0),
    ...panel(r, { title: "p99 latency (log scale)", unit: "ms", log: true, pick: pick("p99Ms") }, W),
  ];
  const legendY = H + 14;
  keys.forEach((s, i) => {
    const x = 24 + i * 260;
    body.push(`<line x1="${x}" x2="${x + 24}" y1="${legendY}" y2="${legendY}" stroke="${s.color}" stroke-width="3"/>`);
    body.push(`<text x="${x + 30}" y="${legendY}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  body.push(`<text x="${W}" y="${H + 38}" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 50}" viewBox="0 0 ${2 * W} ${H + 50}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}
