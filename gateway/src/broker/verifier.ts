/**
 * Checking a CONNECT's secret without letting scrypt take over the gateway.
 *
 * - scrypt runs on libuv's thread pool (async), at most `maxConcurrent` at a time, so file and
 *   DNS work sharing that pool is never starved by a reconnect storm; a queued check whose client
 *   has already gone is skipped.
 * - A secret that verified once is remembered per username as an HMAC of it under a key that
 *   lives only in this process, tied to the stored hash: a reconnect costs one HMAC, not one
 *   scrypt, and a rotated or removed credential no longer matches. At most one entry per
 *   principal in the file.
 * - Identical checks in flight at once share one scrypt.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { verifySecret, type CredentialRecord } from './credentials.js';

export type VerifyMethod = 'cache' | 'scrypt';

export interface VerifierOptions {
  maxConcurrent?: number;
  /** Called once per completed check that needed no scrypt ('cache') or ran one ('scrypt'). */
  onVerify?: (method: VerifyMethod, ok: boolean) => void;
  /** Replaces scrypt (tests count calls with it). */
  verify?: (secret: Uint8Array, hash: string) => Promise<boolean>;
}

interface CacheEntry {
  hash: string;
  digest: Buffer;
}

export class SecretVerifier {
  readonly #key = randomBytes(32);
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, { check: Promise<boolean>; abandoned: Array<() => boolean> }>();
  readonly #queue: Array<() => void> = [];
  readonly #maxConcurrent: number;
  readonly #onVerify: NonNullable<VerifierOptions['onVerify']>;
  readonly #verify: NonNullable<VerifierOptions['verify']>;
  #running = 0;

  constructor(opts: VerifierOptions = {}) {
    this.#maxConcurrent = Math.max(1, opts.maxConcurrent ?? 2);
    this.#onVerify = opts.onVerify ?? (() => undefined);
    this.#verify = opts.verify ?? verifySecret;
  }

  /** Checks `secret` against the record; `abandoned` lets a queued check be skipped. */
  async verify(record: CredentialRecord, secret: Uint8Array, abandoned: () => boolean = () => false): Promise<boolean> {
    const digest = createHmac('sha256', this.#key).update(secret).digest();
    const cached = this.#cache.get(record.username);
    if (cached && cached.hash === record.hash && timingSafeEqual(cached.digest, digest)) {
      this.#onVerify('cache', true);
      return true;
    }
    const flightKey = `${record.username}\u0000${record.hash}\u0000${digest.toString('base64')}`;
    const pending = this.#inFlight.get(flightKey);
    if (pending) {
      pending.abandoned.push(abandoned);
      return pending.check;
    }
    const waiters = [abandoned];
    const check = this.#limited(async () => {
      // Skipped only when every client waiting for this answer has gone.
      if (waiters.every((gone) => gone())) return false;
      const ok = await this.#verify(secret, record.hash);
      this.#onVerify('scrypt', ok);
      if (ok) this.#cache.set(record.username, { hash: record.hash, digest });
      return ok;
    }).finally(() => this.#inFlight.delete(flightKey));
    this.#inFlight.set(flightKey, { check, abandoned: waiters });
    return check;
  }

  /** Drops remembered secrets of principals that are gone or whose hash changed. */
  retain(records: ReadonlyMap<string, CredentialRecord>): void {
    for (const [username, entry] of this.#cache) {
      if (records.get(username)?.hash !== entry.hash) this.#cache.delete(username);
    }
  }

  get cached(): number {
    return this.#cache.size;
  }

  async #limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#maxConcurrent) await new Promise<void>((resolve) => this.#queue.push(resolve));
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#queue.shift()?.();
    }
  }
}

/**
 * Failed logins per remote address in a sliding window. An address past the limit is refused
 * without checking anything until its oldest counted failure leaves the window.
 */
export class FailureLimiter {
  readonly #failures = new Map<string, number[]>();
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(opts: { maxFailures?: number; windowMs?: number; now?: () => number } = {}) {
    this.#max = opts.maxFailures ?? 10;
    this.#windowMs = opts.windowMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  blocked(address: string): boolean {
    return this.#recent(address).length >= this.#max;
  }

  fail(address: string): void {
    const list = this.#recent(address);
    list.push(this.#now());
    if (list.length > this.#max) list.shift();
    // Re-insert so the map stays ordered by last failure, and prune idle addresses from the front.
    this.#failures.delete(address);
    this.#failures.set(address, list);
    const cutoff = this.#now() - this.#windowMs;
    for (const [addr, times] of this.#failures) {
      if ((times.at(-1) ?? 0) > cutoff && this.#failures.size <= 100_000) break;
      this.#failures.delete(addr);
    }
  }

  #recent(address: string): number[] {
    const list = this.#failures.get(address);
    if (!list) return [];
    const cutoff = this.#now() - this.#windowMs;
    while (list.length > 0 && (list[0] ?? 0) <= cutoff) list.shift();
    if (list.length === 0) this.#failures.delete(address);
    return list;
  }
}
