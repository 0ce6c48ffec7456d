/**
 * Fault (store-and-forward): the gateway goes down; during the outage the agent keeps reading
 * and is itself killed with SIGKILL and restarted; then the gateway comes back. Every reading the
 * agent took (its journal) arrives in InfluxDB, once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/ports.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { REPO, waitFor } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';

const DB = 'outage_test';
const DEVICES = ['tank-030', 'tank-031', 'tank-032'];
const dir = mkdtempSync(join(tmpdir(), 'gs-outage-'));
const journal = join(dir, 'journal.txt');
let influx: InfluxServer | undefined;
let gateway: GatewayProcess | undefined;
let agent: ChildProcess | undefined;

afterAll(async () => {
  agent?.kill('SIGKILL');
  await gateway?.kill('SIGKILL');
  await influx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function startAgent(spec: object): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/helpers/agent-child.ts'), JSON.stringify(spec)], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`agent exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => l.includes('"ready"') && resolve());
  });
  return child;
}

async function kill(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

describe('gateway outage with an agent restart in the middle', () => {
  it('delivers every reading exactly once when the gateway is back', { timeout: 120_000 }, async () => {
    influx = await startInfluxd();
    const mqttPort = await freePort();
    const gatewayDoc = {
      log: { level: 'warn' },
      gateway: {
        mqtt: { host: '127.0.0.1', port: mqttPort, allowAnonymous: true },
        http: { host: '127.0.0.1', port: 0 },
        influx: { url: influx.url, database: DB, flushIntervalMs: 100, gzip: false },
        dataDir: join(dir, 'gateway'),
      },
    };
    const spec = {
      agent: { id: 'agent-chashan', brokerUrl: `mqtt://127.0.0.1:${mqttPort}`, outboxFile: join(dir, 'outbox.sqlite'), maxInflight: 50 },
      devices: DEVICES,
      periodMs: 20,
      t0: Date.now(),
      journal,
    };
    gateway = await spawnGateway(gatewayDoc);
    agent = await startAgent(spec);
    await new Promise((r) => setTimeout(r, 1500));
    await gateway.kill('SIGKILL'); // outage begins
    await new Promise((r) => setTimeout(r, 2000));
    await kill(agent, 'SIGKILL'); // the agent dies mid-outage, its outbox full
    agent = await startAgent(spec);
    await new Promise((r) => setTimeout(r, 2000));
    gateway = await spawnGateway(gatewayDoc); // outage over
    await new Promise((r) => setTimeout(r, 1000));
    await kill(agent, 'SIGTERM'); // stop producing; a clean stop keeps what is unsent

    const promised = new Map<string, Set<number>>(DEVICES.map((d) => [d, new Set()]));
    for (const line of readFileSync(journal, 'utf8').trim().split('\n')) {
      const [device, i] = line.split(' ');
      promised.get(device!)!.add(spec.t0 + Number(i) * spec.periodMs);
    }
    // Whatever the stopped agent still held goes out when it next runs.
    agent = await startAgent({ ...spec, devices: [] });
    const total = [...promised.values()].reduce((n, s) => n + s.size, 0);
    expect(total).toBeGreaterThan(600);
    await waitFor(
      async () => {
        const r = await influx!.query(DB, 'SELECT COUNT("levelMm") FROM "water_tank"');
        return ((r.results[0]?.series?.[0]?.values[0]?.[1] as number | undefined) ?? 0) >= total;
      },
      { timeoutMs: 60_000, what: `${total} readings in InfluxDB` },
    );
    for (const device of DEVICES) {
      const r = await influx.query(DB, `SELECT "levelMm" FROM "water_tank" WHERE "device" = '${device}'`);
      const stored = (r.results[0]?.series?.[0]?.values ?? []).map((v) => v[0] as number);
      const missing = [...promised.get(device)!].filter((ts) => !stored.includes(ts));
      expect({ device, missing }).toEqual({ device, missing: [] });
      // Nothing extra either: at most the one reading a kill may catch between outbox and journal
      // (InfluxDB keeps one point per device time, so a replay cannot show up as a second one).
      expect(stored.length - promised.get(device)!.size).toBeLessThanOrEqual(1);
    }
  });
});
