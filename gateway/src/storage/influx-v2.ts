/**
 * InfluxDB 2.x / 3.x (and the Cloud editions): line protocol to /api/v2/write with org, bucket,
 * precision=ms and `Authorization: Token …`; InfluxQL through the v1-compatible /query, which
 * InfluxDB 2.x answers for a database mapped to a bucket (DBRP) and InfluxDB 3.x for a database.
 *
 * Why the client's transport and not its WriteApi: our writer already owns batching, order and
 * retries (from the spool), so a write must be exactly one HTTP request whose outcome we see.
 * The WriteApi can be pushed most of the way there (maxRetries 0, flushInterval 0, huge batch
 * size, a `writeFailed` hook), but its send options are fixed when it is built, so it cannot take
 * a per-request AbortSignal: its only timeout is the socket idle timeout, on which it reports an
 * error but leaves the request open — against a frozen server every retry would leave one more
 * hanging socket. It would also split our batch into records and join them again, flush early on
 * its own size limits (swallowing that error), and log failures through its global logger.
 * `InfluxDB#transport.request()` is the same client code (URL and path prefix handling, token
 * header, gzip above `gzipThreshold`, HttpError with the server's JSON) for exactly one request.
 */
import { HttpError, InfluxDB, type Transport } from '@influxdata/influxdb-client';
import type { InfluxConfig } from '../../../config/schema.js';
import { seriesInfluxQL } from './influx-v1.js';
import { RejectedWriteError, type SeriesQuery, type SeriesTarget } from './types.js';

const REQUIRED = ['org', 'bucket', 'token'] as const;

interface V1QueryResponse {
  results?: Array<{ series?: Array<{ columns: string[]; values: unknown[][] }>; error?: string }>;
  error?: string;
}

export class InfluxV2Target implements SeriesTarget {
  readonly url: string;
  readonly #config: InfluxConfig;
  readonly #org: string;
  readonly #bucket: string;
  readonly #transport: Transport;
  readonly #writePath: string;

  constructor(config: InfluxConfig) {
    const missing = REQUIRED.filter((key) => !config[key]);
    if (missing.length > 0) {
      const keys = missing.map((key) => `gateway.influx.${key}`).join(', ');
      throw new Error(
        `gateway.influx.api is 'v2' (InfluxDB 2.x/3.x) but ${keys} ${missing.length === 1 ? 'is' : 'are'} not set: ` +
          'writing to /api/v2/write needs gateway.influx.org, gateway.influx.bucket and gateway.influx.token',
      );
    }
    this.#config = config;
    this.url = config.url;
    this.#org = config.org!;
    this.#bucket = config.bucket!;
    // `timeout` is the socket idle timeout; every request below also carries an AbortSignal so a
    // request that is not answered in time is really closed, not just reported.
    this.#transport = new InfluxDB({ url: config.url, token: config.token!, timeout: config.timeoutMs }).transport;
    this.#writePath = `/api/v2/write?org=${encodeURIComponent(this.#org)}&bucket=${encodeURIComponent(this.#bucket)}&precision=ms`;
  }

  /** Healthy server, token accepted, bucket there (where the server has a bucket API). Creates nothing. */
  async connect(): Promise<void> {
    await this.#checkHealth();
    await this.#checkBucket();
  }

