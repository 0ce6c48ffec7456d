/**
 * ONVIF events from the simulated camera: the unmodified `onvif` client's event loop
 * (CreatePullPointSubscription → PullMessages → Renew → …) receives fire alarms with the bearing,
 * keeps one subscription over many long polls, and recovers when the camera reboots; raw SOAP
 * checks the long poll itself (Timeout, MessageLimit), Renew/Unsubscribe, faults for dead
 * subscriptions, topic filters and the event-flood fault.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import onvif, { type Cam, type CamOptions } from 'onvif';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCameraFleet, VENDOR_PROFILES, type CameraFleet } from '../../simulators/src/camera/index.js';

// The client's own SOAP parser, to read raw responses the way the agent's library will.
const onvifUtils = createRequire(import.meta.url)('onvif/lib/utils.js') as {
  parseSOAPString(xml: string, cb: (err: Error | null, data: any) => void, status: number): void;
  linerase(x: unknown): any;
};

const USER = 'admin';
const PASS = 'pass-123';
const MAX_PULL_MS = 800;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connect(opts: CamOptions): Promise<Cam> {
  return new Promise((resolve, reject) => {
    const cam: Cam = new onvif.Cam(opts, (err) => (err ? reject(err) : resolve(cam)));
  });
}
function call<T = any>(fn: (cb: (err: Error | null, data?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data as T))));
}
async function waitFor<T>(probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await sleep(20);
  }
}

/** An event as the client emits it, flattened: topic, operation and Data items by name. */
interface SeenEvent {
  topic: string;
  operation: string;
  utcTime: unknown;
  data: Record<string, unknown>;
  source: Record<string, unknown>;
}
function flatten(m: any): SeenEvent {
  const msg = m.message.message;
  const list = (x: any) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
  const items = (x: any) => Object.fromEntries(list(x?.simpleItem).map((i: any) => [i.$.Name, i.$.Value]));
  return { topic: m.topic._, operation: msg.$.PropertyOperation, utcTime: msg.$.UtcTime, data: items(msg.data), source: items(msg.source) };
}

async function rawSoap(url: string, body: string, header = '') {
  const nonce = randomBytes(16);
  const created = new Date().toISOString();
  const digest = createHash('sha1').update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(PASS)])).digest('base64');
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/soap+xml; charset=utf-8' },
    body:
      `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>${header}` +
      `<Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken><Username>${USER}</Username>` +
      `<Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</Password>` +
      `<Nonce>${nonce.toString('base64')}</Nonce><Created>${created}</Created></UsernameToken></Security></s:Header><s:Body>${body}</s:Body></s:Envelope>`,
  });
  const xml = await res.text();
  const parsed = await new Promise<{ err: Error | null; data: any }>((resolve) =>
    onvifUtils.parseSOAPString(xml, (err, data) => resolve({ err, data }), res.status),
  );
  return { status: res.status, xml, err: parsed.err, body: parsed.err ? undefined : onvifUtils.linerase(parsed.data) };
}

const EV = 'xmlns="http://www.onvif.org/ver10/events/wsdl"';
const createSub = (fleet: CameraFleet, id: string, extra = '<InitialTerminationTime>PT30S</InitialTerminationTime>') =>
  rawSoap(`http://127.0.0.1:${fleet.port}/onvif/${id}/event_service`, `<CreatePullPointSubscription ${EV}>${extra}</CreatePullPointSubscription>`);
const pull = (address: string, timeout: string, limit: number) =>
  rawSoap(address, `<PullMessages ${EV}><Timeout>${timeout}</Timeout><MessageLimit>${limit}</MessageLimit></PullMessages>`, `<a:To>${address}</a:To>`);
const messagesOf = (r: { body?: any }): SeenEvent[] => {
  const m = r.body?.pullMessagesResponse?.notificationMessage;
  return (m === undefined ? [] : Array.isArray(m) ? m : [m]).map(flatten);
};

