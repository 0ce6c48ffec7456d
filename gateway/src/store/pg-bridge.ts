/**
 * Synchronous calls into PostgreSQL. The operational store's interface is synchronous (about a
 * hundred call sites and `transaction(fn)` rely on it), and `pg` is asynchronous, so a worker
 * thread (pg-worker.ts) owns the connection and this thread blocks on each call: it posts the
 * call on a MessagePort, sleeps in `Atomics.wait` on a SharedArrayBuffer word until the worker
 * bumps it, and takes the reply with `receiveMessageOnPort` (the idea of the synckit package).
 *
 * What that costs and guarantees (docs/storage.md, "PostgreSQL"):
 * - Each call blocks the event loop for one round trip to the database plus two thread
 *   wake-ups (50–150 µs more than an async pg query on a loaded 2-core machine).
 * - No call blocks longer than `callTimeoutMs`: then it throws a `StoreTimeoutError`, the worker
 *   drops the connection (the statement cannot hold later calls) and reconnects.
 * - While the database is unreachable calls fail at once with `StoreUnavailableError` (the
 *   worker's state word says so; no round trip), and the worker reconnects in the background.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import { PostgresError, StoreTimeoutError, StoreUnavailableError } from './errors.js';
import {
  SIGNAL_SEQ,
  SIGNAL_STATE,
  SIGNAL_WORDS,
  STATE_DOWN,
  type Call,
  type Reply,
  type StatusMessage,
  type WorkerInit,
} from './pg-protocol.js';

const WORKER_URL = new URL('./pg-worker.mjs', import.meta.url);
/** The first call also waits for the worker to load (tsx, pg) and connect. */
const STARTUP_GRACE_MS = 20_000;
/** /ready must not hang on a dead network for the whole call timeout. */
const PING_TIMEOUT_MS = 2000;
/** Server-side statement_timeout = callTimeoutMs + this: PostgreSQL ends what the client gave up on. */
const STATEMENT_TIMEOUT_MARGIN_MS = 1000;

export interface PgBridgeSettings {
  /** Connection URL, password included (kept in the worker's memory, never logged). */
  connectionString: string;
  /** The URL without credentials, for messages and logs. */
  displayUrl: string;
  callTimeoutMs: number;
  connectTimeoutMs: number;
  applicationName: string;
  log?: Logger | undefined;
}

export interface PgResult<R> {
  rows: R[];
  rowCount: number;
}

/** A call as the caller writes it; the bridge adds the id. */
type WithoutId<C> = C extends unknown ? Omit<C, 'id'> : never;
type CallBody = WithoutId<Call>;

export class PgBridge {
  readonly #settings: PgBridgeSettings;
  #worker!: Worker;
  #port!: MessagePort;
  #signal!: Int32Array;
  #alive = false;
  #started = false;
  #nextId = 0;
  #inTx = false;
  #closed = false;
  #lastError = 'not connected yet';

  constructor(settings: PgBridgeSettings) {
    this.#settings = settings;
    this.#spawn();
  }

