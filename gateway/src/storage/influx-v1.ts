/** InfluxDB 1.x through the `influx` client: InfluxQL queries, line-protocol writes at ms precision. */
import { InfluxDB, escape } from 'influx';
import type { InfluxConfig } from '../../../config/schema.js';
import type { SeriesPoint, SeriesQuery, SeriesTarget } from './types.js';

export class InfluxV1Target implements SeriesTarget {
  readonly url: string;
  readonly #db: InfluxDB;
  readonly #config: InfluxConfig;

  constructor(config: InfluxConfig) {
    this.#config = config;
    this.url = config.url;
    const u = new URL(config.url);
    this.#db = new InfluxDB({
      host: u.hostname,
      port: Number(u.port || (u.protocol === 'https:' ? 443 : 8086)),
      protocol: u.protocol === 'https:' ? 'https' : 'http',
      path: u.pathname === '/' ? '' : u.pathname,
      database: config.database,
      ...(config.username ? { username: config.username } : {}),
      ...(config.password ? { password: config.password } : {}),
      // The writer owns retries and back-off; the client should fail fast and say why.
      pool: { maxRetries: 0, requestTimeout: 10_000 },
    });
  }

  async connect(): Promise<void> {
    const [host] = await this.#db.ping(3000);
    if (!host?.online) throw new Error(`no answer from ${this.url}`);
    if (this.#config.createDatabase) await this.#db.createDatabase(this.#config.database); // idempotent on 1.x
  }

  async writeBatch(points: readonly SeriesPoint[]): Promise<void> {
    await this.#db.writePoints(
      points.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.ts })),
      { precision: 'ms' },
    );
  }

  async query(q: SeriesQuery): Promise<Array<[number, number]>> {
    const spanMs = Math.max(1, q.to - q.from);
    const bucketMs = Math.ceil(spanMs / q.maxPoints / 1000) * 1000;
    const where = `"device" = ${escape.stringLit(q.deviceId)} AND time >= ${q.from}ms AND time <= ${q.to}ms`;
    const field = escape.quoted(q.field);
    const measurement = escape.quoted(q.measurement);
    // Short ranges return raw points; longer ones are averaged so the chart stays light.
    const sql =
      bucketMs <= 1000
        ? `SELECT ${field} AS v FROM ${measurement} WHERE ${where} ORDER BY time ASC LIMIT ${q.maxPoints}`
        : `SELECT MEAN(${field}) AS v FROM ${measurement} WHERE ${where} GROUP BY time(${bucketMs}ms) fill(none)`;
    const rows = await this.#db.query<{ time: Date; v: number | null }>(sql, { precision: 'ms' });
    const out: Array<[number, number]> = [];
    for (const row of rows) if (typeof row.v === 'number') out.push([row.time.getTime(), row.v]);
    return out;
  }
}
