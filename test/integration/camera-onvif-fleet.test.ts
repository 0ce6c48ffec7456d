/**
 * The whole Chashan camera fleet (1657 cameras from the generated ledger) on one HTTP server:
 * it starts quickly and small, cameras far apart in the list answer as themselves, many long
 * polls wait at once and all wake on their fire, and unicast WS-Discovery finds every camera (or
 * exactly the one a scoped Probe names) with the XAddrs the `onvif` client then connects to.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import onvif, { type Cam, type CamOptions } from 'onvif';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGeography, CHASHAN_FLEET, generateFleet } from '../../simulators/src/fleet/geography.js';
import {
  bearingToPanX,
  cameraSpecsFromLedger,
  startCameraFleet,
  type CameraFleet,
  type CameraSpec,
} from '../../simulators/src/camera/index.js';

const onvifUtils = createRequire(import.meta.url)('onvif/lib/utils.js') as {
  parseSOAPString(xml: string, cb: (err: Error | null, data: any) => void, status: number): void;
  linerase(x: unknown): any;
};

const USER = 'admin';
const PASS = 'fleet-pw';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connect(opts: CamOptions): Promise<Cam> {
  return new Promise((resolve, reject) => {
    const cam: Cam = new onvif.Cam(opts, (err) => (err ? reject(err) : resolve(cam)));
  });
}
function call<T = any>(fn: (cb: (err: Error | null, data?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data as T))));
}

let fleet: CameraFleet;
let specs: CameraSpec[];
let startMs = 0;
let heapDeltaMB = 0;
let rssAfterMB = 0;

beforeAll(async () => {
  const devices = generateFleet(buildGeography(20250401), CHASHAN_FLEET, { seed: 20250401, agent: 'agent-1' });
  specs = cameraSpecsFromLedger(devices);
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  fleet = await startCameraFleet(specs, {
    username: USER,
    password: PASS,
    streamUrlFor: (id) => `rtsp://127.0.0.1:8554/${id}`,
    seed: 20250401,
    discovery: { host: '127.0.0.1', port: 0 },
    events: { maxPullTimeoutMs: 10_000 },
  });
  startMs = performance.now() - t0;
  heapDeltaMB = (process.memoryUsage().heapUsed - heapBefore) / 1048576;
  rssAfterMB = process.memoryUsage().rss / 1048576;
});
afterAll(async () => {
  await fleet?.close();
});

describe('1657 cameras on one server', () => {
  it('starts quickly and small', () => {
    expect(fleet.ids).toHaveLength(1657);
    console.info(`camera fleet: ${fleet.ids.length} cameras, start ${startMs.toFixed(0)} ms, heap +${heapDeltaMB.toFixed(1)} MB, rss ${rssAfterMB.toFixed(0)} MB`);
    expect(startMs).toBeLessThan(3000); // ≈0.1 s measured; generous for a busy 2-core machine
    expect(heapDeltaMB).toBeLessThan(40); // ≈3 MB measured (≈2 KB a camera)
  });

  it('cameras far apart in the list each answer as themselves, with their own heading', async () => {
    for (const spec of [specs[0]!, specs[828]!, specs[1656]!]) {
      const cam = await connect({ hostname: '127.0.0.1', port: fleet.port, path: `/onvif/${spec.id}/device_service`, username: USER, password: PASS });
      expect((await call<{ uri: string }>((cb) => cam.getStreamUri(cb))).uri).toBe(`rtsp://127.0.0.1:8554/${spec.id}`);
      expect((await call<any>((cb) => cam.getHostname(cb))).name).toBe(spec.id);
      const presets = await call<Record<string, any>>((cb) => cam.getPresets(cb));
      expect(presets['北'].PTZPosition.panTilt.$.x).toBeCloseTo(bearingToPanX(0, spec.headingDeg!), 5);
    }
  });

  it('150 long polls wait at once and each wakes with its own camera’s fire', async () => {
    // Generic-vendor cameras, whose fire carries the bearing as `Bearing` in degrees.
    const generic = new Set(specs.filter((s) => (s.vendor ?? 'generic') === 'generic').map((s) => s.id));
    const ids = fleet.ids.filter((id, i) => i % 8 === 3 && generic.has(id)).slice(0, 150);
    const soap = async (path: string, body: string) => {
      const nonce = randomBytes(16);
      const created = new Date().toISOString();
      const digest = createHash('sha1').update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(PASS)])).digest('base64');
      const res = await fetch(`http://127.0.0.1:${fleet.port}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/soap+xml' },
        body:
          `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">` +
          `<UsernameToken><Username>${USER}</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</Password>` +
          `<Nonce>${nonce.toString('base64')}</Nonce><Created>${created}</Created></UsernameToken></Security></s:Header><s:Body>${body}</s:Body></s:Envelope>`,
      });
      expect(res.status).toBe(200);
      return res.text();
    };
    const EV = 'xmlns="http://www.onvif.org/ver10/events/wsdl"';
    const pullBody = (t: string) => `<PullMessages ${EV}><Timeout>${t}</Timeout><MessageLimit>10</MessageLimit></PullMessages>`;
    const subs = await Promise.all(
      ids.map(async (id) => {
        const xml = await soap(`/onvif/${id}/event_service`, `<CreatePullPointSubscription ${EV}><InitialTerminationTime>PT1M</InitialTerminationTime></CreatePullPointSubscription>`);
        const path = new URL(/<wsa5:Address>([^<]+)<\/wsa5:Address>/.exec(xml)![1]!).pathname;
        await soap(path, pullBody('PT0S')); // the Initialized states
        return { id, path };
      }),
    );
    const polls = subs.map(({ path }) => soap(path, pullBody('PT10S')));
    await sleep(300);
    const t0 = Date.now();
    ids.forEach((id, i) => fleet.camera(id).raiseFire({ kind: 'fire', bearingDeg: i }));
    const answers = await Promise.all(polls);
    console.info(`${ids.length} polls answered ${Date.now() - t0} ms after the fires`);
    expect(Date.now() - t0).toBeLessThan(9000); // answered by the fire, not the 10 s timeout
    answers.forEach((xml, i) => {
      expect(xml).toContain('PropertyOperation="Changed"');
      expect(xml).toContain(`<tt:SimpleItem Name="Bearing" Value="${i}"/>`);
    });
    for (const id of ids) fleet.camera(id).clearFire();
  });
});

// ---- WS-Discovery ------------------------------------------------------------------------------

/** The Probe the `onvif` client's Discovery.probe sends (it can only multicast to :3702). */
function probeXml(messageId: string, types = 'dn:NetworkVideoTransmitter', scopes = '') {
  return (
    '<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">' +
    `<Header><wsa:MessageID xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">${messageId}</wsa:MessageID>` +
    '<wsa:To xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>' +
    '<wsa:Action xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>' +
    '</Header><Body><Probe xmlns="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
    `<Types>${types}</Types>${scopes ? `<Scopes>${scopes}</Scopes>` : '<Scopes />'}</Probe></Body></Envelope>`
  );
}

