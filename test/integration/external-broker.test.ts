/**
 * External broker mode against real engines: Mosquitto 2 (MQTT 5 shared subscriptions), a real
 * InfluxDB 1.x, two gateway instances in this process (own data dirs and spools, same share
 * group) and a third in a child process that is killed with SIGKILL under load. Devices publish
 * to Mosquitto only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/topics.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import type { DeviceUpdate, ServerMessage } from '../../protocol/ws.js';
import { resolveConfig } from '../../config/load.js';
import { ExternalBroker } from '../../gateway/src/broker/external.js';
import type { IngestResult } from '../../gateway/src/ingest/ingest.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { CONFIG_DIR, startTestGateway, testLogLevel, waitFor, type TestGateway } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { startMosquitto, type MosquittoServer } from '../helpers/mosquitto.js';

const DB = 'external_broker_test';
const GROUP = 'gs-test';
const tank = (n: number) => `tank-${String(n).padStart(3, '0')}`;

let influx: InfluxServer;
let broker: MosquittoServer;
let a: TestGateway;
let b: TestGateway;
let child: GatewayProcess | undefined;
const childDir = mkdtempSync(join(tmpdir(), 'gs-ext-child-'));
const clients: MqttClient[] = [];

const external = (clientId: string, more: Record<string, unknown> = {}) => ({
  mode: 'external',
  external: { url: broker.url, clientId, shareGroup: GROUP, reconnectMinMs: 100, reconnectMaxMs: 1000, receiveMaximum: 100, ...more },
});

async function device(clientId: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(broker.url, { clientId, reconnectPeriod: 0, ...opts });
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

const telemetry = (ts: number, seq: number, levelMm: number) => JSON.stringify({ ts, seq, values: { levelMm, levelPercent: 50, volumeM3: 25 } });

/** Publishes every message QoS1 from `n` clients, at most `window` unacknowledged per client. */
async function publishAll(messages: Array<{ device: string; ts: number; seq: number; levelMm: number }>, n: number, prefix: string, window = 50): Promise<void> {
  const pubs = await Promise.all(Array.from({ length: n }, (_, i) => device(`${prefix}-${i}`)));
  await Promise.all(
    pubs.map(async (client, i) => {
      const mine = messages.filter((_, j) => j % n === i);
      const pending = new Set<Promise<unknown>>();
      for (const m of mine) {
        const p = client.publishAsync(topics.telemetry(m.device), telemetry(m.ts, m.seq, m.levelMm), { qos: 1 });
        pending.add(p);
        void p.finally(() => pending.delete(p));
        if (pending.size >= window) await Promise.race(pending);
      }
      await Promise.all(pending);
    }),
  );
}

async function telemetryIn(gw: TestGateway): Promise<number> {
  return (await gw.metrics.messagesIn.get()).values.find((v) => v.labels.channel === 'telemetry')?.value ?? 0;
}

async function storedSince(fromMs: number, toMs: number): Promise<number> {
  const r = await influx.query(DB, `SELECT COUNT("levelMm") FROM "water_tank" WHERE time >= ${fromMs}ms AND time < ${toMs}ms`);
  return (r.results[0]?.series?.[0]?.values[0]?.[1] as number | undefined) ?? 0;
}

/** A dashboard client: every device update it was sent, in order. */
async function dashboard(gw: TestGateway): Promise<{ updates: DeviceUpdate[]; close(): void }> {
  const ws = new WebSocket(`${gw.httpUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await gw.tokenFor('viewer')}` } });
  const updates: DeviceUpdate[] = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data)) as ServerMessage;
    if (msg.type === 'devices.update') updates.push(...msg.updates);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { updates, close: () => ws.close() };
}

beforeAll(async () => {
  // Notices: Mosquitto logs each CONNECT with its keepalive ("… as gw-b (p5, c0, k7)").
  [influx, broker] = await Promise.all([startInfluxd(), startMosquitto({ extraConfig: ['log_type notice'] })]);
  // Retained before any gateway runs: a device's offline state (as a will leaves it).
  const early = await device('early-agent');
  await early.publishAsync(topics.state(tank(50)), JSON.stringify({ ts: Date.now(), seq: 1, status: 'offline', reason: 'will' }), { qos: 1, retain: true });
  const gw = async (id: string, more?: Record<string, unknown>) => startTestGateway({ influxUrl: influx.url, database: DB, mqtt: external(id, more) });
  [a, b] = await Promise.all([gw('gw-a'), gw('gw-b', { keepaliveSec: 7 })]);
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.end(true);
  await child?.kill('SIGKILL');
  await Promise.all([a?.close(), b?.close()]);
  await Promise.all([broker?.stop(), influx?.stop()]);
  rmSync(childDir, { recursive: true, force: true });
});

