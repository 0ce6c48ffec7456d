/**
 * Bounds how many QoS1 publishes the embedded broker holds in memory while they wait for the
 * spool's group commit (their PUBACK waits for it). Past `cap`, a connection that becomes
 * readable is not read until enough of the waiting ones are acknowledged: its bytes stay in the
 * kernel's socket buffer and its sender's in-flight window does the rest (TCP backpressure).
 *
 * Why: with 10,000 connections each keeping a window of QoS1 publishes open, aedes would read
 * every readable socket in one event-loop turn; thousands of messages then lived across several
 * turns, survived young-generation GCs and were promoted (GC was a quarter of the ingest thread),
 * and one turn grew to hundreds of ms, which every other message (fire alarms included) waited
 * behind. A cap well above throughput x commit time (25,000 msg/s x ~20 ms = 500) costs no
 * throughput.
 *
 * Deferred connections are read again as soon as the count is below the cap — while the batch
 * holding the waiting publishes is still being committed, so the ingest thread keeps working
 * instead of idling through every commit — and a slice at a time (about cap/8 publishes per
 * turn), so the event loop polls its sockets (a camera's fire alarm, a dashboard) between slices.
 *
 * aedes reads a connection from its 'readable' listener (`client._nextBatch`, internal to
 * aedes 1.x). The gate puts itself in front of that listener; if aedes ever changes so that the
 * listener is not found, the connection is left ungated (a warning says so once).
 */
import type { Readable } from 'node:stream';

interface AedesClientInternals {
  _nextBatch?: (err?: Error) => void;
}

export class IngressGate {
  readonly #cap: number;
  #waiting = 0;
  readonly #deferred = new Set<() => void>();
  #releaseScheduled = false;
  readonly #slice: number;
  readonly #releaseNow = () => this.#release();
  #warned = false;
  readonly #onUngated: () => void;

  readonly #onDefer: () => void;

  constructor(cap: number, hooks: { onUngated?: () => void; onDefer?: () => void } = {}) {
    this.#cap = cap;
    this.#slice = Math.max(1, Math.ceil(cap / 8));
    this.#onUngated = hooks.onUngated ?? (() => undefined);
    this.#onDefer = hooks.onDefer ?? (() => undefined);
  }

  /** Publishes waiting for the spool now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Connections readable and not read because of the cap. */
  get deferred(): number {
    return this.#deferred.size;
  }

  /** Puts the gate in front of aedes' reads of this connection. */
  attach(socket: Readable, client: unknown): void {
    const next = (client as AedesClientInternals)._nextBatch;
    if (typeof next !== 'function' || !socket.listeners('readable').includes(next)) {
      if (!this.#warned) {
        this.#warned = true;
        this.#onUngated();
      }
      return;
    }
    const read = () => next();
    socket.off('readable', next);
    socket.on('readable', () => {
      // Behind the connections already deferred, not ahead of them (oldest first).
      if (this.#waiting >= this.#cap || this.#deferred.size > 0) {
        this.#deferred.add(read);
        this.#onDefer();
      } else {
        read();
      }
    });
    socket.once('close', () => this.#deferred.delete(read));
  }

  /** One more publish waits for the spool. */
  enter(): void {
    this.#waiting++;
  }

  /** A waiting publish was answered; deferred connections get their turn once below the cap. */
  leave(): void {
    this.#waiting--;
    // After the PUBACKs of this commit are written (setImmediate), not in the middle of them.
    if (this.#deferred.size > 0 && this.#waiting < this.#cap) this.#scheduleRelease();
  }

  #scheduleRelease(): void {
    if (this.#releaseScheduled) return;
    this.#releaseScheduled = true;
    setImmediate(this.#releaseNow);
  }

  /** Reads deferred connections (oldest first) until a slice more is waiting, or the cap. */
  #release(): void {
    this.#releaseScheduled = false;
    const stopAt = Math.min(this.#cap, this.#waiting + this.#slice);
    for (const read of this.#deferred) {
      if (this.#waiting >= stopAt) break;
      this.#deferred.delete(read);
      read();
    }
    // The next slice after the event loop has polled its sockets and run its timers.
    if (this.#deferred.size > 0 && this.#waiting < this.#cap) this.#scheduleRelease();
  }
}
