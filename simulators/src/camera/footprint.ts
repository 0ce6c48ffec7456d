/**
 * Measures what a simulated fleet costs: start time and memory for N cameras on one server, and
 * optionally with one pull-point subscription and one waiting long poll per camera (the load an
 * edge agent puts on it), then a fire raised on every camera at once.
 *   node --expose-gc --import tsx simulators/src/camera/footprint.ts [--cameras 1657] [--load]
 * Prints one JSON line; CPU figures (client and server together) are steadier than wall time on a
 * busy machine. Heap figures follow a forced GC when run with --expose-gc; with --load the
 * HTTP clients live in the same process, so those figures are an upper bound for the simulator.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { buildGeography, CHASHAN_FLEET, generateFleet } from '../fleet/geography.js';
import { cameraSpecsFromLedger, startCameraFleet } from './fleet.js';

const { values } = parseArgs({
  options: { cameras: { type: 'string', default: String(CHASHAN_FLEET.cameras) }, load: { type: 'boolean', default: false } },
});
const count = Number(values.cameras);
const gc = (globalThis as { gc?: () => void }).gc;
const mb = (b: number) => Math.round((b / 1048576) * 10) / 10;
const cpuMs = (u: NodeJS.CpuUsage) => Math.round((u.user + u.system) / 1000);
const USER = 'admin';
const PASS = 'pw';

const devices = generateFleet(buildGeography(20250401), { cameras: count, voicePoles: 0, waterTanks: 0 }, { seed: 20250401, agent: 'agent-1' });
const specs = cameraSpecsFromLedger(devices);
gc?.();
const before = process.memoryUsage();
const t0 = performance.now();
const fleet = await startCameraFleet(specs, {
  seed: 1,
  username: USER,
  password: PASS,
  streamUrlFor: (id) => `rtsp://127.0.0.1:8554/${id}`,
  events: { maxPullTimeoutMs: 60_000 },
});
const startMs = performance.now() - t0;
gc?.();
const idle = process.memoryUsage();
const result: Record<string, unknown> = {
  cameras: fleet.ids.length,
  startMs: Math.round(startMs),
  rssBeforeMB: mb(before.rss),
  rssIdleMB: mb(idle.rss),
  heapIdleDeltaMB: mb(idle.heapUsed - before.heapUsed),
  heapPerCameraKB: Math.round(((idle.heapUsed - before.heapUsed) / fleet.ids.length / 1024) * 100) / 100,
};

if (values.load) {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const soap = (path: string, body: string) =>
    new Promise<string>((resolve, reject) => {
      const nonce = randomBytes(16);
      const created = new Date().toISOString();
      const digest = createHash('sha1').update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(PASS)])).digest('base64');
      const doc =
        `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">` +
        `<UsernameToken><Username>${USER}</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</Password>` +
        `<Nonce>${nonce.toString('base64')}</Nonce><Created>${created}</Created></UsernameToken></Security></s:Header><s:Body>${body}</s:Body></s:Envelope>`;
      const req = request({ host: '127.0.0.1', port: fleet.port, path, method: 'POST', agent, headers: { 'Content-Type': 'application/soap+xml' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode} ${text.slice(0, 200)}`))));
      });
      req.on('error', reject);
      req.end(doc);
    });
  const EV = 'xmlns="http://www.onvif.org/ver10/events/wsdl"';
  const addresses = new Map<string, string>();
  const tSub = performance.now();
  const cpuSub = process.cpuUsage();
  for (let i = 0; i < fleet.ids.length; i += 64) {
    await Promise.all(
      fleet.ids.slice(i, i + 64).map(async (id) => {
        const xml = await soap(`/onvif/${id}/event_service`, `<CreatePullPointSubscription ${EV}><InitialTerminationTime>PT10M</InitialTerminationTime></CreatePullPointSubscription>`);
        addresses.set(id, new URL(/<wsa5:Address>([^<]+)</.exec(xml)![1]!).pathname);
      }),
    );
  }
  result['subscribeAllMs'] = Math.round(performance.now() - tSub);
  result['subscribeAllCpuMs'] = cpuMs(process.cpuUsage(cpuSub));
  // Drain the Initialized messages, then hold one long poll open per camera.
  await Promise.all([...addresses.values()].map((p) => soap(p, `<PullMessages ${EV}><Timeout>PT1S</Timeout><MessageLimit>10</MessageLimit></PullMessages>`)));
  const polls = [...addresses.values()].map((p) =>
    soap(p, `<PullMessages ${EV}><Timeout>PT60S</Timeout><MessageLimit>10</MessageLimit></PullMessages>`).then((xml) => ({ xml, at: performance.now() })),
  );
  await new Promise((r) => setTimeout(r, 1000));
  gc?.();
  const loaded = process.memoryUsage();
  result['rssLoadedMB'] = mb(loaded.rss);
  result['heapLoadedDeltaMB'] = mb(loaded.heapUsed - before.heapUsed);
  const tFire = performance.now();
  const cpuFire = process.cpuUsage();
  for (const id of fleet.ids) fleet.camera(id).raiseFire({ kind: 'fire', bearingDeg: 45 });
  const answers = await Promise.all(polls);
  result['fireToAllPollsAnsweredMs'] = Math.round(Math.max(...answers.map((a) => a.at)) - tFire);
  result['fireToAllPollsCpuMs'] = cpuMs(process.cpuUsage(cpuFire));
  result['pollsWithFire'] = answers.filter((a) => a.xml.includes('PropertyOperation="Changed"')).length;
  agent.destroy();
}

process.stdout.write(`${JSON.stringify(result)}\n`);
await fleet.close();
