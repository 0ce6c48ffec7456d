/**
 * The writer as the rest of the gateway uses it, with the spool and the InfluxDB writes in a
 * worker thread (writer-worker.ts). Why: at tens of thousands of messages per second the ingest
 * thread (MQTT, validation, registry, alerts, WebSocket push) is the bottleneck; spool commits,
 * spool reads and InfluxDB requests on that thread took its time, and InfluxDB writes queued
 * behind a saturated event loop (the stored latency grew to tens of seconds). Now this thread
 * only formats lines and gathers them into batches (at least `commitIntervalMs` apart); the
 * worker appends each batch, fsyncs, and answers.
 *
 * Lines are encoded into a byte buffer as they are written, and each batch's buffer is
 * transferred to the worker (moved, not copied). Gathering them as one string cost more: the
 * string was flattened and copied by postMessage (8 % of the ingest thread at 10,000 msg/s),
 * copied again into the worker and encoded there once more.
 *
 * Durability is unchanged: `barrier()` resolves once the worker reports the batch holding every
 * line written so far on disk, so a QoS1 PUBACK still means "in the spool". If the worker dies,
 * every batch not yet reported on disk is refused (its publishers are not acknowledged and
 * retry), and a new worker recovers the spool from disk.
 *
 * Messages, main -> worker: `append` {group, bytes (transferred), lines}, `stop`.
 * Worker -> main: `started` | `startFailed`, `committed` | `commitFailed` {group}, `progress`
 * (backlog, spool bytes, lines received), `status`, `metric`, `log`, `stopped`.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { GatewayConfig, InfluxConfig } from '../../../config/schema.js';
import type { SeriesQuery, SeriesTarget, SeriesWriter, StorageStatus, WriterMetrics } from './types.js';

export interface WorkerInit {
  config: InfluxConfig;
  spool: GatewayConfig['spool'] & { dir: string };
}

export interface Progress {
  /** Lines in the worker's spool not yet in InfluxDB. */
  backlog: number;
  /** Spool bytes on disk or being written. */
  bytes: number;
  /** Lines and bytes received from the main thread so far (for what is still in transit). */
  received: number;
  receivedBytes: number;
}

export type ToWorker = { t: 'append'; group: number; bytes: Uint8Array; lines: number } | { t: 'stop' };

export type FromWorker =
  | { t: 'started'; status: StorageStatus; progress: Progress }
  | { t: 'startFailed'; message: string }
  | { t: 'committed'; group: number; progress: Progress }
  | { t: 'commitFailed'; group: number; message: string; progress: Progress }
  | { t: 'progress'; progress: Progress }
  | { t: 'status'; status: StorageStatus }
  | { t: 'metric'; name: 'spoolCommitSeconds' | 'writeLatency' | 'pointsWritten' | 'pointsDropped' | 'writeErrors'; value: number }
  | { t: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; bindings: Record<string, unknown>; obj: object; msg: string | undefined }
  | { t: 'stopped'; progress: Progress; error?: string };

export interface WorkerWriterContext extends WorkerInit {
  log: Logger;
  onStatus: (status: StorageStatus) => void;
  metrics: WriterMetrics;
  /** Serves chart queries from this thread (they are few and want no hop). */
  queryTarget: SeriesTarget;
}

/**
 * One batch: its waiters are plain callbacks (one per QoS1 publish: cheaper than a promise
 * reaction each), the promise is made only when someone asks for it.
 */
class Group {
  #waiters: Array<(err?: Error) => void> = [];
  #promise: Promise<void> | undefined;
  #outcome: { err?: Error } | undefined;

  get promise(): Promise<void> {
    if (!this.#promise) {
      this.#promise = new Promise<void>((resolve, reject) => this.wait((err) => (err ? reject(err) : resolve())));
      this.#promise.catch(() => undefined); // the asker handles the failure; this only keeps it from counting as unhandled
    }
    return this.#promise;
  }

