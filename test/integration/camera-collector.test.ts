/**
 * The camera collector against the simulated ONVIF fleet over real sockets, with short
 * intervals: online/offline, fire alarms per vendor (bearing, confidence, temperature), an alarm
 * already burning at subscription, event floods, connect pacing, and the client's event loop
 * dying and being restarted. PTZ commands, stream checks and discovery are in
 * camera-collector-ptz-stream.test.ts; the path through a real gateway in
 * camera-collector-gateway.test.ts.
 */
import onvif, { type Cam } from 'onvif';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { CameraCollector, cameraTargetFromUrl, type CameraCollectorOptions, type CameraDevice } from '../../edge-agent/src/collectors/camera.js';
import type { CameraVendor } from '../../config/ledger.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import { validate } from '../../protocol/validate.js';
import { startCameraFleet, type CameraFleet } from '../../simulators/src/camera/index.js';

const USER = 'admin';
const PASS = 'cam-pass-1';

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
];
const byId = new Map(CAMERAS.map((c) => [c.id, c]));

let fleet: CameraFleet;
beforeAll(async () => {
  fleet = await startCameraFleet(
    CAMERAS.map((d) => ({ id: d.id, headingDeg: d.settings.headingDeg, vendor: d.settings.vendor })),
    {
      username: USER,
      password: PASS,
      streamUrlFor: (id) => `rtsp://127.0.0.1:9/${id}`, // stream checks are in the other file
      seed: 7,
      // short long polls: loops cycle and unsubscribe promptly
      events: { maxPullTimeoutMs: 1000 },
    },
  );
});
afterAll(async () => {
  await fleet?.close();
});

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

type Ev = Extract<Reading, { channel: 'event' }>;
type Tel = Extract<Reading, { channel: 'telemetry'; kind: 'camera' }>;
type Ack = Extract<Reading, { channel: 'ack' }>;
type State = Extract<Reading, { channel: 'state' }>;

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
    states: (id?: string) => of<State>('state', id),
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

function expectValid(readings: Reading[]): void {
  for (const r of readings) {
    const base = { ts: r.ts, seq: 1 };
    if (r.channel === 'event') expect(validate.event(JSON.stringify({ ...base, ...r.event })), JSON.stringify(r)).toMatchObject({ ok: true });
    if (r.channel === 'telemetry') expect(validate.telemetry('camera', JSON.stringify({ ...base, values: r.values })), JSON.stringify(r)).toMatchObject({ ok: true });
    if (r.channel === 'ack') expect(validate.ack(JSON.stringify({ ...base, cmdId: r.cmdId, status: r.status, ...(r.reason ? { reason: r.reason } : {}) }))).toMatchObject({ ok: true });
    if (r.channel === 'state') expect(validate.state(JSON.stringify({ ...base, status: r.status, ...(r.reason ? { reason: r.reason } : {}) }))).toMatchObject({ ok: true });
  }
}

