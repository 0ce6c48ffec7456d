/**
 * Fire alerts end to end through a real gateway: camera alarms published over MQTT (as the edge
 * agent sends them, with the bearings the fire scenario planner computes for the shipped site)
 * become one incident, located, dispatched to the grid worker's live view, escalated when nobody
 * answers and stopped when someone does. Also: duplicates and floods, and a tank that runs dry.
 */
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { distanceM } from '../../gateway/src/alerts/geo.js';
import type { Incident, IncidentDetail } from '../../protocol/incidents.js';
import { topics } from '../../protocol/topics.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { planFire } from '../../simulators/src/scenario/fire.js';
import { CONFIG_DIR, startTestGateway, waitFor, type TestGateway, type TestRole } from '../helpers/gateway.js';

const ledger = loadLedger(`${CONFIG_DIR}/ledger/chashan-zhuhai.csv`);
const siteMap = SiteMap.fromFile(`${CONFIG_DIR}/sites/chashan-zhuhai.geojson`, ledger);

let gateway: TestGateway;
let client: MqttClient;
let seq = 0;

/** A signed-in /ws client that records every message. */
async function liveClient(role: TestRole) {
  const messages: ServerMessage[] = [];
  const ws = new WebSocket(`${gateway.httpUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await gateway.tokenFor(role)}` } });
  ws.on('message', (data) => messages.push(JSON.parse(String(data)) as ServerMessage));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  await waitFor(() => messages.some((m) => m.type === 'incidents.snapshot'), { what: 'incident snapshot' });
  return { ws, messages };
}

async function cameraAlarm(cameraId: string, type: 'smoke' | 'fire', bearingDeg: number | undefined, ts = Date.now()) {
  const payload = { ts, seq: ++seq, type, phase: 'start', severity: 'critical', confidence: 0.9, ...(bearingDeg !== undefined ? { bearingDeg } : {}) };
  await client.publishAsync(topics.event(cameraId), JSON.stringify(payload), { qos: 1 });
}

