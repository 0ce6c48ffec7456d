/**
 * Gateway processes on one PostgreSQL store, where only a real process shows it: two instances
 * starting together on an empty database both seed the same configured users (the one whose
 * insert loses takes the user as existing, and still starts), and a gateway whose database stops
 * while an incident's escalation is due keeps running (a throw from a timer would end the process)
 * and escalates the incident once when the database is back.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { hashSecret } from '../../gateway/src/security/secrets.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import { topics } from '../../protocol/topics.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { CONFIG_DIR, waitFor } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const camera = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger).devicesInGrid('G01', 'camera')[0]!;
const USERS = [
  { username: 'seed-admin', displayName: '管理员', role: 'admin', grids: [] as string[], password: 'seed-admin-password' },
  { username: 'seed-grid', displayName: '网格员', role: 'grid_worker', grids: ['G01'], password: 'seed-grid-password' },
];

let server: PostgresServer;
let dir: string;
let passwordFile: string;
let halted = false;
const children: GatewayProcess[] = [];
const clients: pg.Client[] = [];
let configUsers: Array<Record<string, unknown>>;

const configDoc = (url: string, name: string, alerts: Record<string, unknown> = {}) => ({
  log: { level: 'warn' },
  gateway: {
    mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(dir, `${name}-credentials.yaml`) },
    http: { host: '127.0.0.1', port: 0 },
    influx: { enabled: false },
    dataDir: mkdtempSync(join(dir, `${name}-`)),
    store: { kind: 'postgres', postgres: { url, passwordFile, callTimeoutMs: 1000, applicationName: name } },
    auth: { users: configUsers },
    alerts,
  },
});

async function connect(url: string): Promise<pg.Client> {
  const client = await server.connect(url);
  clients.push(client);
  return client;
}

async function login(gateway: GatewayProcess, user: (typeof USERS)[number]): Promise<string> {
  const res = await fetch(`${gateway.httpUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user.username, password: user.password }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'gs-gateway-pg-proc-'));
  passwordFile = join(dir, 'postgres-password');
  writeFileSync(passwordFile, `${server.password}\n`, { mode: 0o600 });
  configUsers = await Promise.all(USERS.map(async ({ password, ...u }) => ({ ...u, passwordHash: await hashSecret(password) })));
}, 60_000);

afterEach(async () => {
  if (halted) {
    await server.resume();
    halted = false;
  }
  for (const client of clients.splice(0)) await client.end().catch(() => undefined);
  for (const child of children.splice(0)) await child.kill('SIGKILL');
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('gateway processes on one PostgreSQL', () => {
  it('two gateways starting together on an empty database with the same configured users both start', async () => {
    const url = await server.createDatabase();
    // The schema first (its concurrent migration is tested in store-postgres.test.ts), then a
    // trigger that holds every user insert at a gate the test holds shut: both gateways look the
    // users up, find none, and wait to insert the same one — a race made certain.
    new PostgresStore({ url, password: server.password }).close();
    const gate = await connect(url);
    await gate.query(`
      CREATE FUNCTION gs_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); RETURN NEW; END $$;
      CREATE TRIGGER gs_test_gate BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION gs_test_gate();
    `);
    await gate.query('SELECT pg_advisory_lock(4242)');
    const starting = [spawnGateway(configDoc(url, 'gw-a')), spawnGateway(configDoc(url, 'gw-b'))];
    for (const p of starting) void p.then((g) => children.push(g), () => undefined);
    await waitFor(async () => Number((await gate.query("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows[0].n) === 2, {
      timeoutMs: 30_000,
      what: 'both gateways waiting to insert the first configured user',
    });
    await gate.query('SELECT pg_advisory_unlock(4242)');

    const [a, b] = await Promise.all(starting);
    const users = await gate.query('SELECT username FROM users ORDER BY username');
    expect(users.rows.map((r: { username: string }) => r.username)).toEqual(['seed-admin', 'seed-grid']);
    const created = await gate.query("SELECT subject FROM audit WHERE action = 'user.create' ORDER BY subject");
    expect(created.rows.map((r: { subject: string }) => r.subject)).toEqual(['seed-admin', 'seed-grid']); // by whichever created it, once
    for (const gateway of [a!, b!]) await login(gateway, USERS[0]!);
  }, 90_000);

  it('keeps running while PostgreSQL is down with an escalation due, and escalates it once when it is back', async () => {
    const url = await server.createDatabase();
    const GRID_WAIT_S = 4;
    const gateway = await spawnGateway(configDoc(url, 'gw-outage', { escalation: { fire: { grid: GRID_WAIT_S } } }));
    children.push(gateway);
    const output: string[] = [];
    gateway.child.stdout!.on('data', (d: Buffer) => output.push(...d.toString().split('\n').filter(Boolean)));
    const token = await login(gateway, USERS[0]!);
    const check = await connect(url);

    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'pg-outage-agent', reconnectPeriod: 0 });
    try {
      await client.publishAsync(topics.event(camera.id), JSON.stringify({ ts: Date.now(), seq: 1, type: 'smoke', phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg: 90 }), { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const incident = await waitFor(async () => (await check.query('SELECT id, created_at FROM incidents')).rows[0] as { id: string; created_at: number } | undefined, {
      what: 'the incident in the database',
    });
    expect((await check.query("SELECT count(*) AS n FROM incident_timeline WHERE action = 'escalated'")).rows[0].n).toBe('0'); // due only during the outage
    await check.end();
    clients.length = 0;

    await server.halt();
    halted = true;
    // Past the deadline: the escalation tick fails every second for a few seconds.
    const dueAt = Number(incident.created_at) + GRID_WAIT_S * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, dueAt - Date.now()) + 4000));
    expect(gateway.child.exitCode).toBeNull();
    expect(gateway.child.signalCode).toBeNull();
    expect((await fetch(`${gateway.httpUrl}/health`)).status).toBe(200);
    const refused = await fetch(`${gateway.httpUrl}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    // Without its database it cannot hold the lease: it stops leading (so it escalates nothing
    // meanwhile) and takes the lease again when the database is back (test/integration/cluster-outage.test.ts).
    expect(metrics).toMatch(/^gs_cluster_leader 0$/m);
    expect(output.filter((l) => l.includes('incident_escalation failed'))).toHaveLength(0);

    await server.resume();
    halted = false;
    const after = await connect(url);
    const escalated = async () => (await after.query("SELECT detail FROM incident_timeline WHERE incident_id = $1 AND action = 'escalated'", [incident.id])).rows as Array<{ detail: string | { level: string } }>;
    await waitFor(async () => (await escalated()).length > 0, { timeoutMs: 15_000, what: 'the escalation after the outage' });
    await new Promise((r) => setTimeout(r, 3000)); // and no second one
    const steps = await escalated();
    expect(steps.map((s) => (typeof s.detail === 'string' ? (JSON.parse(s.detail) as { level: string }) : s.detail).level)).toEqual(['community']);
    expect(Number((await after.query("SELECT count(*) AS n FROM audit WHERE action = 'incident.escalate'")).rows[0].n)).toBe(1);
    expect((await after.query('SELECT body FROM incidents WHERE id = $1', [incident.id])).rows[0].body).toMatchObject({ level: 'community' });
    expect(gateway.child.exitCode).toBeNull();
  }, 90_000);
});
