/**
 * The webhook notifier against a real HTTP server standing in for an SMS / work-chat gateway:
 * the dispatch arrives signed, a failed delivery is retried, and the outcome is recorded on the
 * incident (who, which channel, sent or failed).
 */
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Incident, IncidentDetail } from '../../protocol/incidents.js';
import { topics } from '../../protocol/topics.js';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

const SECRET = 'webhook-test-secret';
let server: Server;
let gateway: TestGateway;
let client: MqttClient;
const received: Array<{ body: string; signature: string | undefined; status: number }> = [];
let failFirst = true;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      // The SMS gateway is briefly down for the first request.
      const status = failFirst ? 503 : 200;
      failFirst = false;
      received.push({ body, signature: req.headers['x-greenshield-signature'] as string | undefined, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`;
  gateway = await startTestGateway({
    gateway: {
      alerts: {
        roster: [{ name: '张组长', role: '网格长', level: 'grid', grids: ['G05'], phone: '13900000005' }],
        webhooks: [{ url, secret: SECRET, timeoutMs: 2000, attempts: 3 }],
      },
    },
  });
  client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'webhook-test', reconnectPeriod: 0 });
}, 30_000);

afterAll(async () => {
  await client?.endAsync();
  await gateway?.close();
  await new Promise((r) => server?.close(r));
});

it('posts each dispatch, signed, retrying a failed delivery, and records the outcome', async () => {
  const camera = gateway.registry.views().find((d) => d.kind === 'camera' && d.grid === 'G05')!;
  await client.publishAsync(topics.event(camera.id), JSON.stringify({ ts: Date.now(), seq: 1, type: 'fire', phase: 'start', confidence: 0.95 }), { qos: 1 });
  await waitFor(() => received.length >= 2, { timeoutMs: 10_000, what: 'the retried webhook' });
  expect(received.map((r) => r.status)).toEqual([503, 200]);
  for (const r of received) expect(r.signature).toBe(createHmac('sha256', SECRET).update(r.body).digest('hex'));
  const notice = JSON.parse(received[1]!.body) as { type: string; level: string; recipients: Array<{ name: string; phone: string }>; incident: Incident };
  expect(notice).toMatchObject({ type: 'incident.dispatch', level: 'grid' });
  expect(notice.recipients).toEqual([expect.objectContaining({ name: '张组长', phone: '13900000005' })]);
  expect(notice.incident.devices).toEqual([camera.id]);

  const detail = await waitFor(async () => {
    const d = (await (await gateway.api(`/api/incidents/${notice.incident.id}`)).json()) as IncidentDetail;
    return d.dispatches.some((x) => x.channel.startsWith('webhook:')) ? d : null;
  });
  expect(detail.dispatches.filter((x) => x.channel.startsWith('webhook:'))).toEqual([
    expect.objectContaining({ recipient: '张组长', status: 'sent', level: 'grid', detail: 'HTTP 200 after 2 attempts' }),
  ]);
});
