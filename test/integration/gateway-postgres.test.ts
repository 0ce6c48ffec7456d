/**
 * The real gateway on the PostgreSQL store (`gateway.store.kind: postgres`, the password from a
 * file), two instances on one database: sign-in, sessions, users, incidents from a camera alarm
 * over MQTT and the audit log all go through PostgreSQL, and what one instance writes the other
 * sees. /ready follows the database. Config mistakes fail at start with the key and the reason.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { ConfigError, resolveConfig } from '../../config/load.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { openStore } from '../../gateway/src/store/open.js';
import type { Incident, IncidentDetail } from '../../protocol/incidents.js';
import { topics } from '../../protocol/topics.js';
import { CONFIG_DIR, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const camera = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger).devicesInGrid('G01', 'camera')[0]!;

let server: PostgresServer;
let dir: string;
let url: string;
let passwordFile: string;
let a: TestGateway;
let b: TestGateway;

const postgresStore = () => ({ store: { kind: 'postgres', postgres: { url, passwordFile, callTimeoutMs: 3000 } } });

beforeAll(async () => {
  server = await startPostgres();
  url = await server.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-gateway-pg-'));
  passwordFile = join(dir, 'postgres-password');
  writeFileSync(passwordFile, `${server.password}\n`, { mode: 0o600 });
  // One after the other: each seeds the test users it does not find (config users).
  a = await startTestGateway({ gateway: postgresStore() });
  b = await startTestGateway({ gateway: postgresStore() });
}, 60_000);

afterAll(async () => {
  await b?.close();
  await a?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('two gateways on one PostgreSQL store', () => {
  it('signs in through HTTP, and a session opened on one instance is valid on the other', async () => {
    const token = await a.tokenFor('admin');
    const me = await fetch(`${b.httpUrl}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { user: { username: string } }).user.username).toBe('test-admin');
    const ready = (await (await fetch(`${a.httpUrl}/ready`)).json()) as { checks: { store: boolean } };
    expect(ready.checks.store).toBe(true);
  });

  it('a user created on one instance signs in on the other; both audit logs show it', async () => {
    const created = await a.api('/api/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'pg-duty-li', displayName: '李值班', role: 'duty_officer', password: 'pg-duty-li-password' }),
    });
    expect(created.status).toBe(201);
    const again = await b.api('/api/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'pg-duty-li', displayName: '李值班', role: 'duty_officer', password: 'pg-duty-li-password' }),
    });
    expect(again.status).toBe(409);
    const login = await fetch(`${b.httpUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'pg-duty-li', password: 'pg-duty-li-password' }),
    });
    expect(login.status).toBe(200);
    const audit = (await (await a.api('/api/audit?limit=50')).json()) as { entries: Array<{ actor: string; action: string; subject: string | null }> };
    expect(audit.entries.map((e) => `${e.actor}:${e.action}:${e.subject}`)).toEqual(expect.arrayContaining(['test-admin:user.create:pg-duty-li', 'pg-duty-li:auth.login:null']));
  });

  it('an incident raised by a camera alarm on one instance is listed, and acknowledged, on the other', async () => {
    const client = await mqtt.connectAsync(a.mqttUrl, { clientId: 'pg-test-agent', reconnectPeriod: 0 });
    try {
      await client.publishAsync(topics.event(camera.id), JSON.stringify({ ts: Date.now(), seq: 1, type: 'smoke', phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg: 90 }), { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const incident = await waitFor(async () => ((await (await b.api('/api/incidents')).json()) as { incidents: Incident[] }).incidents[0], { what: 'the incident on the other instance' });
    expect(incident.devices).toEqual([camera.id]);
    expect(incident.id).toMatch(/^INC-\d{8}-0001$/);
    const ack = await b.api(`/api/incidents/${incident.id}/acknowledge`, { method: 'POST', as: 'grid_worker', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ack.status).toBe(200);
    const detail = (await (await a.api(`/api/incidents/${incident.id}`)).json()) as IncidentDetail;
    expect(detail.status).toBe('acknowledged');
    expect(detail.timeline.map((t) => t.action)).toEqual(expect.arrayContaining(['created', 'acknowledged']));
    const check = await server.connect(url);
    try {
      expect((await check.query('SELECT id, status FROM incidents')).rows).toEqual([{ id: incident.id, status: 'acknowledged' }]);
    } finally {
      await check.end();
    }
  });

  it('the same user created through both instances at once: one 201, one 409 with the error body', async () => {
    const body = JSON.stringify({ username: 'pg-race-zhao', displayName: '赵', role: 'viewer', password: 'pg-race-zhao-password' });
    const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body };
    // Both look the name up before either inserts it (hashing the password takes longer than that).
    const answers = await Promise.all([a.api('/api/users', init), b.api('/api/users', init)]);
    expect(answers.map((r) => r.status).sort()).toEqual([201, 409]);
    const refused = answers.find((r) => r.status === 409)!;
    expect(await refused.json()).toEqual({ code: 'USER_EXISTS', message: 'a user "pg-race-zhao" exists' });
  });

  it('/ready says the store is down while PostgreSQL is, API calls answer 503 meanwhile, and all is back after', async () => {
    await server.halt();
    try {
      const down = await waitFor(async () => {
        const res = await fetch(`${a.httpUrl}/ready`);
        return res.status === 503 ? ((await res.json()) as { checks: { store: boolean } }) : null;
      }, { what: '/ready 503' });
      expect(down.checks.store).toBe(false);
      for (const path of ['/api/auth/me', '/api/incidents', '/api/broadcasts']) {
        const res = await fetch(`${a.httpUrl}${path}`, { headers: { authorization: `Bearer ${await a.tokenFor('admin')}` } });
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('5');
        expect(await res.json()).toEqual({ code: 'STORE_UNAVAILABLE', message: 'the operational store (users, sessions, incidents, broadcasts) is not reachable; try again shortly' });
      }
      const login = await fetch(`${b.httpUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'test-admin', password: 'test-admin-password' }),
      });
      expect(login.status).toBe(503);
      expect((await a.metrics.registry.getSingleMetricAsString('gs_store_errors_total')).split('\n')).toContain('gs_store_errors_total{operation="http"} 3');
    } finally {
      await server.resume();
    }
    await waitFor(async () => (await fetch(`${a.httpUrl}/ready`)).status === 200, { what: '/ready 200' });
    expect((await a.api('/api/auth/me')).status).toBe(200);
  });
});

describe('store config', () => {
  const gatewayConfig = (store: Record<string, unknown>) => resolveConfig({ gateway: { store } }, { source: 'test', baseDir: dir }).config.gateway!;
  const problems = (store: Record<string, unknown>) => {
    try {
      openStore(gatewayConfig(store));
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    throw new Error('opened');
  };

  it('refuses a postgres store without a URL, with a password in it, or with both password and file, naming the key', () => {
    expect(problems({ kind: 'postgres' })).toEqual(['gateway.store.postgres.url: is required when gateway.store.kind is postgres']);
    expect(problems({ kind: 'postgres', postgres: { url: 'postgres://gs:secret@db/gs' } })).toEqual([
      'gateway.store.postgres.url: must not carry the password (the URL is logged); use passwordFile or password',
    ]);
    expect(problems({ kind: 'postgres', postgres: { url: 'postgres://gs@db/gs', password: 'x', passwordFile: 'pw' } })).toEqual([
      'gateway.store.postgres.password, gateway.store.postgres.passwordFile: set one, not both',
      `gateway.store.postgres.passwordFile: cannot read ${join(dir, 'pw')}: ENOENT`,
    ]);
    writeFileSync(join(dir, 'empty'), '\n');
    expect(problems({ kind: 'postgres', postgres: { url: 'postgres://gs@db/gs', passwordFile: 'empty' } })).toEqual([`gateway.store.postgres.passwordFile: ${join(dir, 'empty')} is empty`]);
  });

  it('validates kind and url in the schema', () => {
    expect(() => gatewayConfig({ kind: 'mysql' })).toThrow(/gateway\.store\.kind/);
    expect(() => gatewayConfig({ kind: 'postgres', postgres: { url: 'mysql://db/gs' } })).toThrow(/gateway\.store\.postgres\.url: has an invalid form/);
    expect(() => gatewayConfig({ postgres: { callTimeoutMs: 10 } })).toThrow(/gateway\.store\.postgres\.callTimeoutMs: must be >= 100/);
    expect(gatewayConfig({}).store).toMatchObject({ kind: 'sqlite', postgres: { callTimeoutMs: 5000, applicationName: 'greenshield-gateway' } });
  });
});
