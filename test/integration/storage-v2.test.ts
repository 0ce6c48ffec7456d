/**
 * The InfluxDB 2.x/3.x storage target (gateway.influx.api: 'v2') end to end: MQTT → spool →
 * /api/v2/write → storage → /query → the series API.
 *
 * NOTE: there is no InfluxDB 2.x or 3.x here. These tests run against test/helpers/influx-v2-shim.ts,
 * a protocol shim that implements the 2.x API surface the target uses (write, buckets, ping,
 * health, v1-compatible /query, token auth, gzip, 2.x error bodies) and stores into a REAL
 * InfluxDB 1.6. They prove what the gateway sends and how it handles 2.x-shaped answers, not that
 * a real 2.x/3.x server answers exactly like the shim (see the shim's header and docs/storage.md).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import type { InfluxConfig } from '../../config/schema.js';
import { buildGateway } from '../../gateway/src/gateway.js';
import { createLogger } from '../../gateway/src/log.js';
import { InfluxV2Target } from '../../gateway/src/storage/influx-v2.js';
import { RejectedWriteError } from '../../gateway/src/storage/types.js';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { CONFIG_DIR, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';
import { startInfluxV2Shim, type InfluxV2Shim, type ShimRequest } from '../helpers/influx-v2-shim.js';

const ORG = 'chashan';
const BUCKET = 'greenshield-telemetry';
const TOKEN = 'gs-test-token-5f2b9c';
/** The database name queries use; the shim maps it to BUCKET (a DBRP mapping on 2.x). */
const DATABASE = 'greenshield';
/** The InfluxDB 1.6 database behind the bucket. */
const BACKEND_DB = 'v2shim_bucket';
const WEEK = 7 * 24 * 3600_000;

let influx: InfluxServer;
let shim: InfluxV2Shim;

function v2Config(overrides: Record<string, unknown> = {}) {
  return { api: 'v2', url: shim.url, org: ORG, bucket: BUCKET, token: TOKEN, database: DATABASE, flushIntervalMs: 100, ...overrides };
}

async function backendRows(q: string): Promise<unknown[][]> {
  const r = await influx.query(BACKEND_DB, q);
  if (r.results[0]?.error) throw new Error(r.results[0].error);
  return r.results[0]?.series?.[0]?.values ?? [];
}

async function countTank(device: string): Promise<number> {
  const rows = await backendRows(`SELECT COUNT("levelMm") FROM "water_tank" WHERE "device" = '${device}'`);
  return Number(rows[0]?.[1] ?? 0);
}

