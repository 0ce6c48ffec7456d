/**
 * The queue to the leader on a real PostgreSQL, with a gateway whose lease the test takes away by
 * holding the advisory lock itself (no instance leads then): a camera alarm raised meanwhile waits
 * in `cluster_signals` and becomes the incident once the gateway leads; a signal already applied
 * (a leader that died before marking its row done) is recognised and not applied twice; a decision
 * taken while nobody leads is answered 503 NO_LEADER within `actionTimeoutMs` and is not applied
 * later by the next leader.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import type { Incident } from '../../protocol/incidents.js';
import { topics } from '../../protocol/topics.js';
import { CONFIG_DIR, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const camera = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger).devicesInGrid('G01', 'camera')[0]!;
const LEASE_KEY = 4243;

let server: PostgresServer;
let dir: string;
let gateway: TestGateway;
let holder: pg.Client;
let check: pg.Client;
let device: MqttClient;

const pending = async () => Number((await check.query('SELECT count(*) AS n FROM cluster_signals WHERE done_at IS NULL')).rows[0].n);
const incidents = async () => (await check.query('SELECT body FROM incidents ORDER BY id')).rows.map((r: { body: Incident }) => r.body);
const queueMetric = async (kind: string, outcome: string) => (await gateway.metrics.clusterQueue.get()).values.find((v) => v.labels.kind === kind && v.labels.outcome === outcome)?.value ?? 0;

/** The test's own session takes the lease from the gateway: its lease session is ended and the test holds the lock. */
async function takeLease(): Promise<void> {
  await check.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gw-queue-lease'");
  await waitFor(async () => (await holder.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [LEASE_KEY])).rows[0].ok === true, { timeoutMs: 5000, what: 'the test holding the lease' });
  await waitFor(() => gateway.leadership?.leading === false, { what: 'the gateway not leading' });
}

beforeAll(async () => {
  server = await startPostgres();
  const url = await server.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-cluster-queue-'));
  const passwordFile = join(dir, 'pg-password');
  writeFileSync(passwordFile, `${server.password}\n`, { mode: 0o600 });
  new PostgresStore({ url, password: server.password }).close();
  holder = await server.connect(url);
  check = await server.connect(url);
  // Nobody but the test leads at first.
  await holder.query('SELECT pg_advisory_lock($1::bigint)', [LEASE_KEY]);
  gateway = await startTestGateway({
    influxUrl: null,
    gateway: {
      store: { kind: 'postgres', postgres: { url, passwordFile, applicationName: 'gw-queue' } },
      cluster: { leaseKey: LEASE_KEY, leaseIntervalMs: 200, actionTimeoutMs: 800, queuePollMs: 500 },
      alerts: { escalation: { fire: { grid: 600 } } },
    },
  });
  device = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'queue-camera-agent', reconnectPeriod: 0 });
}, 60_000);

afterAll(async () => {
  await device?.endAsync();
  await gateway?.close();
  for (const c of [holder, check]) await c?.end().catch(() => undefined);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the queue to the leader', () => {
  let incident: Incident;

  it('keeps a signal raised while nobody leads, and applies it once the gateway leads', async () => {
    await new Promise((r) => setTimeout(r, 500));
    expect(gateway.leadership?.leading).toBe(false);
    await device.publishAsync(topics.event(camera.id), JSON.stringify({ ts: Date.now(), seq: 1, type: 'fire', phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg: 120 }), { qos: 1 });
    await waitFor(async () => (await pending()) === 1, { what: 'the signal queued' });
    await new Promise((r) => setTimeout(r, 700)); // more than a poll: it waits, nobody applies it
    expect(await incidents()).toEqual([]);
    expect(await pending()).toBe(1);

    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [LEASE_KEY]);
    await waitFor(() => gateway.leadership?.leading, { timeoutMs: 3000, what: 'the gateway leading' });
    await waitFor(async () => (await incidents()).length === 1 && (await pending()) === 0, { what: 'the queued signal applied' });
    incident = (await incidents())[0]!;
    expect(incident.devices).toEqual([camera.id]);
    expect(incident.signalCount).toBe(1);
    expect(await queueMetric('signal', 'applied')).toBe(1);
  });

  it('does not apply twice a signal an earlier leader applied without marking it done', async () => {
    const row = (await check.query("SELECT body FROM cluster_signals WHERE kind = 'signal'")).rows[0] as { body: unknown };
    // As if a leader had applied it and died before its row was marked: the same signal, pending.
    await check.query("INSERT INTO cluster_signals (kind, origin, created_at, body) VALUES ('signal', 'a-dead-leader', $1, $2)", [Date.now(), JSON.stringify(row.body)]);
    await check.query("NOTIFY gs_cluster_queue, 'x'");
    await waitFor(async () => (await pending()) === 0, { what: 'the row handled' });
    expect(await queueMetric('signal', 'duplicate')).toBe(1);
    const [again] = await incidents();
    expect(again!.signalCount).toBe(1);
    expect(Number((await check.query('SELECT count(*) AS n FROM incident_signals')).rows[0].n)).toBe(1);
  });

  it('answers 503 NO_LEADER to a decision nobody applies in time, and the next leader does not apply it', async () => {
    await takeLease();
    const started = Date.now();
    const res = await gateway.api(`/api/incidents/${incident.id}/acknowledge`, { method: 'POST', as: 'grid_worker', headers: { 'content-type': 'application/json' }, body: '{}' });
    const waitedMs = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('NO_LEADER');
    expect(body.message).toMatch(/not applied/);
    expect(waitedMs).toBeGreaterThanOrEqual(800);
    expect(waitedMs).toBeLessThan(3000);

    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [LEASE_KEY]);
    await waitFor(() => gateway.leadership?.leading, { timeoutMs: 3000, what: 'the gateway leading again' });
    await new Promise((r) => setTimeout(r, 700));
    expect((await incidents())[0]!.status).toBe('dispatched');
    expect(Number((await check.query("SELECT count(*) AS n FROM audit WHERE action = 'incident.acknowledge'")).rows[0].n)).toBe(0);

    // Leading, the same decision is applied at once.
    const ok = await gateway.api(`/api/incidents/${incident.id}/acknowledge`, { method: 'POST', as: 'grid_worker', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as Incident).status).toBe('acknowledged');
  });
});
