/**
 * 10,000 hostile payloads (random bytes, deep nesting, huge strings, prototype-pollution keys,
 * wrong types, NaN-ish tokens) mixed into valid traffic: the gateway stays up, rejects and counts
 * every bad one, and stores every valid one.
 */
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { prng } from '../../simulators/src/fleet/geography.js';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

const DB = 'fuzz_test';
let influx: InfluxServer;
let gateway: TestGateway;
afterAll(async () => {
  await gateway?.close();
  await influx?.stop();
});

const rand = prng(424242);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const ts = Date.UTC(2026, 7, 1);

function hostilePayload(i: number): Buffer | string {
  switch (i % 10) {
    case 0:
      return Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)));
    case 1:
      return `${'['.repeat(8000)}${']'.repeat(8000)}`;
    case 2:
      return JSON.stringify({ ts, seq: i, values: { levelMm: 1, levelPercent: 1, volumeM3: 1 }, pad: 'x'.repeat(17_000 + i) });
    case 3:
      return `{"__proto__":{"polluted":true},"ts":${ts},"seq":${i},"values":{"levelMm":1,"levelPercent":1,"volumeM3":1}}`;
    case 4:
      return `{"constructor":{"prototype":{"polluted":true}},"ts":${ts},"seq":${i},"values":{"levelMm":1,"levelPercent":1,"volumeM3":1}}`;
    case 5:
      return pick(['NaN', 'Infinity', '-Infinity', 'null', 'true', '0', '""', '[]', '{}', '{"ts":NaN}']);
    case 6:
      return JSON.stringify({ ts: pick(['now', -1, 1.5, 1e300, null]), seq: i, values: { levelMm: 1, levelPercent: 1, volumeM3: 1 } });
    case 7:
      return JSON.stringify({ ts, seq: pick([-1, 0.5, '7', null, 2 ** 60]), values: { levelMm: 1, levelPercent: 1, volumeM3: 1 } });
    case 8:
      return JSON.stringify({ ts, seq: i, values: { levelMm: pick([1e9, -3, '1', null, [], {}]), levelPercent: 1, volumeM3: 1 } });
    default:
      return `\u0000\uffff${'\ud800'.repeat(50)}{"ts":`;
  }
}

describe('fuzzed payloads mixed into valid traffic', () => {
  it('rejects every bad payload, stays up and stores every valid one', { timeout: 120_000 }, async () => {
    influx = await startInfluxd();
    gateway = await startTestGateway({ influxUrl: influx.url, database: DB });
    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'fuzzer' });
    const devices = ['tank-020', 'tank-021', 'tank-022', 'tank-023', 'tank-024'];
    let valid = 0;
    for (let i = 0; i < 10_000; i++) {
      const device = pick(devices);
      const pending = [client.publishAsync(topics.telemetry(device), hostilePayload(i), { qos: 1 })];
      if (i % 10 === 0) {
        pending.push(
          client.publishAsync(topics.telemetry(device), JSON.stringify({ ts: ts + valid, seq: valid, values: { levelMm: valid % 3000, levelPercent: 10, volumeM3: 5 } }), { qos: 1 }),
        );
        valid++;
      }
      if (i % 50 === 0) await Promise.all(pending);
    }
    await client.endAsync();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const health = (await (await fetch(`${gateway.httpUrl}/health`)).json()) as { status: string; ingest: { rejected: Record<string, number> } };
    expect(health.status).toBe('ok');
    const rejected = Object.values(health.ingest.rejected).reduce((a, b) => a + b, 0);
    expect(rejected).toBe(10_000);
    await waitFor(async () => {
      const r = await influx.query(DB, 'SELECT COUNT("levelMm") FROM "water_tank"');
      return r.results[0]?.series?.[0]?.values[0]?.[1] === valid;
    }, { timeoutMs: 20_000, what: `all ${valid} valid points stored` });
  });
});