describe('external broker mode (Mosquitto, two instances, one share group)', () => {
  it('listens on no MQTT port of its own and is ready once subscribed', async () => {
    expect(a.mqttPort).toBeNull();
    expect(a.mqttUrl).toBe(broker.url);
    const ready = await fetch(`${a.httpUrl}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, checks: { broker: true }, mqtt: { mode: 'external', clientId: 'gw-a', state: 'connected', connected: true } });
    expect((await a.metrics.mqttBrokerConnected.get()).values[0]?.value).toBe(1);
    // Keepalive: the default 30 s, and gateway.mqtt.external.keepaliveSec where it is set.
    expect(broker.log()).toMatch(/as gw-a \(p5, c\d, k30\)/);
    expect(broker.log()).toMatch(/as gw-b \(p5, c\d, k7\)/);
  });

  it('gets retained states at start and last wills through the broker, on every instance', async () => {
    // Retained state is not sent for shared subscriptions: each instance fetched it itself.
    await waitFor(() => a.registry.view(tank(50))?.status === 'offline' && b.registry.view(tank(50))?.status === 'offline', { what: 'retained offline state on both' });
    const dying = await device('dying-tank', { will: { topic: topics.state(tank(51)), payload: Buffer.from(JSON.stringify({ ts: Date.now(), seq: 9, status: 'offline' })), qos: 1, retain: true } });
    dying.stream.destroy(); // no DISCONNECT: the broker publishes the will
    // One instance ingests the will; the other learns it through cluster fan-out.
    await waitFor(() => a.registry.view(tank(51))?.status === 'offline' && b.registry.view(tank(51))?.status === 'offline', { what: 'will seen by both' });
  });

  it('splits 2,000 QoS1 messages between the instances and stores each exactly once', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const devices = Array.from({ length: 20 }, (_, i) => tank(i + 1));
    const messages = devices.flatMap((d, di) => Array.from({ length: 100 }, (_, seq) => ({ device: d, ts: t0 + seq * 1000 + di, seq, levelMm: 1000 + seq })));
    const [inA, inB] = [await telemetryIn(a), await telemetryIn(b)];
    const started = Date.now();
    await publishAll(messages, 4, 'load');
    const acked = Date.now();
    // A PUBACK from the broker is not yet ours: wait for both instances' spools to reach InfluxDB.
    await waitFor(async () => (await storedSince(t0, t0 + 200_000)) === 2000, { timeoutMs: 20_000, what: '2000 points in InfluxDB' });
    const [shareA, shareB] = [(await telemetryIn(a)) - inA, (await telemetryIn(b)) - inB];
    console.info(`[external-broker] 2000 msgs acked by the broker in ${acked - started} ms, stored in ${Date.now() - started} ms; share A ${shareA}, B ${shareB}`);
    expect(shareA).toBeGreaterThan(0);
    expect(shareB).toBeGreaterThan(0);
    // Every message went to exactly one instance (no redelivery without a failure).
    expect(shareA + shareB).toBe(2000);
    // Both registries converge on the newest reading of every device, whichever instance took it.
    await waitFor(() => devices.every((d) => a.registry.view(d)?.values.levelMm === 1099 && b.registry.view(d)?.values.levelMm === 1099), { what: 'both registries up to date' });
  });

  it('every dashboard sees updates ingested by the other instance', async () => {
    const [onA, onB] = await Promise.all([dashboard(a), dashboard(b)]);
    const pub = await device('fanout-tank');
    const id = tank(30);
    const t0 = Date.now();
    const inB = await telemetryIn(b);
    const seen = (d: { updates: DeviceUpdate[] }, level: number) => d.updates.some((u) => u.id === id && u.values?.levelMm === level);
    for (let i = 0; i < 8; i++) {
      await pub.publishAsync(topics.telemetry(id), telemetry(t0 + i, i, 500 + i), { qos: 1 });
      await waitFor(() => seen(onA, 500 + i) && seen(onB, 500 + i), { timeoutMs: 5000, what: `reading ${i} on both dashboards` });
    }
    // Not a trivial pass: some of those were ingested by B only, and A's dashboard still saw them.
    expect((await telemetryIn(b)) - inB).toBeGreaterThan(0);
    expect((await telemetryIn(b)) - inB).toBeLessThan(8);
    onA.close();
    onB.close();
  });

  it('sends a command through the broker to the device', async () => {
    const pole = await device('pole-001-agent');
    const got = new Promise<DeviceCommand>((resolve) => pole.on('message', (_t, payload) => resolve(JSON.parse(String(payload)) as DeviceCommand)));
    await pole.subscribeAsync(topics.cmd('pole-001'), { qos: 1 });
    const command: DeviceCommand = { id: 'ext-cmd-1', ts: Date.now(), name: 'broadcast.stop', params: { cmdId: 'earlier' } };
    await a.sendCommand('pole-001', command);
    expect(await got).toEqual(command);
  });

  it('loses nothing when an instance is killed with SIGKILL under load', async () => {
    const configDoc = {
      log: { level: testLogLevel() === 'silent' ? 'warn' : testLogLevel() },
      gateway: {
        mqtt: external('gw-c'),
        http: { host: '127.0.0.1', port: 0 },
        influx: { url: influx.url, database: DB, flushIntervalMs: 100, gzip: false },
        dataDir: childDir,
      },
    };
    child = await spawnGateway(configDoc);
    expect(child.mqttUrl).toBe(broker.url);
    await waitFor(async () => (await fetch(`${child!.httpUrl}/ready`)).status === 200, { what: 'child ready' });
    const childTelemetry = async () => {
      const text = await (await fetch(`${child!.httpUrl}/metrics`)).text();
      return Number(/^gs_mqtt_messages_in_total\{channel="telemetry"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };

    const t1 = Date.UTC(2026, 1, 1);
    const devices = Array.from({ length: 10 }, (_, i) => tank(i + 31));
    const total = 3000;
    const messages = Array.from({ length: total }, (_, k) => ({ device: devices[k % 10]!, ts: t1 + Math.floor(k / 10) * 1000, seq: Math.floor(k / 10), levelMm: k }));
    const inAB = (await telemetryIn(a)) + (await telemetryIn(b));
    const publishing = publishAll(messages, 3, 'kill', 10);
    // Mid-stream, once the three instances have taken a good part of it, pull the plug on the child.
    await waitFor(async () => (await telemetryIn(a)) + (await telemetryIn(b)) - inAB > 600, { timeoutMs: 15_000, what: 'load under way' });
    expect(await childTelemetry()).toBeGreaterThan(0);
    await child.kill('SIGKILL');
    await publishing;
    // Restarted on the same client id and data dir: the broker hands over what it queued for the
    // child's session and what the child never acknowledged; the spool replays what it had.
    child = await spawnGateway(configDoc);
    await waitFor(async () => (await storedSince(t1, t1 + 400_000)) === total, { timeoutMs: 20_000, what: `${total} points in InfluxDB` });
    // Mosquitto kept routing the dead session's share to it: the restarted child took that queue.
    expect(await childTelemetry()).toBeGreaterThan(0);
    // Idempotent writes: a message redelivered after the kill overwrote its own point, nothing else.
    expect(await storedSince(t1, t1 + 400_000)).toBe(total);

    // A graceful stop (scale-down) unsubscribes first: nothing is queued for the departed session.
    await child.kill('SIGTERM');
    expect(child.child.exitCode).toBe(0);
    const before = (await telemetryIn(a)) + (await telemetryIn(b));
    const t2 = Date.UTC(2026, 2, 1);
    await publishAll(Array.from({ length: 100 }, (_, k) => ({ device: tank(41 + (k % 5)), ts: t2 + k, seq: k, levelMm: k })), 2, 'after-stop');
    await waitFor(async () => (await telemetryIn(a)) + (await telemetryIn(b)) - before === 100, { what: 'A and B took all 100' });
  }, 40_000);

  it('is not ready while the broker is gone, and resumes when it is back', async () => {
    const port = broker.port;
    await broker.kill();
    await waitFor(async () => (await fetch(`${a.httpUrl}/ready`)).status === 503, { what: 'not ready' });
    const body = (await (await fetch(`${a.httpUrl}/ready`)).json()) as { checks: { broker: boolean }; mqtt: { state: string; connected: boolean } };
    expect(body).toMatchObject({ checks: { broker: false }, mqtt: { connected: false } });
    expect(['reconnecting', 'connecting']).toContain(body.mqtt.state);
    expect((await a.metrics.mqttBrokerConnected.get()).values[0]?.value).toBe(0);
    expect(await (await fetch(`${a.httpUrl}/health`)).json()).toMatchObject({ status: 'degraded', mqtt: { mode: 'external', connected: false } });
    await expect(a.sendCommand('pole-001', { id: 'ext-cmd-2', ts: Date.now(), name: 'broadcast.stop', params: { cmdId: 'x' } })).rejects.toThrow(/not connected/);

    broker = await startMosquitto({ port });
    await waitFor(async () => (await fetch(`${a.httpUrl}/ready`)).status === 200, { timeoutMs: 10_000, what: 'ready again' });
    // The new broker knows no session: the instance subscribed again and takes traffic.
    const before = await telemetryIn(a) + (await telemetryIn(b));
    const pub = await device('after-restart');
    await pub.publishAsync(topics.telemetry(tank(40)), telemetry(Date.now(), 1, 1), { qos: 1 });
    await waitFor(async () => (await telemetryIn(a)) + (await telemetryIn(b)) > before, { what: 'traffic after the broker restart' });
  });
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('external broker mode: what a PUBACK means', () => {
  /** One ExternalBroker against the running Mosquitto, with an ingest and a spool the test controls. */
  async function harness(receiveMaximum: number) {
    const { config } = resolveConfig(
      { log: { level: 'silent' }, gateway: { dataDir: childDir, mqtt: { mode: 'external', external: { url: broker.url, clientId: `ack-${receiveMaximum}`, shareGroup: 'ack-test', receiveMaximum, reconnectMinMs: 50, reconnectMaxMs: 100, fanout: false } } } },
      { source: 'test', baseDir: CONFIG_DIR },
    );
    const seen: number[] = [];
    let outcome: IngestResult = { ok: true, duplicate: false };
    let gate = deferred();
    const spool = { full: false, barrier: () => gate.promise };
    let client: MqttClient | undefined;
    const ext = new ExternalBroker({
      config: config.gateway!,
      log: createLogger('silent'),
      metrics: createMetrics(),
      ingest: { handle: (_topic, payload) => (seen.push((JSON.parse(Buffer.from(payload).toString()) as { seq: number }).seq), outcome) },
      durability: spool,
      spoolFullPollMs: 20,
      connect: (url, opts) => (client = mqtt.connect(url, opts)),
    });
    await ext.start();
    return {
      ext,
      seen,
      spool,
      reject: (yes: boolean) => void (outcome = yes ? { ok: false, reason: 'schema', detail: 'test' } : { ok: true, duplicate: false }),
      commit: () => gate.resolve(),
      stall: () => void (gate = deferred()),
      /** The connection dies without a DISCONNECT (a crash, a cut cable); the client reconnects. */
      async crash() {
        client!.stream.destroy();
        await waitFor(() => !ext.ready, { what: 'disconnected' });
        await waitFor(() => ext.ready, { what: 'reconnected' });
      },
    };
  }

  it('acknowledges only what the spool committed, in a bounded window, and holds back for a full spool', async () => {
    const h = await harness(5);
    const pub = await device('ack-publisher');
    const send = (seqs: number[]) => Promise.all(seqs.map((seq) => pub.publishAsync(topics.telemetry(tank(1)), telemetry(seq, seq, 1), { qos: 1 })));
    try {
      // Spool not committing: the broker sends Receive Maximum (5) and waits.
      await send([1, 2, 3, 4, 5, 6, 7, 8]);
      await waitFor(() => h.seen.length === 5, { what: 'a window of 5' });
      await new Promise((r) => setTimeout(r, 300));
      expect(h.seen).toEqual([1, 2, 3, 4, 5]);
      expect(h.ext.status()).toMatchObject({ inflight: 5 });
      // Nothing was acknowledged, so a crash means the broker sends them all again.
      await h.crash();
      await waitFor(() => h.seen.length === 10, { what: 'redelivery of the unacknowledged' });
      expect(h.seen.slice(5)).toEqual([1, 2, 3, 4, 5]);
      // The spool commits: those are acknowledged and the rest flows.
      h.commit();
      await waitFor(() => h.seen.length === 13 && h.ext.status().inflight === 0, { what: 'the rest' });
      expect(h.seen.slice(10)).toEqual([6, 7, 8]);
      // Acknowledged means gone from the broker: another crash redelivers nothing.
      await h.crash();
      await new Promise((r) => setTimeout(r, 300));
      expect(h.seen).toHaveLength(13);

      // A message ingest rejects is acknowledged without the spool (never redelivered forever).
      h.stall();
      h.reject(true);
      await send([20]);
      await waitFor(() => h.seen.includes(20) && h.ext.status().inflight === 0, { what: 'rejected message acknowledged' });
      h.reject(false);

      // A full spool: not even ingested until there is room (the broker keeps the message).
      h.commit();
      h.spool.full = true;
      await send([30]);
      await new Promise((r) => setTimeout(r, 200));
      expect(h.seen).not.toContain(30);
      expect(h.ext.status()).toMatchObject({ inflight: 1 });
      h.spool.full = false;
      await waitFor(() => h.seen.includes(30) && h.ext.status().inflight === 0, { what: 'taken once there is room' });
    } finally {
      h.commit();
      await h.ext.stop();
    }
  });
});
