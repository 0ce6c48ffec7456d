/**
 * Feeds InfluxDB from the spool. Every point is first appended to the spool (durable by group
 * commit; the broker's PUBACK waits for it); the drain loop then sends what is committed in
 * batches of up to `batchSize` lines, one write in flight, oldest first. A batch goes when it is
 * full or when its oldest line has waited `flushIntervalMs`. A failed write is retried with
 * exponential back-off from the same position, so order is kept and nothing is skipped; lines
 * InfluxDB itself refuses (bad data) are counted and passed over, since retrying cannot help.
 * Status changes ('ok' / 'down') are reported through `onStatus`.
 *
 * The gateway runs this class in a worker thread (worker-writer.ts, writer-worker.ts), so that
 * spool commits and InfluxDB writes neither take the ingest thread's time nor wait for it; it
 * runs inline only with an injected target (benchmarks of the ingest path) or with storage off.
 */
import type { GatewayConfig, InfluxConfig } from '../../../config/schema.js';
import { Spool } from './spool.js';
import {
  RejectedWriteError,
  type SeriesQuery,
  type SeriesTarget,
  type SeriesWriter,
  type StorageStatus,
  type WriterLog,
  type WriterMetrics,
} from './types.js';

export interface WriterContext {
  config: InfluxConfig;
  spool: GatewayConfig['spool'] & { dir: string };
  log: WriterLog;
  onStatus: (status: StorageStatus) => void;
  metrics: WriterMetrics;
  target: SeriesTarget | null;
}

const MAX_BACKOFF_MS = 30_000;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

export class InlineSeriesWriter implements SeriesWriter {
  readonly #ctx: WriterContext;
  readonly #spool: Spool | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #draining: Promise<void> | undefined;
  #backoffMs = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #status: StorageStatus;
  #stopped = false;

