/**
 * The camera simulator's SOAP plumbing without sockets: ISO 8601 durations, escaping, request
 * parsing, WS-Security UsernameToken and HTTP Digest verification, topic filters, the pull-point
 * long poll, and the Data items each vendor profile puts in an alarm.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DigestAuthority, NonceCache, verifyBasic, verifyUsernameToken } from '../../simulators/src/camera/auth.js';
import { SimCameraImpl, type CameraContext } from '../../simulators/src/camera/camera.js';
import { notification, PullPoint, topicFilter } from '../../simulators/src/camera/events.js';
import { DEFAULT_PTZ_LIMITS } from '../../simulators/src/camera/ptz.js';
import { routeOf } from '../../simulators/src/camera/urls.js';
import { VENDOR_PROFILES } from '../../simulators/src/camera/vendors.js';
import { child, esc, parseDuration, parseTerminationTime, parseXml, utcSeconds } from '../../simulators/src/camera/xml.js';

describe('xml helpers', () => {
  it('parses ISO 8601 durations as ONVIF uses them', () => {
    expect(parseDuration('PT1M')).toBe(60_000);
    expect(parseDuration('PT60S')).toBe(60_000);
    expect(parseDuration('PT0.5S')).toBe(500);
    expect(parseDuration('PT1H30M')).toBe(5_400_000);
    expect(parseDuration('P1DT2H')).toBe(26 * 3_600_000);
    expect(parseDuration('-PT5S')).toBe(-5000);
    expect(parseDuration('PT0S')).toBe(0);
    for (const bad of ['', 'P', 'PT', '60', 'PT1X', '1M', 'PTS']) expect(parseDuration(bad)).toBeUndefined();
  });

  it('termination times are durations from now or absolute times', () => {
    const now = Date.parse('2025-04-01T08:00:00Z');
    expect(parseTerminationTime('PT2M', now)).toBe(now + 120_000);
    expect(parseTerminationTime('2025-04-01T08:05:00Z', now)).toBe(now + 300_000);
    expect(parseTerminationTime('2025-04-01T16:05:00+08:00', now)).toBe(now + 300_000);
    expect(parseTerminationTime('tomorrow', now)).toBeUndefined();
  });

  it('utcSeconds is whole seconds ending in Z', () => {
    expect(utcSeconds(Date.parse('2025-04-01T08:00:01.987Z'))).toBe('2025-04-01T08:00:01Z');
  });

  it('escapes markup and drops characters XML cannot carry', () => {
    expect(esc(`a<b>&"c'\u0001`)).toBe('a&lt;b&gt;&amp;&quot;c&apos;');
    expect(esc('rtsp://h/x?a=1&b=2')).toBe('rtsp://h/x?a=1&amp;b=2');
  });

  it('parses a request into a prefix-free element tree', () => {
    const doc = parseXml(
      '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>' +
        '<ContinuousMove xmlns="http://www.onvif.org/ver20/ptz/wsdl"><ProfileToken>P &amp; 1</ProfileToken>' +
        '<Velocity><PanTilt x="0.5" y="-0.25" xmlns="http://www.onvif.org/ver10/schema"/></Velocity></ContinuousMove></s:Body></s:Envelope>',
    );
    const op = child(doc, 'Body')?.children[0];
    expect(op?.name).toBe('ContinuousMove');
    expect(child(op, 'ProfileToken')?.text).toBe('P & 1');
    expect(child(child(op, 'Velocity'), 'PanTilt')?.attrs).toMatchObject({ x: '0.5', y: '-0.25' });
    expect(() => parseXml('<a><b></a>')).toThrow();
  });
});

describe('routes', () => {
  it('maps paths to camera, service and subscription', () => {
    expect(routeOf('/onvif/cam-0001/device_service')).toEqual({ kind: 'soap', cameraId: 'cam-0001', service: 'device' });
    expect(routeOf('/onvif/cam-0001/event_service')).toEqual({ kind: 'soap', cameraId: 'cam-0001', service: 'events' });
    expect(routeOf('/onvif/cam-0001/subscription/12')).toEqual({
      kind: 'soap',
      cameraId: 'cam-0001',
      service: 'subscription',
      subscriptionId: 12,
    });
    expect(routeOf('/onvif/device_service')).toEqual({ kind: 'soap', cameraId: undefined, service: 'device' });
    expect(routeOf('/snapshot/cam-0001.jpg')).toEqual({ kind: 'snapshot', cameraId: 'cam-0001' });
    expect(routeOf('/onvif/cam-0001/imaging_service')).toBeUndefined();
    expect(routeOf('/onvif/cam-0001/subscription/x')).toBeUndefined();
    expect(routeOf('/onvif/%E0%A4%A/device_service')).toBeUndefined();
  });
});

/** The UsernameToken a client builds, computed here independently of the simulator. */
function usernameToken(username: string, password: string, created: string, nonce = randomBytes(16)) {
  const digest = createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(password)]))
    .digest('base64');
  return parseXml(
    `<Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken>` +
      `<Username>${username}</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</Password>` +
      `<Nonce>${nonce.toString('base64')}</Nonce><Created>${created}</Created></UsernameToken></Security>`,
  );
}

