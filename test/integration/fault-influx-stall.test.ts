/**
 * Fault: InfluxDB freezes (SIGSTOP) for 30 s while devices keep publishing, then resumes. The
 * gateway keeps acknowledging into its spool, says "down", and afterwards every point is stored
 * exactly once.
 */
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

const DB = 'stall_test';
const STALL_MS = 30_000;
const RATE_PER_S = 400;
let influx: InfluxServer;
let gateway: TestGateway;

afterAll(async () => {
  influx?.resume();
  await gateway?.close();
  await influx?.stop();
});

describe('InfluxDB stalled for 30 s under load', () => {
  it('stores every point exactly once after it resumes', { timeout: 120_000 }, async () => {
    influx = await startInfluxd();
    gateway = await startTestGateway({ influxUrl: influx.url, database: DB, gateway: { influx: { url: influx.url, database: DB, flushIntervalMs: 100, timeoutMs: 2000 } } });
    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'stall-test' });
    const t0 = Date.UTC(2026, 8, 1);
    let seq = 0;
    const publishFor = async (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const tick = Date.now();
        const batch: Array<Promise<unknown>> = [];
        for (let i = 0; i < RATE_PER_S / 10; i++, seq++) {
          const device = `tank-0${10 + (seq % 10)}`;
          batch.push(client.publishAsync(topics.telemetry(device), JSON.stringify({ ts: t0 + seq, seq, values: { levelMm: seq % 3000, levelPercent: 50, volumeM3: 25 } }), { qos: 1 }));
        }
        await Promise.all(batch); // every one acknowledged, InfluxDB or not
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - tick))));
      }
    };
    await publishFor(2000);
    influx.pause();
    await publishFor(STALL_MS);
    expect(gateway.storage.writer.status.state).toBe('down');
    expect(gateway.storage.writer.buffered).toBeGreaterThan(0);
    influx.resume();
    await publishFor(2000);
    await client.endAsync();
    await waitFor(() => gateway.storage.writer.status.state === 'ok' && gateway.storage.writer.buffered === 0, {
      timeoutMs: 60_000,
      what: 'the spool drained after the stall',
    });
    const r = await influx.query(DB, 'SELECT COUNT("levelMm") FROM "water_tank"');
    expect(r.results[0]?.series?.[0]?.values[0]?.[1]).toBe(seq);
  });
});