  wait(cb: (err?: Error) => void): void {
    if (this.#outcome) cb(this.#outcome.err);
    else this.#waiters.push(cb);
  }

  settle(err?: Error): void {
    if (this.#outcome) return;
    this.#outcome = err ? { err } : {};
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const cb of waiters) cb(err);
  }
}

const newGroup = () => new Group();

/** A batch buffer's first size; it doubles when a batch needs more, and the next starts near the last one's size. */
const MIN_BATCH_BYTES = 64 * 1024;
/** Its own ArrayBuffer (never a slice of Node's shared pool), so that it can be transferred. */
const batchBuffer = (bytes: number) => Buffer.allocUnsafeSlow(bytes);

/**
 * A publisher (connection) with this many messages in the gathering batch makes the batch go as
 * soon as the worker is free, without waiting out `commitIntervalMs`: its PUBACKs share one write
 * already, and waiting longer would only slow it down — an agent emptying its outbox with 200 in
 * flight got half its rate (5,000 instead of 11,000 msg/s in bench:replay).
 */
const EAGER_PER_PUBLISHER = 16;

const WORKER_URL = new URL('./writer-worker.mjs', import.meta.url);
const RESTART_DELAY_MS = 1000;
const STOP_TIMEOUT_MS = 20_000;

export class WorkerSeriesWriter implements SeriesWriter {
  readonly #ctx: WorkerWriterContext;
  #worker: Worker | undefined;
  #status: StorageStatus;
  /** Lines gathered for the next batch, UTF-8, newline-terminated: #pendingBytes of #batch. */
  #batch: Buffer = batchBuffer(MIN_BATCH_BYTES);
  #pendingBytes = 0;
  #pendingLines = 0;
  #group: Group = newGroup();
  #nextGroup = 1;
  /** Batches sent to the worker and not yet reported on disk, in order. */
  readonly #inflight = new Map<number, Group>();
  #flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** performance.now() when the last batch went to the worker. */
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  /** Messages per publisher in the gathering batch, and whether one has reached EAGER_PER_PUBLISHER. */
  readonly #byPublisher = new Map<object, number>();
  #eager = false;
  #sentLines = 0;
  #sentBytes = 0;
  #progress: Progress = { backlog: 0, bytes: 0, received: 0, receivedBytes: 0 };
  #stopping = false;
  #stopped: ((p: Progress) => void) | undefined;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(ctx: WorkerWriterContext) {
    this.#ctx = ctx;
    this.#status = { state: 'down', url: ctx.queryTarget.url, message: 'connecting' };
  }

  get status(): StorageStatus {
    return this.#status;
  }

  get buffered(): number {
    return this.#progress.backlog + (this.#sentLines - this.#progress.received) + this.#pendingLines;
  }

  get full(): boolean {
    return this.#progress.bytes + (this.#sentBytes - this.#progress.receivedBytes) + this.#pendingBytes >= this.#ctx.spool.maxBytes;
  }

  async start(): Promise<void> {
    // The worker logs the outcome (connected, or unreachable and spooling).
    await this.#spawn();
  }

