/**
 * The broker's ACL over real sockets, one suite run against each transport — MQTT over TCP, over
 * TLS (a certificate made here by openssl) and over WebSocket on the HTTP port — all feeding the
 * same aedes: an agent publishes only for the devices the ledger gives it, and subscribes only to
 * their command topics; a device only for itself. A denied publish is acknowledged, dropped (not
 * stored, not forwarded, not retained) and counted.
 *
 * Anonymous development mode is on here so that an unrestricted observer can watch what the
 * broker forwards; the principals under test connect with credentials and get no such freedom.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLedgerCsv } from '../../config/ledger.js';
import { hashSecret, writeCredentialsFile } from '../../gateway/src/broker/credentials.js';
import { topics } from '../../protocol/topics.js';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

const LEDGER = parseLedgerCsv(
  [
    'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm',
    'tank-a1,water_tank,A1,29.41,105.85,G1,C1,agent-a,50,2500',
    'tank-a2,water_tank,A2,29.42,105.86,G1,C1,agent-a,50,2500',
    'tank-b1,water_tank,B1,29.43,105.87,G2,C1,agent-b,50,2500',
    'tank-d1,water_tank,D1,29.44,105.88,G2,C1,agent-b,50,2500',
  ].join('\n'),
).devices;
const SECRETS = { 'agent-a': 'secret-of-agent-a', 'agent-b': 'secret-of-agent-b', 'tank-d1': 'secret-of-tank-d1' } as const;
type Username = keyof typeof SECRETS;
const TRANSPORTS = ['tcp', 'tls', 'ws'] as const;
type Transport = (typeof TRANSPORTS)[number];

let dir: string;
let cert: Buffer;
let gateway: TestGateway;
let observer: MqttClient;
const seen: Array<{ topic: string; payload: string; retain: boolean }> = [];
const clients: MqttClient[] = [];

function endpoint(transport: Transport): { url: string; opts: IClientOptions } {
  switch (transport) {
    case 'tcp':
      return { url: gateway.mqttUrl, opts: {} };
    case 'tls':
      return { url: `mqtts://127.0.0.1:${gateway.mqttTlsPort}`, opts: { ca: cert, servername: 'localhost' } };
    case 'ws':
      return { url: `ws://127.0.0.1:${gateway.httpPort}/mqtt`, opts: {} };
  }
}

async function connectAs(transport: Transport, username: Username, clientId: string = username, extra: IClientOptions = {}): Promise<MqttClient> {
  const { url, opts } = endpoint(transport);
  const client = await mqtt.connectAsync(url, { ...opts, clientId, username, password: SECRETS[username], reconnectPeriod: 0, connectTimeout: 5000, ...extra });
  clients.push(client);
  return client;
}

/** Resolves to the CONNACK return code of a refused connection. */
async function refusedWith(transport: Transport, opts: IClientOptions): Promise<number> {
  const { url, opts: base } = endpoint(transport);
  try {
    const client = await mqtt.connectAsync(url, { ...base, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    await client.endAsync();
  } catch (err) {
    return (err as { code: number }).code;
  }
  throw new Error('the connection was accepted');
}

/** SUBACK return codes in filter order; mqtt.js rejects a SUBACK holding any 0x80 but keeps the packet. */
async function granted(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
  } catch (err) {
    const codes = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!codes) throw err;
    return codes;
  }
}

const telemetry = (ts: number, seq: number, levelMm: number) =>
  JSON.stringify({ ts, seq, values: { levelMm, levelPercent: levelMm / 25, volumeM3: levelMm / 50 } });

async function deviceView(id: string): Promise<{ status: string; lastSeen: number | null; values: Record<string, number> }> {
  return (await gateway.api(`/api/devices/${id}`)).json() as never;
}