describe('camera collector ↔ simulated ONVIF cameras', () => {
  it('connects each camera, reports it online once with its pan as a compass bearing, and unsubscribes on stop', async () => {
    const ids = ['cam-gen', 'cam-hik', 'cam-dahua'];
    const h = await watch(ids);
    await until(() => ids.every((id) => h.tel(id).length > 0) && h.collector.stats().online === 3, 'online and first telemetry');
    // x = 0 faces the ledger heading
    expect(ids.map((id) => h.tel(id)[0]!.values)).toEqual([
      { panDeg: 30, tiltDeg: 0, zoom: 0 },
      { panDeg: 250, tiltDeg: 0, zoom: 0 },
      { panDeg: 0, tiltDeg: 0, zoom: 0 },
    ]);
    await until(() => ids.every((id) => fleet.camera(id).subscriptionCount === 1), 'one pull point per camera');
    await sleep(1500); // several status polls and long polls later …
    expect(h.states().map((s) => [s.deviceId, s.status])).toEqual(ids.map((id) => [id, 'online']));
    // … unchanged positions are not re-sent before the heartbeat (every 6th poll)
    expect(h.tel('cam-gen').length).toBeLessThanOrEqual(2);
    expect(ids.map((id) => fleet.camera(id).subscriptionCount)).toEqual([1, 1, 1]);
    await h.collector.stop();
    expect(ids.map((id) => fleet.camera(id).subscriptionCount)).toEqual([0, 0, 0]);
    expectValid(h.readings);
  });

  it('fire on a generic and a hikvision-like camera: start with the bearing in degrees and confidence 0–1; clear → end', async () => {
    const h = await watch(['cam-gen', 'cam-hik', 'cam-dahua']);
    await until(() => h.collector.stats().events.notifications >= 12, 'Initialized states of all three');
    fleet.camera('cam-gen').raiseFire({ kind: 'fire', bearingDeg: 63.5, confidence: 0.87, temperatureC: 412 });
    fleet.camera('cam-hik').raiseFire({ kind: 'fire', bearingDeg: 211.26, confidence: 0.8 });
    fleet.camera('cam-dahua').raiseFire({ kind: 'smoke', bearingDeg: 12.34, confidence: 0.66 });
    await until(() => h.events().length >= 3, 'three alarms');
    expect(h.events('cam-gen')[0]!.event).toMatchObject({
      type: 'fire',
      phase: 'start',
      severity: 'critical',
      bearingDeg: 63.5,
      confidence: 0.87,
      temperatureC: 412, // sent as 685.15 K
      source: 'tns1:VideoSource/RadiometryAlarm',
    });
    // Azimuth 2113 (tenths) → 211.3°, Confidence 80 (%) → 0.8
    expect(h.events('cam-hik')[0]!.event).toMatchObject({ type: 'fire', phase: 'start', bearingDeg: 211.3, confidence: 0.8, source: 'tns1:RuleEngine/FireDetector/FireAlarm' });
    expect(h.events('cam-hik')[0]!.event.temperatureC).toBeUndefined();
    expect(h.events('cam-dahua')[0]!.event).toMatchObject({ type: 'smoke', phase: 'start', bearingDeg: 12.3, confidence: 0.66 });

    fleet.camera('cam-gen').clearFire();
    fleet.camera('cam-hik').clearFire();
    fleet.camera('cam-dahua').clearFire();
    await until(() => h.events().length >= 6, 'three ends');
    for (const id of ['cam-gen', 'cam-hik', 'cam-dahua']) {
      expect(h.events(id).map((e) => e.event.phase)).toEqual(['start', 'end']);
      expect(h.events(id)[1]!.event).toMatchObject({ severity: 'info' });
      expect(h.events(id)[1]!.ts).toBeGreaterThan(h.events(id)[0]!.ts);
    }
    // the camera turned to the fire: the pan report follows
    await until(() => h.tel('cam-gen').some((t) => t.values.panDeg === 63.5), 'pan at the fire');
    expect(h.collector.stats().events).toMatchObject({ forwarded: 6, rateLimited: 0, invalid: 0 });
    expectValid(h.readings);
  });

  it('a fire already burning when the collector subscribes starts at once (Initialized), a new bearing is a pulse update', async () => {
    const sim = fleet.camera('cam-burning');
    sim.raiseFire({ kind: 'fire', bearingDeg: 140.2, confidence: 0.95, temperatureC: 300 });
    const h = await watch(['cam-burning']);
    await until(() => h.events().length >= 1, 'the burning fire');
    expect(h.events()[0]!.event).toMatchObject({ type: 'fire', phase: 'start', bearingDeg: 140.2, temperatureC: 300, message: expect.stringContaining('already active') });
    await sleep(1100); // past the rate-limit window
    sim.raiseFire({ kind: 'fire', bearingDeg: 151.7, confidence: 0.97 });
    await until(() => h.events().length >= 2, 'the update');
    expect(h.events()[1]!.event).toMatchObject({ type: 'fire', phase: 'pulse', bearingDeg: 151.7, confidence: 0.97 });
    sim.setDetection('fire', false); // Deleted: logged, the alarm stays open
    await sleep(800);
    expect(h.events()).toHaveLength(2);
    expect(h.collector.cameraStats('cam-burning')!.deleted).toBe(1);
    sim.clearFire();
    sim.setDetection('fire', true); // Initialized false: the fire went out while the rule was off
    await until(() => h.events().length >= 3, 'the end');
    expect(h.events()[2]!.event).toMatchObject({ type: 'fire', phase: 'end' });
  });

  it('an event flood does not flood the uplink: motion is dropped and counted, a flapping detector becomes a few events', async () => {
    const sim = fleet.camera('cam-flood');
    const h = await watch(['cam-flood']);
    await until(() => (h.collector.cameraStats('cam-flood')?.notifications ?? 0) >= 4, 'Initialized');
    sim.flood(1000);
    await until(() => h.collector.cameraStats('cam-flood')!.unmapped >= 1001, 'the motion flood pulled', 20_000);
    expect(h.events()).toHaveLength(0);

    sim.flood(999, { kind: 'fire' }); // 999 low-confidence flaps, ending on
    // 3 Initialized states + 999 flaps
    await until(() => h.collector.cameraStats('cam-flood')!.received >= 1002, 'the fire flaps pulled', 20_000);
    // held-back transitions go out one window apart until the gateway has the camera's final state
    const settled = () => {
      const s = h.collector.cameraStats('cam-flood')!;
      return s.forwarded + s.rateLimited + s.unchanged === s.received;
    };
    await until(settled, 'nothing held back', 8000);
    const phases = h.events().map((e) => e.event.phase);
    expect(phases.length).toBeGreaterThanOrEqual(1);
    expect(phases.length).toBeLessThanOrEqual(6);
    expect(phases[0]).toBe('start');
    expect(phases.at(-1)).toBe('start');
    for (let i = 1; i < phases.length; i++) expect(phases[i]).not.toBe(phases[i - 1]);
    const s = h.collector.cameraStats('cam-flood')!;
    expect(s.forwarded).toBe(phases.length);
    expect(s.rateLimited).toBeGreaterThanOrEqual(999 - phases.length - 1);
    expect(s.rateLimited + s.forwarded + s.unchanged).toBe(s.received);
    sim.clearFire();
    await until(() => h.events().at(-1)?.event.phase === 'end', 'the end after the flood');
  });

  it('a camera that goes dark is reported offline once with the reason, and online once when it is back', async () => {
    const sim = fleet.camera('cam-off');
    const h = await watch(['cam-off'], { requestTimeoutMs: 800 });
    await until(() => h.states().length === 1 && h.collector.cameraStats('cam-off')!.notifications >= 4, 'online and subscribed');
    sim.setOffline(true); // power loss: requests hang unanswered
    await until(() => h.states().length === 2, 'offline');
    expect(h.states()[1]).toMatchObject({ status: 'offline', reason: 'no answer within 800 ms' });
    await sleep(2500); // reconnect attempts fail meanwhile, silently
    sim.setOffline(false);
    await until(() => h.states().length === 3, 'online again', 15_000);
    expect(h.states().map((s) => s.status)).toEqual(['online', 'offline', 'online']);
    // a fresh subscription: alarms arrive again
    await until(() => sim.subscriptionCount >= 1, 'subscribed again');
    await sleep(200);
    sim.raiseFire({ kind: 'fire', bearingDeg: 45 });
    await until(() => h.events().length === 1, 'fire after reconnect');
    expect(h.events()[0]!.event).toMatchObject({ type: 'fire', phase: 'start', bearingDeg: 45 });
    sim.clearFire();
    sim.setOffline(true, 'reset'); // connections reset at once
    await until(() => h.states().length === 4, 'offline (reset)');
    expect(h.states()[3]!.reason).toMatch(/connection reset|connection refused|socket hang up/);
    sim.setOffline(false);
    await until(() => h.states().length === 5, 'online after the reset', 15_000);
    expectValid(h.readings);
  });

});

