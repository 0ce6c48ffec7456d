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

/** A time-series database behind the writer: InfluxDB 1.x today, 2.x/3.x next to it. */
export interface SeriesTarget {
  readonly url: string;
  /** Resolves when reachable (and the database exists); rejects with a readable reason. */
  connect(): Promise<void>;
  writeBatch(points: readonly SeriesPoint[]): Promise<void>;
  query(q: SeriesQuery): Promise<Array<[number, number]>>;
}

export type { StorageStatus };
