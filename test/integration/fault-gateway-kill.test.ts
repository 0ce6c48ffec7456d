/**
 * Fault: the gateway is killed with SIGKILL while devices publish at full speed. Every message
 * whose PUBACK a publisher saw must be in InfluxDB after the gateway restarts on the same data
 * dir (the spool is replayed); messages never acknowledged may or may not be there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { waitFor } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';

const DB = 'kill_test';
const DEVICES = ['tank-001', 'tank-002', 'tank-003', 'tank-004'];
let influx: InfluxServer;
let gateway: GatewayProcess | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'gs-kill-'));

afterAll(async () => {
  await gateway?.kill('SIGKILL');
  await influx?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const configDoc = () => ({
  log: { level: 'warn' },
  gateway: {
    mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true },
    http: { host: '127.0.0.1', port: 0 },
    influx: { url: influx.url, database: DB, flushIntervalMs: 50, gzip: false },
    dataDir,
  },
});

describe('gateway killed with SIGKILL under load', () => {
  it('loses nothing it acknowledged', async () => {
    influx = await startInfluxd();
    gateway = await spawnGateway(configDoc());
    const t0 = Date.UTC(2026, 9, 1);
    const acked = new Map<string, Set<number>>(DEVICES.map((d) => [d, new Set()]));
    let sent = 0;
    let stop = false;
    const publishers = DEVICES.map(async (device, di) => {
      const client = await mqtt.connectAsync(gateway!.mqttUrl, { clientId: `kill-${device}`, reconnectPeriod: 0 });
      client.on('error', () => undefined);
      // After the kill, unacknowledged publishes never settle; the close ends the loop instead.
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      let seq = 0;
      const window = new Set<Promise<void>>();
      while (!stop && client.connected) {
        const ts = t0 + seq * 1000 + di;
        const p = client
          .publishAsync(topics.telemetry(device), JSON.stringify({ ts, seq, values: { levelMm: seq % 2000, levelPercent: 50, volumeM3: 25 } }), { qos: 1 })
          .then(
            () => void acked.get(device)!.add(ts),
            () => undefined,
          );
        sent++;
        seq++;
        window.add(p);
        void p.finally(() => window.delete(p));
        if (window.size >= 20) await Promise.race([...window, closed]);
      }
      client.end(true);
    });
    // Let it run, then pull the plug mid-stream.
    await waitFor(() => [...acked.values()].every((s) => s.size > 300), { timeoutMs: 20_000, what: 'load under way' });
    await gateway.kill('SIGKILL');
    stop = true;
    await Promise.all(publishers);
    const ackedCount = [...acked.values()].reduce((n, s) => n + s.size, 0);
    expect(ackedCount).toBeGreaterThan(1200);

    gateway = await spawnGateway(configDoc());
    await waitFor(
      async () => {
        const h = (await (await fetch(`${gateway!.httpUrl}/health`)).json()) as { storage: { state: string; bufferedPoints: number } };
        return h.storage.state === 'ok' && h.storage.bufferedPoints === 0;
      },
      { timeoutMs: 30_000, what: 'the spool replayed into InfluxDB' },
    );
    for (const device of DEVICES) {
      const r = await influx.query(DB, `SELECT "levelMm" FROM "water_tank" WHERE "device" = '${device}'`);
      const stored = new Set((r.results[0]?.series?.[0]?.values ?? []).map((v) => v[0] as number));
      const missing = [...acked.get(device)!].filter((ts) => !stored.has(ts));
      expect({ device, missing: missing.length }).toEqual({ device, missing: 0 });
    }
    expect(sent).toBeGreaterThanOrEqual(ackedCount);
  });
});