  async writeLines(body: Buffer): Promise<void> {
    try {
      await this.#send(this.#writePath, body.toString('utf8'), {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        // 0: every non-empty body is gzipped; Infinity: none is.
        gzipThreshold: this.#config.gzip ? 0 : Number.POSITIVE_INFINITY,
      });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      // 400: malformed line protocol (2.x refuses the whole batch; 3.x stores the valid lines).
      // 422: schema conflict or points outside the retention period (2.x stores the valid lines).
      // Retrying the same lines cannot help either way.
      if (err.statusCode === 400 || err.statusCode === 422) {
        throw new RejectedWriteError(`InfluxDB refused lines (${says(err)})`, droppedCount(err));
      }
      throw new Error(this.#explain(err, 'write'));
    }
  }

  async query(q: SeriesQuery): Promise<Array<[number, number]>> {
    const params = `db=${encodeURIComponent(this.#config.database)}&q=${encodeURIComponent(seriesInfluxQL(q))}&epoch=ms`;
    let res: V1QueryResponse | undefined;
    try {
      res = (await this.#send(`/query?${params}`, '', { method: 'GET', headers: { accept: 'application/json' } })) as V1QueryResponse | undefined;
    } catch (err) {
      throw err instanceof HttpError ? new Error(this.#explain(err, 'query')) : err;
    }
    const result = res?.results?.[0];
    const error = result?.error ?? res?.error;
    if (error) {
      const hint = /database not found|dbrp/i.test(error)
        ? `; on InfluxDB 2.x map the database to the bucket: influx v1 dbrp create --db ${this.#config.database} --rp autogen --bucket-id <id of "${this.#bucket}"> --default`
        : '';
      throw new Error(`InfluxQL query failed: ${error}${hint}`);
    }
    if (!result) throw new Error(`unexpected answer from ${this.url}/query`);
    const series = result.series?.[0];
    if (!series) return [];
    const ti = series.columns.indexOf('time');
    const vi = series.columns.indexOf('v');
    const out: Array<[number, number]> = [];
    for (const row of series.values) {
      const t = row[ti];
      const v = row[vi];
      // epoch=ms gives numbers; a server that ignores it sends RFC 3339 strings.
      const ms = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : NaN;
      if (Number.isFinite(ms) && typeof v === 'number') out.push([ms, v]);
    }
    return out;
  }

  async #checkHealth(): Promise<void> {
    let health: unknown;
    try {
      health = await this.#send('/health', '', { method: 'GET' });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      if (err.statusCode !== 404) throw new Error(this.#explain(err, 'health'));
      // An edition without /health: /ping answers 2xx when the server is up.
      try {
        await this.#send('/ping', '', { method: 'GET' });
        return;
      } catch (pingErr) {
        throw pingErr instanceof HttpError ? new Error(this.#explain(pingErr, 'health')) : pingErr;
      }
    }
    // 2.x: {"status":"pass"|"fail","message":…}; 3.x answers 200 with plain "OK".
    if (health && typeof health === 'object' && 'status' in health && health.status !== 'pass') {
      const message = 'message' in health && typeof health.message === 'string' ? health.message : String(health.status);
      throw new Error(`InfluxDB at ${this.url} is not ready: ${message}`);
    }
  }

  async #checkBucket(): Promise<void> {
    const path = `/api/v2/buckets?org=${encodeURIComponent(this.#org)}&name=${encodeURIComponent(this.#bucket)}`;
    let res: unknown;
    try {
      res = await this.#send(path, '', { method: 'GET', headers: { accept: 'application/json' } });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      // InfluxDB 3 Core/Enterprise serve only the write/query compatibility endpoints, not the
      // bucket API: the route is unknown there, and the first write tells whether the database is.
      const json = parseJson(err.body);
      const orgMissing = err.statusCode === 404 && typeof json?.message === 'string' && /organization/i.test(json.message);
      if ((err.statusCode === 404 && !orgMissing) || err.statusCode === 405 || err.statusCode === 501) return;
      throw new Error(this.#explain(err, 'buckets'));
    }
    const buckets = (res as { buckets?: unknown } | undefined)?.buckets;
    if (!Array.isArray(buckets)) return;
    // Match the name exactly: 2.x adds its system buckets (_tasks, _monitoring) to an empty answer,
    // and lists only the buckets the token may read.
    if (!buckets.some((b) => (b as { name?: unknown } | null)?.name === this.#bucket)) {
      throw new Error(
        `InfluxDB at ${this.url} has no bucket "${this.#bucket}" in org "${this.#org}" that this token can read ` +
          `(check gateway.influx.bucket, gateway.influx.org and the token's permissions; the gateway does not create buckets: influx bucket create -n ${this.#bucket} -o ${this.#org})`,
      );
    }
  }

  /**
   * One HTTP request, no retries. HttpError (the server answered >= 300) passes through for the
   * caller to classify; a timeout or network failure becomes a readable Error (retryable).
   */
  async #send(path: string, body: string, options: { method: string; headers?: Record<string, string>; gzipThreshold?: number }): Promise<unknown> {
    const timeoutMs = this.#config.timeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      return await this.#transport.request(path, body, { ...options, signal });
    } catch (err) {
      if (err instanceof HttpError) throw err;
      if (signal.aborted) throw new Error(`InfluxDB at ${this.url} did not answer within ${timeoutMs} ms`);
      throw new Error(`cannot reach InfluxDB at ${this.url}: ${(err as Error).message || (err as Error).name}`);
    }
  }

  #explain(err: HttpError, op: 'write' | 'query' | 'health' | 'buckets'): string {
    const status = err.statusCode;
    const where = `InfluxDB at ${this.url}`;
    if (status === 401 || status === 403) {
      return `${where} refused the token (${says(err)}): check gateway.influx.token and its ${op === 'query' ? 'read' : 'write and read'} permission on bucket "${this.#bucket}" in org "${this.#org}"`;
    }
    if (status === 404 && op === 'query') {
      return `${where} has no InfluxQL /query endpoint (${says(err)}): queries need InfluxDB 2.x with a DBRP mapping or InfluxDB 3.x`;
    }
    if (status === 404) return `${where} answered ${says(err)}: check gateway.influx.org and gateway.influx.bucket (the gateway does not create buckets)`;
    if (status === 429 || status === 503) {
      const after = err.headers?.['retry-after'];
      return `${where} is busy (${says(err)})${after ? `, retry after ${String(after)} s` : ''}`;
    }
    return `${where} answered ${says(err)}`;
  }
}

function parseJson(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** "422 unprocessable entity: failure writing points …" from 2.x `{code, message}`, 3.x/1.x `{error}` or text. */
function says(err: HttpError): string {
  const json = parseJson(err.body);
  const code = typeof json?.code === 'string' ? ` ${json.code}` : '';
  const text = typeof json?.message === 'string' ? json.message : typeof json?.error === 'string' ? json.error : err.body || err.statusMessage || '';
  return `${err.statusCode}${code}${text ? `: ${text.slice(0, 500)}` : ''}`;
}

/**
 * How many lines the server refused, when it says: `dropped=N` in 2.x (and 1.x) partial-write
 * messages, one `data` entry per refused line in 3.x. Undefined means the whole batch (2.x on
 * malformed line protocol).
 */
function droppedCount(err: HttpError): number | undefined {
  const body = err.body ?? '';
  const m = /dropped=(\d+)/.exec(body);
  if (m) return Number(m[1]) || undefined;
  const data = parseJson(body)?.data;
  return Array.isArray(data) && data.length > 0 ? data.length : undefined;
}
