/**
 * Cameras end to end: simulated ONVIF cameras → the edge agent's camera collector (built by
 * buildCollectors from the shipped ledger, as main.ts does) → outbox → MQTT → a real gateway.
 * A fire raised on a camera reaches the gateway's bus with its bearing; a PTZ command sent by the
 * gateway comes back as acks, and the pan report reaches the registry.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { CameraCollector } from '../../edge-agent/src/collectors/camera.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { CameraValues, CommandAck, DeviceEvent, DeviceState } from '../../protocol/payloads.js';
import { startCameraFleet, type CameraFleet } from '../../simulators/src/camera/index.js';
import { CONFIG_DIR, startTestGateway, testAgentConfig, testLogLevel, waitFor, type TestGateway } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const ledgerCameras = ledger.filter((d): d is Extract<LedgerDevice, { kind: 'camera' }> => d.kind === 'camera');
// One camera of each vendor the ledger has (the mapping differs per vendor), three in all.
const picked = [...new Map(ledgerCameras.map((d) => [d.settings.vendor, d])).values()];
for (const d of ledgerCameras) if (picked.length < 3 && !picked.includes(d)) picked.push(d);
const CAMS = picked.slice(0, 3);

let gateway: TestGateway;
let agent: EdgeAgent;
let fleet: CameraFleet;
let dir: string;
let watched: string[] = [];
const events: Array<{ device: string; event: DeviceEvent }> = [];
const acks: Array<{ device: string; ack: CommandAck }> = [];
const states: Array<{ device: string; state: DeviceState }> = [];
const telemetry: Array<{ device: string; values: CameraValues }> = [];

beforeAll(async () => {
  gateway = await startTestGateway({ ledger, gateway: { availability: { flapDampingSec: 0 } } });
  gateway.bus.on('event', ({ device, message }) => events.push({ device: device.id, event: message }));
  gateway.bus.on('ack', ({ device, message }) => acks.push({ device: device.id, ack: message }));
  gateway.bus.on('state', ({ device, message }) => states.push({ device: device.id, state: message }));
  gateway.bus.on('telemetry', ({ device, message }) => {
    if (device.kind === 'camera') telemetry.push({ device: device.id, values: message.values as CameraValues });
  });
  fleet = await startCameraFleet(
    CAMS.map((d) => ({ id: d.id, name: d.name, headingDeg: d.settings.headingDeg ?? 0, vendor: d.settings.vendor })),
    {
      username: 'onvif-agent',
      password: 'cam-secret',
      // No RTSP server here: stream checks (every 10 s) find nothing and only say streamOk false.
      streamUrlFor: (id) => `rtsp://127.0.0.1:9/${id}`,
      seed: 11,
      events: { maxPullTimeoutMs: 2000 },
      ptz: { maxPanDegPerSec: 360 },
    },
  );
  dir = mkdtempSync(join(tmpdir(), 'gs-cam-'));
  const config = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(dir, 'outbox.sqlite'),
    cameras: { username: 'onvif-agent', password: 'cam-secret', ptzStatusIntervalMs: 1000, streamCheckIntervalMs: 10_000, maxBackoffMs: 2000 },
  });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(config, ledger, log, {
    tankEndpoints: new Map(),
    poleEndpoints: new Map(),
    cameraEndpoints: new Map(CAMS.map((d) => [d.id, fleet.deviceServiceUrl(d.id)])),
  });
  watched = devices.map((d) => d.id);
  expect(collectors.some((c) => c instanceof CameraCollector)).toBe(true);
  agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
  await agent.start();
  await waitFor(() => agent.stats().connected && CAMS.every((d) => gateway.registry.view(d.id)?.status === 'online'), {
    what: 'cameras online at the gateway',
    timeoutMs: 20_000,
  });
  // Every camera has its pull point, and the command subscription is in place.
  await waitFor(() => CAMS.every((d) => fleet.camera(d.id).subscriptionCount === 1), { what: 'subscribed' });
  await new Promise((r) => setTimeout(r, 300));
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await fleet?.close();
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('cameras through the gateway', () => {
  it('the agent watches exactly the cameras it was given endpoints for', () => {
    expect([...watched].sort()).toEqual(CAMS.map((d) => d.id).sort());
    expect(states.filter((s) => s.state.status === 'online').map((s) => s.device).sort()).toEqual(CAMS.map((d) => d.id).sort());
  });

  it('a fire raised on a camera arrives on the bus with its bearing, and its end after the clear', async () => {
    const cam = CAMS[0]!;
    fleet.camera(cam.id).raiseFire({ kind: 'fire', bearingDeg: 127.4, confidence: 0.91, temperatureC: 380 });
    const start = await waitFor(() => events.find((e) => e.device === cam.id && e.event.type === 'fire' && e.event.phase === 'start'), { what: 'fire start' });
    expect(start.event).toMatchObject({ bearingDeg: 127.4, confidence: 0.91, temperatureC: 380, severity: 'critical' });
    expect(start.event.source).toMatch(/^tns1:/);
    // A second camera sees the same fire from elsewhere: two bearings, for a cross-bearing fix.
    const other = CAMS[1]!;
    fleet.camera(other.id).raiseFire({ kind: 'fire', bearingDeg: 301.2, confidence: 0.7 });
    const second = await waitFor(() => events.find((e) => e.device === other.id && e.event.phase === 'start'), { what: 'second camera' });
    expect(second.event.bearingDeg).toBe(301.2);
    fleet.camera(cam.id).clearFire();
    fleet.camera(other.id).clearFire();
    await waitFor(() => [cam.id, other.id].every((id) => events.some((e) => e.device === id && e.event.phase === 'end')), { what: 'fire ends' });
  });

  it('a ptz.goto_preset sent by the gateway is acked accepted → done, and the registry shows the preset bearing', async () => {
    const cam = CAMS[2]!;
    await gateway.sendCommand(cam.id, { id: 'ptz-west-1', ts: Date.now(), name: 'ptz.goto_preset', params: { preset: '西' }, expiresAt: Date.now() + 60_000 });
    await waitFor(() => acks.some((a) => a.ack.cmdId === 'ptz-west-1' && a.ack.status === 'done'), { what: 'goto done' });
    expect(acks.filter((a) => a.ack.cmdId === 'ptz-west-1').map((a) => [a.device, a.ack.status])).toEqual([
      [cam.id, 'accepted'],
      [cam.id, 'done'],
    ]);
    await waitFor(() => gateway.registry.view(cam.id)?.values.panDeg === 270, { what: 'registry pan 270' });
    expect(telemetry.some((t) => t.device === cam.id && t.values.panDeg === 270)).toBe(true);
  });
});
