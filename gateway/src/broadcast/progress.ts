/**
 * Live progress for dashboards without flooding them: per job, per-pole changes are collected and
 * sent as one `broadcast.progress` at most every `intervalMs` — the latest state of each pole that
 * changed, and the run's counts after them. A job whose progress has been quiet for an interval
 * is sent at once (the first `playing` shows without delay). `flush(jobId)` sends what is pending
 * now: the service calls it before a job's `broadcast.finished`, which is never coalesced.
 */
import type { BroadcastServerMessage, DeliveryCounts, DeliveryState, PoleChange } from '../../../protocol/broadcasts.js';

export interface ProgressSource {
  /** The job's current run, its size and counts; undefined once the job is gone. */
  progressOf(jobId: string): { run: number; total: number; counts: DeliveryCounts } | undefined;
}

interface Pending {
  changes: Map<string, PoleChange>;
  timer: NodeJS.Timeout | undefined;
  lastSentAt: number;
}

export class ProgressPublisher {
  readonly #publish: (message: BroadcastServerMessage) => void;
  readonly #source: ProgressSource;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #jobs = new Map<string, Pending>();

  constructor(opts: { publish: (message: BroadcastServerMessage) => void; source: ProgressSource; intervalMs: number; now?: () => number }) {
    this.#publish = opts.publish;
    this.#source = opts.source;
    this.#intervalMs = opts.intervalMs;
    this.#now = opts.now ?? Date.now;
  }

  /** Records a pole's new state; sends within the job's interval. */
  change(jobId: string, pole: string, state: DeliveryState, reason: string | null): void {
    let p = this.#jobs.get(jobId);
    if (!p) this.#jobs.set(jobId, (p = { changes: new Map(), timer: undefined, lastSentAt: Number.NEGATIVE_INFINITY }));
    p.changes.set(pole, reason !== null && reason !== '' ? [pole, state, reason] : [pole, state]);
    this.#schedule(jobId, p);
  }

  /** Counts changed without a pole change (a new run): send them in the job's interval. */
  touch(jobId: string): void {
    let p = this.#jobs.get(jobId);
    if (!p) this.#jobs.set(jobId, (p = { changes: new Map(), timer: undefined, lastSentAt: Number.NEGATIVE_INFINITY }));
    this.#schedule(jobId, p);
  }

  #schedule(jobId: string, p: Pending): void {
    if (p.timer) return;
    // setTimeout even when due now: changes made in the same turn (a burst of acks) go together.
    const wait = Math.max(0, p.lastSentAt + this.#intervalMs - this.#now());
    p.timer = setTimeout(() => {
      p.timer = undefined;
      this.#send(jobId, p);
    }, wait);
    p.timer.unref?.();
  }

  /** Sends what is pending for the job now. */
  flush(jobId: string): void {
    const p = this.#jobs.get(jobId);
    if (!p || (p.changes.size === 0 && !p.timer)) return;
    clearTimeout(p.timer);
    p.timer = undefined;
    this.#send(jobId, p);
  }

  /** Forgets a job (after its finished message); pending changes must have been flushed. */
  forget(jobId: string): void {
    const p = this.#jobs.get(jobId);
    if (p) clearTimeout(p.timer);
    this.#jobs.delete(jobId);
  }

  stop(): void {
    for (const p of this.#jobs.values()) clearTimeout(p.timer);
    this.#jobs.clear();
  }

  #send(jobId: string, p: Pending): void {
    const progress = this.#source.progressOf(jobId);
    const changes = [...p.changes.values()];
    p.changes.clear();
    if (!progress) return;
    p.lastSentAt = this.#now();
    this.#publish({ type: 'broadcast.progress', id: jobId, run: progress.run, total: progress.total, counts: { ...progress.counts }, changes });
  }
}
