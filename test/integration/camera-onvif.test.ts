/**
 * The simulated ONVIF camera against the unmodified `onvif` client (what the edge agent uses):
 * connect and authenticate, media profiles and URIs, the snapshot JPEG, PTZ presets and moves,
 * HTTP Digest instead of WS-Security, a camera whose clock is off, Profile T (Media2), one camera
 * per port, and a camera that stops answering. Everything on 127.0.0.1, free ports.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import onvif, { type Cam, type CamOptions } from 'onvif';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCameraFleet, type CameraFleet } from '../../simulators/src/camera/index.js';
import { FALLBACK_JPEG } from '../../simulators/src/camera/snapshot.js';

const USER = 'admin';
const PASS = 'Gs-2025!';
const streamUrlFor = (id: string) => `rtsp://127.0.0.1:8554/live/${id}?channel=1&subtype=0`;

function connect(opts: CamOptions): Promise<Cam> {
  return new Promise((resolve, reject) => {
    const cam: Cam = new onvif.Cam(opts, (err) => (err ? reject(err) : resolve(cam)));
  });
}
/** Promisifies one client call: `call((cb) => cam.getStatus(cb))`. */
function call<T = any>(fn: (cb: (err: Error | null, data?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data as T))));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A SOAP request with a WS-Security UsernameToken built here, independently of the simulator. */
async function rawSoap(url: string, body: string, creds?: { username: string; password: string; created?: string; nonce?: Buffer }) {
  let security = '';
  if (creds) {
    const nonce = creds.nonce ?? randomBytes(16);
    const created = creds.created ?? new Date().toISOString();
    const digest = createHash('sha1').update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(creds.password)])).digest('base64');
    security =
      `<Security s:mustUnderstand="1" xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken>` +
      `<Username>${creds.username}</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</Password>` +
      `<Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">${nonce.toString('base64')}</Nonce>` +
      `<Created xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">${created}</Created></UsernameToken></Security>`;
  }
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/soap+xml; charset=utf-8' },
    body: `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header>${security}</s:Header><s:Body>${body}</s:Body></s:Envelope>`,
  });
  return { status: res.status, xml: await res.text(), wwwAuthenticate: res.headers.get('www-authenticate') };
}

let fleet: CameraFleet;
const CAM = 'cam-0001';
const HIK = 'cam-0002';
const SKEWED = 'cam-0003';

beforeAll(async () => {
  fleet = await startCameraFleet(
    [
      { id: CAM, headingDeg: 30 },
      { id: HIK, headingDeg: 250, vendor: 'hikvision-like' },
      { id: SKEWED, headingDeg: 0, clockOffsetMs: 2 * 3600_000 }, // its clock is two hours ahead
    ],
    { host: '127.0.0.1', port: 0, username: USER, password: PASS, streamUrlFor, seed: 20250401, ptz: { maxPanDegPerSec: 360, zoomFullRangeSec: 1 } },
  );
});
afterAll(async () => {
  await fleet?.close();
});

const camOpts = (id: string, extra: Partial<CamOptions> = {}): CamOptions => ({
  hostname: '127.0.0.1',
  port: fleet.port,
  path: `/onvif/${id}/device_service`,
  username: USER,
  password: PASS,
  timeout: 5000,
  ...extra,
});

