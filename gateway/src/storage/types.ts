import type { StorageStatus } from '../../../protocol/ws.js';

/** One InfluxDB point. `ts` is the device's time in ms: writing the same point twice is idempotent. */
export interface SeriesPoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, number | string | boolean>;
  ts: number;
}

export interface SeriesQuery {
  measurement: string;
  deviceId: string;
  field: string;
  from: number;
  to: number;
  /** Upper bound on returned points; longer ranges are averaged into time buckets. */
  maxPoints: number;
}

/** InfluxDB refused the lines themselves (bad data, type conflict): retrying cannot help. */
export class RejectedWriteError extends Error {
  readonly dropped: number | undefined;
  constructor(message: string, dropped?: number) {
    super(message);
    this.name = 'RejectedWriteError';
    this.dropped = dropped;
  }
}

/** A time-series database behind the writer: InfluxDB 1.x today, 2.x/3.x next to it. */
export interface SeriesTarget {
  readonly url: string;
  /** Resolves when reachable (and the database exists); rejects with a readable reason. */
  connect(): Promise<void>;
  /**
   * Writes newline-terminated line protocol at ms precision. Throws RejectedWriteError when the
   * server refused (some of) the lines, any other error when the write may be retried.
   */
  writeLines(body: Buffer): Promise<void>;
  query(q: SeriesQuery): Promise<Array<[number, number]>>;
}

export type { StorageStatus };

/** What the rest of the gateway sees of the writer, wherever it runs (worker thread or inline). */
export interface SeriesWriter {
  readonly status: StorageStatus;
  /** Points accepted and not yet in InfluxDB. */
  readonly buffered: number;
  /** True when the spool is at its disk cap: new points must be refused. */
  readonly full: boolean;
  start(): Promise<void>;
  /** Appends one line of line protocol (no newline); durable with the next group commit. */
  writeLine(line: string): void;
  /**
   * Resolves when every line written so far is on disk; undefined if nothing is pending.
   * `publisher`: the connection whose message waits (batches are sent early once one connection
   * has many messages in them; see worker-writer.ts).
   */
  barrier(publisher?: object): Promise<void> | undefined;
  /**
   * Calls `cb` once every line written so far is on disk, or with the error if that failed;
   * returns false (and never calls it) when nothing is pending. Same as barrier() without a
   * promise per caller: the broker calls it for every QoS1 publish.
   */
  whenDurable(cb: (err?: Error) => void, publisher?: object): boolean;
  query(q: SeriesQuery): Promise<Array<[number, number]>>;
  /** Commits what is pending and gives InfluxDB a few seconds to take what is waiting. */
  stop(): Promise<void>;
}

/** The logging the writer and the spool need: satisfied by pino, and by the worker's forwarder. */
export interface WriterLog {
  debug: WriterLogFn;
  info: WriterLogFn;
  warn: WriterLogFn;
  error: WriterLogFn;
  child(bindings: Record<string, unknown>): WriterLog;
}
export interface WriterLogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

/** The writer's metrics; in the worker they are forwarded to the gateway's registry. */
export interface WriterMetrics {
  spoolCommitSeconds: { observe(v: number): void };
  writeLatency: { observe(v: number): void };
  pointsWritten: { inc(n?: number): void };
  pointsDropped: { inc(n?: number): void };
  writeErrors: { inc(n?: number): void };
  bufferedPoints: { set(v: number): void };
  spoolBytes: { set(v: number): void };
}