  writeLine(line: string): void {
    if (this.#stopping) return;
    // At most 3 bytes per UTF-16 unit, and the newline.
    if (this.#pendingBytes + line.length * 3 + 1 > this.#batch.length) this.#grow(this.#pendingBytes + line.length * 3 + 1);
    this.#pendingBytes += this.#batch.write(line, this.#pendingBytes);
    this.#batch[this.#pendingBytes++] = 0x0a;
    this.#pendingLines++;
    // One batch at the worker at a time (group commit across the threads): while it is being
    // written, lines gather here and go when it is on disk.
    if (this.#flushTimer === undefined && this.#inflight.size === 0) this.#flushWhenDue(false);
  }

  /**
   * Sends the gathered batch once `commitIntervalMs` has passed since the last one was sent:
   * batches start at least that far apart. A reading after a quiet spell goes at once (at the
   * end of this turn, with whatever else the turn brings); under load every batch holds that
   * long's readings, so an agent connection gets its PUBACKs for that span in one socket write
   * instead of one write per batch it had a message in. At 10,000 msg/s from 100 agents the
   * PUBACK writes were a fifth of the ingest thread with a 2-ms spacing (docs/BENCHMARKS.md).
   * `now`: whether a batch that is already due goes in this call (a commit just came back and
   * the lines are gathered) rather than at the end of the turn.
   */
  #flushWhenDue(now: boolean): void {
    const wait = this.#eager ? 0 : this.#lastFlushAt + this.#ctx.spool.commitIntervalMs - performance.now();
    if (wait >= 1) this.#flushTimer = setTimeout(this.#flushNow, wait);
    else if (now) this.#flush();
    else this.#flushTimer = setImmediate(this.#flushNow);
  }

  readonly #flushNow = () => this.#flush();

  #grow(atLeast: number): void {
    let size = this.#batch.length * 2;
    while (size < atLeast) size *= 2;
    const bigger = batchBuffer(size);
    this.#batch.copy(bigger, 0, 0, this.#pendingBytes);
    this.#batch = bigger;
  }

  barrier(publisher?: object): Promise<void> | undefined {
    const group = this.#lastGroup();
    if (group) this.#count(publisher);
    return group?.promise;
  }

  /**
   * Calls `cb` once every line written so far is on disk (or with the error if that failed);
   * false, without calling it, when nothing is pending. The broker's per-PUBACK path.
   * `publisher`: the connection the message came on (see EAGER_PER_PUBLISHER).
   */
  whenDurable(cb: (err?: Error) => void, publisher?: object): boolean {
    const group = this.#lastGroup();
    if (!group) return false;
    this.#count(publisher);
    group.wait(cb);
    return true;
  }

  #count(publisher: object | undefined): void {
    if (publisher === undefined || this.#pendingLines === 0 || this.#eager) return;
    const n = (this.#byPublisher.get(publisher) ?? 0) + 1;
    this.#byPublisher.set(publisher, n);
    if (n < EAGER_PER_PUBLISHER) return;
    this.#eager = true;
    // Waiting for the interval: go at the end of this turn instead. Busy: goes when the worker answers.
    if (this.#inflight.size === 0) {
      this.#cancelFlushTimer();
      this.#flushTimer = setImmediate(this.#flushNow);
    }
  }

  #cancelFlushTimer(): void {
    if (this.#flushTimer === undefined) return;
    clearTimeout(this.#flushTimer as NodeJS.Timeout);
    clearImmediate(this.#flushTimer as NodeJS.Immediate);
    this.#flushTimer = undefined;
  }

  #lastGroup(): Group | undefined {
    if (this.#pendingLines > 0) return this.#group;
    let last: Group | undefined;
    for (const g of this.#inflight.values()) last = g;
    return last;
  }

  query(q: SeriesQuery): Promise<Array<[number, number]>> {
    return this.#ctx.queryTarget.query(q);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    this.#flush();
    const worker = this.#worker;
    if (!worker) return;
    const done = new Promise<Progress | undefined>((resolve) => {
      this.#stopped = resolve;
      worker.once('exit', () => resolve(undefined));
      setTimeout(() => resolve(undefined), STOP_TIMEOUT_MS).unref();
    });
    worker.postMessage({ t: 'stop' } satisfies ToWorker);
    await done;
    this.#worker = undefined;
    await worker.terminate();
    this.#failInflight(new Error('storage stopped'));
  }

  /** Ends the worker thread as a crash would (fault tests); a new one takes over the spool. */
  async terminateWorker(): Promise<void> {
    await this.#worker?.terminate();
  }

  #flush(): void {
    this.#cancelFlushTimer();
    const worker = this.#worker;
    if (this.#pendingLines === 0 || !worker) return; // no worker: a new one is on its way; keep gathering
    this.#byPublisher.clear();
    this.#eager = false;
    const lines = this.#pendingLines;
    const bytes = this.#batch.subarray(0, this.#pendingBytes);
    const id = this.#nextGroup++;
    this.#lastFlushAt = performance.now();
    this.#inflight.set(id, this.#group);
    this.#group = newGroup();
    // The next batch is likely about as large as this one (load changes slowly): start it there.
    this.#batch = batchBuffer(Math.max(MIN_BATCH_BYTES, 2 ** Math.ceil(Math.log2(bytes.length + 1))));
    this.#pendingBytes = 0;
    this.#pendingLines = 0;
    this.#sentLines += lines;
    this.#sentBytes += bytes.length;
    // Transferred: this thread's view of the buffer is detached, the worker owns it.
    worker.postMessage({ t: 'append', group: id, bytes, lines } satisfies ToWorker, [bytes.buffer as ArrayBuffer]);
  }

  #spawn(): Promise<void> {
    const { config, spool, log, metrics } = this.#ctx;
    const worker = new Worker(WORKER_URL, { workerData: { config, spool } satisfies WorkerInit, name: 'gs-storage' });
    this.#worker = worker;
    // The sent/received counters start again with each worker; the spool on disk carries the backlog.
    this.#sentLines = this.#sentBytes = 0;
    this.#progress = { backlog: 0, bytes: 0, received: 0, receivedBytes: 0 };
    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'started':
            started = true;
            this.#onProgress(m.progress);
            this.#setStatus(m.status);
            this.#flush();
            resolve();
            break;
          case 'startFailed':
            reject(new Error(`storage: ${m.message}`));
            break;
          case 'committed':
          case 'commitFailed': {
            this.#onProgress(m.progress);
            const group = this.#inflight.get(m.group);
            this.#inflight.delete(m.group);
            // The next batch goes first (when it is due), then this one's waiters (their PUBACKs) are answered.
            if (this.#inflight.size === 0 && this.#pendingLines > 0 && this.#flushTimer === undefined) this.#flushWhenDue(true);
            group?.settle(m.t === 'commitFailed' ? new Error(m.message) : undefined);
            break;
          }
          case 'progress':
            this.#onProgress(m.progress);
            break;
          case 'status':
            this.#setStatus(m.status);
            break;
          case 'metric':
            if (m.name === 'spoolCommitSeconds' || m.name === 'writeLatency') metrics[m.name].observe(m.value);
            else metrics[m.name].inc(m.value);
            break;
          case 'log':
            log.child({ part: 'storage-worker', ...m.bindings })[m.level](m.obj, m.msg);
            break;
          case 'stopped':
            this.#onProgress(m.progress);
            if (m.error) log.error({ err: m.error }, 'storage worker stopped with an error');
            this.#stopped?.(m.progress);
            break;
        }
      });
      worker.on('error', (err) => {
        log.error({ err: err.message }, 'storage worker failed');
        if (!started) reject(err);
      });
      worker.on('exit', (code) => {
        if (this.#worker !== worker) return; // stopped, or replaced already
        this.#worker = undefined;
        if (!started) return reject(new Error(`storage worker exited (code ${code}) before it started`));
        if (this.#stopping) return;
        // Nothing it had not reported on disk may be acknowledged: those publishers retry.
        log.error({ code, refused: this.#inflight.size }, 'storage worker exited; refusing what it had not committed and starting a new one');
        this.#failInflight(new Error('storage worker exited'));
        this.#setStatus({ state: 'down', url: this.#status.url, message: 'storage worker restarting' });
        this.#restartTimer = setTimeout(() => {
          this.#spawn().catch((err: Error) => log.error({ err: err.message }, 'storage worker did not restart'));
        }, RESTART_DELAY_MS);
        this.#restartTimer.unref();
      });
    });
  }

  #failInflight(err: Error): void {
    for (const g of this.#inflight.values()) g.settle(err);
    this.#inflight.clear();
    if (this.#pendingLines > 0) {
      this.#group.settle(err);
      this.#group = newGroup();
      this.#pendingBytes = 0;
      this.#pendingLines = 0;
      this.#byPublisher.clear();
      this.#eager = false;
    }
  }

  #onProgress(p: Progress): void {
    this.#progress = p;
    this.#ctx.metrics.bufferedPoints.set(this.buffered);
    this.#ctx.metrics.spoolBytes.set(p.bytes);
  }

  #setStatus(status: StorageStatus): void {
    const prev = this.#status;
    this.#status = status;
    if (prev.state !== status.state || prev.message !== status.message) this.#ctx.onStatus(status);
  }
}
