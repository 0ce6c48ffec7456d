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