describe('WS-Security UsernameToken', () => {
  const accounts = [{ username: 'admin', password: 'Gs#2025' }];
  const now = Date.parse('2025-04-01T08:00:00Z');

  it('accepts Base64(SHA1(nonce + created + password))', () => {
    expect(verifyUsernameToken(usernameToken('admin', 'Gs#2025', '2025-04-01T07:59:58.000Z'), accounts, { nowMs: now })).toEqual({
      ok: true,
      username: 'admin',
    });
  });

  it('refuses a wrong password, an unknown user, a missing header', () => {
    const created = '2025-04-01T08:00:00Z';
    expect(verifyUsernameToken(usernameToken('admin', 'nope', created), accounts, { nowMs: now })).toMatchObject({ ok: false, failure: 'bad-password' });
    expect(verifyUsernameToken(usernameToken('root', 'Gs#2025', created), accounts, { nowMs: now })).toMatchObject({ ok: false, failure: 'unknown-user' });
    expect(verifyUsernameToken(undefined, accounts, { nowMs: now })).toMatchObject({ ok: false, failure: 'missing' });
  });

  it('refuses a Created more than 5 minutes from the camera clock, either way', () => {
    const at = (ms: number) => new Date(ms).toISOString();
    expect(verifyUsernameToken(usernameToken('admin', 'Gs#2025', at(now - 299_000)), accounts, { nowMs: now }).ok).toBe(true);
    expect(verifyUsernameToken(usernameToken('admin', 'Gs#2025', at(now - 301_000)), accounts, { nowMs: now })).toMatchObject({ failure: 'clock-skew' });
    expect(verifyUsernameToken(usernameToken('admin', 'Gs#2025', at(now + 301_000)), accounts, { nowMs: now })).toMatchObject({ failure: 'clock-skew' });
  });

  it('refuses a nonce used before (replay), per camera', () => {
    const cache = new NonceCache();
    const nonce = randomBytes(16);
    const token = usernameToken('admin', 'Gs#2025', '2025-04-01T08:00:00Z', nonce);
    expect(verifyUsernameToken(token, accounts, { nowMs: now, replay: { cache, scope: 'cam-1' } }).ok).toBe(true);
    expect(verifyUsernameToken(token, accounts, { nowMs: now, replay: { cache, scope: 'cam-1' } })).toMatchObject({ failure: 'replayed-nonce' });
    expect(verifyUsernameToken(token, accounts, { nowMs: now, replay: { cache, scope: 'cam-2' } }).ok).toBe(true);
  });

  it('the nonce cache stays bounded', () => {
    const cache = new NonceCache(100);
    for (let i = 0; i < 1000; i++) cache.remember(`n${i}`, 0);
    expect(cache.size).toBe(100);
  });
});