  constructor(ctx: WriterContext) {
    this.#ctx = ctx;
    this.#status = ctx.target
      ? { state: 'down', url: ctx.target.url, message: 'connecting' }
      : { state: 'disabled', url: null, message: 'time-series storage is disabled in the config' };
    if (ctx.target) {
      this.#spool = new Spool({
        dir: ctx.spool.dir,
        maxBytes: ctx.spool.maxBytes,
        fsync: ctx.spool.fsync,
        commitIntervalMs: ctx.spool.commitIntervalMs,
        log: ctx.log.child({ part: 'spool' }),
        onCommit: (seconds) => {
          ctx.metrics.spoolCommitSeconds.observe(seconds);
          ctx.metrics.spoolBytes.set(this.#spool?.bytes ?? 0);
          if ((this.#spool?.backlog ?? 0) >= ctx.config.batchSize) this.#kick();
        },
      });
    }
  }

  get status(): StorageStatus {
    return this.#status;
  }

  /** Points accepted and not yet in InfluxDB. */
  get buffered(): number {
    return this.#spool?.backlog ?? 0;
  }

  /** True when the spool is at its disk cap: new points must be refused. */
  get full(): boolean {
    return this.#spool?.full ?? false;
  }

  async start(): Promise<void> {
    const { target, log } = this.#ctx;
    if (!target || !this.#spool) {
      log.warn('InfluxDB disabled: readings are shown live but not stored');
      return;
    }
    await this.#spool.open();
    this.#ctx.metrics.bufferedPoints.set(this.buffered);
    try {
      await target.connect();
      this.#setStatus({ state: 'ok', url: target.url, message: null });
      log.info({ url: target.url, database: this.#ctx.config.database }, 'InfluxDB connected');
      if (this.buffered > 0) this.#kick();
    } catch (err) {
      // Not fatal: the gateway serves live data, spools to disk and keeps trying.
      this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
      log.warn({ url: target.url, err: (err as Error).message }, 'InfluxDB unreachable: points are spooled to disk until it is back; retrying');
      this.#scheduleRetry();
    }
  }

  /** Appends a line to the spool; it becomes durable with the next group commit (see barrier). */
  writeLine(line: string): void {
    const spool = this.#spool;
    if (!spool || this.#stopped) return;
    spool.append(line);
    this.#appended();
  }

  /** Appends `lines` newline-terminated lines (UTF-8) joined by the caller (the worker's input). */
  appendChunk(chunk: Uint8Array, lines: number): void {
    const spool = this.#spool;
    if (!spool || this.#stopped) return;
    spool.appendChunk(chunk, lines);
    this.#appended();
  }

  /** Spool bytes on disk or about to be. */
  get bytes(): number {
    return this.#spool?.bytes ?? 0;
  }

  #appended(): void {
    this.#ctx.metrics.bufferedPoints.set(this.#spool?.backlog ?? 0);
    if (!this.#flushTimer && !this.#retryTimer && !this.#draining) {
      this.#flushTimer = setTimeout(() => this.#kick(), this.#ctx.config.flushIntervalMs);
    }
  }

  /** Resolves when every point written so far is on disk; undefined if nothing is pending. */
  barrier(): Promise<void> | undefined {
    return this.#spool?.barrier();
  }

  whenDurable(cb: (err?: Error) => void): boolean {
    const barrier = this.barrier();
    if (!barrier) return false;
    barrier.then(() => cb(), (err: Error) => cb(err));
    return true;
  }

  query(q: SeriesQuery): Promise<Array<[number, number]>> {
    if (!this.#ctx.target) return Promise.reject(new Error('disabled'));
    return this.#ctx.target.query(q);
  }

  /** Stops: commits the spool, and gives InfluxDB a few seconds to take what is waiting. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const spool = this.#spool;
    if (!spool) return;
    await spool.barrier()?.catch(() => undefined);
    await this.#draining;
    const deadline = Date.now() + 5000;
    while (this.#status.state === 'ok' && spool.backlog > 0 && Date.now() < deadline) {
      if (!(await this.#writeOne())) break;
    }
    if (spool.backlog > 0) this.#ctx.log.info({ points: spool.backlog }, 'stopped with points still in the spool; they are written at the next start');
    await spool.close();
  }

  #kick(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#draining || this.#retryTimer || this.#stopped) return;
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
      // Lines committed while we were writing get their own timer.
      if (!this.#stopped && !this.#retryTimer && (this.#spool?.backlog ?? 0) > 0) {
        this.#flushTimer ??= setTimeout(() => this.#kick(), this.#ctx.config.flushIntervalMs);
      }
    });
  }

  async #drain(): Promise<void> {
    while (!this.#retryTimer && !this.#stopped) {
      if (!(await this.#writeOne())) return;
    }
  }

  /** Writes the next committed batch; false when there was none or the write failed. */
  async #writeOne(): Promise<boolean> {
    const { target, metrics, log, config } = this.#ctx;
    const spool = this.#spool;
    if (!target || !spool) return false;
    const start = spool.readCursor;
    const batch = spool.readBatch(config.batchSize, MAX_BATCH_BYTES);
    if (!batch) return false;
    const started = performance.now();
    try {
      await target.writeLines(batch.body);
    } catch (err) {
      if (err instanceof RejectedWriteError) {
        // InfluxDB stored the valid lines of a partial write; the rest can never be stored.
        metrics.pointsDropped.inc(err.dropped ?? batch.lines);
        log.error({ err: err.message, lines: batch.lines }, 'InfluxDB refused lines; they are skipped');
      } else {
        spool.rewind(start);
        metrics.writeErrors.inc();
        this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
        this.#scheduleRetry();
        return false;
      }
    }
    metrics.writeLatency.observe((performance.now() - started) / 1000);
    metrics.pointsWritten.inc(batch.lines);
    spool.ack(batch.end, batch.lines);
    metrics.bufferedPoints.set(spool.backlog);
    metrics.spoolBytes.set(spool.bytes);
    this.#backoffMs = 0;
    this.#setStatus({ state: 'ok', url: target.url, message: null });
    return true;
  }

  #scheduleRetry(): void {
    if (this.#retryTimer || this.#stopped) return;
    this.#backoffMs = Math.min(MAX_BACKOFF_MS, this.#backoffMs === 0 ? 500 : this.#backoffMs * 2);
    this.#retryTimer = setTimeout(async () => {
      const target = this.#ctx.target;
      if (!target || this.#stopped) return;
      if (this.#status.state !== 'ok') {
        try {
          await target.connect();
        } catch (err) {
          this.#retryTimer = undefined;
          this.#setStatus({ state: 'down', url: target.url, message: (err as Error).message });
          this.#scheduleRetry();
          return;
        }
      }
      this.#retryTimer = undefined;
      if (this.buffered > 0) this.#kick();
      else {
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
        this.#ctx.log.info({ url: status.url, backlog: this.buffered }, 'InfluxDB reachable again; writing the spool');
      } else if (status.state === 'down' && prev.state === 'ok') {
        this.#ctx.log.warn({ url: status.url, err: status.message }, 'InfluxDB write failed; spooling to disk and retrying');
      }
    }
    // The message matters too (/ready and /health show why storage is down).
    if (prev.state !== status.state || prev.message !== status.message) this.#ctx.onStatus(status);
  }
}
