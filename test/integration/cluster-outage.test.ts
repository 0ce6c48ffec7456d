/**
 * The leader and a PostgreSQL outage, in a real process: a gateway on the PostgreSQL store leads,
 * raises an incident, and loses the database while the incident's escalation is due. Losing its
 * lease connection it stops leading at once (gs_cluster_leader 0, one log line) — so it cannot
 * escalate while another instance might have taken over — and keeps running; when the database is
 * back it takes the lease again, loads the incident from the store and escalates it once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { topics } from '../../protocol/topics.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { CONFIG_DIR, waitFor } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const camera = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger).devicesInGrid('G01', 'camera')[0]!;
const GRID_WAIT_S = 4;

let server: PostgresServer;
let dir: string;
let gateway: GatewayProcess | undefined;
let halted = false;

const metric = async (name: string) => {
  const text = await (await fetch(`${gateway!.httpUrl}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
};

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'gs-cluster-outage-'));
}, 60_000);

afterAll(async () => {
  if (halted) await server.resume();
  await gateway?.kill('SIGKILL');
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the leader loses PostgreSQL with an escalation due', () => {
  it('stops leading at once, keeps running, and escalates once when the database is back', async () => {
    const url = await server.createDatabase();
    const passwordFile = join(dir, 'pg-password');
    writeFileSync(passwordFile, `${server.password}\n`, { mode: 0o600 });
    gateway = await spawnGateway({
      log: { level: 'warn' },
      gateway: {
        mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(dir, 'credentials.yaml') },
        http: { host: '127.0.0.1', port: 0 },
        influx: { enabled: false },
        dataDir: join(dir, 'data'),
        store: { kind: 'postgres', postgres: { url, passwordFile, callTimeoutMs: 1000, applicationName: 'gw-outage' } },
        cluster: { leaseIntervalMs: 250, leaseTtlMs: 3000 },
        alerts: { escalation: { fire: { grid: GRID_WAIT_S, community: 600 } } },
      },
    });
    const output: string[] = [];
    gateway.child.stdout!.on('data', (d: Buffer) => output.push(...d.toString().split('\n').filter(Boolean)));
    await waitFor(async () => (await metric('gs_cluster_leader')) === 1, { what: 'the gateway leading' });

    const check: pg.Client = await server.connect(url);
    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'cluster-outage-agent', reconnectPeriod: 0 });
    try {
      await client.publishAsync(topics.event(camera.id), JSON.stringify({ ts: Date.now(), seq: 1, type: 'smoke', phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg: 90 }), { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const incident = await waitFor(async () => (await check.query('SELECT id, created_at FROM incidents')).rows[0] as { id: string; created_at: string } | undefined, { what: 'the incident' });
    await check.end();

    await server.halt();
    halted = true;
    await waitFor(async () => (await metric('gs_cluster_leader')) === 0, { timeoutMs: 3000, what: 'the gateway no longer leading' });
    // Past the deadline, and a few lease intervals more.
    const dueAt = Number(incident.created_at) + GRID_WAIT_S * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, dueAt - Date.now()) + 2000));
    expect(gateway.child.exitCode).toBeNull();
    expect((await fetch(`${gateway.httpUrl}/health`)).status).toBe(200);
    expect(await metric('gs_cluster_leader')).toBe(0);
    expect(await metric('gs_cluster_leader_changes_total{to="follower"}')).toBe(1);
    // One line for the lost lease, not one per try.
    expect(output.filter((l) => l.includes('no longer leads'))).toHaveLength(1);
    expect(output.filter((l) => l.includes('lease connection failed'))).toHaveLength(1);

    await server.resume();
    halted = false;
    await waitFor(async () => (await metric('gs_cluster_leader')) === 1, { timeoutMs: 10_000, what: 'the gateway leading again' });
    const after = await server.connect(url);
    try {
      const escalated = async () => (await after.query("SELECT detail FROM incident_timeline WHERE incident_id = $1 AND action = 'escalated'", [incident.id])).rows as Array<{ detail: { level: string } }>;
      await waitFor(async () => (await escalated()).length > 0, { timeoutMs: 10_000, what: 'the escalation after the outage' });
      await new Promise((r) => setTimeout(r, 2000)); // and no second one
      expect((await escalated()).map((s) => s.detail.level)).toEqual(['community']);
      expect(Number((await after.query("SELECT count(*) AS n FROM audit WHERE action = 'incident.escalate'")).rows[0].n)).toBe(1);
    } finally {
      await after.end();
    }
    expect(await metric('gs_cluster_leader_changes_total{to="leader"}')).toBe(2);
  }, 60_000);
});
