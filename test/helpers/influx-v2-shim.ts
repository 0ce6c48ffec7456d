/**
 * A protocol shim that speaks the part of the InfluxDB 2.x HTTP API the gateway's v2 target uses,
 * backed by a REAL InfluxDB 1.6 (scripts/lib/influxd.ts) for storage and InfluxQL.
 *
 * WHY: no InfluxDB 2.x or 3.x can run here (no Debian package, no network), so the v2 path is
 * tested against this shim, NOT against a real InfluxDB 2/3 server.
 *
 * What it does, following the InfluxDB 2.x API (OpenAPI spec and the 2.x handlers):
 *   POST /api/v2/write  `Authorization: Token <t>` (else 401 {code:"unauthorized",message:"unauthorized access"});
 *                       precision ns|us|ms|s, default ns (else 400 invalid); `bucket` required (else
 *                       404 "bucket not found"); `org` or `orgID` required (else 400 "Please provide
 *                       either orgID or org"), unknown → 404 `organization name "x" not found`;
 *                       unknown bucket → 404 `bucket "x" not found`; `Content-Encoding: gzip` decoded
 *                       (a broken gzip body → 400); then the line protocol goes to InfluxDB 1.6's
 *                       /write on the database the bucket maps to. 1.6's answer becomes 2.x's: 204 →
 *                       204; a parse error → 400 {code:"invalid",message}; a partial write (field
 *                       type conflict, beyond retention; "… dropped=N") → 422 {code:"unprocessable
 *                       entity",message:"failure writing points to database: partial write: …"};
 *                       anything else → 500 {code:"internal error"}.
 *   GET /api/v2/buckets `org`/`orgID` and `name` filters; unknown org → 404; a name that matches
 *                       nothing yields 2.x's system buckets (_tasks, _monitoring), as 2.x does.
 *   GET /ping           204 with X-Influxdb-Version / X-Influxdb-Build, no auth.
 *   GET /health         200 {name:"influxdb",status:"pass",message:"ready for queries and writes",…}, no auth.
 *   GET|POST /query     the 1.x-compatible InfluxQL endpoint with token auth: `db` is resolved through
 *                       the DBRP mapping to a bucket, then to the 1.6 database; an unmapped db gives
 *                       {"results":[{"error":"database not found: x"}]}; only SELECT and SHOW pass
 *                       (InfluxQL on 2.x is read-only); 1.6's JSON answer is passed through.
 * Every request is recorded (method, path, query, headers, body size as received, decoded body,
 * status answered) so a test can assert exactly what the client sent. `failWrites()` answers the
 * next writes with a given error without storing anything (2.x refuses a malformed batch whole).
 *
 * What passing tests against it PROVES: the gateway sends what the 2.x API specifies (path, org,
 * bucket, precision=ms, Token auth, gzip, line protocol), classifies 2.x-shaped answers (401, 404,
 * 400, 422, 5xx) correctly, queries through /query with Token auth and parses the answer, and
 * the whole pipeline (MQTT → spool → write → storage → query) works end to end through that API
 * surface with real storage behind it.
 * What it does NOT prove: that a real InfluxDB 2.x/3.x answers exactly like this (error wording,
 * which cases are 400 vs 422, 3.x's own partial-write body and its missing bucket API, Cloud rate
 * limits); 2.x's authorization model (per-bucket read/write tokens, v1 auth, Basic or u/p on
 * /query — the shim knows one all-access token, header only); DBRP and retention semantics;
 * InfluxQL differences of 2.x/3.x (the queries run on 1.6's engine); TLS; performance. On a parse
 * error 1.6 stores the valid lines of the batch where 2.x would store none — tests must not rely
 * on that. Check against a real server before relying on it in production (docs/storage.md).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface ShimRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  /** Lower-case names, as Node gives them. */
  headers: Record<string, string>;
  /** Body bytes as received (compressed when gzipped). */
  bodyBytes: number;
  /** The body decoded (gunzipped) as text: line protocol for writes, form data for POST /query. */
  body: string;
  /** The status the shim answered. */
  status: number;
  /** True when the answer came from failWrites() and nothing was stored. */
  injected: boolean;
}

export interface ShimOptions {
  /** The InfluxDB 1.x that stores the data (startInfluxd().url). */
  backendUrl: string;
  org: string;
  token: string;
  /** Bucket name → the 1.x database holding it. Created at start: a bucket exists before anyone writes. */
  buckets: Record<string, string>;
  /** DBRP mappings for /query: database name → bucket name (`influx v1 dbrp create`). */
  dbrp: Record<string, string>;
}

