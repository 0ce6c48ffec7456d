/**
 * The camera collector's pure parts: the vendor mapping table against what the simulated cameras
 * send (parsed by the `onvif` client's own parser, as the client hands it over), the per-camera
 * alarm limiter (fake timers), pan ↔ bearing, and the PTZ command parameter contract.
 */
import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CAMERA_VENDORS } from '../../config/ledger.js';
import {
  AlarmLimiter,
  CAMERA_EVENT_MAPPINGS,
  interpret,
  mergeEventMappings,
  readNotification,
  type AlarmInput,
  type LimitedEvent,
} from '../../edge-agent/src/collectors/camera-events.js';
import { bearingToPanX, panXToBearing, parseGotoPresetParams, parseMoveParams, parseStopParams, ptzValues } from '../../edge-agent/src/collectors/camera-ptz.js';
import { cameraTargetFromUrl, cameraTargetsFromLedger, type CameraDevice } from '../../edge-agent/src/collectors/camera.js';
import { redactUrl, withCredentials, JobQueue } from '../../edge-agent/src/collectors/camera-stream.js';
import { SimCameraImpl } from '../../simulators/src/camera/camera.js';
import { DEFAULT_PTZ_LIMITS } from '../../simulators/src/camera/ptz.js';
import { ALARM_KINDS, MOTION_TOPIC, VENDOR_PROFILES, type AlarmKind, type CameraVendor } from '../../simulators/src/camera/vendors.js';
import { validate } from '../../protocol/validate.js';

const onvifUtils = createRequire(import.meta.url)('onvif/lib/utils.js') as {
  parseSOAPString(xml: string, cb: (err: Error | null, data: unknown) => void, status: number): void;
  linerase(x: unknown): any;
};

/** A simulated camera's notifications, as the `onvif` client's pull loop emits them. */
async function asClientSees(xml: string): Promise<unknown[]> {
  const envelope =
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><tev:PullMessagesResponse>' +
    '<tev:CurrentTime>2025-04-01T06:30:12Z</tev:CurrentTime><tev:TerminationTime>2025-04-01T06:32:12Z</tev:TerminationTime>' +
    `${xml}</tev:PullMessagesResponse></env:Body></env:Envelope>`;
  const body = await new Promise<unknown>((resolve, reject) =>
    onvifUtils.parseSOAPString(envelope, (err, data) => (err ? reject(err) : resolve(data)), 200),
  );
  const m = onvifUtils.linerase(body).pullMessagesResponse.notificationMessage;
  return Array.isArray(m) ? m : [m];
}

function simCamera(vendor: CameraVendor): SimCameraImpl {
  return new SimCameraImpl(
    { id: 'cam-0042', headingDeg: 30, vendor },
    { now: () => Date.parse('2025-04-01T06:30:12.345Z'), seed: 1, defaultVendor: 'generic', ptzLimits: DEFAULT_PTZ_LIMITS, maxQueuedMessages: 100, maxSubscriptions: 1 },
  );
}

const TYPE_OF: Record<AlarmKind, string> = { fire: 'fire', smoke: 'smoke', temperature: 'temperature_alarm' };

