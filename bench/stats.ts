// Medians and spreads of repeated runs: every figure the suite reports is the median of its
// runs, with the lowest and highest beside it.

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(values: number[]): Spread {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: values };
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs: values };
}

/** `12.3k (11.9k..12.8k)` style, with the given formatter. */
export function fmtSpread(s: Spread, f: (n: number) => string): string {
  if (!Number.isFinite(s.median)) return "-";
  if (s.runs.length < 2 || s.min === s.max) return f(s.median);
  return `${f(s.median)} (${f(s.min)}..${f(s.max)})`;
}

export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return "-";
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n >= 1000 ? `${(n / 1000).toFixed(2)}k` : n.toFixed(0);
}

export function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return "-";
  if (n >= 1000) return `${(n / 1000).toFixed(2)} s`;
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)} ms`;
}

export function fmtMb(kb: number): string {
  return Number.isFinite(kb) ? `${(kb / 1024).toFixed(1)} MB` : "-";
}
