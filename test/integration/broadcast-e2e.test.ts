/**
 * Broadcast jobs end to end through real parts: the HTTP API → the broadcast service → MQTT over
 * TCP → a real edge agent → its voice-pole collector → pole simulators (HTTP), and the acks back
 * through the agent's outbox to the gateway, the store and a real WebSocket client on /ws.
 * Pole playback runs 10× fast (a 4 s announcement takes 0.4 s).
 *
 * Poles with simulators: the four of grid G08 and the four of grid G27. The rest of the site's
 * poles have none (their agent never reports them).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { BroadcastDelivery, BroadcastJob, BroadcastServerMessage } from '../../protocol/broadcasts.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { startPoleFleet, type PoleFleet } from '../../simulators/src/voice-pole/simulator.js';
import { CONFIG_DIR, startTestGateway, testAgentConfig, testLogLevel, TEST_USERS, waitFor, type TestGateway, type TestRole } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const polesOf = (grid: string) => ledger.filter((d) => d.kind === 'voice_pole' && d.grid === grid).map((d) => d.id);
const G08 = polesOf('G08');
const G27 = polesOf('G27');

let gateway: TestGateway;
let agent: EdgeAgent;
let fleet: PoleFleet;
let dir: string;
let ws: WebSocket;
const pushed: BroadcastServerMessage[] = [];

function startAgent(): Promise<EdgeAgent> {
  const config = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(dir, 'outbox.sqlite'),
    poles: { pollIntervalMs: 200, timeoutMs: 500 },
  });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(config, ledger, log, { tankEndpoints: new Map(), poleEndpoints: fleet.endpoints });
  const a = buildAgent({ config, log, collectors, deviceCount: devices.length });
  return a.start().then(() => a);
}

beforeAll(async () => {
  expect(G08).toHaveLength(4);
  expect(G27).toHaveLength(4);
  gateway = await startTestGateway({
    ledger,
    gateway: {
      // No flap damping: the offline tests want the registry to follow at once.
      availability: { flapDampingSec: 0 },
      broadcast: { ackTimeoutMs: 1500, maxResends: 2, retryDelayMs: 500, tickMs: 100, progressIntervalMs: 100 },
    },
  });
  fleet = await startPoleFleet(
    ledger.filter((d) => G08.includes(d.id) || G27.includes(d.id)),
    { timeScale: 10 },
  );
  dir = mkdtempSync(join(tmpdir(), 'gs-bc-e2e-'));
  agent = await startAgent();
  await waitFor(() => agent.stats().connected && [...G08, ...G27].every((id) => gateway.registry.view(id)?.status === 'online'), { what: 'poles online' });
  // The command subscription is made right after CONNACK; give it a moment to be in place.
  await new Promise((r) => setTimeout(r, 200));
  ws = new WebSocket(`${gateway.httpUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await gateway.tokenFor('viewer')}` } });
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as ServerMessage;
    if (m.type.startsWith('broadcast')) pushed.push(m as BroadcastServerMessage);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  await waitFor(() => pushed.some((m) => m.type === 'broadcasts.snapshot'), { what: 'broadcast snapshot on connect' });
});

afterAll(async () => {
  ws?.close();
  await agent?.stop();
  await fleet?.close();
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const json = { 'content-type': 'application/json' };
async function create(body: unknown, as: TestRole = 'duty_officer'): Promise<BroadcastJob> {
  const res = await gateway.api('/api/broadcasts', { method: 'POST', headers: json, body: JSON.stringify(body), as });
  const out = (await res.json()) as { broadcast: BroadcastJob; code?: string; message?: string };
  if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(out)}`);
  return out.broadcast;
}
async function get(id: string): Promise<{ broadcast: BroadcastJob; deliveries: BroadcastDelivery[] }> {
  const res = await gateway.api(`/api/broadcasts/${id}`, { as: 'viewer' });
  expect(res.status).toBe(200);
  return (await res.json()) as { broadcast: BroadcastJob; deliveries: BroadcastDelivery[] };
}
const finished = (id: string, timeoutMs = 15_000) =>
  waitFor(async () => ((await get(id)).broadcast.status === 'finished' || (await get(id)).broadcast.status === 'cancelled' ? get(id) : undefined), {
    what: `broadcast ${id} to end`,
    timeoutMs,
  });
const deliveryOf = async (id: string, pole: string) => (await get(id)).deliveries.find((d) => d.pole === pole)!;
const messagesOf = (id: string) => pushed.filter((m) => ('id' in m ? m.id : 'broadcast' in m ? m.broadcast.id : undefined) === id);

describe('broadcast jobs through the real path', () => {
  it('a broadcast to a grid reaches exactly the poles in that grid; each plays then finishes; n/m is live on the WebSocket', async () => {
    const job = await create({ target: { type: 'grids', grids: ['G08'] }, content: { type: 'text', text: '森林防火，人人有责。进山不带火种。' } });
    expect(job).toMatchObject({ status: 'active', priority: 'routine', poleCount: 4, targetLabel: '网格 G08', createdBy: TEST_USERS.duty_officer.username });
    const { broadcast, deliveries } = await finished(job.id);
    expect(broadcast.counts).toMatchObject({ done: 4, failed: 0, expired: 0, queued: 0, sent: 0 });
    expect(deliveries.map((d) => d.pole).sort()).toEqual([...G08].sort());
    for (const d of deliveries) {
      expect(d).toMatchObject({ state: 'done', reason: null, attempt: 1, sends: 1 });
      expect(d.sentAt!).toBeLessThanOrEqual(d.acceptedAt!);
      expect(d.acceptedAt!).toBeLessThanOrEqual(d.playingAt!);
      expect(d.playingAt!).toBeLessThan(d.endedAt!);
      // The pole itself played it once, to the end.
      const pole = fleet.poles.get(d.pole)!.model;
      expect(pole.job(d.cmdId!)).toMatchObject({ state: 'done', priority: 'routine', text: '森林防火，人人有责。进山不带火种。' });
    }
    // Nothing reached the poles of the other grid.
    for (const id of G27) expect(fleet.poles.get(id)!.model.jobs()).toEqual([]);

    // The dashboard saw it created, then progress with counts out of 4 (playing before done), then the end.
    await waitFor(() => messagesOf(job.id).some((m) => m.type === 'broadcast.finished'), { what: 'finished pushed' });
    const seen = messagesOf(job.id);
    expect(seen[0]).toMatchObject({ type: 'broadcast.created', broadcast: { id: job.id, poleCount: 4 } });
    const progress = seen.filter((m): m is Extract<BroadcastServerMessage, { type: 'broadcast.progress' }> => m.type === 'broadcast.progress');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    for (const p of progress) expect(Object.values(p.counts).reduce((a, b) => a + b, 0)).toBe(4);
    expect(progress.every((p) => p.total === 4)).toBe(true);
    const dones = progress.map((p) => p.counts.done);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
    expect(progress.findIndex((p) => p.counts.playing > 0)).toBeGreaterThanOrEqual(0);
    expect(progress.findIndex((p) => p.counts.playing > 0)).toBeLessThan(progress.findIndex((p) => p.counts.done === 4));
    expect(progress.flatMap((p) => p.changes.map((c) => c[0])).every((pole) => G08.includes(pole))).toBe(true);
    expect(seen.at(-1)).toMatchObject({ type: 'broadcast.finished', broadcast: { status: 'finished', counts: { done: 4 } } });
  });

  it('an emergency pre-empts a routine broadcast on a pole, and the routine one is reported pre-empted', async () => {
    const pole = G27[0]!;
    const routine = await create({ target: { type: 'poles', poles: [pole] }, content: { type: 'clip', clipId: 'fire-warning-01' }, repeat: 3 });
    await waitFor(async () => (await deliveryOf(routine.id, pole)).state === 'playing', { what: 'routine playing' });

    const noReason = await gateway.api('/api/broadcasts', {
      method: 'POST',
      headers: json,
      as: 'duty_officer',
      body: JSON.stringify({ target: { type: 'poles', poles: [pole] }, content: { type: 'template', template: 'evacuation-order', values: { area: '凤凰湖北坡' } } }),
    });
    expect(noReason.status).toBe(400);
    expect(await noReason.json()).toEqual({ code: 'BROADCAST_REASON_REQUIRED', message: 'an emergency broadcast needs a reason (e.g. the incident it warns about)' });

    const emergency = await create({
      target: { type: 'poles', poles: [pole] },
      content: { type: 'template', template: 'evacuation-order', values: { area: '凤凰湖北坡' } },
      reason: '凤凰湖北坡山火，视频确认',
      volume: 100,
    });
    expect(emergency).toMatchObject({ priority: 'emergency', title: '紧急疏散令', text: expect.stringContaining('凤凰湖北坡发生山火') });
    const r = await finished(routine.id);
    const e = await finished(emergency.id);
    expect(r.deliveries[0]).toMatchObject({ state: 'preempted', reason: `pre-empted by emergency broadcast ${e.deliveries[0]!.cmdId}` });
    expect(r.broadcast.counts).toMatchObject({ preempted: 1 });
    expect(e.deliveries[0]).toMatchObject({ state: 'done' });
    const model = fleet.poles.get(pole)!.model;
    expect(model.job(r.deliveries[0]!.cmdId!)).toMatchObject({ state: 'preempted', preemptedByPriority: 'emergency' });
    expect(model.job(e.deliveries[0]!.cmdId!)).toMatchObject({ state: 'done', priority: 'emergency', volume: 100 });
    expect(model.status().state).toBe('idle'); // the routine clip did not resume
  });

  it('a pole offline at send time plays the broadcast when it returns within the expiry', async () => {
    const pole = G27[1]!;
    const sim = fleet.poles.get(pole)!;
    await sim.setFault('offline');
    await waitFor(() => gateway.registry.view(pole)?.status === 'offline', { what: `${pole} offline` });
    const job = await create({ target: { type: 'poles', poles: [pole] }, content: { type: 'text', text: '今日森林火险等级较高，请注意防火。' }, expiresAt: Date.now() + 60_000 });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await deliveryOf(job.id, pole)).toMatchObject({ state: 'queued', sends: 0 });

    await sim.setFault('none');
    const { deliveries } = await finished(job.id);
    expect(deliveries[0]).toMatchObject({ state: 'done', sends: 1 });
    expect(sim.model.job(deliveries[0]!.cmdId!)).toMatchObject({ state: 'done' });
    expect(sim.model.starts).toBe(1);
  });

  it('…and never after the expiry', async () => {
    const pole = G27[2]!;
    const sim = fleet.poles.get(pole)!;
    await sim.setFault('offline');
    await waitFor(() => gateway.registry.view(pole)?.status === 'offline', { what: `${pole} offline` });
    const job = await create({ target: { type: 'poles', poles: [pole] }, content: { type: 'text', text: '请勿在林区吸烟。' }, expiresAt: Date.now() + 1500 });
    const { deliveries, broadcast } = await finished(job.id);
    expect(broadcast.counts).toMatchObject({ expired: 1 });
    expect(deliveries[0]).toMatchObject({ state: 'expired', reason: 'the pole was offline until the expiry', sends: 0 });

    await sim.setFault('none');
    await waitFor(() => gateway.registry.view(pole)?.status === 'online', { what: `${pole} back online` });
    await new Promise((r) => setTimeout(r, 1000));
    expect(sim.model.jobs()).toEqual([]);
    expect((await deliveryOf(job.id, pole)).state).toBe('expired');

    // The officer re-sends it to the poles that missed it: a new job, and this time it plays.
    const res = await gateway.api(`/api/broadcasts/${job.id}/retry`, { method: 'POST', as: 'duty_officer' });
    expect(res.status).toBe(201);
    const retry = ((await res.json()) as { broadcast: BroadcastJob }).broadcast;
    expect(retry).toMatchObject({ retryOf: job.id, poleCount: 1, text: '请勿在林区吸烟。', target: { type: 'poles', poles: [pole] } });
    const { deliveries: again } = await finished(retry.id);
    expect(again[0]).toMatchObject({ pole, state: 'done' });
    expect(sim.model.starts).toBe(1);
    // Nothing left to re-send.
    const none = await gateway.api(`/api/broadcasts/${retry.id}/retry`, { method: 'POST', as: 'duty_officer' });
    expect(none.status).toBe(409);
    expect(((await none.json()) as { code: string }).code).toBe('BROADCAST_NOTHING_TO_RETRY');
  });

  it('a pole whose agent is down gets the broadcast when the agent is back (the same command id, played once)', async () => {
    const pole = G27[3]!;
    await agent.stop();
    await waitFor(() => gateway.registry.view(pole)?.status === 'unknown', { what: `${pole} unknown (agent down)` });
    const job = await create({ target: { type: 'poles', poles: [pole] }, content: { type: 'text', text: '森林防火，人人有责。' } });
    // Nobody takes the command: it is published again with the same id, then waits for the pole to be heard.
    await waitFor(async () => (await deliveryOf(job.id, pole)).sends >= 3, { what: 're-sends', timeoutMs: 10_000 });
    agent = await startAgent();
    const { deliveries } = await finished(job.id);
    expect(deliveries[0]).toMatchObject({ state: 'done', attempt: 1 });
    const sim = fleet.poles.get(pole)!;
    expect(sim.model.jobs().map((j) => j.jobId)).toEqual([deliveries[0]!.cmdId]);
    expect(sim.model.starts).toBe(1);
  });

  it('cancel stops the poles playing it; the deliveries are cancelled', async () => {
    const [a, b] = G08;
    const job = await create({ target: { type: 'poles', poles: [a, b] }, content: { type: 'clip', clipId: 'fire-ban-01' }, repeat: 5 });
    await waitFor(async () => (await get(job.id)).deliveries.every((d) => d.state === 'playing'), { what: 'both playing' });
    const res = await gateway.api(`/api/broadcasts/${job.id}/cancel`, { method: 'POST', headers: json, body: JSON.stringify({ reason: '内容有误' }), as: 'admin' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { broadcast: BroadcastJob }).broadcast).toMatchObject({ status: 'cancelled', cancelledBy: TEST_USERS.admin.username, cancelReason: '内容有误' });
    const { deliveries } = await get(job.id);
    for (const d of deliveries) {
      expect(d.state).toBe('cancelled');
      await waitFor(() => fleet.poles.get(d.pole)!.model.job(d.cmdId!)?.state === 'stopped', { what: `${d.pole} stopped` });
    }
    const again = await gateway.api(`/api/broadcasts/${job.id}/cancel`, { method: 'POST', as: 'duty_officer' }); // no body: fine
    expect(again.status).toBe(409);
    expect(((await again.json()) as { code: string }).code).toBe('BROADCAST_ENDED');
    await waitFor(() => messagesOf(job.id).some((m) => m.type === 'broadcast.finished' && m.broadcast.status === 'cancelled'), { what: 'cancel pushed' });
  });

  it('a viewer or grid worker gets 403 and nothing is sent; a viewer may look', async () => {
    const commands: string[] = [];
    const spy = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'cmd-spy' });
    await spy.subscribeAsync('gs/v1/devices/+/cmd', { qos: 1 });
    spy.on('message', (topic) => commands.push(topic));
    const before = ((await (await gateway.api('/api/broadcasts?limit=1', { as: 'viewer' })).json()) as { total: number }).total;
    const body = JSON.stringify({ target: { type: 'all' }, content: { type: 'text', text: '测试' } });
    for (const as of ['viewer', 'grid_worker'] as const) {
      const res = await gateway.api('/api/broadcasts', { method: 'POST', headers: json, body, as });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('FORBIDDEN');
    }
    const last = ((await (await gateway.api('/api/broadcasts?limit=1', { as: 'viewer' })).json()) as { broadcasts: BroadcastJob[] }).broadcasts[0]!;
    expect((await gateway.api(`/api/broadcasts/${last.id}/cancel`, { method: 'POST', headers: json, body: '{}', as: 'viewer' })).status).toBe(403);
    expect((await gateway.api(`/api/broadcasts/${last.id}/retry`, { method: 'POST', as: 'grid_worker' })).status).toBe(403);
    await new Promise((r) => setTimeout(r, 500));
    await spy.endAsync();
    expect(commands).toEqual([]);
    const after = (await (await gateway.api('/api/broadcasts?limit=1', { as: 'viewer' })).json()) as { total: number };
    expect(after.total).toBe(before);

    // Looking is allowed.
    const preview = await gateway.api('/api/broadcasts/resolve-targets', { method: 'POST', headers: json, body: JSON.stringify({ target: { type: 'grids', grids: ['G08'] } }), as: 'viewer' });
    expect(preview.status).toBe(200);
    const p = (await preview.json()) as { count: number; byStatus: Record<string, number>; poles: Array<{ id: string; status: string }> };
    expect(p.poles.map((x) => x.id).sort()).toEqual([...G08].sort());
    expect(p.byStatus.online).toBe(4);
    expect((await gateway.api('/api/broadcasts/templates', { as: 'viewer' })).status).toBe(200);
  });

  it('refuses unknown targets with a clear message, and bad bodies', async () => {
    const bad = async (body: unknown) => {
      const res = await gateway.api('/api/broadcasts', { method: 'POST', headers: json, body: JSON.stringify(body), as: 'duty_officer' });
      expect(res.status).toBe(400);
      return (await res.json()) as { code: string; message: string };
    };
    expect(await bad({ target: { type: 'poles', poles: ['pole-001', 'pole-999'] }, content: { type: 'text', text: '测试' } })).toEqual({
      code: 'BROADCAST_BAD_TARGET',
      message: 'no device "pole-999" in the ledger',
    });
    expect(await bad({ target: { type: 'grids', grids: ['G99'] }, content: { type: 'text', text: '测试' } })).toMatchObject({ code: 'BROADCAST_BAD_TARGET' });
    expect(await bad({ target: { type: 'grids', grids: ['G08'] }, content: { type: 'template', template: 'fire-danger-warning' } })).toEqual({
      code: 'BROADCAST_BAD_CONTENT',
      message: 'template "fire-danger-warning" needs a value for {fireDangerLevel}, {fireDangerName}',
    });
    expect((await bad({ target: { type: 'grids', grids: ['G08'] }, content: { type: 'text', text: '' } })).code).toBe('BAD_REQUEST');
    expect(await bad({ target: { type: 'grids', grids: ['G08'] }, content: { type: 'text', text: '测试' }, repeat: 11 })).toEqual({ code: 'BAD_REQUEST', message: 'body/repeat must be <= 10' });
    // A misspelt key is refused, not dropped: "priorty" must not quietly make an emergency routine.
    expect(await bad({ target: { type: 'all' }, content: { type: 'text', text: '撤离' }, priorty: 'emergency', reason: 'x' })).toEqual({ code: 'BAD_REQUEST', message: 'body: unknown property "priorty"' });
    expect(await bad({ target: { type: 'grid', grids: ['G08'] }, content: { type: 'text', text: '测试' } })).toEqual({
      code: 'BAD_REQUEST',
      message: 'body/target/type must be one of poles, group, grids, communities, radius, polygon, all',
    });
    expect(await bad({ target: { type: 'radius', center: { lat: 29.43 }, radiusM: 500 }, content: { type: 'text', text: '测试' } })).toEqual({
      code: 'BAD_REQUEST',
      message: "body/target/center must have required property 'lon'",
    });
    expect(await bad({ target: { type: 'all' }, content: { type: 'text', text: '测试' }, priority: 'urgent' })).toEqual({ code: 'BAD_REQUEST', message: 'body/priority must be one of routine, warning, emergency' });
    expect(await bad({ target: { type: 'grids', grids: ['G08'] }, content: { type: 'text', text: '测试' }, schedule: { type: 'at', at: Date.now() - 3_600_000 } })).toMatchObject({
      code: 'BROADCAST_BAD_SCHEDULE',
    });
    const missing = await gateway.api('/api/broadcasts/bnosuchjob', { as: 'viewer' });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe('BROADCAST_NOT_FOUND');
  });

  it('the audit log shows every job with its operator', async () => {
    const list = (await (await gateway.api('/api/broadcasts?limit=100', { as: 'viewer' })).json()) as { broadcasts: BroadcastJob[]; total: number };
    expect(list.total).toBe(8);
    const audit = (await (await gateway.api('/api/audit?limit=500', { as: 'duty_officer' })).json()) as {
      entries: Array<{ actor: string; action: string; subject: string | null; detail: Record<string, unknown> }>;
    };
    for (const job of list.broadcasts) {
      const created = audit.entries.filter((e) => e.action === 'broadcast.create' && e.subject === job.id);
      expect(created, job.id).toEqual([expect.objectContaining({ actor: job.createdBy, detail: expect.objectContaining({ priority: job.priority, poles: job.poleCount }) })]);
      expect(job.createdBy).toBe(TEST_USERS.duty_officer.username);
    }
    const cancelled = list.broadcasts.find((j) => j.status === 'cancelled')!;
    expect(audit.entries).toContainEqual(expect.objectContaining({ action: 'broadcast.cancel', subject: cancelled.id, actor: TEST_USERS.admin.username, detail: expect.objectContaining({ reason: '内容有误' }) }));
    const retried = list.broadcasts.find((j) => j.retryOf !== null)!;
    expect(audit.entries).toContainEqual(expect.objectContaining({ action: 'broadcast.create', subject: retried.id, detail: expect.objectContaining({ retryOf: retried.retryOf }) }));
    const emergency = list.broadcasts.find((j) => j.priority === 'emergency')!;
    expect(audit.entries).toContainEqual(expect.objectContaining({ action: 'broadcast.create', subject: emergency.id, detail: expect.objectContaining({ reason: '凤凰湖北坡山火，视频确认' }) }));
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${gateway.httpUrl}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, { tags?: string[]; summary?: string }>> };
    const routes = [
      ['/api/broadcasts', 'post'],
      ['/api/broadcasts', 'get'],
      ['/api/broadcasts/{id}', 'get'],
      ['/api/broadcasts/{id}/cancel', 'post'],
      ['/api/broadcasts/{id}/retry', 'post'],
      ['/api/broadcasts/templates', 'get'],
      ['/api/broadcasts/resolve-targets', 'post'],
    ] as const;
    for (const [path, method] of routes) {
      expect(doc.paths[path]?.[method], `${method} ${path}`).toMatchObject({ tags: ['broadcast'], summary: expect.any(String) });
    }
  });
});