  #spawn(): void {
    const shared = new SharedArrayBuffer(SIGNAL_WORDS * Int32Array.BYTES_PER_ELEMENT);
    const { port1, port2 } = new MessageChannel();
    const init: WorkerInit = {
      port: port2,
      signal: shared,
      connectionString: this.#settings.connectionString,
      connectTimeoutMs: this.#settings.connectTimeoutMs,
      statementTimeoutMs: this.#settings.callTimeoutMs + STATEMENT_TIMEOUT_MARGIN_MS,
      applicationName: this.#settings.applicationName,
    };
    const worker = new Worker(WORKER_URL, { workerData: init, transferList: [port2], name: 'gs-store-pg' });
    // The store's close() ends it; a forgotten store must not keep the process alive.
    worker.unref();
    worker.on('message', (s: StatusMessage) => this.#onStatus(s));
    worker.on('error', (err) => {
      this.#lastError = `worker failed: ${err.message}`;
      this.#settings.log?.error({ err }, 'PostgreSQL store worker failed');
    });
    worker.on('exit', () => {
      if (this.#worker === worker) this.#alive = false;
    });
    (this.#port as MessagePort | undefined)?.close(); // a dead worker's
    this.#worker = worker;
    this.#port = port1;
    this.#signal = new Int32Array(shared);
    this.#alive = true;
    this.#started = false;
  }

  #onStatus(s: StatusMessage): void {
    const log = this.#settings.log;
    if (s.state === 'down') {
      this.#lastError = s.error;
      log?.warn({ url: this.#settings.displayUrl, error: s.error }, 'PostgreSQL unreachable; reconnecting');
    } else {
      log?.info({ url: this.#settings.displayUrl }, 'PostgreSQL connected');
    }
  }

  /** One statement with `$n` parameters. */
  query<R = Record<string, unknown>>(text: string, values: readonly unknown[] = [], timeoutMs?: number): PgResult<R> {
    const r = this.#call({ op: 'query', text, values: [...values], inTx: this.#inTx }, timeoutMs);
    return r as unknown as PgResult<R>;
  }

  /** Several statements, no parameters (migrations). */
  exec(text: string, timeoutMs?: number): void {
    this.#call({ op: 'exec', text, inTx: this.#inTx }, timeoutMs);
  }

  begin(timeoutMs?: number): void {
    this.#call({ op: 'begin' }, timeoutMs);
    this.#inTx = true;
  }

  commit(): void {
    try {
      this.#call({ op: 'commit' });
    } finally {
      this.#inTx = false;
    }
  }

  /** Never fails fast: the worker must forget the transaction even while the database is down. */
  rollback(): void {
    try {
      this.#call({ op: 'rollback' }, undefined, false);
    } finally {
      this.#inTx = false;
    }
  }

  /** True when the database answers `SELECT 1` now; false at once while it is known unreachable. */
  ping(): boolean {
    try {
      this.#call({ op: 'ping' }, Math.min(this.#settings.callTimeoutMs, PING_TIMEOUT_MS));
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.#closed) return;
    try {
      if (this.#alive) this.#call({ op: 'close' }, Math.min(this.#settings.callTimeoutMs, PING_TIMEOUT_MS), false);
    } catch {
      // the worker is terminated below either way
    } finally {
      this.#closed = true;
      this.#port.close();
      void this.#worker.terminate();
    }
  }

  #call(body: CallBody, timeoutMs = this.#settings.callTimeoutMs, failFast = true): PgResult<Record<string, unknown>> {
    if (this.#closed) throw new Error('the PostgreSQL store is closed');
    if (!this.#alive) this.#spawn();
    if (failFast && Atomics.load(this.#signal, SIGNAL_STATE) === STATE_DOWN) {
      throw new StoreUnavailableError(`PostgreSQL at ${this.#settings.displayUrl} is unreachable (${this.#lastError}); reconnecting in the background`);
    }
    const id = ++this.#nextId;
    this.#port.postMessage({ ...body, id } as Call);
    const budget = this.#started ? timeoutMs : timeoutMs + STARTUP_GRACE_MS;
    const deadline = performance.now() + budget;
    for (;;) {
      // Read the word before looking for the reply: a reply posted after the look changes it, so the wait returns at once.
      const seen = Atomics.load(this.#signal, SIGNAL_SEQ);
      for (let m = receiveMessageOnPort(this.#port); m; m = receiveMessageOnPort(this.#port)) {
        const reply = m.message as Reply;
        if ('fatal' in reply) {
          this.#alive = false;
          throw new Error(reply.fatal.message);
        }
        if (reply.id !== id) continue; // the late reply of a call given up on
        this.#started = true;
        if (reply.ok) return reply;
        const { message, ...fields } = reply.error;
        if (fields.code && !/^[0-9A-Z]{5}$/.test(fields.code)) this.#lastError = message; // a connection failure, not SQL
        throw new PostgresError(message, fields);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.#port.postMessage({ op: 'abort', id } satisfies Call);
        const what = body.op === 'query' || body.op === 'exec' ? `${body.op} "${body.text.replace(/\s+/g, ' ').slice(0, 80)}"` : body.op;
        this.#lastError = `no answer within ${Math.round(budget)} ms`;
        throw new StoreTimeoutError(`PostgreSQL at ${this.#settings.displayUrl} did not answer within ${Math.round(budget)} ms (${what}); the call was abandoned and the connection is reset`);
      }
      Atomics.wait(this.#signal, SIGNAL_SEQ, seen, left);
    }
  }
}
