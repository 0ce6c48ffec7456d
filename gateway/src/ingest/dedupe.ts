/**
 * Recently seen (seq, ts) pairs per device. A QoS1 redelivery or an outbox replay repeats both;
 * a device that rebooted and restarted its seq at 0 has a new ts, so it is not mistaken for a
 * duplicate. Memory is bounded: `window` entries per device that has sent anything.
 */
export class RecentMessages {
  /** channel -> device -> seq -> ts (one map per channel: no key string built per message). */
  readonly #seen = new Map<string, Map<string, Map<number, number>>>();
  readonly #window: number;

  constructor(window = 64) {
    this.#window = window;
  }

  /** Records the pair and returns true if it was already seen. */
  isDuplicate(deviceId: string, channel: string, seq: number, ts: number): boolean {
    let devices = this.#seen.get(channel);
    if (!devices) this.#seen.set(channel, (devices = new Map()));
    let recent = devices.get(deviceId);
    if (!recent) devices.set(deviceId, (recent = new Map()));
    const seen = recent.get(seq);
    if (seen === ts) return true;
    if (seen !== undefined) recent.delete(seq);
    recent.set(seq, ts);
    if (recent.size > this.#window) {
      const oldest = recent.keys().next().value as number;
      recent.delete(oldest);
    }
    return false;
  }
}