describe('HTTP Digest and Basic', () => {
  const accounts = [{ username: 'admin', password: 'pw' }];
  const md5 = (s: string) => createHash('md5').update(s).digest('hex');

  function answer(challenge: string, method: string, uri: string, password = 'pw') {
    const nonce = /nonce="([^"]+)"/.exec(challenge)![1]!;
    const realm = /realm="([^"]+)"/.exec(challenge)![1]!;
    const ha1 = md5(`admin:${realm}:${password}`);
    const ha2 = md5(`${method}:${uri}`);
    const response = md5(`${ha1}:${nonce}:00000001:abcd:auth:${ha2}`);
    return `Digest username="admin", realm="${realm}", nonce="${nonce}", uri="${uri}", qop=auth, nc=00000001, cnonce="abcd", response="${response}", algorithm=MD5`;
  }

  it('accepts a correct RFC 7616 MD5 response and refuses a wrong one or another URI', () => {
    const auth = new DigestAuthority('GreenShield camera');
    const [challenge] = auth.challenges(1000);
    expect(auth.verify(answer(challenge!, 'GET', '/snapshot/cam-1.jpg'), 'GET', '/snapshot/cam-1.jpg', accounts, 2000).ok).toBe(true);
    expect(auth.verify(answer(challenge!, 'GET', '/snapshot/cam-1.jpg', 'x'), 'GET', '/snapshot/cam-1.jpg', accounts, 2000)).toMatchObject({ failure: 'bad-password' });
    expect(auth.verify(answer(challenge!, 'GET', '/snapshot/cam-1.jpg'), 'GET', '/snapshot/cam-2.jpg', accounts, 2000)).toMatchObject({ failure: 'malformed' });
  });

  it('calls an old nonce stale and a forged one malformed', () => {
    const auth = new DigestAuthority('r');
    const [challenge] = auth.challenges(0);
    expect(auth.verify(answer(challenge!, 'POST', '/x'), 'POST', '/x', accounts, 6 * 60_000)).toMatchObject({ failure: 'stale-nonce' });
    const forged = challenge!.replace(/nonce="[0-9a-f]+-/, 'nonce="0abc-');
    expect(auth.verify(answer(forged, 'POST', '/x'), 'POST', '/x', accounts, 1)).toMatchObject({ failure: 'malformed' });
  });

  it('Basic compares user and password', () => {
    const b = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    expect(verifyBasic(b('admin:pw'), accounts).ok).toBe(true);
    expect(verifyBasic(b('admin:pw2'), accounts).ok).toBe(false);
    expect(verifyBasic(undefined, accounts)).toMatchObject({ failure: 'missing' });
  });
});

describe('topic filters', () => {
  it('concrete topics, subtrees, one level, alternatives', () => {
    const f = topicFilter('tns1:RuleEngine//.|tns1:VideoSource/RadiometryAlarm');
    expect(f('tns1:RuleEngine/FireDetector/FireAlarm')).toBe(true);
    expect(f('tns1:VideoSource/RadiometryAlarm')).toBe(true);
    expect(f('tns1:VideoSource/MotionAlarm')).toBe(false);
    const one = topicFilter('tns1:VideoSource/*');
    expect(one('tns1:VideoSource/MotionAlarm')).toBe(true);
    expect(one('tns1:VideoSource/A/B')).toBe(false);
    expect(topicFilter('')('anything')).toBe(true);
  });
});

describe('pull point', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const msg = (i: number) => notification('tns1:VideoSource/MotionAlarm', i, 'Changed', [['Source', 'V']], [['State', String(i % 2 === 1)]]);

  it('answers at once with queued messages, up to the limit', async () => {
    const pp = new PullPoint(1, () => true, Infinity, 100);
    for (let i = 0; i < 5; i++) pp.push(msg(i));
    expect((await pp.pull(2, 60_000)).map((m) => m.utcMs)).toEqual([0, 1]);
    expect((await pp.pull(10, 60_000)).map((m) => m.utcMs)).toEqual([2, 3, 4]);
  });

  it('waits for the first message, or gives up empty after the timeout', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] });
    const pp = new PullPoint(1, () => true, Infinity, 100);
    const empty = pp.pull(10, 1000);
    await vi.advanceTimersByTimeAsync(999);
    let settled = false;
    void empty.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await empty).toEqual([]);

    const waiting = pp.pull(10, 60_000);
    await vi.advanceTimersByTimeAsync(500);
    pp.push(msg(7));
    pp.push(msg(8)); // raised together, delivered together
    await vi.advanceTimersByTimeAsync(0);
    expect((await waiting).map((m) => m.utcMs)).toEqual([7, 8]);
  });

  it('a client hanging up ends the poll without losing messages', async () => {
    const pp = new PullPoint(1, () => true, Infinity, 100);
    const ac = new AbortController();
    const poll = pp.pull(10, 60_000, ac.signal);
    ac.abort();
    expect(await poll).toEqual([]);
    pp.push(msg(1));
    expect((await pp.pull(10, 0)).length).toBe(1);
  });

  it('a full queue drops its oldest messages and counts them', async () => {
    const pp = new PullPoint(1, () => true, Infinity, 3);
    for (let i = 0; i < 10; i++) pp.push(msg(i));
    expect(pp.stats.dropped).toBe(7);
    expect((await pp.pull(10, 0)).map((m) => m.utcMs)).toEqual([7, 8, 9]);
  });

  it('a filter keeps other topics out', async () => {
    const pp = new PullPoint(1, topicFilter('tns1:RuleEngine//.'), Infinity, 10);
    pp.push(msg(1));
    expect(pp.queued).toBe(0);
  });
});

