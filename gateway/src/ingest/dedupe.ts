/**
 * Recently seen (seq, ts) pairs per device. A QoS1 redelivery or an outbox replay repeats both;
 * a device that rebooted and restarted its seq at 0 has a new ts, so it is not mistaken for a
 * duplicate. Memory is bounded: `window` pairs per device and channel that has sent anything.
 *
 * Each device's pairs are a ring in one Float64Array (seq, ts, seq, ts, …), scanned linearly:
 * no allocation per message, about 1 KB per device at the default window. The previous
 * Map<seq, ts> per device took 4.8 KB per device (2.4 GB for a 500,000-device district) and
 * allocated per message (a number box and rehashed tables, promoted to the old generation because
 * they lived for the whole window).
 */
export class RecentMessages {
  /** channel -> device -> ring. One map per channel: no key string built per message. */
  readonly #seen = new Map<string, Map<string, Ring>>();
  readonly #window: number;

  constructor(window = 64) {
    if (!Number.isInteger(window) || window < 1) throw new Error(`dedupe window must be a positive integer, got ${window}`);
    this.#window = window;
  }

  /** Records the pair and returns true if it was already seen. */
  isDuplicate(deviceId: string, channel: string, seq: number, ts: number): boolean {
    let devices = this.#seen.get(channel);
    if (!devices) this.#seen.set(channel, (devices = new Map()));
    let ring = devices.get(deviceId);
    if (!ring) devices.set(deviceId, (ring = new Ring(this.#window)));
    return ring.seen(seq, ts);
  }
}

class Ring {
  /** (seq, ts) pairs; NaN seq = an empty or retired slot (NaN equals nothing). */
  readonly #pairs: Float64Array;
  /** The slot the next pair goes into: the oldest one once the ring is full. */
  #next = 0;

  constructor(window: number) {
    this.#pairs = new Float64Array(window * 2).fill(NaN);
  }

  seen(seq: number, ts: number): boolean {
    const p = this.#pairs;
    for (let i = 0; i < p.length; i += 2) {
      if (p[i] !== seq) continue;
      if (p[i + 1] === ts) return true;
      // The same seq with a new ts (a rebooted device): retire the old pair, record the new one as newest.
      p[i] = NaN;
      break;
    }
    const at = this.#next;
    p[at] = seq;
    p[at + 1] = ts;
    this.#next = at + 2 === p.length ? 0 : at + 2;
    return false;
  }
}