describe('vendor mapping table', () => {
  it('has an entry for every ledger vendor', () => {
    expect(Object.keys(CAMERA_EVENT_MAPPINGS).sort()).toEqual([...CAMERA_VENDORS].sort());
  });

  for (const vendor of CAMERA_VENDORS) {
    it(`${vendor}: every alarm kind maps to its type, with bearing in degrees, confidence 0–1 and °C`, async () => {
      const cam = simCamera(vendor);
      const sub = cam.createSubscription(() => true, Infinity)!;
      const initial = await sub.pull(100, 0);
      for (const raw of await asClientSees(initial.map((m) => m.xml).join(''))) {
        const it = interpret(CAMERA_EVENT_MAPPINGS[vendor]!, readNotification(raw)!);
        if (it.kind === 'unmapped') expect(it.topic).toBe(MOTION_TOPIC.topic);
        else expect(it).toMatchObject({ kind: 'alarm', operation: 'Initialized', active: false });
      }
      for (const kind of ALARM_KINDS) {
        cam.raiseFire({ kind, bearingDeg: 211.26, confidence: 0.87, temperatureC: 412.3 });
        const [raised] = await asClientSees((await sub.pull(100, 0)).map((m) => m.xml).join(''));
        const it = interpret(CAMERA_EVENT_MAPPINGS[vendor]!, readNotification(raised)!);
        expect(it.kind).toBe('alarm');
        if (it.kind !== 'alarm') continue;
        expect(it.topic).toBe(VENDOR_PROFILES[vendor].topics[kind].topic);
        expect(it.mapping.type).toBe(TYPE_OF[kind]);
        expect(it.operation).toBe('Changed');
        expect(it.active).toBe(true);
        // hikvision-like sends tenths (2113 → 211.3); the others degrees to 1 or 2 decimals
        expect(it.details.bearingDeg).toBeCloseTo(211.3, 1);
        expect(it.details.confidence).toBe(0.87);
        expect(it.details.temperatureC).toBeCloseTo(412.3, 1);
        cam.clearFire(kind);
        const [cleared] = await asClientSees((await sub.pull(100, 0)).map((m) => m.xml).join(''));
        expect(interpret(CAMERA_EVENT_MAPPINGS[vendor]!, readNotification(cleared)!)).toMatchObject({ kind: 'alarm', active: false, details: {} });
      }
      cam.setDetection('fire', false);
      const [deleted] = await asClientSees((await sub.pull(100, 0)).map((m) => m.xml).join(''));
      expect(interpret(CAMERA_EVENT_MAPPINGS[vendor]!, readNotification(deleted)!)).toMatchObject({ kind: 'deleted' });
    });
  }

  it('the same topic means fire on a generic camera and a temperature alarm on a hikvision-like one', () => {
    const n = { topic: 'tns1:VideoSource/RadiometryAlarm', operation: 'Changed', data: new Map<string, unknown>([['State', true]]) };
    expect(interpret(CAMERA_EVENT_MAPPINGS['generic']!, n)).toMatchObject({ kind: 'alarm', mapping: { type: 'fire' } });
    expect(interpret(CAMERA_EVENT_MAPPINGS['hikvision-like']!, n)).toMatchObject({ kind: 'alarm', mapping: { type: 'temperature_alarm' } });
  });

  it('reads string values too, and refuses a message without its state item', () => {
    const m = CAMERA_EVENT_MAPPINGS['hikvision-like']!;
    const n = (data: Array<[string, unknown]>) => ({ topic: 'tns1:RuleEngine/FireDetector/FireAlarm', operation: 'Changed', data: new Map(data) });
    expect(interpret(m, n([['IsFireAlarm', 'true'], ['Azimuth', '3599'], ['Confidence', '50']]))).toMatchObject({ active: true, details: { bearingDeg: 359.9, confidence: 0.5 } });
    expect(interpret(m, n([['State', true]]))).toMatchObject({ kind: 'invalid' });
    // a confidence outside 0–1 after scaling is left out rather than sent wrong
    expect(interpret(m, n([['IsFireAlarm', true], ['Confidence', 250]]))).toMatchObject({ details: {} });
  });

  it('a deployment adds a vendor or a topic without repeating the built-in table', () => {
    const merged = mergeEventMappings({
      'acme-thermal': { topics: { 'tns1:RuleEngine/Acme/Fire': { type: 'fire', stateItem: 'Active' } }, bearing: { item: 'Pan', scale: 100 } },
      generic: { topics: { [MOTION_TOPIC.topic]: { type: 'motion', stateItem: 'State', kind: 'pulse' } } },
    });
    expect(Object.keys(merged['generic']!.topics)).toHaveLength(4);
    expect(merged['hikvision-like']).toBe(CAMERA_EVENT_MAPPINGS['hikvision-like']);
    const it = interpret(merged['acme-thermal']!, { topic: 'tns1:RuleEngine/Acme/Fire', operation: 'Changed', data: new Map<string, unknown>([['Active', true], ['Pan', 4550]]) });
    expect(it).toMatchObject({ kind: 'alarm', mapping: { type: 'fire' }, details: { bearingDeg: 45.5 } });
    expect(() => mergeEventMappings({ bad: { topics: { x: { type: 'fire', stateItem: '' } } } })).toThrow(/stateItem/);
  });
});