describe('device and media', () => {
  it('connects with credentials: services, profiles and video sources line up', async () => {
    const cam = await connect(camOpts(CAM));
    expect(Object.keys(cam.uri ?? {}).sort()).toEqual(['device', 'events', 'media', 'ptz']);
    expect(cam.uri?.ptz?.href).toBe(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/ptz_service`);
    expect(cam.media2Support).toBe(false);
    expect(cam.profiles).toHaveLength(1);
    const profile = cam.profiles![0] as any;
    expect(profile.videoSourceConfiguration.sourceToken).toBe(cam.videoSources[0].$.token);
    expect(profile.videoEncoderConfiguration.encoding).toBe('H264');
    expect(cam.activeSource).toMatchObject({ profileToken: 'Profile_1', encoding: 'H264', width: 640, height: 360 });

    const info = await call((cb) => cam.getDeviceInformation(cb));
    expect(info).toMatchObject({ manufacturer: 'GreenShield', model: 'GS-SIM-TPZ640' });
    expect(String(info.serialNumber)).toMatch(/^GS-SIM-TPZ640-[0-9A-F]{10}$/);
    const hik = await connect(camOpts(HIK));
    expect((await call((cb) => hik.getDeviceInformation(cb))).manufacturer).toBe('HIKVISION (simulated)');

    const scopes = await call<any[]>((cb) => cam.getScopes(cb));
    expect(scopes.map((s) => s.scopeItem)).toContain(`onvif://www.onvif.org/name/${CAM}`);
    expect(await call((cb) => cam.getHostname(cb))).toEqual({ fromDHCP: false, name: CAM });
  });

  it('GetSystemDateAndTime answers without credentials, in UTC', async () => {
    const res = await rawSoap(fleet.deviceServiceUrl(CAM), '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>');
    expect(res.status).toBe(200);
    const year = Number(/<tt:UTCDateTime>.*?<tt:Year>(\d+)<\/tt:Year>/.exec(res.xml)?.[1]);
    expect(year).toBe(new Date().getUTCFullYear());
  });

  it('GetCapabilities (the pre-GetServices way) gives every XAddr for this camera', async () => {
    const cam = await connect(camOpts(CAM));
    const caps = await call<any>((cb) => cam.getCapabilities(cb));
    expect(caps.media.XAddr).toBe(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/media_service`);
    expect(caps.events.XAddr).toBe(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/event_service`);
    expect(caps.PTZ.XAddr).toBe(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/ptz_service`);
    expect(caps.device.XAddr).toBe(fleet.deviceServiceUrl(CAM));
  });

  it('GetStreamUri is streamUrlFor(id), escaped on the way and intact on arrival', async () => {
    const cam = await connect(camOpts(CAM));
    const stream = await call<{ uri: string }>((cb) => cam.getStreamUri({ protocol: 'RTSP' }, cb));
    expect(stream.uri).toBe(streamUrlFor(CAM));
    await expect(call((cb) => cam.getStreamUri({ protocol: 'RTSP', profileToken: 'nope' }, cb))).rejects.toThrow(/No such profile/);
  });

  it('the snapshot URI serves a JPEG to Basic or Digest credentials and challenges everyone else', async () => {
    const cam = await connect(camOpts(CAM));
    const { uri } = await call<{ uri: string }>((cb) => cam.getSnapshotUri(cb));
    expect(uri).toBe(fleet.snapshotUrl(CAM));

    const anonymous = await fetch(uri);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Digest realm="[^"]+", qop="auth", nonce="[^"]+"/);

    const basic = await fetch(uri, { headers: { Authorization: `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}` } });
    expect(basic.status).toBe(200);
    expect(basic.headers.get('content-type')).toBe('image/jpeg');
    const jpeg = Buffer.from(await basic.arrayBuffer());
    expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(jpeg.subarray(-2).toString('hex')).toBe('ffd9');
    if (existsSync('/usr/bin/ffmpeg')) expect(jpeg.length).toBeGreaterThan(FALLBACK_JPEG.length); // rendered, not the fallback

    // Digest, answered by the onvif client's own digest code.
    const path = new URL(uri).pathname;
    const challenge = anonymous.headers.get('www-authenticate')!.split(/,\s*(?=Basic )/)[0]!;
    const authorization = cam.digestAuth([challenge], { method: 'GET', path });
    const digest = await fetch(uri, { headers: { Authorization: authorization } });
    expect(digest.status).toBe(200);
    expect(Buffer.from(await digest.arrayBuffer()).subarray(0, 2).toString('hex')).toBe('ffd8');
    // cached: the second fetch within maxAgeMs did not run ffmpeg again
    expect(fleet.stats().snapshots.cacheHits + fleet.stats().snapshots.fallbacks).toBeGreaterThan(0);
  });
});

describe('authentication', () => {
  it('a wrong password is refused with ter:NotAuthorized', async () => {
    await expect(connect(camOpts(CAM, { password: 'wrong' }))).rejects.toThrow(/Sender not Authorized/);
    const res = await rawSoap(fleet.deviceServiceUrl(CAM), '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>', {
      username: USER,
      password: 'wrong',
    });
    expect(res.status).toBe(400);
    expect(res.xml).toMatch(/<env:Subcode><env:Value>ter:NotAuthorized<\/env:Value><\/env:Subcode>/);
  });

  it('no credentials at all: 401 with a Digest challenge', async () => {
    const res = await rawSoap(fleet.deviceServiceUrl(CAM), '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>');
    expect(res.status).toBe(401);
    expect(res.wwwAuthenticate).toMatch(/^Digest /);
  });

  it('a Created five minutes off the camera clock, or a replayed nonce, is refused', async () => {
    const url = fleet.deviceServiceUrl(CAM);
    const body = '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>';
    const stale = await rawSoap(url, body, { username: USER, password: PASS, created: new Date(Date.now() - 6 * 60_000).toISOString() });
    expect(stale.status).toBe(400);
    const nonce = randomBytes(16);
    const created = new Date().toISOString();
    expect((await rawSoap(url, body, { username: USER, password: PASS, nonce, created })).status).toBe(200);
    expect((await rawSoap(url, body, { username: USER, password: PASS, nonce, created })).status).toBe(400);
  });

  it('a camera two hours fast still works: the client time-shifts its tokens from GetSystemDateAndTime', async () => {
    const cam = await connect(camOpts(SKEWED));
    expect(Math.abs((cam.timeShift ?? 0) - (Date.now() + 2 * 3600_000 - process.uptime() * 1000))).toBeLessThan(5000);
    expect((await call((cb) => cam.getDeviceInformation(cb))).model).toBe('GS-SIM-TPZ640');
    // …and a token stamped with our own (unshifted) clock is refused by that camera
    const res = await rawSoap(fleet.deviceServiceUrl(SKEWED), '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>', {
      username: USER,
      password: PASS,
    });
    expect(res.status).toBe(400);
  });

  it('HTTP Digest instead of WS-Security (useWSSecurity: false) works, a wrong password does not', async () => {
    const cam = await connect(camOpts(CAM, { useWSSecurity: false }));
    expect((await call<{ uri: string }>((cb) => cam.getStreamUri(cb))).uri).toBe(streamUrlFor(CAM));
    await expect(connect(camOpts(CAM, { useWSSecurity: false, password: 'wrong' }))).rejects.toThrow(/401/);
  });
});

describe('PTZ', () => {
  it('lists the cardinal presets as pan positions of this camera', async () => {
    const cam = await connect(camOpts(CAM));
    const presets = await call<Record<string, any>>((cb) => cam.getPresets(cb));
    expect(Object.keys(presets)).toEqual(['北', '东', '南', '西']);
    // heading 30°: south (180°) is 150° clockwise of mechanical zero, x = 150/180
    expect(presets['南'].PTZPosition.panTilt.$.x).toBeCloseTo(150 / 180, 5);
    expect(presets['北'].PTZPosition.panTilt.$.x).toBeCloseTo(-30 / 180, 5);
  });

  it('GotoPreset moves there (MOVING, then IDLE at the preset) and GetStatus shows it', async () => {
    const cam = await connect(camOpts(CAM));
    fleet.camera(CAM).setPanBearing(30);
    await call((cb) => cam.gotoPreset({ preset: '3', speed: { x: 0.5, y: 0.5 } }, cb)); // 南: 150° at 180°/s ≈ 0.83 s
    const moving = await call<any>((cb) => cam.getStatus(cb));
    expect(moving.moveStatus.panTilt).toBe('MOVING');
    await sleep(1000);
    const status = await call<any>((cb) => cam.getStatus(cb));
    expect(status.moveStatus.panTilt).toBe('IDLE');
    expect(status.position.x).toBeCloseTo(150 / 180, 5);
    expect(fleet.camera(CAM).panBearingDeg).toBeCloseTo(180, 3);
    expect(status.utcTime).toBeInstanceOf(Date); // UtcTime ends in Z
    await expect(call((cb) => cam.gotoPreset({ preset: '99' }, cb))).rejects.toThrow(/No such preset/);
  });

  it('ContinuousMove pans with velocity over time; Stop holds the new pan', async () => {
    const cam = await connect(camOpts(CAM));
    fleet.camera(CAM).setPanBearing(90);
    const before = (await call<any>((cb) => cam.getStatus(cb))).position.x;
    await call((cb) => cam.continuousMove({ x: -0.25, y: 0 }, cb)); // −90°/s
    await sleep(400);
    await call((cb) => cam.stop({ panTilt: true, zoom: true }, cb));
    const stopped = await call<any>((cb) => cam.getStatus(cb));
    await sleep(200);
    const later = await call<any>((cb) => cam.getStatus(cb));
    const movedDeg = (before - stopped.position.x) * 180;
    expect(movedDeg).toBeGreaterThan(30); // ≥ 36°: 90°/s for at least the 400 ms slept
    expect(movedDeg).toBeLessThan(100); // and not much longer: Stop stopped it
    expect(later.position.x).toBe(stopped.position.x);
    expect(later.moveStatus.panTilt).toBe('IDLE');
    // bearing = heading + 180·x
    expect(fleet.camera(CAM).panBearingDeg).toBeCloseTo((30 + 180 * stopped.position.x + 360) % 360, 3);
  });

  it('AbsoluteMove, SetPreset and the configuration the client reads', async () => {
    const cam = await connect(camOpts(CAM));
    await call((cb) => cam.absoluteMove({ x: 0.5, y: 0, zoom: 0.25 }, cb));
    await sleep(700);
    const s = await call<any>((cb) => cam.getStatus(cb));
    expect(s.position).toEqual({ x: 0.5, y: 0, zoom: 0.25 });
    const token = await call<any>((cb) => cam.setPreset({ presetName: '火点复核' }, cb));
    expect(JSON.stringify(token)).toContain('5');
    const presets = await call<Record<string, any>>((cb) => cam.getPresets(cb));
    expect(presets['火点复核'].PTZPosition.panTilt.$.x).toBeCloseTo(0.5, 5);
    const nodes = await call<Record<string, any>>((cb) => cam.getNodes(cb));
    expect(Object.keys(nodes)).toEqual(['PTZNode_1']);
    const configs = await call<Record<string, any>>((cb) => cam.getConfigurations(cb));
    expect(configs['PTZConfig_1']).toMatchObject({ nodeToken: 'PTZNode_1', panTiltLimits: { XRange: { min: '-1', max: '1' } } });
    const options = await call<any>((cb) => cam.getConfigurationOptions('PTZConfig_1', cb));
    expect(options.spaces.continuous.x).toMatchObject({ min: -1, max: 1 });
  });
});

describe('one camera per port, Profile T', () => {
  it('port-per-camera: the default /onvif/device_service path finds the camera; other ids 404', async () => {
    const perPort = await startCameraFleet([{ id: 'cam-a', headingDeg: 0 }, { id: 'cam-b', headingDeg: 90 }], {
      layout: 'port-per-camera',
      username: USER,
      password: PASS,
      streamUrlFor,
      seed: 1,
    });
    try {
      expect(perPort.portOf('cam-a')).not.toBe(perPort.portOf('cam-b'));
      const cam = await connect({ hostname: '127.0.0.1', port: perPort.portOf('cam-b'), username: USER, password: PASS });
      expect(cam.uri?.media?.href).toBe(`http://127.0.0.1:${perPort.portOf('cam-b')}/onvif/cam-b/media_service`);
      expect((await call<{ uri: string }>((cb) => cam.getStreamUri(cb))).uri).toBe(streamUrlFor('cam-b'));
      const wrong = await fetch(`http://127.0.0.1:${perPort.portOf('cam-b')}/onvif/cam-a/device_service`, { method: 'POST', body: '' });
      expect(wrong.status).toBe(404);
    } finally {
      await perPort.close();
    }
  });

  it('profileT: the client finds Media2 and uses it for profiles and URIs', async () => {
    const t = await startCameraFleet([{ id: 'cam-t' }], { username: USER, password: PASS, streamUrlFor, seed: 1, profileT: true });
    try {
      const cam = await connect({ hostname: '127.0.0.1', port: t.port, path: '/onvif/cam-t/device_service', username: USER, password: PASS });
      expect(cam.media2Support).toBe(true);
      expect(cam.activeSource).toMatchObject({ profileToken: 'Profile_1', encoding: 'H264', width: 640 });
      expect((await call<any>((cb) => cam.getStreamUri({ protocol: 'RTSP' }, cb))).uri).toBe(streamUrlFor('cam-t'));
      expect((await call<any>((cb) => cam.getSnapshotUri(cb))).uri).toBe(t.snapshotUrl('cam-t'));
    } finally {
      await t.close();
    }
  });
});

