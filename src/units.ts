// Durations and sizes: parsed from the text a user types, and formatted back
// for logs and errors; oneLine for messages of other libraries.

/** `250ms`, `2s`, `1.5s` or a bare integer of milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (m[2] !== "s" && !Number.isInteger(n)) return undefined;
  return Math.round(n);
}

export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/**
 * `16MB`, `512kB`, `1GB` or a bare number of bytes; units are 1024-based as in
 * PostgreSQL's settings and taken in any case. Used by --max-lag-bytes and `?lag=`.
 */
export function parseSizeBytes(text: string): number | undefined {
  const m = /^(\d{1,15})\s?([kmgt]?b)?$/i.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]) * SIZE_UNITS[(m[2] ?? "b").toLowerCase()]!;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `20 MB`, `1.5 GB`, `512 bytes`: for log lines. */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1024) return `${n} bytes`;
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < 4) {
    n /= 1024;
    unit++;
  }
  return `${Math.round(n * 10) / 10} ${["bytes", "kB", "MB", "GB", "TB"][unit]}`;
}

/** Another library's message (a TOML parser's, a driver's) folded onto one line, for errors and logs. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