export interface InfluxV2Shim {
  readonly url: string;
  readonly org: string;
  readonly orgID: string;
  /** Every request, in arrival order. */
  readonly requests: ShimRequest[];
  /** The one valid token; assignable (a token rotated on the server). */
  token: string;
  /** Answers the next `times` writes with `status` and a 2.x error body, storing nothing. */
  failWrites(status: number, body: { code: string; message: string }, times?: number): void;
  /** Recorded POST /api/v2/write requests. */
  writes(): ShimRequest[];
  close(): Promise<void>;
}

const VERSION = 'v2.7.11';
const PRECISIONS: Record<string, string> = { ns: 'n', us: 'u', ms: 'ms', s: 's' };
const ERROR_CODES: Record<number, string> = {
  400: 'invalid',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not found',
  405: 'method not allowed',
  415: 'unsupported media type',
  422: 'unprocessable entity',
  500: 'internal error',
};

export async function startInfluxV2Shim(opts: ShimOptions): Promise<InfluxV2Shim> {
  const backend = opts.backendUrl.replace(/\/$/, '');
  const orgID = '0a1b2c3d4e5f6071';
  const bucketIds = new Map(Object.keys(opts.buckets).map((name, i) => [name, `${(0xb0c0000000000000n + BigInt(i + 1)).toString(16)}`]));
  const requests: ShimRequest[] = [];
  let faults: Array<{ status: number; body: { code: string; message: string } }> = [];
  const now = new Date().toISOString();

  for (const db of new Set(Object.values(opts.buckets))) {
    const res = await fetch(`${backend}/query`, { method: 'POST', body: new URLSearchParams({ q: `CREATE DATABASE "${db}"` }) });
    if (!res.ok) throw new Error(`shim: could not create database ${db} on ${backend}: ${res.status} ${await res.text()}`);
  }

  const bucketJson = (name: string, id: string, type: 'user' | 'system') => ({
    id,
    orgID,
    type,
    name,
    retentionRules: [],
    createdAt: now,
    updatedAt: now,
    links: {
      self: `/api/v2/buckets/${id}`,
      org: `/api/v2/orgs/${orgID}`,
      members: `/api/v2/buckets/${id}/members`,
      owners: `/api/v2/buckets/${id}/owners`,
      labels: `/api/v2/buckets/${id}/labels`,
      write: `/api/v2/write?org=${orgID}&bucket=${id}`,
    },
    labels: [],
  });

  const shim = {
    url: '',
    org: opts.org,
    orgID,
    requests,
    token: opts.token,
    failWrites(status: number, body: { code: string; message: string }, times = 1) {
      for (let i = 0; i < times; i++) faults.push({ status, body });
    },
    writes: () => requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/write'),
    close: async () => undefined as void,
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://shim');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const rec: ShimRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      bodyBytes: raw.length,
      body: '',
      status: 0,
      injected: false,
    };
    requests.push(rec);

    const send = (status: number, body?: string, extra: Record<string, string> = {}) => {
      rec.status = status;
      res.writeHead(status, { 'X-Influxdb-Build': 'OSS', 'X-Influxdb-Version': VERSION, ...extra });
      res.end(body);
    };
    const json = (status: number, value: unknown) => send(status, JSON.stringify(value), { 'Content-Type': 'application/json; charset=utf-8' });
    // 2.x errors: JSON {code, message} and the code again in X-Platform-Error-Code.
    const error = (status: number, body: { code: string; message: string }) =>
      send(status, JSON.stringify(body), { 'Content-Type': 'application/json; charset=utf-8', 'X-Platform-Error-Code': body.code });
    const fail = (status: number, message: string) => error(status, { code: ERROR_CODES[status] ?? 'internal error', message });
    // 2.x parses `Authorization: Token <token>` (the scheme the client libraries send).
    const authorized = () => headers.authorization === `Token ${shim.token}`;
    const method = rec.method;
    const path = url.pathname;
    const q = url.searchParams;

    if (path === '/ping') {
      if (method !== 'GET' && method !== 'HEAD') return fail(405, 'method not allowed');
      return send(204);
    }
    if (path === '/health') {
      if (method !== 'GET') return fail(405, 'method not allowed');
      return json(200, { name: 'influxdb', message: 'ready for queries and writes', status: 'pass', checks: [], version: VERSION, commit: 'greenshield-test-shim' });
    }

    if (path === '/api/v2/write') {
      if (method !== 'POST') return fail(405, 'method not allowed');
      if (!authorized()) return fail(401, 'unauthorized access');
      const precision = q.get('precision') || 'ns';
      if (!PRECISIONS[precision]) return fail(400, 'invalid precision; valid precision units are ns, us, ms, and s');
      const bucket = q.get('bucket');
      if (!bucket) return fail(404, 'bucket not found');
      const encoding = (headers['content-encoding'] ?? 'identity').toLowerCase();
      let body: Buffer;
      if (encoding === 'gzip') {
        try {
          body = gunzipSync(raw);
        } catch {
          return fail(400, 'gzipped HTTP body contains an invalid header');
        }
      } else if (encoding === 'identity') {
        body = raw;
      } else {
        return fail(415, `unsupported content encoding "${encoding}"`);
      }
      rec.body = body.toString('utf8');
      const org = q.get('org');
      const orgIdParam = q.get('orgID');
      if (!org && !orgIdParam) return fail(400, 'Please provide either orgID or org');
      if (org ? org !== opts.org && org !== orgID : orgIdParam !== orgID) {
        return fail(404, org ? `organization name "${org}" not found` : 'organization not found');
      }
      const bucketName = opts.buckets[bucket] !== undefined ? bucket : [...bucketIds].find(([, id]) => id === bucket)?.[0];
      const db = bucketName === undefined ? undefined : opts.buckets[bucketName];
      if (db === undefined) return fail(404, `bucket "${bucket}" not found`);
      const fault = faults.shift();
      if (fault) {
        rec.injected = true;
        return error(fault.status, fault.body);
      }
      let upstream: Response;
      try {
        upstream = await fetch(`${backend}/write?db=${encodeURIComponent(db)}&precision=${PRECISIONS[precision]}`, { method: 'POST', body: rec.body });
      } catch (err) {
        return fail(500, `unexpected error writing points to database: ${(err as Error).message}`);
      }
      if (upstream.status === 204) return send(204);
      const text = await upstream.text();
      let reason = text;
      try {
        reason = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      if (upstream.status === 400 && /partial write/.test(reason)) return fail(422, `failure writing points to database: ${reason}`);
      if (upstream.status === 400) return fail(400, reason);
      return fail(500, `unexpected error writing points to database: ${reason}`);
    }

    if (path === '/api/v2/buckets') {
      if (method !== 'GET') return fail(405, 'method not allowed');
      if (!authorized()) return fail(401, 'unauthorized access');
      const org = q.get('org');
      const orgIdParam = q.get('orgID');
      if (org && org !== opts.org) return fail(404, `organization name "${org}" not found`);
      if (orgIdParam && orgIdParam !== orgID) return fail(404, 'organization not found');
      const name = q.get('name');
      const list = Object.keys(opts.buckets)
        .filter((b) => !name || b === name)
        .map((b) => bucketJson(b, bucketIds.get(b)!, 'user'));
      // 2.x appends its system buckets whenever the list it found has none (tenant.FindBuckets).
      if (list.length === 0) list.push(bucketJson('_tasks', '000000000000000a', 'system'), bucketJson('_monitoring', '000000000000000b', 'system'));
      return json(200, { links: { self: `/api/v2/buckets?${q.toString()}` }, buckets: list });
    }

    if (path === '/query') {
      if (method !== 'GET' && method !== 'POST') return fail(405, 'method not allowed');
      if (!authorized()) return fail(401, 'unauthorized access');
      rec.body = raw.toString('utf8');
      const params = new URLSearchParams(url.search);
      if (method === 'POST' && (headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
        for (const [k, v] of new URLSearchParams(rec.body)) if (!params.has(k)) params.set(k, v);
      }
      const dbName = params.get('db') ?? '';
      const statement = (params.get('q') ?? '').trim();
      const statementError = (error: string) => json(200, { results: [{ statement_id: 0, error }] });
      if (!statement) return fail(400, 'missing query parameter "q"');
      const statements = statement.split(';').map((s) => s.trim()).filter(Boolean);
      const refused = statements.find((s) => !/^(SELECT|SHOW)\b/i.test(s));
      if (refused) return statementError(`the shim (like InfluxQL on 2.x) takes only SELECT and SHOW: ${refused.slice(0, 60)}`);
      const bucket = opts.dbrp[dbName];
      const db = bucket === undefined ? undefined : opts.buckets[bucket];
      if (db === undefined) return statementError(`database not found: ${dbName}`);
      const forward = new URLSearchParams({ db, q: statement });
      const epoch = params.get('epoch');
      if (epoch) forward.set('epoch', epoch);
      let upstream: Response;
      try {
        upstream = await fetch(`${backend}/query?${forward}`);
      } catch (err) {
        return fail(500, (err as Error).message);
      }
      return send(upstream.status, await upstream.text(), { 'Content-Type': 'application/json' });
    }

    return fail(404, 'path not found');
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ code: 'internal error', message: (err as Error).message }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  shim.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  shim.close = async () => {
    faults = [];
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return shim;
}
