/**
 * The thin slice through every real part: agent outbox -> MQTT over TCP -> gateway ingest ->
 * real InfluxDB, registry and HTTP API; plus bad input on the tank's topic.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { createLogger } from '../../gateway/src/log.js';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { startTestGateway, testLogLevel, waitFor, type TestGateway, testAgentConfig } from '../helpers/gateway.js';

const DB = 'slice_test';
let influx: InfluxServer;
let gateway: TestGateway;
let agent: EdgeAgent;
let raw: MqttClient;
let agentDir: string;

async function countPoints(measurement: string, device: string): Promise<number> {
  const r = await influx.query(DB, `SELECT COUNT("levelMm") FROM "${measurement}" WHERE "device" = '${device}'`);
  return Number(r.results[0]?.series?.[0]?.values[0]?.[1] ?? 0);
}

async function health(): Promise<{ ingest: { rejected: Record<string, number>; duplicates: number }; storage: { state: string } }> {
  return (await fetch(`${gateway.httpUrl}/health`)).json() as never;
}

beforeAll(async () => {
  influx = await startInfluxd();
  gateway = await startTestGateway({ influxUrl: influx.url, database: DB });
  agentDir = mkdtempSync(join(tmpdir(), 'gs-agent-'));
  agent = buildAgent({
    config: testAgentConfig({
      id: 'agent-chashan',
      brokerUrl: gateway.mqttUrl,
      outboxFile: join(agentDir, 'outbox.sqlite'),
      outboxMaxMessages: 10_000,
      maxInflight: 50,
      tanks: { pollIntervalMs: 1000, timeoutMs: 500 },
    }),
    log: createLogger(testLogLevel()),
    collectors: [],
    deviceCount: 1,
  });
  await agent.start();
  raw = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'raw-test-client' });
});

afterAll(async () => {
  await raw?.endAsync();
  await agent?.stop();
  await gateway?.close();
  await influx?.stop();
  rmSync(agentDir, { recursive: true, force: true });
});

describe('water tank -> agent -> MQTT -> gateway -> InfluxDB', () => {
  it('stores readings at the device time and shows the latest on the API', async () => {
    const t0 = Date.UTC(2026, 10, 26, 8, 0, 0);
    for (let i = 0; i < 5; i++) {
      agent.emit({
        channel: 'telemetry',
        kind: 'water_tank',
        deviceId: 'tank-001',
        ts: t0 + i * 10_000,
        values: { levelMm: 2000 - i * 10, levelPercent: 80 - i * 0.4, volumeM3: 44 - i * 0.22, temperatureC: 18.5 },
      });
    }
    await waitFor(async () => (await countPoints('water_tank', 'tank-001')) === 5, { what: '5 points in InfluxDB' });
    const r = await influx.query(DB, `SELECT "levelMm", "grid" FROM "water_tank" WHERE "device" = 'tank-001' ORDER BY time ASC`);
    const rows = r.results[0]?.series?.[0]?.values ?? [];
    expect(rows.map((v) => v[0])).toEqual([0, 1, 2, 3, 4].map((i) => t0 + i * 10_000));
    expect(rows.map((v) => v[1])).toEqual([2000, 1990, 1980, 1970, 1960]);
    expect(rows[0]?.[2]).toBe('G37'); // the ledger's grid for tank-001, as a tag

    const device = (await (await gateway.api(`/api/devices/tank-001`)).json()) as {
      status: string; lat: number; lon: number; values: { levelMm: number }; valuesTs: number; settings: { capacityM3: number };
    };
    expect(device.status).toBe('online');
    expect(device.values.levelMm).toBe(1960);
    expect(device.valuesTs).toBe(t0 + 40_000);
    expect(device.lat).toBeCloseTo(29.447761, 6);
    expect(device.settings.capacityM3).toBe(55);

    const series = (await (
      await gateway.api(`/api/devices/tank-001/series?field=levelMm&from=${t0 - 1}&to=${t0 + 60_000}`)
    ).json()) as { points: Array<[number, number]> };
    expect(series.points).toEqual([0, 1, 2, 3, 4].map((i) => [t0 + i * 10_000, 2000 - i * 10]));
    expect(agent.stats().queued).toBe(0);
  });

  it('rejects and counts a malformed payload, and the next good message still lands', async () => {
    const before = await health();
    const t = Date.UTC(2026, 10, 26, 9, 0, 0);
    await raw.publishAsync(topics.telemetry('tank-002'), '{"ts": 12, "seq": "x"', { qos: 1 });
    await raw.publishAsync(topics.telemetry('tank-002'), JSON.stringify({ ts: t, seq: 1, values: { levelMm: -5, levelPercent: 50, volumeM3: 10 } }), { qos: 1 });
    await raw.publishAsync(topics.telemetry('tank-002'), JSON.stringify({ ts: t, seq: 2, values: { levelMm: 5, levelPercent: 50, volumeM3: 10, __proto__x: 1 } }), { qos: 1 });
    await raw.publishAsync(topics.telemetry('no-such-tank'), JSON.stringify({ ts: t, seq: 1, values: { levelMm: 1, levelPercent: 1, volumeM3: 1 } }), { qos: 1 });
    await raw.publishAsync(topics.telemetry('tank-002'), JSON.stringify({ ts: t, seq: 3, values: { levelMm: 1234, levelPercent: 49.4, volumeM3: 24.7 } }), { qos: 1 });

    await waitFor(async () => (await countPoints('water_tank', 'tank-002')) === 1, { what: 'the good message stored' });
    const after = await health();
    const delta = (reason: string) => (after.ingest.rejected[reason] ?? 0) - (before.ingest.rejected[reason] ?? 0);
    expect(delta('not_json')).toBe(1);
    expect(delta('schema')).toBe(2);
    expect(delta('unknown_device')).toBe(1);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/gs_mqtt_messages_rejected_total\{reason="schema"\} [1-9]/);
    const view = (await (await gateway.api(`/api/devices/tank-002`)).json()) as { values: { levelMm: number } };
    expect(view.values.levelMm).toBe(1234);
  });

  it('drops a redelivered message (same seq and ts) instead of counting it twice', async () => {
    const t = Date.UTC(2026, 10, 26, 10, 0, 0);
    const payload = JSON.stringify({ ts: t, seq: 7, values: { levelMm: 900, levelPercent: 36, volumeM3: 19.8 } });
    const before = await health();
    await raw.publishAsync(topics.telemetry('tank-003'), payload, { qos: 1 });
    await raw.publishAsync(topics.telemetry('tank-003'), payload, { qos: 1 });
    await waitFor(async () => (await countPoints('water_tank', 'tank-003')) === 1, { what: 'one point' });
    expect((await health()).ingest.duplicates - before.ingest.duplicates).toBe(1);
  });

  it('answers bad API requests with 4xx and { code, message }', async () => {
    const cases: Array<[string, number, string]> = [
      ['/api/devices/nope', 404, 'DEVICE_NOT_FOUND'],
      ['/api/devices/tank-001/series?field=panDeg', 400, 'UNKNOWN_FIELD'],
      ['/api/devices/tank-001/series?field=levelMm&from=10&to=5', 400, 'BAD_TIME_RANGE'],
      ['/api/devices/tank-001/series?field=levelMm&from=abc', 400, 'BAD_REQUEST'],
      ['/api/devices?kind=toaster', 400, 'BAD_REQUEST'],
      ['/api/nothing-here', 404, 'NOT_FOUND'],
    ];
    for (const [path, status, code] of cases) {
      const res = await gateway.api(path);
      const body = (await res.json()) as { code: string; message: string };
      expect({ path, status: res.status, code: body.code }).toEqual({ path, status, code });
      expect(body.message.length).toBeGreaterThan(5);
    }
  });
});
