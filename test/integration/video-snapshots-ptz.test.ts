/**
 * Alarm snapshots and PTZ end to end: simulated ONVIF cameras → a real edge agent (camera
 * collector) → MQTT → a real gateway. A fire raised on a camera makes an incident; the gateway
 * fetches that camera's ONVIF snapshot (HTTP Digest) and keeps it with the incident; a second
 * camera joining the incident adds its own. PTZ requests go out as the agent's commands and are
 * answered on its acks; only duty officers and above may turn cameras, and every move is audited.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { Incident } from '../../protocol/incidents.js';
import type { CameraPresetsResponse, IncidentSnapshotsResponse, PtzResponse } from '../../protocol/video.js';
import { bearingDeg, destination, distanceM } from '../../simulators/src/geo.js';
import { startTestGateway, testAgentConfig, testLogLevel, waitFor, type TestGateway } from '../helpers/gateway.js';
import { CAMERA_PASSWORD, CAMERA_USER, openVideo, relayProcesses, startVideoFleet, type CameraDevice, type VideoFleet } from '../helpers/video-ws.js';

let fleet: VideoFleet;
let gateway: TestGateway;
let agent: EdgeAgent;
let dir: string;
let camA: CameraDevice;
let camB: CameraDevice;
/** a camera of the ledger that no running agent speaks for */
let orphan: CameraDevice;

/** Two long-range cameras 1–3 km apart, so a fire between them is seen by both at a good crossing angle. */
function pickPair(cams: CameraDevice[]): CameraDevice[] {
  const far = cams.filter((c) => c.settings.viewRangeM >= 4000);
  for (const a of far) {
    const b = far.find((c) => c !== a && distanceM(a, c) > 1000 && distanceM(a, c) < 3000);
    if (b) return [a, b];
  }
  throw new Error('no pair of long-range cameras 1–3 km apart in the ledger');
}

beforeAll(async () => {
  fleet = await startVideoFleet(2, { pick: pickPair });
  const cams = fleet.ledger.filter((d): d is CameraDevice => d.kind === 'camera');
  camA = cams.find((d) => d.id === fleet.ids[0])!;
  camB = cams.find((d) => d.id === fleet.ids[1])!;
  orphan = cams.find((d) => !fleet.ids.includes(d.id))!;
  gateway = await startTestGateway({
    ledger: fleet.ledger,
    gateway: { availability: { flapDampingSec: 0 }, video: { snapshots: { minIntervalSec: 2 }, prewarmOnAlarmSec: 30, ptz: { ackTimeoutMs: 2000, doneTimeoutMs: 15_000 } } },
  });
  dir = mkdtempSync(join(tmpdir(), 'gs-video-agent-'));
  const config = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(dir, 'outbox.sqlite'),
    cameras: { ptzStatusIntervalMs: 1000, streamCheckIntervalMs: 600_000, maxBackoffMs: 2000 },
  });
  const log = createLogger(testLogLevel());
  // The agent gets the cameras' URLs with credentials, as the gateway's ledger has them.
  const { collectors, devices } = buildCollectors(config, fleet.ledger, log, {
    tankEndpoints: new Map(),
    poleEndpoints: new Map(),
    cameraEndpoints: new Map(fleet.ids.map((id) => [id, (fleet.ledger.find((d) => d.id === id) as CameraDevice).settings.onvifUrl!])),
  });
  agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
  await agent.start();
  await waitFor(() => agent.stats().connected && fleet.ids.every((id) => gateway.registry.view(id)?.status === 'online'), { what: 'cameras online', timeoutMs: 20_000 });
  await waitFor(() => fleet.ids.every((id) => fleet.cameras.camera(id).subscriptionCount === 1), { what: 'pull points' });
  await new Promise((r) => setTimeout(r, 300)); // the command subscription
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await gateway?.close();
  await fleet?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(relayProcesses()).toEqual([]);
});

const json = async <T>(res: Response): Promise<T> => (await res.json()) as T;

