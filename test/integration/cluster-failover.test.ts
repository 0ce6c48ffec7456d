/**
 * Work that must happen once, with the leader killed mid-scenario: two gateway processes on
 * Mosquitto ($share) and one PostgreSQL, a fire seen by three cameras. Two cameras' alarms make the
 * incident; the leader is killed with SIGKILL; the third camera's alarm follows at once (it may
 * reach the survivor, or the dead instance's session, which the broker keeps until the instance is
 * back — so it is restarted, with its client id, and comes back as a follower). Asserted: the
 * survivor leads within a few seconds; one incident, with each camera's signal once; the
 * escalation due after the kill fires once (timeline, audit and webhook); dashboards on every
 * instance saw the incident's messages; a decision taken on a follower is applied by the leader.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { hashSecret } from '../../gateway/src/security/secrets.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import type { Incident, IncidentDetail } from '../../protocol/incidents.js';
import { topics } from '../../protocol/topics.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { planFire } from '../../simulators/src/scenario/fire.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { isLeader, leaderOf, liveDashboard, signIn } from '../helpers/cluster.js';
import { CONFIG_DIR, waitFor } from '../helpers/gateway.js';
import { startMosquitto, type MosquittoServer } from '../helpers/mosquitto.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const siteMap = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger);
const g01 = siteMap.devicesInGrid('G01', 'camera');
const ignition = { lat: g01.reduce((s, c) => s + c.lat, 0) / g01.length, lon: g01.reduce((s, c) => s + c.lon, 0) / g01.length };
/** Each camera's first alarm, in the order the cameras see the fire. */
const detections = [...planFire(ledger, ignition, { seed: 7, maxCameras: 3 }).detections]
  .sort((a, b) => a.atMs - b.atMs)
  .filter((d, i, all) => all.findIndex((x) => x.cameraId === d.cameraId) === i);
/** The incident escalates grid → community this long after it is raised: after the kill. */
const GRID_WAIT_S = 9;

const USERS = [
  { username: 'cl-grid', displayName: '网格员', role: 'grid_worker', grids: ['G01'], password: 'cl-grid-password' },
  { username: 'cl-viewer', displayName: '观察员', role: 'viewer', grids: [] as string[], password: 'cl-viewer-password' },
];

let pgServer: PostgresServer;
let broker: MosquittoServer;
let url: string;
let dir: string;
let passwordFile: string;
let configUsers: Array<Record<string, unknown>>;
let check: pg.Client;
let hooks: Server;
const webhookNotices: Array<{ reason: string; level: string; incident: { id: string } }> = [];
const processes: GatewayProcess[] = [];
const sockets: WebSocket[] = [];
let device: MqttClient;
let seq = 0;

