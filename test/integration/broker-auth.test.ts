/**
 * CONNECT with credentials against a real gateway (anonymous access off): who gets in, with which
 * CONNACK code the others are turned away, what is counted, that reconnects are verified from
 * the cache, that a will on someone else's topic is refused, that repeated failures from one
 * address are cut off, and that bad TLS or credentials files stop the gateway at start.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLedgerCsv } from '../../config/ledger.js';
import { buildAgent } from '../../edge-agent/src/agent.js';
import { hashSecret, writeCredentialsFile } from '../../gateway/src/broker/credentials.js';
import { createLogger } from '../../gateway/src/log.js';
import type { AgentState } from '../../protocol/payloads.js';
import { topics } from '../../protocol/topics.js';
import { startTestGateway, testLogLevel, waitFor, type TestGateway, testAgentConfig } from '../helpers/gateway.js';

const LEDGER = parseLedgerCsv(
  [
    'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm',
    'tank-a1,water_tank,A1,29.41,105.85,G1,C1,agent-a,50,2500',
    'tank-b1,water_tank,B1,29.43,105.87,G2,C1,agent-b,50,2500',
  ].join('\n'),
).devices;
const SECRET_A = 'correct horse battery staple A';
const SECRET_B = 'correct horse battery staple B';

let dir: string;
let credentialsFile: string;
let gateway: TestGateway;
const clients: MqttClient[] = [];

async function connect(gw: TestGateway, opts: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(gw.mqttUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  clients.push(client);
  return client;
}

/** The CONNACK return code of a refused connection. */
async function refusedWith(gw: TestGateway, opts: IClientOptions): Promise<number> {
  try {
    const client = await mqtt.connectAsync(gw.mqttUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    await client.endAsync();
  } catch (err) {
    return (err as { code: number }).code;
  }
  throw new Error('the connection was accepted');
}

async function counter(gw: TestGateway, name: 'mqttAuthDenied' | 'mqttAuthVerifications', labels: Record<string, string>): Promise<number> {
  const values = (await gw.metrics[name].get()).values;
  return values.find((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))?.value ?? 0;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-broker-auth-'));
  credentialsFile = join(dir, 'credentials.yaml');
  writeCredentialsFile(credentialsFile, [
    { username: 'agent-a', kind: 'agent', hash: await hashSecret(SECRET_A) },
    { username: 'agent-b', kind: 'agent', hash: await hashSecret(SECRET_B) },
  ]);
  gateway = await startTestGateway({ ledger: LEDGER, mqtt: { allowAnonymous: false, credentialsFile } });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('CONNECT with credentials', () => {
  it('admits an agent as its username or username:suffix, and verifies reconnects from the cache', async () => {
    const scryptBefore = await counter(gateway, 'mqttAuthVerifications', { method: 'scrypt', result: 'ok' });
    const cacheBefore = await counter(gateway, 'mqttAuthVerifications', { method: 'cache', result: 'ok' });
    const first = await connect(gateway, { clientId: 'agent-b', username: 'agent-b', password: SECRET_B });
    expect(first.connected).toBe(true);
    for (let i = 1; i <= 4; i++) {
      const again = await connect(gateway, { clientId: `agent-b:${i}`, username: 'agent-b', password: SECRET_B });
      expect(again.connected).toBe(true);
    }
    expect((await counter(gateway, 'mqttAuthVerifications', { method: 'scrypt', result: 'ok' })) - scryptBefore).toBe(1);
    expect((await counter(gateway, 'mqttAuthVerifications', { method: 'cache', result: 'ok' })) - cacheBefore).toBe(4);
  });

  it('refuses a wrong password and an unknown user alike: CONNACK 4, a second after the CONNECT', async () => {
    const badBefore = await counter(gateway, 'mqttAuthDenied', { reason: 'bad_password' });
    const unknownBefore = await counter(gateway, 'mqttAuthDenied', { reason: 'unknown_user' });
    let started = Date.now();
    expect(await refusedWith(gateway, { clientId: 'agent-a', username: 'agent-a', password: 'guess' })).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    started = Date.now();
    expect(await refusedWith(gateway, { clientId: 'agent-zz', username: 'agent-zz', password: SECRET_A })).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect((await counter(gateway, 'mqttAuthDenied', { reason: 'bad_password' })) - badBefore).toBe(1);
    expect((await counter(gateway, 'mqttAuthDenied', { reason: 'unknown_user' })) - unknownBefore).toBe(1);
  });

  it('refuses a client id that is not the username (or username:…) with CONNACK 5', async () => {
    const before = await counter(gateway, 'mqttAuthDenied', { reason: 'client_id' });
    const refusals = await Promise.all(
      ['agent-b', 'agent-ab', 'x:agent-a'].map((clientId) => refusedWith(gateway, { clientId, username: 'agent-a', password: SECRET_A })),
    );
    expect(refusals).toEqual([5, 5, 5]);
    expect((await counter(gateway, 'mqttAuthDenied', { reason: 'client_id' })) - before).toBe(3);
  });

  it('refuses anonymous clients with CONNACK 5 when allowAnonymous is off', async () => {
    const before = await counter(gateway, 'mqttAuthDenied', { reason: 'anonymous' });
    expect(await refusedWith(gateway, { clientId: 'nobody' })).toBe(5);
    expect((await counter(gateway, 'mqttAuthDenied', { reason: 'anonymous' })) - before).toBe(1);
    const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(text).toMatch(/^gs_mqtt_auth_denied_total\{reason="anonymous"\} [1-9]/m);
  });

  it('refuses a last will on another agent’s state topic, and publishes one on the agent’s own', async () => {
    const before = await counter(gateway, 'mqttAuthDenied', { reason: 'will' });
    const forged: AgentState = { ts: Date.now(), seq: 0, status: 'offline' };
    const code = await refusedWith(gateway, {
      clientId: 'agent-a',
      username: 'agent-a',
      password: SECRET_A,
      will: { topic: topics.agentState('agent-b'), payload: Buffer.from(JSON.stringify(forged)), qos: 1, retain: true },
    });
    expect(code).toBe(5);
    expect((await counter(gateway, 'mqttAuthDenied', { reason: 'will' })) - before).toBe(1);

    const states: Array<{ agentId: string; status: string }> = [];
    const off = gateway.bus.on('agentState', ({ agentId, message }) => states.push({ agentId, status: message.status }));
    try {
      const will: AgentState = { ts: Date.now(), seq: 0, status: 'offline' };
      const agent = await connect(gateway, {
        clientId: 'agent-a',
        username: 'agent-a',
        password: SECRET_A,
        will: { topic: topics.agentState('agent-a'), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true },
      });
      await agent.publishAsync(topics.agentState('agent-a'), JSON.stringify({ ts: Date.now(), seq: 1, status: 'online' }), { qos: 1, retain: true });
      agent.stream.destroy(); // a dropped link, not a DISCONNECT: the will fires
      await waitFor(() => states.some((s) => s.agentId === 'agent-a' && s.status === 'offline'), { what: "agent-a's will" });
      expect(states.filter((s) => s.agentId === 'agent-b')).toEqual([]);
    } finally {
      off();
    }
  });
});

describe('the edge agent with credentials', () => {
  it('connects as its id with its secret, and its readings land', async () => {
    const agent = buildAgent({
      config: testAgentConfig({
        id: 'agent-a',
        brokerUrl: gateway.mqttUrl,
        username: 'agent-a',
        password: SECRET_A,
        outboxFile: join(dir, 'agent-a-outbox.sqlite'),
        outboxMaxMessages: 10_000,
        maxInflight: 10,
        tanks: { pollIntervalMs: 1000, timeoutMs: 500 },
      }),
      log: createLogger(testLogLevel()),
      collectors: [],
      deviceCount: 1,
    });
    await agent.start();
    try {
      const ts = Date.UTC(2026, 5, 1);
      agent.emit({ channel: 'telemetry', kind: 'water_tank', deviceId: 'tank-a1', ts, values: { levelMm: 1555, levelPercent: 62.2, volumeM3: 31.1 } });
      await waitFor(() => gateway.registry.view('tank-a1')?.values.levelMm === 1555, { what: 'the agent reading in the registry' });
      await waitFor(() => agent.stats().queued === 0, { what: 'the outbox drained (PUBACK received)' });
    } finally {
      await agent.stop();
    }
  });
});

describe('failed logins from one address', () => {
  it('are cut off after 10 in a minute: even the right secret is then refused, without a scrypt', async () => {
    const limited = await startTestGateway({ ledger: LEDGER, mqtt: { allowAnonymous: false, credentialsFile } });
    try {
      const codes = await Promise.all(Array.from({ length: 10 }, (_, i) => refusedWith(limited, { clientId: 'agent-a', username: 'agent-a', password: `guess-${i}` })));
      expect(codes).toEqual(Array(10).fill(4));
      const scryptBefore = await counter(limited, 'mqttAuthVerifications', { method: 'scrypt', result: 'failed' });
      expect(await refusedWith(limited, { clientId: 'agent-a', username: 'agent-a', password: SECRET_A })).toBe(5);
      expect(await counter(limited, 'mqttAuthDenied', { reason: 'rate_limited' })).toBe(1);
      expect(await counter(limited, 'mqttAuthVerifications', { method: 'scrypt', result: 'failed' })).toBe(scryptBefore);
      // Another gateway (another limiter) still admits it: the refusal was the limiter's.
      expect((await connect(gateway, { clientId: 'agent-a:limit', username: 'agent-a', password: SECRET_A })).connected).toBe(true);
    } finally {
      await limited.close();
    }
  });
});

describe('start-up checks', () => {
  it('refuses to start TLS without readable certificate and key, naming the keys', async () => {
    await expect(startTestGateway({ ledger: LEDGER, mqtt: { tls: { port: 0 } } })).rejects.toThrow(
      /gateway\.mqtt\.tls\.certFile: is required when gateway\.mqtt\.tls\.port is set\n {2}gateway\.mqtt\.tls\.keyFile: is required/,
    );
    const missing = join(dir, 'no-such-key.pem');
    writeFileSync(join(dir, 'not-a-cert.pem'), 'hello\n');
    await expect(startTestGateway({ ledger: LEDGER, mqtt: { tls: { port: 0, certFile: join(dir, 'not-a-cert.pem'), keyFile: missing } } })).rejects.toThrow(
      `gateway.mqtt.tls.keyFile: cannot read ${missing}: ENOENT`,
    );
  });

  it('refuses to start with a malformed credentials file, naming the file and the entry', async () => {
    const bad = join(dir, 'bad-credentials.yaml');
    writeFileSync(bad, 'principals:\n  - username: agent-a\n    kind: agent\n    password: hunter2\n');
    await expect(startTestGateway({ ledger: LEDGER, mqtt: { allowAnonymous: false, credentialsFile: bad } })).rejects.toThrow(
      /invalid credentials file .*bad-credentials\.yaml:\n {2}principals\[0\]\.password: unknown key\n {2}principals\[0\]\.hash: must be a scrypt/,
    );
  });
});
