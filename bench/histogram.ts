// A latency histogram in microseconds, log-linear like HdrHistogram: exact below 256 us, then
// 128 buckets per power of two (under 0.8% relative error), up to 2^32 us. Load clients keep
// one each and send the non-empty buckets to the parent, which merges them: a few hundred
// numbers per process instead of one per connection.

const LINEAR = 256;
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Number of buckets: 256 exact, then 128 for each power of two from 2^8 to 2^31. */
export const BUCKETS = LINEAR + (32 - 8) * SUB;

/** Bucket index of a latency in microseconds (clamped to 0..2^32-1). */
export function bucketOf(us: number): number {
  const v = us <= 0 ? 0 : us >= 0xffffffff ? 0xffffffff : Math.floor(us);
  if (v < LINEAR) return v;
  const msb = 31 - Math.clz32(v);
  const shift = msb - SUB_BITS;
  return LINEAR + (msb - 8) * SUB + ((v >>> shift) - SUB);
}

/** Lowest latency (us) that falls in a bucket. */
export function bucketLowUs(index: number): number {
  if (index < LINEAR) return index;
  const k = index - LINEAR;
  const msb = 8 + Math.floor(k / SUB);
  const shift = msb - SUB_BITS;
  return ((k % SUB) + SUB) * 2 ** shift;
}

/** Width of a bucket in microseconds (1 in the exact range). */
function bucketWidthUs(index: number): number {
  if (index < LINEAR) return 1;
  return 2 ** (8 + Math.floor((index - LINEAR) / SUB) - SUB_BITS);
}

export interface Histogram {
  counts: Uint32Array;
  total: number;
  maxUs: number;
}

export function createHistogram(): Histogram {
  return { counts: new Uint32Array(BUCKETS), total: 0, maxUs: 0 };
}

export function record(h: Histogram, us: number): void {
  h.counts[bucketOf(us)]!++;
  h.total++;
  if (us > h.maxUs) h.maxUs = us;
}

/** Non-empty buckets as a flat [index, count, index, count, ...] list, plus the exact max. */
export interface SparseHistogram {
  buckets: number[];
  maxUs: number;
}

export function toSparse(h: Histogram): SparseHistogram {
  const buckets: number[] = [];
  for (let i = 0; i < BUCKETS; i++) {
    const c = h.counts[i]!;
    if (c !== 0) buckets.push(i, c);
  }
  return { buckets, maxUs: Math.round(h.maxUs) };
}

export function mergeSparse(into: Histogram, s: SparseHistogram): void {
  for (let i = 0; i + 1 < s.buckets.length; i += 2) {
    const index = s.buckets[i]!;
    const count = s.buckets[i + 1]!;
    into.counts[index]! += count;
    into.total += count;
  }
  if (s.maxUs > into.maxUs) into.maxUs = s.maxUs;
}

/**
 * Latency (us) at quantile q (0..1): the middle of the bucket holding the ceil(q * total)-th
 * sample, never above the exact max. 0 for an empty histogram.
 */
export function quantileUs(h: Histogram, q: number): number {
  if (h.total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * h.total));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i]!;
    if (seen >= rank) {
      const mid = bucketLowUs(i) + (bucketWidthUs(i) - 1) / 2;
      return Math.min(mid, h.maxUs);
    }
  }
  return h.maxUs;
}