describe('alarm limiter', () => {
  let events: LimitedEvent[];
  let limiter: AlarmLimiter;
  const input = (active: boolean, extra: Partial<AlarmInput> = {}) =>
    limiter.input({ type: 'fire', kind: 'state', active, details: active ? { bearingDeg: 63.5, confidence: 0.9 } : {}, source: 't', severity: 'critical', initialized: false, ts: Date.now(), ...extra });

  beforeEach(() => {
    vi.useFakeTimers({ now: Date.parse('2026-04-01T06:00:00Z') });
    events = [];
    limiter = new AlarmLimiter({ minGapMs: 1000, emit: (e) => events.push(e) });
  });
  afterEach(() => {
    limiter.close();
    vi.useRealTimers();
  });

  it('a start goes out at once; an end inside the window a window later, with the time it happened', () => {
    input(true);
    expect(events.map((e) => e.phase)).toEqual(['start']);
    vi.advanceTimersByTime(200);
    const endedAt = Date.now();
    input(false);
    expect(events).toHaveLength(1);
    vi.advanceTimersByTime(800);
    expect(events.map((e) => e.phase)).toEqual(['start', 'end']);
    expect(events[1]!.ts).toBe(endedAt);
    expect(limiter.counters).toMatchObject({ received: 2, forwarded: 2, rateLimited: 0 });
  });

  it('a new bearing on an open alarm is a pulse update; the same bearing again is nothing', () => {
    input(true);
    vi.advanceTimersByTime(2000);
    input(true, { details: { bearingDeg: 63.5, confidence: 0.95 } });
    input(true, { details: { bearingDeg: 70.2 } });
    expect(events.map((e) => [e.phase, e.details.bearingDeg])).toEqual([
      ['start', 63.5],
      ['pulse', 70.2],
    ]);
    expect(limiter.counters.unchanged).toBe(1);
  });

  it('a flapping detector: the flood becomes one event a second, transitions kept, the rest counted', () => {
    for (let i = 0; i < 1000; i++) input(i % 2 === 0, { details: { bearingDeg: 10 + (i % 7) } });
    expect(events.map((e) => e.phase)).toEqual(['start']);
    vi.advanceTimersByTime(1000);
    expect(events.map((e) => e.phase)).toEqual(['start', 'end']); // it ended closed
    vi.advanceTimersByTime(5000);
    expect(events).toHaveLength(2);
    expect(limiter.counters).toMatchObject({ received: 1000, forwarded: 2, rateLimited: 998 });
  });

  it('open → closed → open within a window: end, then start again, one window apart', () => {
    input(true);
    input(false);
    input(true, { details: { bearingDeg: 80 } });
    vi.advanceTimersByTime(1000);
    vi.advanceTimersByTime(1000);
    expect(events.map((e) => [e.phase, e.details.bearingDeg])).toEqual([
      ['start', 63.5],
      ['end', undefined],
      ['start', 80],
    ]);
  });

  it('Initialized: true opens an alarm already burning, false closes one that cleared unseen, repeats are nothing', () => {
    input(true, { initialized: true });
    input(true, { initialized: true });
    vi.advanceTimersByTime(1500);
    input(false, { initialized: true });
    expect(events.map((e) => [e.phase, e.note])).toEqual([
      ['start', 'already active when the agent subscribed'],
      ['end', 'cleared while the agent was not subscribed'],
    ]);
    input(false, { initialized: true });
    expect(events).toHaveLength(2);
  });

  it('types are limited separately; flushAll sends what is waiting', () => {
    input(true);
    input(true, { type: 'smoke' });
    input(false);
    expect(events.map((e) => `${e.type}:${e.phase}`)).toEqual(['fire:start', 'smoke:start']);
    limiter.flushAll();
    expect(events.map((e) => `${e.type}:${e.phase}`)).toEqual(['fire:start', 'smoke:start', 'fire:end']);
    expect(limiter.openTypes()).toEqual(['smoke']);
  });

  it('pulse-kind topics: at most one a second, the rest dropped', () => {
    for (let i = 0; i < 50; i++) input(i % 2 === 0, { type: 'motion', kind: 'pulse' });
    vi.advanceTimersByTime(1000);
    input(true, { type: 'motion', kind: 'pulse' });
    expect(events.map((e) => e.phase)).toEqual(['pulse', 'pulse']);
    expect(limiter.counters).toMatchObject({ forwarded: 2, rateLimited: 24, unchanged: 25 });
  });

  it('the events it makes are valid protocol events', () => {
    input(true, { details: { bearingDeg: 359.9, confidence: 1, temperatureC: 685.2 } });
    for (const e of events) {
      const payload = { ts: e.ts, seq: 1, type: e.type, phase: e.phase, severity: e.severity, ...e.details, source: e.source };
      expect(validate.event(JSON.stringify(payload)).ok).toBe(true);
    }
  });
});