async function incidents(query = ''): Promise<Incident[]> {
  const res = await gateway.api(`/api/incidents${query}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { incidents: Incident[] }).incidents;
}

async function detail(id: string): Promise<IncidentDetail> {
  return (await (await gateway.api(`/api/incidents/${id}`)).json()) as IncidentDetail;
}

beforeAll(async () => {
  gateway = await startTestGateway({
    // Escalation after 2 s per level, so the test watches two steps in real time.
    gateway: { alerts: { escalation: { fire: { grid: 2, community: 2, street: 2 } }, correlation: { windowSec: 600 } } },
  });
  client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'alerts-test-agent', reconnectPeriod: 0 });
}, 30_000);

afterAll(async () => {
  await client?.endAsync();
  await gateway?.close();
});

describe('a fire seen by three cameras', () => {
  // The middle of the cameras of grid G01: inside G01, which the test grid worker covers.
  const g01 = siteMap.devicesInGrid('G01', 'camera');
  const ignition = { lat: g01.reduce((s, c) => s + c.lat, 0) / g01.length, lon: g01.reduce((s, c) => s + c.lon, 0) / g01.length };
  const plan = planFire(ledger, ignition, { seed: 7, maxCameras: 3 });
  let incident: Incident;
  let worker: Awaited<ReturnType<typeof liveClient>>;
  let viewerOutside: Awaited<ReturnType<typeof liveClient>>;

  it('makes exactly one incident, located within 100 m, with its grid, tanks and poles', async () => {
    expect(siteMap.gridAt(ignition)?.id).toBe('G01');
    expect(new Set(plan.detections.map((d) => d.cameraId)).size).toBe(3);
    worker = await liveClient('grid_worker');
    viewerOutside = await liveClient('viewer');
    for (const d of [...plan.detections].sort((a, b) => a.atMs - b.atMs)) await cameraAlarm(d.cameraId, d.kind, d.bearingDeg);

    await waitFor(async () => (await incidents())[0]?.cameras.length === 3, { what: 'three cameras on the incident' });
    const all = await incidents();
    expect(all).toHaveLength(1);
    incident = all[0]!;
    expect(incident.category).toBe('fire');
    expect(incident.kind).toBe('camera_fire');
    expect(incident.location?.method).toBe('triangulated');
    const loc = incident.location as Extract<Incident['location'], { method: 'triangulated' }>;
    const error = distanceM(loc, ignition);
    expect(error).toBeLessThan(100);
    expect(incident.grid).toBe('G01');
    expect(incident.gridName).toBe('茶山社区第1网格');
    expect(incident.nearestTanks.length).toBeGreaterThan(0);
    expect(incident.nearestPoles.length).toBeGreaterThan(0);
    expect(incident.nearestTanks[0]!.distanceM).toBeLessThanOrEqual(incident.nearestTanks.at(-1)!.distanceM);
    expect(incident.signalCount).toBe(plan.detections.length);
    expect(incident.status).toBe('dispatched');
  });

  it("reaches the grid worker's live view at once, with a ring", async () => {
    const mine = worker.messages.filter((m): m is Extract<ServerMessage, { type: 'incident' }> => m.type === 'incident' && m.incident.id === incident.id);
    expect(mine.filter((m) => m.isNew)).toHaveLength(1);
    expect(worker.messages.some((m) => m.type === 'incident.dispatch' && m.incidentId === incident.id && m.level === 'grid')).toBe(true);
    // Everyone sees it on the dashboard; only people covering the grid get the ring.
    expect(viewerOutside.messages.some((m) => m.type === 'incident' && m.incident.id === incident.id)).toBe(true);
    expect(viewerOutside.messages.some((m) => m.type === 'incident.dispatch')).toBe(false);
    const d = await detail(incident.id);
    expect(d.dispatches.some((x) => x.recipient === 'test-grid' && x.channel === 'ws' && x.status === 'sent')).toBe(true);
  });

  it('escalates on schedule while nobody acknowledges, and stops when the grid worker does', async () => {
    const escalated = await waitFor(async () => ((await detail(incident.id)).level === 'street' ? detail(incident.id) : null), { timeoutMs: 15_000, what: 'escalation to street' });
    const steps = escalated.timeline.filter((t) => t.action === 'escalated');
    expect(steps.map((t) => t.detail.level)).toEqual(['community', 'street']);
    // Each step waited its 2 s (the tick runs every second).
    expect(steps[0]!.ts - escalated.createdAt).toBeGreaterThanOrEqual(2000);
    expect(steps[1]!.ts - steps[0]!.ts).toBeGreaterThanOrEqual(2000);
    // The street level rings the duty officers.
    expect(escalated.dispatches.some((x) => x.level === 'street' && x.recipient === 'test-duty')).toBe(true);

    const ack = await gateway.api(`/api/incidents/${incident.id}/acknowledge`, { method: 'POST', as: 'grid_worker', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ack.status).toBe(200);
    const acked = (await ack.json()) as IncidentDetail;
    expect(acked.status).toBe('acknowledged');
    expect(acked.acknowledgedBy).toBe('test-grid');
    expect(acked.escalateAt).toBeNull();
    await new Promise((r) => setTimeout(r, 3500));
    const later = await detail(incident.id);
    expect(later.level).toBe('street');
    expect(later.timeline.filter((t) => t.action === 'escalated')).toHaveLength(2);
    // A second acknowledgement says who was first.
    const again = await gateway.api(`/api/incidents/${incident.id}/acknowledge`, { method: 'POST', as: 'duty_officer', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { message: string }).message).toContain('test-grid');
  });

  it('records who did what: arrival, resolution, audit log', async () => {
    const post = (path: string, body: unknown, as: TestRole = 'grid_worker') =>
      gateway.api(`/api/incidents/${incident.id}/${path}`, { method: 'POST', as, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('on-site', { note: '已到达现场，明火约 20 平方米' })).status).toBe(200);
    expect((await post('resolve', {}, 'viewer')).status).toBe(403);
    expect((await post('resolve', { note: '明火已扑灭' })).status).toBe(200);
    const d = await detail(incident.id);
    expect(d.status).toBe('resolved');
    expect(d.closedBy).toBe('test-grid');
    expect(d.timeline.map((t) => t.action)).toEqual(expect.arrayContaining(['created', 'located', 'dispatched', 'escalated', 'acknowledged', 'on_site', 'resolved']));
    const audit = (await (await gateway.api('/api/audit?limit=100')).json()) as { entries: Array<{ actor: string; action: string; subject: string }> };
    const mine = audit.entries.filter((e) => e.subject === incident.id);
    expect(mine.map((e) => `${e.actor}:${e.action}`)).toEqual(
      expect.arrayContaining(['system:incident.escalate', 'test-grid:incident.acknowledge', 'test-grid:incident.on_site', 'test-grid:incident.resolve']),
    );
    worker.ws.close();
    viewerOutside.ws.close();
  });

  it('keeps photos from the field with the incident, for those who may see it', async () => {
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 7), Buffer.from([0xff, 0xd9])]);
    const upload = (body: Buffer, type: string, as: TestRole = 'grid_worker') =>
      gateway.api(`/api/incidents/${incident.id}/photos?note=${encodeURIComponent('火场东侧')}`, { method: 'POST', as, headers: { 'content-type': type }, body: new Uint8Array(body) });
    expect((await upload(jpeg, 'image/jpeg', 'viewer')).status).toBe(403);
    const notJpeg = await upload(Buffer.from('<svg/>'), 'image/jpeg');
    expect(notJpeg.status).toBe(400);
    expect(((await notJpeg.json()) as { code: string }).code).toBe('BAD_REQUEST');
    const ok = await upload(jpeg, 'image/jpeg');
    expect(ok.status).toBe(200);
    const entry = ((await ok.json()) as IncidentDetail).timeline.at(-1)!;
    expect(entry).toMatchObject({ action: 'photo', actor: 'test-grid', detail: { note: '火场东侧', bytes: jpeg.length } });
    const photo = await gateway.api(`/api/incidents/${incident.id}/photos/${String(entry.detail.photo)}`, { as: 'viewer' });
    expect(photo.status).toBe(200);
    expect(photo.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await photo.arrayBuffer()).equals(jpeg)).toBe(true);
    expect((await fetch(`${gateway.httpUrl}/api/incidents/${incident.id}/photos/${String(entry.detail.photo)}`)).status).toBe(401);
    expect((await gateway.api(`/api/incidents/${incident.id}/photos/..%2F..%2Fstore.sqlite`)).status).toBe(404);
  });
});

describe('duplicates and floods', () => {
  it('the same alarm twice a few ms apart gives one incident', async () => {
    const before = (await incidents()).length;
    const cam = ledger.find((d) => d.id === 'cam-0100')!;
    await Promise.all([cameraAlarm(cam.id, 'smoke', 90), cameraAlarm(cam.id, 'smoke', 90.2)]);
    await waitFor(async () => (await incidents()).length === before + 1, { what: 'one new incident' });
    await new Promise((r) => setTimeout(r, 300));
    const now = await incidents();
    expect(now).toHaveLength(before + 1);
    expect(now[0]!.devices).toEqual([cam.id]);
    expect(now[0]!.signalCount).toBeGreaterThanOrEqual(1);
  });

  it('1,000 alarms from one camera in a minute give one incident that counts them', async () => {
    const before = (await incidents()).length;
    const start = Date.now() - 60_000;
    for (let i = 0; i < 1000; i++) await cameraAlarm('cam-0200', 'fire', 45, start + i * 60);
    await waitFor(async () => (await incidents()).length === before + 1, { what: 'one incident' });
    await new Promise((r) => setTimeout(r, 500));
    const now = await incidents();
    expect(now).toHaveLength(before + 1);
    const flood = await detail(now[0]!.id);
    // Damped to a timeline of one, nobody paged 1,000 times.
    expect(flood.timeline.filter((t) => t.action === 'created' || t.action === 'signal')).toHaveLength(1);
    expect(flood.dispatches.length).toBeLessThanOrEqual(2);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/gs_alert_signals_total\{kind="camera_fire",outcome="repeat"\} 999/);
  });
});

describe('a tank that runs dry', () => {
  const tank = ledger.find((d): d is Extract<typeof d, { kind: 'water_tank' }> => d.kind === 'water_tank')!;
  const reading = (levelPercent: number, ts: number) => {
    const heightMm = tank.settings.heightMm;
    const payload = { ts, seq: ++seq, values: { levelPercent, levelMm: Math.round((levelPercent / 100) * heightMm), volumeM3: (levelPercent / 100) * tank.settings.capacityM3 } };
    return client.publishAsync(topics.telemetry(tank.id), JSON.stringify(payload), { qos: 1 });
  };

  it('raises one alert below the critical level and clears it when refilled', async () => {
    const t0 = Date.now() - 30 * 60_000;
    // Full, then drained below critical over a few readings, and hovering there.
    const levels = [80, 60, tank.settings.lowPercent - 1, tank.settings.criticalPercent - 1, tank.settings.criticalPercent - 3, tank.settings.criticalPercent + 1, tank.settings.criticalPercent - 2];
    for (const [i, level] of levels.entries()) await reading(level, t0 + i * 60_000);
    const water = await waitFor(async () => (await incidents('?category=water')).find((i) => i.devices.includes(tank.id) && i.kind === 'tank_critical'), { what: 'tank alert' });
    const open = await incidents('?category=water&status=open');
    expect(open.filter((i) => i.devices.includes(tank.id))).toHaveLength(1);
    expect(water.severity).toBe('critical');
    expect(water.location).toMatchObject({ method: 'device', deviceId: tank.id });

    await reading(95, t0 + 20 * 60_000);
    await waitFor(async () => (await detail(water.id)).status === 'resolved', { what: 'tank alert cleared' });
    const cleared = await detail(water.id);
    expect(cleared.closedBy).toBe('system');
    expect(cleared.closeReason).toBe('cleared');
    expect(cleared.timeline.at(-1)!.action).toBe('cleared');
  });
});

describe('the API', () => {
  it('refuses bad requests with { code, message }', async () => {
    const bad = await gateway.api('/api/incidents?status=burning');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'BAD_REQUEST' });
    const missing = await gateway.api('/api/incidents/INC-20260101-9999');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'INCIDENT_NOT_FOUND' });
    const [any] = await incidents('?status=open');
    const noReason = await gateway.api(`/api/incidents/${any!.id}/false-alarm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(noReason.status).toBe(400);
  });

  it('exports CSV that a spreadsheet opens', async () => {
    const res = await gateway.api('/api/incidents.csv?category=fire');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/csv');
    const bytes = Buffer.from(await res.arrayBuffer());
    // A UTF-8 byte order mark, so Excel and WPS read the Chinese titles right.
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const lines = bytes.subarray(3).toString('utf8').trim().split('\r\n');
    expect(lines[0]).toMatch(/^id,category,kind,severity,status,title/);
    expect(lines.length - 1).toBe((await incidents('?category=fire')).length);
  });

  it("scopes a grid worker to their grids", async () => {
    const asWorker = (await (await gateway.api('/api/incidents', { as: 'grid_worker' })).json()) as { incidents: Incident[] };
    expect(asWorker.incidents.every((i) => i.grid === 'G01' || i.grid === 'G02')).toBe(true);
    const outside = (await incidents()).find((i) => i.grid !== 'G01' && i.grid !== 'G02');
    expect(outside).toBeDefined();
    const res = await gateway.api(`/api/incidents/${outside!.id}`, { as: 'grid_worker' });
    expect(res.status).toBe(404);
  });
});
