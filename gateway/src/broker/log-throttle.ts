/**
 * "Log this at most once per key per interval, and say how many were suppressed": keeps a
 * misconfigured agent or a password guesser from flooding the log.
 */
export class LogThrottle {
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  readonly #intervalMs: number;
  readonly #now: () => number;

  constructor(intervalMs = 60_000, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Returns the number suppressed since the last line when it is time to log, else undefined. */
  take(key: string): number | undefined {
    const now = this.#now();
    const last = this.#last.get(key);
    if (last && now - last.at < this.#intervalMs) {
      last.suppressed++;
      return undefined;
    }
    // Bounded even under a flood of distinct keys.
    if (this.#last.size >= 10_000) this.#last.clear();
    this.#last.set(key, { at: now, suppressed: 0 });
    return last?.suppressed ?? 0;
  }
}
