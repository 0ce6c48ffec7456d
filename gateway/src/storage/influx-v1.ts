/**
 * InfluxDB 1.x: writes go straight to /write as (gzipped) line protocol from the spool; queries
 * and database creation go through the `influx` client.
 */
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { InfluxDB, escape } from 'influx';
import type { InfluxConfig } from '../../../config/schema.js';
import { RejectedWriteError, type SeriesQuery, type SeriesTarget } from './types.js';

const gzipAsync = promisify(gzip);

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

  async writeLines(body: Buffer): Promise<void> {
    const config = this.#config;
    const url = new URL('write', this.url.endsWith('/') ? this.url : `${this.url}/`);
    url.searchParams.set('db', config.database);
    url.searchParams.set('precision', 'ms');
    const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
    if (config.username) headers.authorization = `Basic ${Buffer.from(`${config.username}:${config.password ?? ''}`).toString('base64')}`;
    let payload = body;
    if (config.gzip) {
      payload = await gzipAsync(body, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    const res = await fetch(url, { method: 'POST', headers, body: payload as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(config.timeoutMs) });
    if (res.status === 204) return;
    const text = (await res.text()).slice(0, 500);
    // 400: the lines themselves are refused (InfluxDB stored the valid ones of a partial write).
    if (res.status === 400) throw new RejectedWriteError(`InfluxDB refused lines: ${text}`, Number(/dropped=(\d+)/.exec(text)?.[1] ?? NaN) || undefined);
    throw new Error(`InfluxDB answered ${res.status}: ${text}`);
  }

  async query(q: SeriesQuery): Promise<Array<[number, number]>> {
    const rows = await this.#db.query<{ time: Date; v: number | null }>(seriesInfluxQL(q), { precision: 'ms' });
    const out: Array<[number, number]> = [];
    for (const row of rows) if (typeof row.v === 'number') out.push([row.time.getTime(), row.v]);
    return out;
  }
}

/**
 * The InfluxQL for a series query, shared by the 1.x and the 2.x/3.x target (which sends it to the
 * v1-compatible /query): one column `v` next to `time`. Short ranges return raw points; longer
 * ones are averaged into time buckets so the chart stays light.
 */
export function seriesInfluxQL(q: SeriesQuery): string {
  const spanMs = Math.max(1, q.to - q.from);
  const bucketMs = Math.ceil(spanMs / q.maxPoints / 1000) * 1000;
  const where = `"device" = ${escape.stringLit(q.deviceId)} AND time >= ${q.from}ms AND time <= ${q.to}ms`;
  const field = escape.quoted(q.field);
  const measurement = escape.quoted(q.measurement);
  return bucketMs <= 1000
    ? `SELECT ${field} AS v FROM ${measurement} WHERE ${where} ORDER BY time ASC LIMIT ${q.maxPoints}`
    : `SELECT MEAN(${field}) AS v FROM ${measurement} WHERE ${where} GROUP BY time(${bucketMs}ms) fill(none)`;
}