describe('alarm messages per vendor', () => {
  const ctx: CameraContext = {
    now: () => Date.parse('2025-04-01T08:00:00Z'),
    seed: 7,
    defaultVendor: 'generic',
    ptzLimits: DEFAULT_PTZ_LIMITS,
    maxQueuedMessages: 100,
    maxSubscriptions: 4,
  };

  it('generic: RadiometryAlarm State, Bearing in degrees, Temperature in kelvin', () => {
    const cam = new SimCameraImpl({ id: 'cam-1', headingDeg: 10 }, ctx);
    const raised = cam.raiseFire({ kind: 'fire', bearingDeg: 63.54, confidence: 0.87, temperatureC: 400 });
    expect(raised.topic).toBe('tns1:VideoSource/RadiometryAlarm');
    expect(raised.data).toEqual([
      ['State', 'true'],
      ['Bearing', '63.5'],
      ['Confidence', '0.87'],
      ['Temperature', '673.15'],
    ]);
    expect(cam.panBearingDeg).toBeCloseTo(63.54, 9);
  });

  it('hikvision-like: FireDetector/FireAlarm IsFireAlarm, Azimuth in tenths of a degree', () => {
    const cam = new SimCameraImpl({ id: 'cam-2', headingDeg: 10, vendor: 'hikvision-like' }, ctx);
    const raised = cam.raiseFire({ kind: 'fire', bearingDeg: 359.97, confidence: 0.9 });
    expect(raised.topic).toBe('tns1:RuleEngine/FireDetector/FireAlarm');
    expect(raised.data).toEqual([
      ['IsFireAlarm', 'true'],
      ['Azimuth', '0'], // 3599.7 rounds to 3600, which is north again
      ['Confidence', '90'],
    ]);
  });

  it('dahua-like: smoke on SmokeDetection/SmokeAlarm State, PanAngle', () => {
    const cam = new SimCameraImpl({ id: 'cam-3', vendor: 'dahua-like' }, ctx);
    const raised = cam.raiseFire({ kind: 'smoke', bearingDeg: 200.125 });
    expect(raised.topic).toBe(VENDOR_PROFILES['dahua-like'].topics.smoke.topic);
    expect(raised.data.slice(0, 2)).toEqual([
      ['State', 'true'],
      ['PanAngle', '200.13'],
    ]);
  });

  it('Initialized for each property on subscribe, Changed on raise/clear, Deleted when detection is switched off', async () => {
    const cam = new SimCameraImpl({ id: 'cam-4', vendor: 'hikvision-like' }, ctx);
    cam.raiseFire({ kind: 'smoke', bearingDeg: 10 });
    const sub = cam.createSubscription(() => true, Infinity)!;
    const init = await sub.pull(100, 0);
    expect(init.map((m) => [m.topic, m.operation])).toEqual([
      ['tns1:RuleEngine/FireDetector/FireAlarm', 'Initialized'],
      ['tns1:RuleEngine/SmokeDetector/SmokeAlarm', 'Initialized'],
      ['tns1:VideoSource/RadiometryAlarm', 'Initialized'],
      ['tns1:VideoSource/MotionAlarm', 'Initialized'],
    ]);
    expect(init[1]!.data?.[0]).toEqual(['IsSmokeAlarm', 'true']); // the current state, not a default
    cam.clearFire();
    cam.setDetection('fire', false);
    cam.raiseFire({ kind: 'fire' }); // not reported: detection is off
    cam.setDetection('fire', true);
    const later = await sub.pull(100, 0);
    expect(later.map((m) => [m.operation, m.data?.[0]?.[1]])).toEqual([
      ['Changed', 'false'],
      ['Deleted', undefined],
      ['Initialized', 'true'],
    ]);
    expect(later[1]!.xml).not.toContain('<tt:Data>');
  });

  it('serial, endpoint UUID and MAC are stable for a seed and differ between cameras', () => {
    const a = new SimCameraImpl({ id: 'cam-1' }, ctx);
    const b = new SimCameraImpl({ id: 'cam-1' }, ctx);
    const c = new SimCameraImpl({ id: 'cam-2' }, ctx);
    expect(a.endpointReference).toBe(b.endpointReference);
    expect(a.endpointReference).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(c.endpointReference).not.toBe(a.endpointReference);
    expect(a.serialNumber).toBe(b.serialNumber);
    expect(a.macAddress).toMatch(/^02(:[0-9a-f]{2}){5}$/);
  });
});