let fleet: CameraFleet;
const cams: Cam[] = [];
beforeAll(async () => {
  fleet = await startCameraFleet(
    [
      { id: 'cam-gen', headingDeg: 30 },
      { id: 'cam-hik', headingDeg: 250, vendor: 'hikvision-like' },
      { id: 'cam-dahua', headingDeg: 0, vendor: 'dahua-like' },
      { id: 'cam-raw', headingDeg: 0 },
      { id: 'cam-flood', headingDeg: 0 },
    ],
    {
      username: USER,
      password: PASS,
      streamUrlFor: (id) => `rtsp://127.0.0.1:8554/${id}`,
      seed: 5,
      rebootMs: 1000,
      events: { maxPullTimeoutMs: MAX_PULL_MS, maxQueuedMessages: 50, maxSubscriptionsPerCamera: 3 },
    },
  );
});
afterEach(() => {
  // Stop the client's pull loops before the next test (it unsubscribes after its current poll).
  for (const cam of cams.splice(0)) cam.removeAllListeners('event');
});
afterAll(async () => {
  await fleet?.close();
});

async function listen(id: string): Promise<{ cam: Cam; seen: SeenEvent[] }> {
  const cam = await connect({ hostname: '127.0.0.1', port: fleet.port, path: `/onvif/${id}/device_service`, username: USER, password: PASS });
  cams.push(cam);
  const seen: SeenEvent[] = [];
  cam.on('event', (m: unknown) => seen.push(flatten(m)));
  return { cam, seen };
}

describe('the onvif client event loop', () => {
  it('receives Initialized states, then a fire with its bearing, over several long polls on one subscription', async () => {
    const sim = fleet.camera('cam-gen');
    const { seen } = await listen('cam-gen');
    const fire = VENDOR_PROFILES.generic.topics.fire.topic;
    await waitFor(() => (seen.length >= 4 ? true : undefined));
    expect(seen.slice(0, 4).map((e) => e.operation)).toEqual(['Initialized', 'Initialized', 'Initialized', 'Initialized']);
    expect(seen.find((e) => e.topic === fire)?.data).toEqual({ State: false });

    // idle long polls come back empty after MAX_PULL_MS; the client renews and pulls again
    await sleep(3 * MAX_PULL_MS);

    sim.raiseFire({ kind: 'fire', bearingDeg: 63.5, confidence: 0.8, temperatureC: 350 });
    const alarm = await waitFor(() => seen.find((e) => e.topic === fire && e.operation === 'Changed'));
    expect(alarm.data).toEqual({ State: true, Bearing: 63.5, Confidence: 0.8, Temperature: 623.15 });
    expect(alarm.source).toEqual({ Source: 'VideoSource_1' });
    expect(alarm.utcTime).toBeInstanceOf(Date);

    await sleep(2 * MAX_PULL_MS);
    sim.clearFire();
    const cleared = await waitFor(() => seen.find((e) => e.topic === fire && e.data['State'] === false && e.operation === 'Changed'));
    expect(cleared.data).toEqual({ State: false });
    // ≈8 polls (the first, ≈5 idle ones, two ended by events), all on the first subscription
    expect(sim.stats.pulls).toBeGreaterThanOrEqual(5);
    expect(sim.stats.subscriptionsCreated).toBe(1);
  });

  it('hikvision-like: FireDetector/FireAlarm with IsFireAlarm and Azimuth in tenths of a degree', async () => {
    const { seen } = await listen('cam-hik');
    await waitFor(() => (seen.length >= 4 ? true : undefined));
    fleet.camera('cam-hik').raiseFire({ kind: 'fire', bearingDeg: 211.26 });
    const alarm = await waitFor(() => seen.find((e) => e.operation === 'Changed'));
    expect(alarm.topic).toBe('tns1:RuleEngine/FireDetector/FireAlarm');
    expect(alarm.data).toEqual({ IsFireAlarm: true, Azimuth: 2113, Confidence: 90 });
    expect(alarm.source).toEqual({ VideoSourceConfigurationToken: 'VideoSourceConfig_1', VideoAnalyticsConfigurationToken: 'VideoAnalyticsConfig_1', Rule: 'FireDetection-1' });
    fleet.camera('cam-hik').clearFire();
  });

  it('a rebooted camera loses its subscription; the client gets a fault, subscribes again and hears the next fire', async () => {
    const sim = fleet.camera('cam-dahua');
    const { seen } = await listen('cam-dahua');
    await waitFor(() => (seen.length >= 4 ? true : undefined));
    sim.reboot(1000); // connections reset, subscriptions gone, back after 1 s
    await waitFor(() => (sim.stats.subscriptionsCreated === 2 ? true : undefined), 10_000);
    sim.raiseFire({ kind: 'smoke', bearingDeg: 12 });
    const smoke = await waitFor(() => seen.find((e) => e.operation === 'Changed'));
    expect(smoke.topic).toBe('tns1:RuleEngine/SmokeDetection/SmokeAlarm');
    expect(smoke.data).toMatchObject({ State: true, PanAngle: 12 });
    expect(seen.filter((e) => e.operation === 'Initialized')).toHaveLength(8); // once per subscription
  });

  it('GetEventProperties lists the vendor topics with their Data items', async () => {
    const cam = await connect({ hostname: '127.0.0.1', port: fleet.port, path: '/onvif/cam-hik/device_service', username: USER, password: PASS });
    const props = await call<any>((cb) => cam.getEventProperties(cb));
    const fire = props.topicSet.ruleEngine.fireDetector.fireAlarm;
    expect(fire.$['wstop:topic']).toBe(true);
    expect(fire.messageDescription.data.simpleItemDescription.map((d: any) => d.$.Name)).toEqual([
      'IsFireAlarm',
      'Azimuth',
      'Confidence',
      'CurrentTemperature',
    ]);
    expect(props.topicSet.videoSource.motionAlarm).toBeDefined();
  });
});

