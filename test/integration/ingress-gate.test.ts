/**
 * The embedded broker's ingress gate (gateway/src/broker/ingress-gate.ts): with more QoS1
 * publishes arriving at once than gateway.mqtt.maxWaitingPublishes, readable connections are
 * left unread until the spool catches up — and every one of them is still read, acknowledged
 * and spooled (no connection stalls). InfluxDB is unreachable on purpose: what is measured is
 * the broker and the spool, where the wait for durability happens.
 */
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/topics.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

const CLIENTS = 200;
const PER_CLIENT = 6;

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway({ influxUrl: 'http://127.0.0.1:1', mqtt: { maxWaitingPublishes: 100 } });
});
afterAll(async () => {
  await gateway?.close();
});

const metric = async (name: string) => {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
};

describe('embedded broker ingress gate', () => {
  it('defers reads past maxWaitingPublishes and still acknowledges every publish', async () => {
    const tanks = gateway.registry.views().filter((d) => d.kind === 'water_tank');
    expect(tanks.length).toBeGreaterThan(0);
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => mqtt.connectAsync(gateway.mqttUrl, { clientId: `gate-${i}`, reconnectPeriod: 0 })),
    );
    try {
      const base = Date.UTC(2026, 10, 1);
      // Every client sends its whole window at once: ~1,200 publishes against a cap of 100.
      await Promise.all(
        clients.map((c, i) =>
          Promise.all(
            Array.from({ length: PER_CLIENT }, (_, k) =>
              c.publishAsync(
                topics.telemetry(tanks[i % tanks.length]!.id),
                JSON.stringify({ ts: base + i * PER_CLIENT + k, seq: i * PER_CLIENT + k, values: { levelMm: 1000 + k, levelPercent: 50, volumeM3: 10 } }),
                { qos: 1 },
              ),
            ),
          ),
        ),
      );
      // Every PUBACK came (publishAsync resolved), each after the spool commit: all of them are
      // in the spool (with a device_status line for each device that came online).
      expect(gateway.storage.writer.buffered).toBeGreaterThanOrEqual(CLIENTS * PER_CLIENT);
      expect(await metric('gs_mqtt_reads_deferred_total')).toBeGreaterThan(0);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync()));
    }
  }, 60_000);
});