async function metric(gateway: TestGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

async function publishTank(client: MqttClient, device: string, ts: number, seq: number, levelMm: number): Promise<void> {
  const values = { levelMm, levelPercent: levelMm / 25, volumeM3: levelMm / 50 };
  await client.publishAsync(topics.telemetry(device), JSON.stringify({ ts, seq, values }), { qos: 1 });
}

const lines = (r: ShimRequest) => r.body.split('\n').filter((l) => l !== '');

beforeAll(async () => {
  influx = await startInfluxd();
  shim = await startInfluxV2Shim({ backendUrl: influx.url, org: ORG, token: TOKEN, buckets: { [BUCKET]: BACKEND_DB }, dbrp: { [DATABASE]: BUCKET } });
});

afterAll(async () => {
  await shim?.close();
  await influx?.stop();
});

describe('InfluxDB 2.x API (protocol shim backed by a real InfluxDB 1.6, not a real 2.x/3.x server)', () => {
  describe('with a valid token', () => {
    let gateway: TestGateway;
    let client: MqttClient;

    beforeAll(async () => {
      gateway = await startTestGateway({ gateway: { influx: v2Config() } });
      client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'storage-v2-test' });
    });
    afterAll(async () => {
      await client?.endAsync();
      await gateway?.close();
    });

    it('connects: checks /health and the bucket with the token, and creates nothing', () => {
      expect(gateway.storage.writer.status).toMatchObject({ state: 'ok', url: shim.url });
      const health = shim.requests.find((r) => r.path === '/health');
      expect(health).toMatchObject({ method: 'GET', status: 200 });
      const buckets = shim.requests.find((r) => r.path === '/api/v2/buckets');
      expect(buckets).toMatchObject({ method: 'GET', status: 200, query: { org: ORG, name: BUCKET } });
      expect(buckets?.headers.authorization).toBe(`Token ${TOKEN}`);
      // Only reads and writes: no bucket creation, no CREATE DATABASE through /query.
      expect(shim.requests.filter((r) => r.method !== 'GET' && r.path !== '/api/v2/write')).toEqual([]);
    });

    it('stores tank telemetry at the device time; every write carries org, bucket, precision=ms, the token and gzip', async () => {
      const t0 = Date.UTC(2026, 10, 26, 8, 0, 0);
      for (let i = 0; i < 5; i++) await publishTank(client, 'tank-001', t0 + i * 10_000, i, 2000 - i * 10);
      await waitFor(async () => (await countTank('tank-001')) === 5, { what: '5 points in the InfluxDB behind the shim' });

      const rows = await backendRows(`SELECT "levelMm", "grid" FROM "water_tank" WHERE "device" = 'tank-001' ORDER BY time ASC`);
      expect(rows.map((r) => r[0])).toEqual([0, 1, 2, 3, 4].map((i) => t0 + i * 10_000));
      expect(rows.map((r) => r[1])).toEqual([2000, 1990, 1980, 1970, 1960]);
      expect(rows[0]?.[2]).toBe('G37');

      const writes = shim.writes();
      expect(writes.length).toBeGreaterThan(0);
      for (const w of writes) {
        expect(w).toMatchObject({ method: 'POST', path: '/api/v2/write', status: 204, query: { org: ORG, bucket: BUCKET, precision: 'ms' } });
        expect(Object.keys(w.query).sort()).toEqual(['bucket', 'org', 'precision']);
        expect(w.headers.authorization).toBe(`Token ${TOKEN}`);
        expect(w.headers['content-encoding']).toBe('gzip');
        expect(w.headers['content-type']).toBe('text/plain; charset=utf-8');
        expect(w.bodyBytes).toBeGreaterThan(0);
        expect(Buffer.byteLength(w.body)).toBeGreaterThan(0);
      }
      // Exactly the spool's line protocol, with ms timestamps, each reading once.
      const tankLines = writes.flatMap(lines).filter((l) => l.startsWith('water_tank,') && l.includes('device=tank-001'));
      expect(tankLines.map((l) => Number(l.split(' ').at(-1)))).toEqual([0, 1, 2, 3, 4].map((i) => t0 + i * 10_000));
      expect(tankLines[0]).toMatch(/^water_tank,community=青峰社区,device=tank-001,grid=G37 levelMm=2000,levelPercent=80,volumeM3=40 \d{13}$/);
    });

    it('answers /api/devices/:id/series through the v1-compatible /query with the token', async () => {
      const t0 = Date.UTC(2026, 10, 26, 8, 0, 0);
      const queriesBefore = shim.requests.filter((r) => r.path === '/query').length;
      const raw = (await (await gateway.api(`/api/devices/tank-001/series?field=levelMm&from=${t0 - 1}&to=${t0 + 60_000}`)).json()) as {
        points: Array<[number, number]>;
      };
      expect(raw.points).toEqual([0, 1, 2, 3, 4].map((i) => [t0 + i * 10_000, 2000 - i * 10]));

      const queries = shim.requests.filter((r) => r.path === '/query').slice(queriesBefore);
      expect(queries).toHaveLength(1);
      expect(queries[0]).toMatchObject({ method: 'GET', status: 200, query: { db: DATABASE, epoch: 'ms' } });
      expect(queries[0]?.headers.authorization).toBe(`Token ${TOKEN}`);
      expect(queries[0]?.query.q).toBe(
        `SELECT "levelMm" AS v FROM "water_tank" WHERE "device" = 'tank-001' AND time >= ${t0 - 1}ms AND time <= ${t0 + 60_000}ms ORDER BY time ASC LIMIT 1000`,
      );

      // A long range is averaged into buckets by the same InfluxQL the 1.x target sends.
      const day = (await (await gateway.api(`/api/devices/tank-001/series?field=levelMm&from=${t0 - 12 * 3600_000}&to=${t0 + 12 * 3600_000}&maxPoints=10`)).json()) as {
        points: Array<[number, number]>;
      };
      expect(shim.requests.filter((r) => r.path === '/query').at(-1)?.query.q).toMatch(/^SELECT MEAN\("levelMm"\) AS v .* GROUP BY time\(8640000ms\) fill\(none\)$/);
      expect(day.points.length).toBeGreaterThanOrEqual(1);
      const weighted = day.points.reduce((sum, [, v]) => sum + v, 0) / day.points.length;
      expect(weighted).toBeGreaterThanOrEqual(1960);
      expect(weighted).toBeLessThanOrEqual(2000);
    });

    it('counts a batch refused with 400 as dropped and moves on', async () => {
      const droppedBefore = await metric(gateway, 'gs_influx_points_dropped_total');
      shim.failWrites(400, { code: 'invalid', message: "unable to parse 'water_tank,device=tank-002 levelMm=': missing field value" });
      const t1 = Date.UTC(2026, 10, 27, 8, 0, 0);
      for (let i = 0; i < 3; i++) await publishTank(client, 'tank-002', t1 + i * 1000, i, 1500 + i);
      const refused = await waitFor(() => shim.writes().find((w) => w.injected), { what: 'the refused write' });
      expect(refused).toMatchObject({ status: 400 });
      const refusedLines = lines(refused);
      expect(refusedLines.length).toBeGreaterThan(0);
      await waitFor(async () => (await metric(gateway, 'gs_influx_points_dropped_total')) - droppedBefore === refusedLines.length, {
        what: 'the refused lines counted as dropped',
      });

      // The pipeline goes on: later readings are stored, the refused ones are not.
      for (let i = 3; i < 5; i++) await publishTank(client, 'tank-002', t1 + i * 1000, i, 1500 + i);
      const refusedTs = new Set(refusedLines.filter((l) => l.startsWith('water_tank,') && l.includes('device=tank-002')).map((l) => Number(l.split(' ').at(-1))));
      await waitFor(async () => (await countTank('tank-002')) === 5 - refusedTs.size, { what: 'the readings after the refused batch' });
      const stored = (await backendRows(`SELECT "levelMm" FROM "water_tank" WHERE "device" = 'tank-002'`)).map((r) => r[0] as number);
      expect(stored.filter((t) => refusedTs.has(t))).toEqual([]);
      expect(stored).toContain(t1 + 4000);
      expect(gateway.storage.writer.status.state).toBe('ok');
      // The storage thread reports its backlog asynchronously (right after each acknowledged write).
      await waitFor(() => gateway.storage.writer.buffered === 0, { what: 'an empty backlog' });
    });

    it('retries a write the server failed (500) from the same position: stored once, nothing dropped', async () => {
      const droppedBefore = await metric(gateway, 'gs_influx_points_dropped_total');
      const errorsBefore = await metric(gateway, 'gs_influx_write_errors_total');
      const writesBefore = shim.writes().length;
      shim.failWrites(500, { code: 'internal error', message: 'unexpected error writing points to database: timeout' }, 2);
      const t4 = Date.UTC(2026, 10, 27, 9, 0, 0);
      for (let i = 0; i < 3; i++) await publishTank(client, 'tank-005', t4 + i * 1000, i, 1200 + i);
      await waitFor(async () => (await countTank('tank-005')) === 3 && gateway.storage.writer.buffered === 0, { what: 'the batch stored after two 500s' });
      const attempts = shim.writes().slice(writesBefore);
      expect(attempts.slice(0, 2).map((w) => w.status)).toEqual([500, 500]);
      expect(attempts[2]?.status).toBe(204);
      expect(lines(attempts[2]!).slice(0, lines(attempts[0]!).length)).toEqual(lines(attempts[0]!)); // same lines, same order
      expect((await metric(gateway, 'gs_influx_write_errors_total')) - errorsBefore).toBe(2);
      expect(await metric(gateway, 'gs_influx_points_dropped_total')).toBe(droppedBefore);
      expect(gateway.storage.writer.status.state).toBe('ok');
    });

    it('counts only the conflicting lines of a partial write (422) as dropped; the rest are stored', async () => {
      // A week of its own (1.x checks field types per shard), where levelMm already is a string.
      const t2 = Math.floor(Date.UTC(2025, 2, 3) / WEEK) * WEEK + 2 * 24 * 3600_000;
      const probe = await fetch(`${influx.url}/write?db=${BACKEND_DB}&precision=ms`, { method: 'POST', body: `water_tank,device=type-probe levelMm="n/a" ${t2 - 60_000}\n` });
      expect(probe.status).toBe(204);
      const droppedBefore = await metric(gateway, 'gs_influx_points_dropped_total');
      const writesBefore = shim.writes().length;

      await publishTank(client, 'tank-003', t2, 0, 900);
      await publishTank(client, 'tank-003', t2 + 1000, 1, 901);
      await client.publishAsync(topics.telemetry('cam-0001'), JSON.stringify({ ts: t2, seq: 0, values: { panDeg: 120, tiltDeg: -5, zoom: 10, fps: 25 } }), { qos: 1 });

      await waitFor(async () => (await metric(gateway, 'gs_influx_points_dropped_total')) - droppedBefore === 2, { what: 'two conflicting lines dropped' });
      await waitFor(async () => (await backendRows(`SELECT "panDeg" FROM "camera" WHERE "device" = 'cam-0001'`)).length === 1, { what: 'the camera reading stored' });
      const partial = shim.writes().slice(writesBefore).filter((w) => w.status === 422);
      expect(partial.length).toBeGreaterThan(0);
      expect(partial.some((w) => lines(w).some((l) => l.includes('device=tank-003')))).toBe(true);
      expect(await countTank('tank-003')).toBe(0);
      expect(gateway.storage.writer.status.state).toBe('ok');
    });
  });

  describe('with a wrong token', () => {
    it('reports storage down with a readable reason, spools, and drains after a restart with the right token', async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'gs-v2-token-'));
      let gateway: TestGateway | undefined;
      try {
        const requestsBefore = shim.requests.length;
        gateway = await startTestGateway({ gateway: { dataDir, influx: v2Config({ token: 'not-the-token' }) } });
        const health = (await (await fetch(`${gateway.httpUrl}/health`)).json()) as { status: string; storage: { state: string; message: string } };
        expect(health).toMatchObject({ status: 'degraded', storage: { state: 'down' } });
        expect(health.storage.message).toMatch(/refused the token \(401 unauthorized: unauthorized access\)/);
        expect(health.storage.message).toContain('gateway.influx.token');
        expect(shim.requests.slice(requestsBefore).some((r) => r.path === '/api/v2/buckets' && r.status === 401 && r.headers.authorization === 'Token not-the-token')).toBe(true);

        const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'storage-v2-token-test' });
        const t3 = Date.UTC(2026, 10, 28, 8, 0, 0);
        for (let i = 0; i < 4; i++) await publishTank(client, 'tank-004', t3 + i * 1000, i, 700 + i); // PUBACK = in the spool
        await client.endAsync();
        expect(gateway.storage.writer.buffered).toBeGreaterThanOrEqual(4);
        expect(await countTank('tank-004')).toBe(0);
        await gateway.close();
        gateway = undefined;

        // The operator fixes the token and restarts: the spool in the same data dir drains.
        gateway = await startTestGateway({ gateway: { dataDir, influx: v2Config() } });
        const gw = gateway;
        await waitFor(async () => (await countTank('tank-004')) === 4 && gw.storage.writer.buffered === 0, { what: 'the spool drained after the restart' });
        expect(gw.storage.writer.status.state).toBe('ok');
        expect(((await (await fetch(`${gw.httpUrl}/health`)).json()) as { storage: { state: string } }).storage.state).toBe('ok');
      } finally {
        await gateway?.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});