describe('pan ↔ bearing and PTZ telemetry', () => {
  it('follows docs/devices/camera-onvif.md: heading 30°, x = 0.833333 → 180°', () => {
    expect(panXToBearing(0.833333, 30)).toBe(180);
    expect(panXToBearing(0, 308.8)).toBe(308.8);
    expect(panXToBearing(1, 0)).toBe(180);
    expect(panXToBearing(-1, 0)).toBe(180);
    expect(panXToBearing(-0.5, 30)).toBe(300);
    for (const [b, h] of [[0, 30], [359.9, 250], [180, 180], [90, 308.8]] as const) expect(panXToBearing(bearingToPanX(b, h), h)).toBeCloseTo(b, 1);
  });

  it('tilt in degrees, zoom in % of the range, pan only with a heading', () => {
    expect(ptzValues({ x: 0.5, y: -0.1, zoom: 0.25 }, 250)).toEqual({ panDeg: 340, tiltDeg: -9, zoom: 25 });
    expect(ptzValues({ x: 0.5, y: 0, zoom: 0 }, undefined)).toEqual({ tiltDeg: 0, zoom: 0 });
    expect(ptzValues({}, 10)).toBeUndefined();
    const v = ptzValues({ x: 0.999999, y: 1, zoom: 1 }, 180)!;
    expect(validate.telemetry('camera', JSON.stringify({ ts: Date.now(), seq: 1, values: v })).ok).toBe(true);
  });
});

describe('PTZ command params', () => {
  it('ptz.goto_preset: a token or a name, optional speed', () => {
    expect(parseGotoPresetParams({ preset: '南' })).toEqual({ preset: '南' });
    expect(parseGotoPresetParams({ preset: 3, speed: 0.5 })).toEqual({ preset: '3', speed: 0.5 });
    expect(parseGotoPresetParams({})).toMatch(/preset must be/);
    expect(parseGotoPresetParams({ preset: '' })).toMatch(/preset must be/);
    expect(parseGotoPresetParams({ preset: '1', speed: 2 })).toMatch(/speed/);
    expect(parseGotoPresetParams({ preset: '<x/>' })).toMatch(/must not contain/);
    expect(parseGotoPresetParams({ preset: '1', pan: 1 })).toMatch(/unknown param "pan"/);
  });

  it('ptz.move: velocities −1..1, at least one non-zero, durationMs 100–60000 (default 1000)', () => {
    expect(parseMoveParams({ pan: 0.5 })).toEqual({ pan: 0.5, tilt: 0, zoom: 0, durationMs: 1000 });
    expect(parseMoveParams({ pan: -1, tilt: 0.2, zoom: 1, durationMs: 2500 })).toEqual({ pan: -1, tilt: 0.2, zoom: 1, durationMs: 2500 });
    expect(parseMoveParams({})).toMatch(/non-zero/);
    expect(parseMoveParams({ pan: 1.5 })).toMatch(/pan must be/);
    expect(parseMoveParams({ pan: '1' })).toMatch(/pan must be/);
    expect(parseMoveParams({ pan: 1, durationMs: 50 })).toMatch(/durationMs/);
    expect(parseMoveParams({ pan: 1, durationMs: 1.5e5 })).toMatch(/durationMs/);
  });

  it('ptz.stop takes nothing', () => {
    expect(parseStopParams({})).toBe(true);
    expect(parseStopParams({ now: true })).toMatch(/unknown param "now" \(known: none\)/);
  });
});

