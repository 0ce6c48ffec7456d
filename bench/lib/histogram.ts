/**
 * A log-bucketed latency histogram: 2 % wide buckets from 10 µs to ~100 s, fixed memory, so every
 * message's latency can be recorded without keeping the samples. Percentiles are reported as the
 * bucket's upper bound (at most 2 % high).
 */
const MIN_US = 10;
const GROWTH = 1.02;
const BUCKETS = Math.ceil(Math.log(1e8 / MIN_US) / Math.log(GROWTH)) + 2;
const LOG_GROWTH = Math.log(GROWTH);

export class LogHistogram {
  readonly counts: Float64Array;
  total = 0;
  maxUs = 0;

  constructor(counts?: ArrayLike<number>) {
    this.counts = new Float64Array(BUCKETS);
    if (counts) this.merge(counts);
  }

  record(us: number): void {
    const i = us <= MIN_US ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(us / MIN_US) / LOG_GROWTH));
    this.counts[i]!++;
    this.total++;
    if (us > this.maxUs) this.maxUs = us;
  }

  merge(counts: ArrayLike<number>): void {
    for (let i = 0; i < BUCKETS && i < counts.length; i++) {
      const c = counts[i]!;
      this.counts[i]! += c;
      this.total += c;
    }
  }

  /** p in 0..100; milliseconds, or null with no samples. */
  percentileMs(p: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return (MIN_US * GROWTH ** i) / 1000;
    }
    return (MIN_US * GROWTH ** (BUCKETS - 1)) / 1000;
  }

  toArray(): number[] {
    return Array.from(this.counts);
  }
}

/** Exact percentile of a small sample set (sorted copy), milliseconds. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? null;
}