/** A full InfluxConfig (schema defaults) for using the target directly. */
function targetConfig(overrides: Record<string, unknown>): InfluxConfig {
  const { config } = resolveConfig(
    { gateway: { influx: { api: 'v2', org: ORG, bucket: BUCKET, token: TOKEN, database: DATABASE, ...overrides } } },
    { source: 'test', baseDir: CONFIG_DIR },
  );
  return config.gateway!.influx;
}

describe('InfluxV2Target on its own, against the shim', () => {
  it('sends the body uncompressed when gzip is off', async () => {
    const target = new InfluxV2Target(targetConfig({ url: shim.url, gzip: false }));
    const body = 'water_tank,device=tank-006 levelMm=1,levelPercent=1,volumeM3=1 1795766400000\n';
    await target.writeLines(Buffer.from(body));
    const w = shim.writes().at(-1)!;
    expect(w).toMatchObject({ status: 204, bodyBytes: Buffer.byteLength(body), body });
    expect(w.headers['content-encoding']).toBeUndefined();
  });

  it('explains an unknown bucket or org, and an unmapped database, without creating anything', async () => {
    const noBucket = new InfluxV2Target(targetConfig({ url: shim.url, bucket: 'nope' }));
    // 2.x answers an empty name match with its system buckets: only an exact name counts.
    await expect(noBucket.connect()).rejects.toThrow(/has no bucket "nope" in org "chashan" that this token can read/);
    const writeErr = await noBucket.writeLines(Buffer.from('m f=1 1\n')).catch((e: unknown) => e as Error);
    expect(writeErr).not.toBeInstanceOf(RejectedWriteError); // retried: the bucket may be created
    expect((writeErr as Error).message).toMatch(/answered 404 not found: bucket "nope" not found: check gateway\.influx\.org and gateway\.influx\.bucket/);

    const noOrg = new InfluxV2Target(targetConfig({ url: shim.url, org: 'nobody' }));
    await expect(noOrg.connect()).rejects.toThrow(/404 not found: organization name "nobody" not found/);

    const unmapped = new InfluxV2Target(targetConfig({ url: shim.url, database: 'unmapped' }));
    await expect(unmapped.query({ measurement: 'water_tank', deviceId: 'tank-001', field: 'levelMm', from: 0, to: 1000, maxPoints: 10 })).rejects.toThrow(
      /database not found: unmapped; on InfluxDB 2\.x map the database to the bucket: influx v1 dbrp create --db unmapped/,
    );
  });
});