describe('faults', () => {
  it('offline (silent): the client times out; offline (reset): the connection is reset; back online: it answers', async () => {
    const cam = await connect(camOpts(CAM, { timeout: 400 }));
    const sim = fleet.camera(CAM);
    sim.setOffline(true);
    const t0 = Date.now();
    await expect(call((cb) => cam.getStatus(cb))).rejects.toThrow(/Network timeout/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    sim.setOffline(true, 'reset');
    await expect(call((cb) => cam.getStatus(cb))).rejects.toThrow(/socket hang up|ECONNRESET/);
    sim.setOffline(false);
    expect((await call<any>((cb) => cam.getStatus(cb))).moveStatus.panTilt).toBeDefined();
  });

  it('SystemReboot answers, then the camera is unreachable for rebootMs and comes back', async () => {
    const small = await startCameraFleet([{ id: 'cam-r' }], { username: USER, password: PASS, streamUrlFor, seed: 1, rebootMs: 400 });
    try {
      const url = small.deviceServiceUrl('cam-r');
      const res = await rawSoap(url, '<SystemReboot xmlns="http://www.onvif.org/ver10/device/wsdl"/>', { username: USER, password: PASS });
      expect(res.status).toBe(200);
      expect(res.xml).toContain('<tds:Message>Rebooting in 1 seconds</tds:Message>');
      await sleep(50);
      await expect(rawSoap(url, '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>')).rejects.toThrow(/fetch failed/);
      await sleep(500);
      expect((await rawSoap(url, '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>')).status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('an operation the camera lacks is a SOAP fault, not a hang', async () => {
    const cam = await connect(camOpts(CAM));
    await expect(call((cb) => cam.getOSDs(undefined, cb))).rejects.toThrow(/Optional Action Not Implemented: GetOSDs/);
    const res = await rawSoap(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/media_service`, '<GetOSDs xmlns="http://www.onvif.org/ver10/media/wsdl"/>', {
      username: USER,
      password: PASS,
    });
    expect(res.status).toBe(500);
    expect(res.xml).toContain('ter:ActionNotSupported');
    const junk = await fetch(`http://127.0.0.1:${fleet.port}/onvif/${CAM}/device_service`, { method: 'POST', body: '<not-xml' });
    expect(junk.status).toBe(400);
  });
});