async function aclDenied(action: 'publish' | 'subscribe'): Promise<number> {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  return Number(new RegExp(`^gs_mqtt_acl_denied_total\\{action="${action}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-broker-acl-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  cert = readFileSync(join(dir, 'cert.pem'));
  writeCredentialsFile(join(dir, 'credentials.yaml'), [
    { username: 'agent-a', kind: 'agent', hash: await hashSecret(SECRETS['agent-a']) },
    { username: 'agent-b', kind: 'agent', hash: await hashSecret(SECRETS['agent-b']) },
    { username: 'tank-d1', kind: 'device', hash: await hashSecret(SECRETS['tank-d1']) },
  ]);
  gateway = await startTestGateway({
    ledger: LEDGER,
    mqtt: {
      allowAnonymous: true,
      credentialsFile: join(dir, 'credentials.yaml'),
      tls: { port: 0, certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') },
      websocketPath: '/mqtt',
    },
  });
  observer = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'observer', reconnectPeriod: 0 });
  observer.on('message', (topic, payload, packet) => seen.push({ topic, payload: payload.toString(), retain: packet.retain }));
  await observer.subscribeAsync('gs/v1/#', { qos: 1 });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await observer?.endAsync(true);
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(TRANSPORTS)('MQTT over %s', (transport) => {
  // Distinct device times per transport, so de-duplication never hides a message.
  const t0 = Date.UTC(2026, 3, 1) + TRANSPORTS.indexOf(transport) * 3600_000;

  it('stores an agent’s own readings and drops, unrouted but acknowledged, those for another agent’s device', async () => {
    const agentA = await connectAs(transport, 'agent-a', `agent-a:${transport}`);
    const deniedBefore = await aclDenied('publish');
    const level = 1000 + TRANSPORTS.indexOf(transport);

    // QoS1 and retained: the PUBACK still comes (publishAsync resolves), nothing else happens.
    await agentA.publishAsync(topics.telemetry('tank-b1'), telemetry(t0, 1, 4321), { qos: 1 });
    await agentA.publishAsync(topics.state('tank-b1'), JSON.stringify({ ts: t0, seq: 1, status: 'offline' }), { qos: 1, retain: true });
    await agentA.publishAsync(topics.agentState('agent-b'), JSON.stringify({ ts: t0, seq: 1, status: 'offline' }), { qos: 1, retain: true });
    await agentA.publishAsync(topics.telemetry('tank-a1'), telemetry(t0, 1, level), { qos: 1 });
    await agentA.publishAsync(topics.agentState('agent-a'), JSON.stringify({ ts: t0, seq: 1, status: 'online' }), { qos: 1 });

    await waitFor(async () => (await deviceView('tank-a1')).values.levelMm === level, { what: 'tank-a1 reading on the API' });
    // In order on one connection: once the allowed message was forwarded, a denied one would have been too.
    await waitFor(() => seen.some((m) => m.topic === topics.agentState('agent-a') && m.payload.includes(String(t0))), { what: 'agent-a state forwarded' });
    expect(seen.filter((m) => m.topic.includes('tank-b1') || m.topic === topics.agentState('agent-b'))).toEqual([]);
    const b1 = await deviceView('tank-b1');
    expect(b1).toMatchObject({ status: 'unknown', lastSeen: null, values: {} });
    expect((await aclDenied('publish')) - deniedBefore).toBe(3);

    // Not retained: a new subscriber to the topic gets nothing.
    const late = await mqtt.connectAsync(gateway.mqttUrl, { clientId: `late-${transport}`, reconnectPeriod: 0 });
    clients.push(late);
    const retained: string[] = [];
    late.on('message', (topic) => retained.push(topic));
    await late.subscribeAsync(topics.state('tank-b1'), { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    expect(retained).toEqual([]);
  });

  it('grants an agent exact command topics of its own devices only', async () => {
    const agentA = await connectAs(transport, 'agent-a', `agent-a:sub-${transport}`);
    const deniedBefore = await aclDenied('subscribe');
    const filters = [topics.cmd('tank-a1'), topics.cmd('tank-a2'), topics.cmd('tank-b1'), 'gs/v1/devices/+/cmd', 'gs/v1/#', topics.telemetry('tank-a1')];
    expect(await granted(agentA, filters)).toEqual([1, 1, 128, 128, 128, 128]);
    expect((await aclDenied('subscribe')) - deniedBefore).toBe(4);
    // The other agent is refused this agent's command topic.
    const agentB = await connectAs(transport, 'agent-b', `agent-b:${transport}`);
    expect(await granted(agentB, [topics.cmd('tank-a1'), topics.cmd('tank-b1')])).toEqual([128, 1]);
  });

  it('lets a device principal publish and subscribe for itself only', async () => {
    const device = await connectAs(transport, 'tank-d1', `tank-d1:${transport}`);
    const level = 2000 + TRANSPORTS.indexOf(transport);
    const deniedBefore = await aclDenied('publish');
    await device.publishAsync(topics.telemetry('tank-a2'), telemetry(t0, 1, 7777), { qos: 1 });
    await device.publishAsync(topics.agentState('tank-d1'), JSON.stringify({ ts: t0, seq: 1, status: 'online' }), { qos: 1 });
    await device.publishAsync(topics.telemetry('tank-d1'), telemetry(t0, 1, level), { qos: 1 });
    await waitFor(async () => (await deviceView('tank-d1')).values.levelMm === level, { what: 'tank-d1 reading on the API' });
    expect((await deviceView('tank-a2')).values.levelMm).not.toBe(7777);
    expect((await aclDenied('publish')) - deniedBefore).toBe(2);
    expect(await granted(device, [topics.cmd('tank-d1'), topics.cmd('tank-b1')])).toEqual([1, 128]);
  });

  it('refuses a wrong password with CONNACK 4', async () => {
    expect(await refusedWith(transport, { clientId: 'agent-a', username: 'agent-a', password: 'not-the-secret' })).toBe(4);
  });
});

describe('TLS listener', () => {
  it('is refused by a client that does not trust the certificate', async () => {
    await expect(
      mqtt.connectAsync(`mqtts://127.0.0.1:${gateway.mqttTlsPort}`, { servername: 'localhost', clientId: 'agent-a', username: 'agent-a', password: SECRETS['agent-a'], reconnectPeriod: 0, connectTimeout: 5000 }),
    ).rejects.toThrow(/self[- ]signed/i);
  });
});