describe('InfluxV2Target against a server that never answers', () => {
  it('gives up after timeoutMs with a retryable error and closes the connection', async () => {
    let closed = false;
    const server = createServer((socket) => {
      socket.on('data', () => undefined); // read the request, never answer
      socket.on('close', () => (closed = true));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const target = new InfluxV2Target(targetConfig({ url, timeoutMs: 300 }));
      const started = Date.now();
      const err = await target.writeLines(Buffer.from('water_tank,device=tank-001 levelMm=1 1\n')).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(RejectedWriteError);
      expect(err?.message).toBe(`InfluxDB at ${url} did not answer within 300 ms`);
      expect(Date.now() - started).toBeLessThan(3000);
      await waitFor(() => closed, { timeoutMs: 2000, what: 'the abandoned request closed' });
      await expect(target.connect()).rejects.toThrow(/did not answer within 300 ms/);
    } finally {
      server.close();
    }
  });
});

describe("config: api 'v2' needs org, bucket and token", () => {
  function build(influxConfig: Record<string, unknown>) {
    const dataDir = mkdtempSync(join(tmpdir(), 'gs-v2-config-'));
    try {
      const { config } = resolveConfig(
        { log: { level: 'silent' }, gateway: { mqtt: { port: 0 }, http: { port: 0 }, dataDir, influx: influxConfig } },
        { source: 'test', baseDir: CONFIG_DIR },
      );
      return () => buildGateway(config, { log: createLogger('silent') });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  it('fails at start naming the missing key', () => {
    expect(build({ api: 'v2', url: 'http://127.0.0.1:9', org: ORG, bucket: BUCKET })).toThrow(/gateway\.influx\.token is not set/);
    expect(build({ api: 'v2', url: 'http://127.0.0.1:9', token: TOKEN })).toThrow(/gateway\.influx\.org, gateway\.influx\.bucket are not set/);
  });
});