describe('alarm snapshots', () => {
  it('a fire on a camera stores its snapshot with the incident; a second camera joining adds its own; served to signed-in users only', async () => {
    const fire = destination({ lat: (camA.lat + camB.lat) / 2, lon: (camA.lon + camB.lon) / 2 }, bearingDeg(camA, camB) + 90, 800);
    const bearingA = Math.round(bearingDeg(camA, fire) * 10) / 10;
    const bearingB = Math.round(bearingDeg(camB, fire) * 10) / 10;
    fleet.cameras.camera(camA.id).raiseFire({ kind: 'fire', bearingDeg: bearingA, confidence: 0.9 });
    const incident = await waitFor(
      async () => (await json<{ incidents: Incident[] }>(await gateway.api('/api/incidents?status=open&category=fire'))).incidents.find((i) => i.devices.includes(camA.id)),
      { what: 'the incident', timeoutMs: 15_000 },
    );
    const first = await waitFor(
      async () => (await json<IncidentSnapshotsResponse>(await gateway.api(`/api/incidents/${incident.id}/snapshots`, { as: 'viewer' }))).snapshots[0],
      { what: 'the first snapshot', timeoutMs: 15_000 },
    );
    expect(first).toMatchObject({ incidentId: incident.id, cameraId: camA.id, cameraName: camA.name, bearingDeg: bearingA, url: `/api/snapshots/${first.name}` });
    expect(first.bytes).toBeGreaterThan(1000);
    expect(Math.abs(first.ts - Date.now())).toBeLessThan(30_000);

    const jpeg = await gateway.api(first.url, { as: 'viewer' });
    expect(jpeg.status).toBe(200);
    expect(jpeg.headers.get('content-type')).toBe('image/jpeg');
    const bytes = Buffer.from(await jpeg.arrayBuffer());
    expect(bytes.length).toBe(first.bytes);
    expect([...bytes.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    // the simulated camera answered the snapshot request only with Digest credentials
    expect(fleet.cameras.stats().snapshots.renders + fleet.cameras.stats().snapshots.fallbacks).toBeGreaterThanOrEqual(1);

    // Not signed in: 401 on both; a name that is not a snapshot: 404 or 400, never a file
    expect((await fetch(`${gateway.httpUrl}${first.url}`)).status).toBe(401);
    expect((await fetch(`${gateway.httpUrl}/api/incidents/${incident.id}/snapshots`)).status).toBe(401);
    expect((await gateway.api('/api/snapshots/index.sqlite', { as: 'viewer' })).status).toBe(400);
    expect((await gateway.api('/api/snapshots/..%2Findex.sqlite.jpg', { as: 'viewer' })).status).toBe(400);
    expect((await gateway.api(`/api/snapshots/x${first.name}`, { as: 'viewer' })).status).toBe(404);

    // The second camera sees the same fire: it joins the incident and its snapshot is added.
    fleet.cameras.camera(camB.id).raiseFire({ kind: 'smoke', bearingDeg: bearingB, confidence: 0.8 });
    const both = await waitFor(
      async () => {
        const list = (await json<IncidentSnapshotsResponse>(await gateway.api(`/api/incidents/${incident.id}/snapshots`))).snapshots;
        return list.some((s) => s.cameraId === camB.id) ? list : undefined;
      },
      { what: "the second camera's snapshot", timeoutMs: 15_000 },
    );
    expect(both.find((s) => s.cameraId === camB.id)).toMatchObject({ bearingDeg: bearingB });
    // at most one per camera per incident per minIntervalSec: the repeats so far made no more
    expect(both.filter((s) => s.cameraId === camA.id)).toHaveLength(1);
    fleet.cameras.camera(camA.id).clearFire();
    fleet.cameras.camera(camB.id).clearFire();
    for (const s of both) expect(JSON.stringify(s)).not.toContain(CAMERA_PASSWORD);
  });

  it('opens an alarming camera’s stream before anyone looks, so the first viewer starts from a cached key frame', async () => {
    // The fire above is still on the incident: camA's stream was opened with nobody watching.
    const warm = await waitFor(() => gateway.video.relay.streams().find((s) => s.cameraId === camA.id && s.state === 'live'), { what: 'the prewarmed stream' });
    expect(warm).toMatchObject({ format: 'fmp4', viewers: 0 });
    expect(warm.closesInMs).toBeGreaterThan(5000);
    const v = await openVideo(gateway, camA.id);
    try {
      await v.waitFor(() => v.binaries().length >= 2, 'init and a cached fragment', 5000);
      // no `connecting`: live from the first message, the init segment and a key frame right behind it
      expect(v.texts().slice(0, 2).map((m) => m.type === 'state' ? m.state : m.type)).toEqual(['live', 'codec']);
      expect(v.binaries()[1]!.length).toBeGreaterThan(1000);
    } finally {
      await v.close();
    }
  });
});

describe('PTZ through the agent', () => {
  const ptz = (cameraId: string, body: unknown, as: 'duty_officer' | 'viewer' | 'admin' = 'duty_officer') =>
    gateway.api(`/api/cameras/${cameraId}/ptz`, { method: 'POST', as, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('lists presets with their bearings (read over ONVIF) for duty officers; viewers get 403', async () => {
    const res = await gateway.api(`/api/cameras/${camA.id}/presets`, { as: 'duty_officer' });
    expect(res.status).toBe(200);
    const body = await json<CameraPresetsResponse>(res);
    expect(body.presets.map((p) => p.name)).toEqual(['北', '东', '南', '西']);
    expect(body.presets.find((p) => p.name === '东')).toMatchObject({ token: '2', panDeg: 90 });
    expect((await gateway.api(`/api/cameras/${camA.id}/presets`, { as: 'viewer' })).status).toBe(403);
    expect(JSON.stringify(body)).not.toContain(CAMERA_USER);
  });

  it('goes to a preset, nudges and stops, answered on the agent’s acks; the camera turns; every request is audited', async () => {
    const go = await ptz(camA.id, { action: 'goto_preset', preset: '东', wait: 'done' });
    expect(go.status).toBe(200);
    const done = await json<PtzResponse>(go);
    expect(done).toMatchObject({ cameraId: camA.id, action: 'goto_preset', status: 'done' });
    expect(done.commandId).toMatch(/^ptz-/);
    expect(fleet.cameras.camera(camA.id).panBearingDeg).toBeCloseTo(90, 0);

    const nudge = await ptz(camA.id, { action: 'move', pan: 0.2, tilt: 0, durationMs: 300 });
    expect(nudge.status).toBe(200);
    expect(await json<PtzResponse>(nudge)).toMatchObject({ action: 'move', status: 'accepted', reason: 'moving for 300 ms' });
    const stop = await ptz(camA.id, { action: 'stop' });
    expect(stop.status).toBe(200);
    await waitFor(() => !fleet.cameras.camera(camA.id).ptzStatus().panTiltMoving, { what: 'the head to stop' });

    const refused = await ptz(camA.id, { action: 'goto_preset', preset: 'nowhere' });
    expect(refused.status).toBe(409);
    expect(await json(refused)).toEqual({ code: 'PTZ_REJECTED', message: expect.stringContaining('no preset "nowhere"') });

    expect((await ptz(camA.id, { action: 'move', pan: 0, tilt: 0 })).status).toBe(400);
    expect((await ptz(camA.id, { action: 'stop', preset: 1 })).status).toBe(400);
    expect((await ptz(camA.id, { action: 'goto_preset', preset: '东' }, 'viewer')).status).toBe(403);
    const anonymous = await fetch(`${gateway.httpUrl}/api/cameras/${camA.id}/ptz`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"action":"stop"}' });
    expect(anonymous.status).toBe(401);

    const audit = await json<{ entries: Array<{ actor: string; action: string; subject: string; detail: Record<string, unknown> }> }>(
      await gateway.api('/api/audit?action=camera.ptz', { as: 'admin' }),
    );
    const mine = audit.entries.filter((e) => e.subject === camA.id);
    expect(mine.map((e) => e.detail.action).sort()).toEqual(['goto_preset', 'goto_preset', 'move', 'stop']);
    expect(mine.every((e) => e.actor === 'test-duty')).toBe(true);
    expect(mine.find((e) => e.detail.action === 'goto_preset' && e.detail.status === 'done')).toMatchObject({ detail: { preset: '东', commandId: done.commandId } });
    expect(mine.find((e) => e.detail.error === 'PTZ_REJECTED')).toBeDefined();
  });

  it('answers 504 PTZ_TIMEOUT when no agent acks (a camera nobody speaks for)', async () => {
    const started = Date.now();
    const res = await ptz(orphan.id, { action: 'goto_preset', preset: 1 });
    expect(res.status).toBe(504);
    expect((await json<{ code: string }>(res)).code).toBe('PTZ_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect((await ptz('tank-001', { action: 'stop' })).status).toBe(404);
  });
});