describe('targets and URLs', () => {
  const device: CameraDevice = {
    id: 'cam-0001',
    kind: 'camera',
    name: 'x',
    lat: 29.4,
    lon: 105.9,
    grid: 'G1',
    community: 'c',
    agent: 'a',
    settings: { headingDeg: 10, viewRangeM: 5000, vendor: 'generic', rtspUrl: 'rtsp://10.0.0.5:554/main' },
  };
  it('an onvif_url with or without credentials', () => {
    expect(cameraTargetFromUrl(device, 'http://op%40site:p%3Ass@10.0.0.5:8080/onvif/device_service', { username: 'admin', password: 'x' })).toEqual({
      device,
      onvif: { hostname: '10.0.0.5', port: 8080, path: '/onvif/device_service', username: 'op@site', password: 'p:ss' },
      rtspUrl: 'rtsp://10.0.0.5:554/main',
    });
    expect(cameraTargetFromUrl(device, 'https://[fd00::5]/', { username: 'admin', password: 'x' }).onvif).toEqual({
      hostname: 'fd00::5',
      port: 443,
      path: '/onvif/device_service',
      username: 'admin',
      password: 'x',
      useSecure: true,
    });
    expect(() => cameraTargetFromUrl(device, 'rtsp://10.0.0.5/')).toThrow(/http/);
  });
  it('from the ledger: cameras without onvif_url are missing, a non-http one is invalid, both listed rather than fatal', () => {
    const other = { ...device, id: 'cam-0002', agent: 'b', settings: { ...device.settings, onvifUrl: 'http://10.0.0.6/onvif/device_service' } };
    const { targets, missing, invalid } = cameraTargetsFromLedger(
      [
        { ...device, settings: { ...device.settings, onvifUrl: 'http://10.0.0.5/onvif/device_service' } },
        { ...device, id: 'cam-0003', settings: { ...device.settings } },
        { ...device, id: 'cam-0004', settings: { ...device.settings, onvifUrl: 'ftp://10.0.0.7/' } },
        other,
      ],
      { agent: 'a', username: 'admin', password: 'pw' },
    );
    expect(targets.map((t) => [t.device.id, t.onvif.hostname, t.onvif.username])).toEqual([['cam-0001', '10.0.0.5', 'admin']]);
    expect(missing).toEqual(['cam-0003']);
    expect(invalid).toEqual([{ id: 'cam-0004', reason: expect.stringMatching(/http/) }]);
  });
  it('RTSP credentials are added when missing and hidden in logs', () => {
    expect(withCredentials('rtsp://10.0.0.5:554/main', 'admin', 'p@ss')).toBe('rtsp://admin:p%40ss@10.0.0.5:554/main');
    expect(withCredentials('rtsp://u:v@10.0.0.5/main', 'admin', 'x')).toBe('rtsp://u:v@10.0.0.5/main');
    expect(redactUrl('rtsp://admin:secret@10.0.0.5:554/main')).toBe('rtsp://admin:***@10.0.0.5:554/main');
  });
  it('the probe queue never runs more than its limit', async () => {
    const q = new JobQueue(2);
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 7 }, () =>
        q.run(async () => {
          peak = Math.max(peak, ++running);
          await new Promise((r) => setTimeout(r, 5));
          running--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(q.running).toBe(0);
  });
});