describe('pull point over raw SOAP', () => {
  it('PullMessages honours MessageLimit and Timeout, and answers early when an event arrives', async () => {
    const created = await createSub(fleet, 'cam-raw');
    expect(created.status).toBe(200);
    expect(created.xml).toMatch(/<wsnt:CurrentTime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ<\/wsnt:CurrentTime>/);
    expect(created.xml).toMatch(/<wsnt:TerminationTime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ<\/wsnt:TerminationTime>/);
    const res = created.body.createPullPointSubscriptionResponse;
    const address: string = res.subscriptionReference.address;
    expect(address).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${fleet.port}/onvif/cam-raw/subscription/\\d+$`));
    expect(res.terminationTime.getTime() - res.currentTime.getTime()).toBe(30_000);

    let t0 = Date.now();
    const first = await pull(address, 'PT5S', 3);
    expect(Date.now() - t0).toBeLessThan(2000); // queued messages: no waiting for the 5 s
    expect(messagesOf(first)).toHaveLength(3);
    expect(first.xml).toMatch(/<tev:CurrentTime>[^<]+Z<\/tev:CurrentTime><tev:TerminationTime>[^<]+Z<\/tev:TerminationTime>/);
    expect(messagesOf(await pull(address, 'PT5S', 10))).toHaveLength(1);

    t0 = Date.now();
    const empty = await pull(address, 'PT0.3S', 10);
    const waited = Date.now() - t0;
    expect(messagesOf(empty)).toHaveLength(0);
    expect(waited).toBeGreaterThanOrEqual(280); // the requested 0.3 s…
    expect(waited).toBeLessThan(MAX_PULL_MS - 50); // …not the fleet's 0.8 s maximum

    setTimeout(() => fleet.camera('cam-raw').raiseFire({ kind: 'temperature', bearingDeg: 300, temperatureC: 95 }), 250);
    t0 = Date.now();
    const early = await pull(address, 'PT60S', 10);
    expect(Date.now() - t0).toBeLessThan(MAX_PULL_MS);
    expect(messagesOf(early)[0]).toMatchObject({
      topic: 'tns1:RuleEngine/Radiometry/TemperatureAlarm',
      operation: 'Changed',
      data: { State: true, Bearing: 300, Temperature: 368.15 },
    });

    // PT60S is above this fleet's maximum: shortened to it, as many cameras do
    t0 = Date.now();
    await pull(address, 'PT60S', 10);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(MAX_PULL_MS - 50);
    expect(Date.now() - t0).toBeLessThan(MAX_PULL_MS + 1500); // not the 60 s asked for
    fleet.camera('cam-raw').clearFire();
  });

  it('Renew extends, Unsubscribe ends, and a dead subscription answers a SOAP fault', async () => {
    const created = await createSub(fleet, 'cam-raw', '<InitialTerminationTime>PT5S</InitialTerminationTime>');
    const address: string = created.body.createPullPointSubscriptionResponse.subscriptionReference.address;
    const renewed = await rawSoap(address, '<Renew xmlns="http://docs.oasis-open.org/wsn/b-2"><TerminationTime>PT2M</TerminationTime></Renew>');
    const r = renewed.body.renewResponse;
    expect(r.terminationTime.getTime() - r.currentTime.getTime()).toBe(120_000);
    const unsub = await rawSoap(address, '<Unsubscribe xmlns="http://docs.oasis-open.org/wsn/b-2"/>');
    expect(unsub.status).toBe(200);
    const dead = await pull(address, 'PT1S', 10);
    expect(dead.status).toBe(400);
    expect(dead.xml).toContain('wsrf-rw:ResourceUnknownFault');
    expect(dead.err?.message).toMatch(/Subscription expired or unknown/);
  });

  it('an expired subscription is gone: PullMessages gets the fault', async () => {
    const created = await createSub(fleet, 'cam-raw', '<InitialTerminationTime>PT1S</InitialTerminationTime>');
    const address: string = created.body.createPullPointSubscriptionResponse.subscriptionReference.address;
    await sleep(1100);
    const dead = await pull(address, 'PT1S', 10);
    expect(dead.status).toBe(400);
    expect(dead.xml).toContain('wsrf-rw:ResourceUnknownFault');
  });

  it('a camera keeps at most maxSubscriptionsPerCamera pull points', async () => {
    const addresses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await createSub(fleet, 'cam-flood');
      expect(r.status).toBe(200);
      addresses.push(r.body.createPullPointSubscriptionResponse.subscriptionReference.address);
    }
    const refused = await createSub(fleet, 'cam-flood');
    expect(refused.status).toBe(500);
    expect(refused.xml).toContain('ter:TooManySubscriptions');
    for (const a of addresses) await rawSoap(a, '<Unsubscribe xmlns="http://docs.oasis-open.org/wsn/b-2"/>');
  });

  it('event flood: the queue keeps its newest messages; a filtered subscription never sees the noise', async () => {
    const sim = fleet.camera('cam-flood');
    const all = (await createSub(fleet, 'cam-flood')).body.createPullPointSubscriptionResponse.subscriptionReference.address as string;
    const filtered = (
      await createSub(
        fleet,
        'cam-flood',
        '<Filter><TopicExpression xmlns="http://docs.oasis-open.org/wsn/b-2" Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">' +
          'tns1:RuleEngine//.|tns1:VideoSource/RadiometryAlarm</TopicExpression></Filter><InitialTerminationTime>PT30S</InitialTerminationTime>',
      )
    ).body.createPullPointSubscriptionResponse.subscriptionReference.address as string;
    const droppedBefore = sim.stats.eventsDropped;
    sim.flood(500);
    sim.raiseFire({ kind: 'fire', bearingDeg: 90 });
    const flooded = messagesOf(await pull(all, 'PT1S', 1000));
    expect(flooded).toHaveLength(50); // maxQueuedMessages
    expect(flooded.at(-1)?.topic).toBe('tns1:VideoSource/RadiometryAlarm'); // the newest survive
    expect(flooded.slice(0, -1).every((e) => e.topic === 'tns1:VideoSource/MotionAlarm')).toBe(true);
    expect(sim.stats.eventsDropped - droppedBefore).toBe(4 + 500 + 1 - 50);

    const clean = messagesOf(await pull(filtered, 'PT1S', 1000));
    expect(clean.map((e) => `${e.operation} ${e.topic}`)).toEqual([
      'Initialized tns1:VideoSource/RadiometryAlarm',
      'Initialized tns1:RuleEngine/SmokeDetector/Smoke',
      'Initialized tns1:RuleEngine/Radiometry/TemperatureAlarm',
      'Changed tns1:VideoSource/RadiometryAlarm',
    ]);

    // SetSynchronizationPoint: the current state again, as Initialized
    await rawSoap(filtered, `<SetSynchronizationPoint ${EV}/>`);
    const sync = messagesOf(await pull(filtered, 'PT1S', 1000));
    expect(sync.find((e) => e.topic === 'tns1:VideoSource/RadiometryAlarm')).toMatchObject({
      operation: 'Initialized',
      data: { State: true, Bearing: 90 },
    });
    for (const a of [all, filtered]) await rawSoap(a, '<Unsubscribe xmlns="http://docs.oasis-open.org/wsn/b-2"/>');
    sim.clearFire();
  });
});
