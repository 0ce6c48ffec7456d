/**
 * InfluxDB not there when the gateway starts: the gateway serves anyway, says so on /health and
 * to the dashboard, keeps what it receives, and writes it all once InfluxDB comes up.
 */
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import type { ServerMessage } from '../../protocol/ws.js';
import { topics } from '../../protocol/topics.js';
import { freePort } from '../../scripts/lib/ports.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

let gateway: TestGateway | undefined;
let influx: InfluxServer | undefined;
afterAll(async () => {
  await gateway?.close();
  await influx?.stop();
});

function firstMessage(url: string, token: string): Promise<ServerMessage> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    ws.once('message', (data) => {
      resolve(JSON.parse(String(data)) as ServerMessage);
      ws.close();
    });
    ws.once('error', reject);
  });
}

describe('InfluxDB down at start', () => {
  it('runs, reports the outage, and stores everything once InfluxDB is up', async () => {
    const port = await freePort();
    gateway = await startTestGateway({ influxUrl: `http://127.0.0.1:${port}`, database: 'outage' });
    const health = (await (await fetch(`${gateway.httpUrl}/health`)).json()) as { status: string; storage: { state: string } };
    expect(health).toMatchObject({ status: 'degraded', storage: { state: 'down' } });
    // Alive, but not ready: a load balancer sends new work elsewhere while InfluxDB is away.
    const notReady = await fetch(`${gateway.httpUrl}/ready`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ ready: false, checks: { broker: true, store: true, influx: false } });
    const hello = await firstMessage(`${gateway.httpUrl.replace('http', 'ws')}/ws`, await gateway.tokenFor('viewer'));
    expect(hello).toMatchObject({ type: 'hello', storage: { state: 'down', url: `http://127.0.0.1:${port}` } });

    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'outage-test' });
    const t0 = Date.UTC(2026, 10, 1);
    for (let i = 0; i < 200; i++) {
      const payload = { ts: t0 + i * 1000, seq: i, values: { levelMm: 1000 + i, levelPercent: 40, volumeM3: 20 } };
      await client.publishAsync(topics.telemetry(i % 2 ? 'tank-010' : 'tank-011'), JSON.stringify(payload), { qos: 1 });
    }
    await client.endAsync();
    // The live view is up to date even though nothing is stored yet.
    const view = (await (await gateway.api(`/api/devices/tank-010`)).json()) as { values: { levelMm: number } };
    expect(view.values.levelMm).toBe(1199);
    expect(gateway.storage.writer.buffered).toBeGreaterThanOrEqual(200);

    influx = await startInfluxd({ port });
    await waitFor(() => gateway!.storage.writer.status.state === 'ok' && gateway!.storage.writer.buffered === 0, {
      timeoutMs: 40_000,
      what: 'the buffer drained into InfluxDB',
    });
    expect((await fetch(`${gateway.httpUrl}/ready`)).status).toBe(200);
    const r = await influx.query('outage', 'SELECT COUNT("levelMm") FROM "water_tank" GROUP BY "device"');
    const counts = Object.fromEntries((r.results[0]?.series ?? []).map((s) => [(s as unknown as { tags: { device: string } }).tags.device, s.values[0]?.[1]]));
    expect(counts).toEqual({ 'tank-010': 100, 'tank-011': 100 });
  });
});