interface Match {
  address: string;
  xaddrs: string;
  scopes: string;
  relatesTo: string;
}

/** Sends a Probe and collects ProbeMatches until `quietMs` passes with nothing new. */
async function probe(types?: string, scopes?: string, quietMs = 400): Promise<{ matches: Match[]; messageId: string }> {
  const socket: Socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  try {
    socket.setRecvBufferSize(4 * 1024 * 1024);
  } catch {
    // capped by the kernel; the responder paces its replies anyway
  }
  const matches: Match[] = [];
  let last = Date.now();
  socket.on('message', (msg) => {
    last = Date.now();
    const text = msg.toString();
    const relatesTo = /<wsa:RelatesTo>([^<]+)</.exec(text)?.[1] ?? '';
    // parsed exactly as onvif's Discovery does
    onvifUtils.parseSOAPString(
      text,
      (err, data) => {
        if (err || !data[0].probeMatches) return;
        const m = onvifUtils.linerase(data).probeMatches.probeMatch;
        matches.push({ address: m.endpointReference.address, xaddrs: m.XAddrs, scopes: m.scopes, relatesTo });
      },
      200,
    );
  });
  const messageId = `urn:uuid:${randomUUID()}`;
  socket.send(Buffer.from(probeXml(messageId, types, scopes)), fleet.discoveryPort!, '127.0.0.1');
  const started = Date.now();
  while (Date.now() - Math.max(last, started) < quietMs) await sleep(50);
  socket.close();
  return { matches, messageId };
}

describe('WS-Discovery (unicast)', () => {
  it('a Probe for NetworkVideoTransmitter gets one ProbeMatch per camera, in reply to that Probe', async () => {
    const { matches, messageId } = await probe();
    expect(matches).toHaveLength(1657);
    expect(new Set(matches.map((m) => m.address)).size).toBe(1657);
    expect(matches.every((m) => m.relatesTo === messageId)).toBe(true);
    const byXaddr = new Set(matches.map((m) => m.xaddrs));
    for (const id of [fleet.ids[0]!, fleet.ids[1656]!]) expect(byXaddr.has(fleet.deviceServiceUrl(id))).toBe(true);
  });

  it('a scoped Probe finds exactly that camera, and the client connects to its XAddr', async () => {
    const id = fleet.ids[41]!;
    const { matches } = await probe('dn:NetworkVideoTransmitter', `onvif://www.onvif.org/name/${id}`, 300);
    expect(matches).toHaveLength(1);
    expect(matches[0]!.xaddrs).toBe(fleet.deviceServiceUrl(id));
    expect(matches[0]!.address).toBe(fleet.camera(id).endpointReference);
    const url = new URL(matches[0]!.xaddrs);
    const cam = await connect({ hostname: url.hostname, port: Number(url.port), path: url.pathname, username: USER, password: PASS });
    expect((await call<any>((cb) => cam.getHostname(cb))).name).toBe(id);
  });

  it('other device types, and offline cameras, get no answer', async () => {
    expect((await probe('dn:NetworkVideoDisplay', '', 300)).matches).toHaveLength(0);
    const id = fleet.ids[7]!;
    fleet.camera(id).setOffline(true);
    try {
      expect((await probe(undefined, `onvif://www.onvif.org/name/${id}`, 300)).matches).toHaveLength(0);
    } finally {
      fleet.camera(id).setOffline(false);
    }
  });
});
