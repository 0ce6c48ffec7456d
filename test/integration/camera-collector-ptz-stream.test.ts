/**
 * The camera collector's commands and checks against the simulated ONVIF fleet and RTSP server:
 * PTZ commands with acks and the pan report, RTSP stream checks with ffprobe and video_loss, and
 * WS-Discovery of cameras missing from the ledger.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { CameraVendor, LedgerDevice } from '../../config/ledger.js';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { CameraCollector, cameraTargetFromUrl, type CameraCollectorOptions, type CameraDevice } from '../../edge-agent/src/collectors/camera.js';
import { discoverCameras } from '../../edge-agent/src/collectors/camera-discovery.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import { validate } from '../../protocol/validate.js';
import { startCameraFleet, type CameraFleet } from '../../simulators/src/camera/index.js';
import { startRtspServer, type RtspServer } from '../../simulators/src/rtsp/index.js';

const USER = 'admin';
const PASS = 'cam-pass-2';

function camera(id: string, vendor: CameraVendor, headingDeg: number): CameraDevice {
  return { id, kind: 'camera', name: id, lat: 29.42, lon: 105.88, grid: 'G25', community: '竹海社区', agent: 'agent-chashan', settings: { headingDeg, viewRangeM: 5000, vendor } };
}
const CAMERAS = [
  camera('cam-gen', 'generic', 30),
  camera('cam-hik', 'hikvision-like', 250),
  camera('cam-dahua', 'dahua-like', 0),
  camera('cam-burning', 'generic', 120),
  camera('cam-flood', 'generic', 0),
  camera('cam-off', 'dahua-like', 90),
  camera('cam-ptz', 'hikvision-like', 308.8),
  camera('cam-stream', 'generic', 200),
];
const byId = new Map(CAMERAS.map((c) => [c.id, c]));

let fleet: CameraFleet;
let rtsp: RtspServer;
beforeAll(async () => {
  rtsp = await startRtspServer({ host: '127.0.0.1', port: 0, isKnown: (id) => byId.has(id) });
  fleet = await startCameraFleet(
    CAMERAS.map((d) => ({ id: d.id, headingDeg: d.settings.headingDeg, vendor: d.settings.vendor })),
    {
      username: USER,
      password: PASS,
      streamUrlFor: (id) => rtsp.urlFor(id),
      seed: 9,
      // short long polls: stop() unsubscribes promptly; a fast head: preset moves in < 1 s
      events: { maxPullTimeoutMs: 1000 },
      ptz: { maxPanDegPerSec: 360 },
      discovery: { host: '127.0.0.1', port: 0 },
    },
  );
});
afterAll(async () => {
  await fleet?.close();
  await rtsp?.close();
});

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

type Ev = Extract<Reading, { channel: 'event' }>;
type Tel = Extract<Reading, { channel: 'telemetry'; kind: 'camera' }>;
type Ack = Extract<Reading, { channel: 'ack' }>;

async function watch(ids: string[], opts: Partial<CameraCollectorOptions> = {}) {
  const readings: Reading[] = [];
  const targets = ids.map((id) => cameraTargetFromUrl(byId.get(id)!, fleet.deviceServiceUrl(id), { username: USER, password: PASS }));
  const collector = new CameraCollector(targets, {
    ptzStatusIntervalMs: 300,
    streamCheckIntervalMs: 600_000,
    maxBackoffMs: 1000,
    initialBackoffMs: 200,
    requestTimeoutMs: 2000,
    ...opts,
  });
  cleanup.push(() => collector.stop());
  await collector.start({ log: pino({ level: process.env.GS_TEST_LOG === 'debug' ? 'debug' : 'silent' }), emit: (r) => void readings.push(r) });
  const of = <T extends Reading>(channel: T['channel'], id?: string) => readings.filter((r): r is T => r.channel === channel && (id === undefined || r.deviceId === id));
  return {
    collector,
    readings,
    events: (id?: string) => of<Ev>('event', id),
    tel: (id?: string) => of<Tel>('telemetry', id),
    acks: (cmdId: string) => of<Ack>('ack').filter((a) => a.cmdId === cmdId),
    send: (id: string, command: Omit<DeviceCommand, 'ts'>) => collector.handleCommand(id, { ts: Date.now(), ...command }),
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isTerminal = (s: string) => ['done', 'failed', 'rejected', 'preempted', 'expired'].includes(s);

function expectValid(readings: Reading[]): void {
  for (const r of readings) {
    const base = { ts: r.ts, seq: 1 };
    if (r.channel === 'event') expect(validate.event(JSON.stringify({ ...base, ...r.event })), JSON.stringify(r)).toMatchObject({ ok: true });
    if (r.channel === 'telemetry') expect(validate.telemetry('camera', JSON.stringify({ ...base, values: r.values })), JSON.stringify(r)).toMatchObject({ ok: true });
    if (r.channel === 'ack') expect(validate.ack(JSON.stringify({ ...base, cmdId: r.cmdId, status: r.status, ...(r.reason ? { reason: r.reason } : {}) }))).toMatchObject({ ok: true });
  }
}

describe('camera collector: PTZ commands and stream checks', () => {
  it('PTZ: goto preset by name → accepted, done, and the pan report shows the preset bearing; move, stop, refusals', async () => {
    const h = await watch(['cam-ptz']);
    await until(() => h.tel('cam-ptz').length >= 1, 'first position');
    expect(h.tel('cam-ptz')[0]!.values.panDeg).toBe(308.8);

    h.send('cam-ptz', { id: 'go-east', name: 'ptz.goto_preset', params: { preset: '东' } });
    await until(() => h.acks('go-east').some((a) => isTerminal(a.status)), 'goto done');
    expect(h.acks('go-east').map((a) => a.status)).toEqual(['accepted', 'done']);
    expect(h.acks('go-east')[0]!.reason).toBe('preset 2 (东) at 90°');
    const afterDone = h.tel('cam-ptz').filter((t) => t.ts > h.acks('go-east')[0]!.ts);
    expect(afterDone.at(-1)!.values.panDeg).toBe(90);
    expect(fleet.camera('cam-ptz').panBearingDeg).toBeCloseTo(90, 1);

    h.send('cam-ptz', { id: 'go-3', name: 'ptz.goto_preset', params: { preset: 3, speed: 1 } }); // a token
    await until(() => h.acks('go-3').some((a) => isTerminal(a.status)), 'goto 3 done');
    expect(h.acks('go-3').map((a) => a.status)).toEqual(['accepted', 'done']);
    expect(h.tel('cam-ptz').at(-1)!.values.panDeg).toBe(180);

    h.send('cam-ptz', { id: 'mv-1', name: 'ptz.move', params: { pan: 0.25, durationMs: 400 } });
    await until(() => h.acks('mv-1').some((a) => isTerminal(a.status)), 'move done');
    expect(h.acks('mv-1').map((a) => a.status)).toEqual(['accepted', 'done']);
    const moved = h.tel('cam-ptz').at(-1)!.values.panDeg!;
    expect(moved).toBeGreaterThan(190); // 0.25 × 360 °/s for ~0.4 s ≈ +36°, clockwise
    expect(moved).toBeLessThan(260);
    await sleep(300);
    expect(fleet.camera('cam-ptz').ptzStatus().panTiltMoving).toBe(false); // the agent's Stop held it

    // a newer command pre-empts a running one; ptz.stop ends any motion
    h.send('cam-ptz', { id: 'mv-2', name: 'ptz.move', params: { pan: -0.2, durationMs: 5000 } });
    await until(() => h.acks('mv-2').length >= 1, 'mv-2 accepted');
    h.send('cam-ptz', { id: 'stop-1', name: 'ptz.stop', params: {} });
    await until(() => h.acks('stop-1').some((a) => isTerminal(a.status)), 'stop done');
    expect(h.acks('mv-2').map((a) => [a.status, a.reason])).toEqual([
      ['accepted', 'moving for 5000 ms'],
      ['preempted', 'superseded by stop-1'],
    ]);
    expect(h.acks('stop-1').map((a) => a.status)).toEqual(['accepted', 'done']);
    expect(fleet.camera('cam-ptz').ptzStatus().panTiltMoving).toBe(false);

    h.send('cam-ptz', { id: 'bad-1', name: 'ptz.goto_preset', params: { preset: 'nowhere' } });
    h.send('cam-ptz', { id: 'bad-2', name: 'ptz.move', params: { pan: 2 } });
    h.send('cam-ptz', { id: 'bad-3', name: 'broadcast.play', params: { text: 'x' } });
    h.send('cam-ptz', { id: 'bad-4', name: 'snapshot.capture', params: {} });
    await until(() => ['bad-1', 'bad-2', 'bad-3', 'bad-4'].every((id) => h.acks(id).length > 0), 'refusals');
    expect(h.acks('bad-1')).toMatchObject([{ status: 'rejected', reason: 'no preset "nowhere" on this camera (presets: 1 北, 2 东, 3 南, 4 西)' }]);
    expect(h.acks('bad-2')).toMatchObject([{ status: 'rejected', reason: 'pan must be a velocity in −1..1' }]);
    expect(h.acks('bad-3')).toMatchObject([{ status: 'rejected', reason: 'broadcast.play is not a camera command' }]);
    expect(h.acks('bad-4')).toMatchObject([{ status: 'rejected' }]);
    expectValid(h.readings);
  });

  it('stream check: streamOk with fps; a stopped stream opens video_loss, restored closes it', async () => {
    const h = await watch(['cam-stream'], { streamCheckIntervalMs: 1500, streamRecheckMs: 300, streamProbeTimeoutMs: 10_000 });
    await until(() => h.tel('cam-stream').some((t) => t.values.streamOk !== undefined), 'first stream check', 15_000);
    expect(h.tel('cam-stream').find((t) => t.values.streamOk !== undefined)!.values).toEqual({ streamOk: true, fps: 15 });
    await rtsp.stopStream('cam-stream');
    await until(() => h.events().length === 1, 'video_loss start', 15_000);
    expect(h.events()[0]!.event).toMatchObject({ type: 'video_loss', phase: 'start', severity: 'warning', source: 'rtsp' });
    expect(h.events()[0]!.event.message).toMatch(/503|Server Error/);
    // two failed checks (the second a quick confirmation) before the loss
    expect(h.tel('cam-stream').filter((t) => t.values.streamOk === false).length).toBeGreaterThanOrEqual(2);
    rtsp.restoreStream('cam-stream');
    await until(() => h.events().length === 2, 'video_loss end', 15_000);
    expect(h.events()[1]!.event).toMatchObject({ type: 'video_loss', phase: 'end' });
    expect(h.tel('cam-stream').at(-1)!.values).toEqual({ streamOk: true, fps: 15 });
    expect(h.collector.stats().probesRunning).toBeLessThanOrEqual(2);
  }, 45_000);
});

describe('discovery', () => {
  it('finds the cameras that answer a Probe and are not in the ledger (by name scope or by onvif_url)', async () => {
    const ledger: LedgerDevice[] = [
      byId.get('cam-gen')!,
      byId.get('cam-hik')!,
      { ...camera('cam-9999', 'dahua-like', 0), settings: { ...camera('cam-9999', 'dahua-like', 0).settings, onvifUrl: fleet.deviceServiceUrl('cam-dahua').replace('http://', `http://${USER}:x@`) } },
    ];
    fleet.camera('cam-flood').setOffline(true); // offline cameras do not answer
    try {
      const found = await discoverCameras({ address: { host: '127.0.0.1', port: fleet.discoveryPort! }, timeoutMs: 1500, ledger });
      const names = found.map((c) => c.name).sort();
      expect(names).toEqual(['cam-burning', 'cam-off', 'cam-ptz', 'cam-stream']);
      const ptz = found.find((c) => c.name === 'cam-ptz')!;
      expect(ptz.xaddr).toBe(fleet.deviceServiceUrl('cam-ptz'));
      expect(ptz.endpointReference).toBe(fleet.camera('cam-ptz').endpointReference);
      expect(ptz.scopes).toContain('onvif://www.onvif.org/type/ptz');
      expect(ptz.hardware).toBe('DS-2TD6267-SIM');
      expect(ptz.types).toContain('dn:NetworkVideoTransmitter');
      const all = await discoverCameras({ address: { host: '127.0.0.1', port: fleet.discoveryPort! }, timeoutMs: 1000 });
      expect(all).toHaveLength(CAMERAS.length - 1);
    } finally {
      fleet.camera('cam-flood').setOffline(false);
    }
  });
});
