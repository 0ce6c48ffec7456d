/**
 * The live feed's connection (`/ws`), held by a dedicated worker (feed-worker.ts). Chromium reads
 * a WebSocket's incoming data on the thread that owns the socket: on the page's main thread, a
 * district's device snapshot (2.4 MB for 50,000 devices) trickled in only between the page's own
 * tasks (bundle start, map creation), and its JSON was parsed there too. The worker receives it
 * whole and parses it while the page starts; the page gets the parsed value. Updates and every
 * other message pass through as text. Where no worker can be started, the page holds the
 * WebSocket itself (PageConnection), with the same frames.
 *
 * No app imports: boot.ts opens the first connection before the app bundle runs.
 */
import { isObject, type Json } from './json.js';

/** A frame as the page gets it. */
export type FeedFrame =
  | { kind: 'text'; text: string }
  /** A binary frame of a JSON object (the device snapshot), parsed; `parseMs` where it was parsed. */
  | { kind: 'json'; value: Json; parseMs: number }
  /** A binary frame that is not a JSON object, as it came. */
  | { kind: 'binary'; data: ArrayBuffer };

export interface FeedConnection {
  /** Frames in the order they arrived; none are kept while it is null. */
  onframe: ((frame: FeedFrame) => void) | null;
  /** Closed (by either side, or it never opened); after the frames. */
  onclose: (() => void) | null;
  /** Opening or open. */
  readonly live: boolean;
  close(code?: number, reason?: string): void;
}

/** Between the page and feed-worker.ts. */
export type ToFeedWorker = { type: 'connect'; url: string } | { type: 'close'; code: number; reason: string };
export type FromFeedWorker = { type: 'frame'; frame: FeedFrame } | { type: 'closed' };

/**
 * feed-worker.ts, built, put here by scripts/build-dashboard.ts: the worker starts from a Blob,
 * without a request of its own that would queue behind the page's first ones (6 per host).
 */
declare const __FEED_WORKER_SOURCE__: string | undefined;

let workerUrl: string | null = null;
/** A worker failed to start (a Content-Security-Policy without `worker-src blob:`): the page holds later connections. */
let workerFailed = false;
function feedWorkerUrl(): string {
  workerUrl ??= URL.createObjectURL(new Blob([__FEED_WORKER_SOURCE__ ?? ''], { type: 'text/javascript' }));
  return workerUrl;
}

const utf8 = new TextDecoder();

/**
 * Number columns of a parsed device snapshot (an array of `count` numbers, no nulls: codes,
 * offsets, numbers) as Float64Arrays, in place; returns their buffers. Posted from the worker,
 * these move instead of being copied number by number, and read faster (device-snapshot.ts takes
 * either form).
 */
export function packSnapshotColumns(msg: Json): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  const count = msg.count;
  if (msg.type !== 'devices.snapshot' || typeof count !== 'number' || count < 1024) return buffers;
  const pack = (owner: Json, depth: number) => {
    for (const [key, v] of Object.entries(owner)) {
      if (Array.isArray(v)) {
        if (v.length !== count || !v.every((x) => typeof x === 'number')) continue;
        const column = Float64Array.from(v as number[]);
        owner[key] = column;
        buffers.push(column.buffer);
      } else if (isObject(v) && depth < 3) pack(v, depth + 1);
    }
  };
  pack(msg, 0);
  return buffers;
}

/** A binary frame: the parsed JSON object it carries, or the bytes as they are. */
export function binaryFrame(data: ArrayBuffer): FeedFrame {
  const started = performance.now();
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(data));
  } catch {
    return { kind: 'binary', data };
  }
  return isObject(value) ? { kind: 'json', value, parseMs: performance.now() - started } : { kind: 'binary', data };
}

/** Opens `url` in a feed worker, or in the page where a worker cannot start. */
export function openFeedConnection(url: string): FeedConnection {
  if (typeof Worker === 'function' && typeof __FEED_WORKER_SOURCE__ === 'string' && !workerFailed) {
    try {
      return new WorkerConnection(url);
    } catch (err) {
      workerFailed = true;
      console.warn('live feed worker unavailable; the page holds the WebSocket itself', err);
    }
  }
  return new PageConnection(url);
}

class WorkerConnection implements FeedConnection {
  onframe: ((frame: FeedFrame) => void) | null = null;
  onclose: (() => void) | null = null;
  readonly #worker: Worker;
  #live = true;

  constructor(url: string) {
    this.#worker = new Worker(feedWorkerUrl());
    this.#worker.onmessage = (event: MessageEvent<FromFeedWorker>) => {
      const m = event.data;
      if (m.type === 'frame') {
        if (this.#live) this.onframe?.(m.frame);
      } else this.#closed();
    };
    // The script failed to load or threw: the socket is gone with it, and the next connection is
    // held by the page.
    this.#worker.onerror = (event) => {
      event.preventDefault();
      workerFailed = true;
      console.warn('live feed worker failed; the page holds the WebSocket itself from now on');
      this.#closed();
    };
    this.#worker.postMessage({ type: 'connect', url } satisfies ToFeedWorker);
  }

  get live(): boolean {
    return this.#live;
  }

  close(code = 1000, reason = ''): void {
    if (!this.#live) return;
    this.#worker.postMessage({ type: 'close', code, reason } satisfies ToFeedWorker);
  }

  #closed(): void {
    if (!this.#live) return;
    this.#live = false;
    this.#worker.terminate();
    this.onclose?.();
  }
}

class PageConnection implements FeedConnection {
  onframe: ((frame: FeedFrame) => void) | null = null;
  onclose: (() => void) | null = null;
  readonly #ws: WebSocket;

  constructor(url: string) {
    this.#ws = new WebSocket(url);
    this.#ws.binaryType = 'arraybuffer';
    this.#ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') this.onframe?.({ kind: 'text', text: event.data });
      else if (event.data instanceof ArrayBuffer) this.onframe?.(binaryFrame(event.data));
    };
    // 'error' is always followed by 'close'.
    this.#ws.onclose = () => this.onclose?.();
  }

  get live(): boolean {
    return this.#ws.readyState <= WebSocket.OPEN;
  }

  close(code = 1000, reason = ''): void {
    this.#ws.close(code, reason);
  }
}