const configDoc = (name: string) => ({
  log: { level: 'warn' },
  gateway: {
    mqtt: { mode: 'external', external: { url: broker.url, clientId: name, shareGroup: 'gs-cluster', reconnectMinMs: 100, reconnectMaxMs: 1000 } },
    http: { host: '127.0.0.1', port: 0 },
    influx: { enabled: false },
    push: { flushIntervalMs: 50 },
    dataDir: join(dir, name),
    store: { kind: 'postgres', postgres: { url, passwordFile, callTimeoutMs: 2000, applicationName: name } },
    cluster: { leaseIntervalMs: 250, leaseTtlMs: 5000, actionTimeoutMs: 5000 },
    auth: { users: configUsers },
    alerts: {
      escalation: { fire: { grid: GRID_WAIT_S, community: 600, street: 600 } },
      correlation: { windowSec: 600 },
      webhooks: [{ url: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`, attempts: 1, timeoutMs: 2000 }],
    },
  },
});

async function start(name: string): Promise<GatewayProcess & { name: string }> {
  const p = Object.assign(await spawnGateway(configDoc(name)), { name });
  processes.push(p);
  return p;
}

async function token(p: GatewayProcess, username: string): Promise<string> {
  return signIn(p, username, USERS.find((u) => u.username === username)!.password);
}

/** A signed-in dashboard on one instance: every message it was sent. */
async function dashboard(p: GatewayProcess, username = 'cl-viewer'): Promise<ServerMessage[]> {
  return liveDashboard(p, await token(p, username), 'incidents.snapshot', sockets);
}

const incidentMessages = (messages: ServerMessage[], id: string) =>
  messages.filter((m): m is Extract<ServerMessage, { type: 'incident' }> => m.type === 'incident' && m.incident.id === id).map((m) => ({ ...m.incident, isNew: m.isNew }));

async function alarm(index: number): Promise<void> {
  const d = detections[index]!;
  const payload = { ts: Date.now(), seq: ++seq, type: d.kind, phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg: d.bearingDeg };
  await device.publishAsync(topics.event(d.cameraId), JSON.stringify(payload), { qos: 1 });
}

async function storedIncidents(): Promise<Incident[]> {
  return (await check.query('SELECT body FROM incidents ORDER BY id')).rows.map((r: { body: Incident }) => r.body);
}

beforeAll(async () => {
  [pgServer, broker] = await Promise.all([startPostgres(), startMosquitto()]);
  url = await pgServer.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-cluster-failover-'));
  passwordFile = join(dir, 'pg-password');
  writeFileSync(passwordFile, `${pgServer.password}\n`, { mode: 0o600 });
  configUsers = await Promise.all(USERS.map(async ({ password, ...u }) => ({ ...u, passwordHash: await hashSecret(password) })));
  hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      webhookNotices.push(JSON.parse(body) as (typeof webhookNotices)[number]);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
  new PostgresStore({ url, password: pgServer.password }).close(); // the schema, once
  check = await pgServer.connect(url);
  device = await mqtt.connectAsync(broker.url, { clientId: 'cl-camera-agent', reconnectPeriod: 0 });
}, 60_000);

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  await device?.endAsync();
  for (const p of processes) await p.kill('SIGKILL');
  await check?.end();
  hooks?.close();
  await Promise.all([pgServer?.stop(), broker?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('two gateways on Mosquitto and PostgreSQL, the leader killed mid-scenario', () => {
  it('takes over within seconds; one incident; the escalation due after the kill fires once; every dashboard sees it', async () => {
    const [a, b] = await Promise.all([start('gw-one'), start('gw-two')]);
    const { leader, follower } = await leaderOf(a, b);
    expect(await isLeader(follower)).toBe(false);
    const [onLeader, onFollower] = await Promise.all([dashboard(leader), dashboard(follower)]);

    // Two cameras see the fire: one incident, on both dashboards, whichever instance took each alarm.
    await alarm(0);
    await alarm(1);
    const raised = await waitFor(async () => (await storedIncidents()).find((i) => i.cameras.length === 2), { what: 'the incident with two cameras' });
    for (const [messages, where] of [[onLeader, 'leader'], [onFollower, 'follower']] as const) {
      await waitFor(() => incidentMessages(messages, raised.id).some((m) => m.isNew) && incidentMessages(messages, raised.id).some((m) => m.cameras.length === 2), {
        what: `the incident on the ${where}'s dashboard`,
      });
    }
    expect(raised.level).toBe('grid');
    expect(raised.status).toBe('dispatched');

    // The leader dies; the third camera's alarm comes right after.
    await leader.kill('SIGKILL');
    const killedAt = Date.now();
    await alarm(2);
    await waitFor(() => isLeader(follower), { timeoutMs: 10_000, what: 'the survivor leading' });
    const takeoverMs = Date.now() - killedAt;
    console.info(`[cluster-failover] survivor leads ${takeoverMs} ms after the SIGKILL`);
    expect(takeoverMs).toBeLessThan(5000);
    expect(Date.now()).toBeLessThan(raised.createdAt + GRID_WAIT_S * 1000); // the escalation is still ahead

    // The killed instance comes back with its client id (the broker hands it what it queued), as a follower.
    const back = await start(leader.name);
    const onBack = await dashboard(back, 'cl-grid');
    expect(await isLeader(back)).toBe(false);
    const joined = await waitFor(async () => (await storedIncidents()).find((i) => i.cameras.length === 3), { timeoutMs: 15_000, what: 'the third camera joining the incident' }).catch(async (err: unknown) => {
      console.error(JSON.stringify((await storedIncidents()).map((i) => ({ id: i.id, cameras: i.cameras.map((c) => c.id), status: i.status }))));
      console.error(JSON.stringify((await check.query('SELECT * FROM cluster_signals')).rows));
      console.error(JSON.stringify(detections));
      throw err;
    });
    expect(joined.id).toBe(raised.id);

    // The escalation, due after the kill, fires once: by the new leader.
    await waitFor(async () => (await storedIncidents())[0]?.level === 'community', { timeoutMs: 20_000, what: 'the escalation to community' });
    await new Promise((r) => setTimeout(r, 2500)); // and not again, by anyone
    const all = await storedIncidents();
    expect(all).toHaveLength(1);
    expect(all[0]!.level).toBe('community');
    expect(all[0]!.signalCount).toBe(3);
    const steps = (await check.query("SELECT detail FROM incident_timeline WHERE incident_id = $1 AND action = 'escalated'", [raised.id])).rows as Array<{ detail: { level: string } }>;
    expect(steps.map((s) => s.detail.level)).toEqual(['community']);
    expect(Number((await check.query("SELECT count(*) AS n FROM audit WHERE action = 'incident.escalate'")).rows[0].n)).toBe(1);
    expect(webhookNotices.filter((n) => n.reason === 'escalated').map((n) => n.level)).toEqual(['community']);
    expect(webhookNotices.filter((n) => n.reason === 'dispatched')).toHaveLength(1); // raised once
    // Each camera's signal is stored once: none applied twice, none lost.
    const signals = (await check.query('SELECT device_id FROM incident_signals WHERE incident_id = $1 ORDER BY id', [raised.id])).rows.map((r: { device_id: string }) => r.device_id);
    expect(signals.sort()).toEqual(detections.map((d) => d.cameraId).sort());
    expect(Number((await check.query('SELECT count(*) AS n FROM cluster_signals WHERE done_at IS NULL')).rows[0].n)).toBe(0);
    // The survivor's dashboard saw the escalation (announced by itself, now the leader).
    await waitFor(() => incidentMessages(onFollower, raised.id).some((m) => m.level === 'community'), { what: "the escalation on the survivor's dashboard" });

    // A decision on the follower (the restarted instance) is applied by the leader, and every dashboard sees it.
    const ack = await fetch(`${back.httpUrl}/api/incidents/${raised.id}/acknowledge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(back, 'cl-grid')}` },
      body: JSON.stringify({ note: '收到，正在前往' }),
    });
    expect(ack.status).toBe(200);
    const acked = (await ack.json()) as IncidentDetail;
    expect(acked.status).toBe('acknowledged');
    expect(acked.acknowledgedBy).toBe('cl-grid');
    expect(acked.timeline.filter((t) => t.action === 'acknowledged')).toHaveLength(1);
    for (const [messages, where] of [[onFollower, 'leader'], [onBack, 'follower']] as const) {
      await waitFor(() => incidentMessages(messages, raised.id).some((m) => m.status === 'acknowledged'), { what: `the acknowledgement on the ${where}'s dashboard` });
    }
    // The leader's memory has it too: a second acknowledgement is refused with who was first.
    const again = await fetch(`${back.httpUrl}/api/incidents/${raised.id}/acknowledge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(back, 'cl-grid')}` },
      body: '{}',
    });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { message: string }).message).toContain('cl-grid');
  }, 90_000);
});
