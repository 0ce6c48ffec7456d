/**
 * Batches points into InfluxDB: a batch goes when it reaches `batchSize` or its oldest point is
 * `flushIntervalMs` old, one write in flight at a time, a failed write retried with exponential
 * back-off (the batch stays at the head, so order is kept). While InfluxDB is down, points wait
 * in memory up to `maxBufferedPoints`; past that the oldest are dropped and counted. Status
 * changes ('ok' / 'down') go onto the bus so the dashboard can say so.
 */
import type { Logger } from 'pino';
import type { InfluxConfig } from '../../../config/schema.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { SeriesPoint, SeriesQuery, SeriesTarget, StorageStatus } from './types.js';

export interface WriterContext {
  config: InfluxConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  target: SeriesTarget | null;
}

const MAX_BACKOFF_MS = 30_000;

export class SeriesWriter {
  readonly #ctx: WriterContext;
  #queue: SeriesPoint[] = [];
  #oldestAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #backoffMs = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #status: StorageStatus;
  #stopped = false;

  constructor(ctx: WriterContext) {
    this.#ctx = ctx;
    this.#status = ctx.target
      ? { state: 'down', url: ctx.target.url, message: 'connecting' }
      : { state: 'disabled', url: null, message: 'time-series storage is disabled in the config' };
  }

  get status(): StorageStatus {
    return this.#status;
  }

  get buffered(): number {
    return this.#queue.length;
  }

  async start(): Promise<void> {
    const { target, log } = this.#ctx;
    if (!target) {
      log.warn('InfluxDB disabled: readings are shown live but not stored');
      return;
    }
    try {
      await target.connect();
      this.#setStatus({ state: 'ok', url: target.url, message: null });
      log.info({ url: target.url, database: this.#ctx.config.database }, 'InfluxDB connected');
    } catch (err) {
      // Not fatal: the gateway serves live data and keeps trying; the dashboard shows the outage.
      this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
      log.warn({ url: target.url, err: (err as Error).message }, 'InfluxDB unreachable: readings are NOT being stored; retrying');
      this.#scheduleRetry();
    }
  }

  write(point: SeriesPoint): void {
    if (!this.#ctx.target || this.#stopped) return;
    if (this.#queue.length === 0) this.#oldestAt = Date.now();
    this.#queue.push(point);
    const max = this.#ctx.config.maxBufferedPoints;
    if (this.#queue.length > max) {
      const excess = this.#queue.length - max;
      this.#queue.splice(0, excess);
      this.#ctx.metrics.pointsDropped.inc(excess);
    }
    this.#ctx.metrics.bufferedPoints.set(this.#queue.length);
    if (this.#queue.length >= this.#ctx.config.batchSize) this.#kick();
    else if (!this.#timer && !this.#retryTimer) {
      this.#timer = setTimeout(() => this.#kick(), this.#ctx.config.flushIntervalMs);
    }
  }

  query(q: SeriesQuery): Promise<Array<[number, number]>> {
    if (!this.#ctx.target) return Promise.reject(new Error('disabled'));
    return this.#ctx.target.query(q);
  }

  /** Writes what is buffered (one attempt per batch), then stops. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#retryTimer);
    await this.#writing;
    if (this.#status.state === 'ok') {
      while (this.#queue.length > 0 && this.#status.state === 'ok') await this.#flushOnce();
    }
    if (this.#queue.length > 0) this.#ctx.log.warn({ points: this.#queue.length }, 'stopped with points not written to InfluxDB');
  }

  #kick(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#writing || this.#retryTimer) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !this.#retryTimer) {
      const full = this.#queue.length >= this.#ctx.config.batchSize;
      const due = Date.now() - this.#oldestAt >= this.#ctx.config.flushIntervalMs;
      if (!full && !due && !this.#stopped) {
        this.#timer ??= setTimeout(() => this.#kick(), this.#ctx.config.flushIntervalMs - (Date.now() - this.#oldestAt));
        return;
      }
      const ok = await this.#flushOnce();
      if (!ok) return;
    }
  }

  /** One batch from the head of the queue; on failure it stays there and a retry is scheduled. */
  async #flushOnce(): Promise<boolean> {
    const target = this.#ctx.target;
    if (!target) return false;
    const batch = this.#queue.slice(0, this.#ctx.config.batchSize);
    const started = performance.now();
    try {
      await target.writeBatch(batch);
    } catch (err) {
      this.#ctx.metrics.writeErrors.inc();
      this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
      if (!this.#stopped) this.#scheduleRetry();
      return false;
    }
    this.#ctx.metrics.writeLatency.observe((performance.now() - started) / 1000);
    this.#ctx.metrics.pointsWritten.inc(batch.length);
    // The queue may have been trimmed from the front while we wrote; drop what we wrote.
    this.#queue.splice(0, Math.min(batch.length, this.#queue.length));
    this.#oldestAt = Date.now();
    this.#ctx.metrics.bufferedPoints.set(this.#queue.length);
    this.#backoffMs = 0;
    this.#setStatus({ state: 'ok', url: target.url, message: null });
    return true;
  }

  #scheduleRetry(): void {
    if (this.#retryTimer || this.#stopped) return;
    this.#backoffMs = Math.min(MAX_BACKOFF_MS, this.#backoffMs === 0 ? 500 : this.#backoffMs * 2);
    this.#retryTimer = setTimeout(async () => {
      this.#retryTimer = undefined;
      const target = this.#ctx.target;
      if (!target) return;
      if (this.#status.state !== 'ok') {
        try {
          await target.connect();
        } catch (err) {
          this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
          this.#scheduleRetry();
          return;
        }
      }
      if (this.#queue.length > 0) {
        this.#oldestAt = 0; // due now
        this.#kick();
      } else {
        this.#setStatus({ state: 'ok', url: target.url, message: null });
        this.#backoffMs = 0;
      }
    }, this.#backoffMs);
    this.#retryTimer.unref();
  }

  #setStatus(status: StorageStatus): void {
    const prev = this.#status;
    this.#status = status;
    if (prev.state !== status.state) {
      if (status.state === 'ok' && prev.state === 'down' && prev.message !== 'connecting') {
        this.#ctx.log.info({ url: status.url, buffered: this.#queue.length }, 'InfluxDB reachable again; writing buffered points');
      } else if (status.state === 'down' && prev.state === 'ok') {
        this.#ctx.log.warn({ url: status.url, err: status.message }, 'InfluxDB write failed; buffering and retrying');
      }
      this.#ctx.bus.emit('storageStatus', status);
    }
  }
}