describe('camera collector: connect pacing and the client event loop', () => {
  it('connects are capped and spaced: never more than maxConcurrentConnects at once, at most connectsPerSecond', async () => {
    const ids = ['cam-gen', 'cam-hik', 'cam-dahua', 'cam-burning', 'cam-flood', 'cam-ptz'];
    const started = Date.now();
    let peak = 0;
    const h = await watch(ids, { maxConcurrentConnects: 2, connectsPerSecond: 10 });
    await until(() => {
      peak = Math.max(peak, h.collector.stats().connectsInProgress);
      return h.states().length === ids.length;
    }, 'all online');
    expect(peak).toBeLessThanOrEqual(2);
    const times = h.states().map((s) => s.ts - started);
    // six starts 100 ms apart: the last cannot begin before 500 ms
    expect(Math.max(...times)).toBeGreaterThanOrEqual(500);
  });

  it('when the client\'s event loop dies (CreatePullPointSubscription refused), it is restarted and alarms flow again', async () => {
    const own = await startCameraFleet([{ id: 'cam-full', headingDeg: 10, vendor: 'generic' }], {
      username: USER,
      password: PASS,
      streamUrlFor: (id) => `rtsp://127.0.0.1:9/${id}`,
      seed: 8,
      events: { maxPullTimeoutMs: 500, maxSubscriptionsPerCamera: 1, maxSubscriptionTtlMs: 2500 },
    });
    cleanup.push(() => own.close());
    // Someone else holds the camera's only pull point for 2.5 s (no pull loop: it is not renewed).
    const blocker = await new Promise<Cam>((resolve, reject) => {
      const c: Cam = new onvif.Cam({ hostname: '127.0.0.1', port: own.port, path: '/onvif/cam-full/device_service', username: USER, password: PASS, autoconnect: false });
      c.connect((err) => (err ? reject(err) : resolve(c)));
    });
    await new Promise<void>((resolve, reject) => blocker.createPullPointSubscription((err) => (err ? reject(err) : resolve())));
    expect(own.camera('cam-full').subscriptionCount).toBe(1);

    const readings: Reading[] = [];
    const target = cameraTargetFromUrl(camera('cam-full', 'generic', 10), own.deviceServiceUrl('cam-full'), { username: USER, password: PASS });
    const collector = new CameraCollector([target], { ptzStatusIntervalMs: 300, streamCheckIntervalMs: 600_000, maxBackoffMs: 800, initialBackoffMs: 200, requestTimeoutMs: 2000 });
    cleanup.push(() => collector.stop());
    await collector.start({ log: pino({ level: 'silent' }), emit: (r) => void readings.push(r) });
    await until(() => (collector.cameraStats('cam-full')?.eventLoopRestarts ?? 0) >= 1, 'the dead loop noticed');
    expect(readings.filter((r) => r.channel === 'state').map((r) => (r as State).status)).toEqual(['online']); // the camera itself is fine
    await until(() => (collector.cameraStats('cam-full')?.notifications ?? 0) >= 4, 'subscribed once the slot is free', 15_000);
    own.camera('cam-full').raiseFire({ kind: 'fire', bearingDeg: 222.2 });
    await until(() => readings.some((r) => r.channel === 'event'), 'the fire');
    expect((readings.find((r) => r.channel === 'event') as Ev).event).toMatchObject({ type: 'fire', phase: 'start', bearingDeg: 222.2 });
  });
});
