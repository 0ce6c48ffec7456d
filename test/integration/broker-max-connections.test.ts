/**
 * gateway.mqtt.maxConnections (gateway/src/broker/descriptors.ts): past the cap the embedded
 * broker closes new connections on arrival — over TCP and over WebSocket, counted in one sum —
 * while the HTTP API keeps answering; a slot that frees up is taken again. Real sockets, a real
 * gateway; the cap is set low so that the test does not need thousands of descriptors (the
 * `auto` value is derived from the open-file limit and unit-tested in descriptors.test.ts).
 */
import { connect, type Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

const CAP = 3;
let gateway: TestGateway;
const clients: MqttClient[] = [];

beforeAll(async () => {
  gateway = await startTestGateway({ mqtt: { maxConnections: CAP, websocketPath: '/mqtt' } });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await gateway?.close();
});

const port = () => gateway.mqttPort!;
const mqttStatus = () => gateway.broker.status() as { clients: number };
const refused = async (transport: string) => {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  return Number(new RegExp(`^gs_mqtt_connections_refused_total\\{transport="${transport}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
};

/** A raw TCP connection that sends CONNECT; resolves with what became of it. */
function rawConnect(port: number): Promise<'connack' | 'closed'> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    const clientId = Buffer.from(`raw-${Math.random().toString(36).slice(2, 8)}`);
    // CONNECT, MQTT 3.1.1, clean session, keepalive 60.
    const vh = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
    const payload = Buffer.concat([Buffer.from([clientId.length >> 8, clientId.length & 0xff]), clientId]);
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from([0x10, vh.length + payload.length]), vh, payload])));
    socket.on('data', (d) => {
      if (d[0] === 0x20) {
        socket.destroy();
        resolve('connack');
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve('closed') : reject(err)));
    socket.on('close', () => resolve('closed'));
  });
}

describe('embedded broker: maxConnections', () => {
  it('refuses connections past the cap on every transport, keeps serving HTTP, and admits again when one closes', async () => {
    const health = (await (await fetch(`${gateway.httpUrl}/health`)).json()) as { mqtt: { maxConnections: number | null } };
    expect(health.mqtt.maxConnections).toBe(CAP);

    for (let i = 0; i < CAP; i++) clients.push(await mqtt.connectAsync(gateway.mqttUrl, { clientId: `held-${i}`, reconnectPeriod: 0 }));
    expect(mqttStatus()).toMatchObject({ clients: CAP });

    // TCP: closed on arrival, no CONNACK.
    const tcpBefore = await refused('tcp');
    expect(await rawConnect(port())).toBe('closed');
    expect(await refused('tcp')).toBe(tcpBefore + 1);

    // WebSocket: upgraded by the HTTP server, then closed with 1013 (try again later).
    const code = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gateway.httpPort}/mqtt`, 'mqtt');
      ws.on('close', (c) => resolve(c));
      ws.on('error', reject);
    });
    expect(code).toBe(1013);
    expect(await refused('ws')).toBe(1);

    // The API still answers while MQTT is full.
    const res = await fetch(`${gateway.httpUrl}/health`);
    expect(res.status).toBeLessThan(500);

    // A slot frees up: the next connection is admitted.
    await clients.pop()!.endAsync(true);
    await expect.poll(() => mqttStatus().clients, { timeout: 5000 }).toBe(CAP - 1);
    expect(await rawConnect(port())).toBe('connack');
  }, 30_000);
});
