/**
 * Store-and-forward replay: how fast an edge agent empties a backlog after a gateway outage.
 *   npm run bench:replay [-- --hours 1]
 * Fills the agent's outbox with `hours` of the full Chashan fleet's readings at the agent's
 * default rates (tanks every 10 s; cameras' PTZ report and poles' status about once a minute),
 * as it would be after an outage that long, then starts InfluxDB and the gateway (its own
 * process) and lets the agent send. Reports the replay rate and checks that InfluxDB holds every
 * reading. Target (the device-protocols issue): >= 5,000 msg/s.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { resolveConfig } from '../config/load.js';
import { loadLedger } from '../config/ledger.js';
import { buildAgent } from '../edge-agent/src/agent.js';
import { Outbox } from '../edge-agent/src/outbox.js';
import type { Reading } from '../edge-agent/src/collectors/collector.js';
import { startInfluxd } from '../scripts/lib/influxd.js';
import { readProc, REPO } from './lib/proc.js';

const { values } = parseArgs({ options: { hours: { type: 'string', default: '1' }, 'max-inflight': { type: 'string', default: '200' } } });
const hours = Number(values.hours);
const err = (line: string) => process.stderr.write(`${line}\n`);
const dir = mkdtempSync(join(tmpdir(), 'gs-replay-'));
const deadline = setTimeout(() => {
  err('replay: deadline (20 min) passed; stopping');
  process.exit(1);
}, 20 * 60_000);

const ledger = loadLedger(join(REPO, 'config/ledger/chashan-zhuhai.csv'));
const periodS = { water_tank: 10, voice_pole: 60, camera: 60 } as const;
const end = Date.now() - 60_000;
const start = end - hours * 3600_000;

// 1. The backlog, in the order the collectors would have produced it.
const outboxFile = join(dir, 'outbox.sqlite');
const outbox = new Outbox(outboxFile, { maxMessages: 10_000_000 });
const fillStarted = performance.now();
let total = 0;
// Each device reports once per its period, at its own phase (whole seconds), time-interleaved.
const phases = ledger.map((d) => {
  const periodMs = periodS[d.kind] * 1000;
  const n = Number(/\d+/.exec(d.id)?.[0] ?? 0);
  return Math.floor(((n * 977) % periodMs) / 1000) * 1000;
});
const insert = outbox;
for (let t = start; t < end; t += 1000) {
  ledger.forEach((d, i) => {
    if ((t - start) % (periodS[d.kind] * 1000) !== phases[i]) return;
    let reading: Reading;
    if (d.kind === 'water_tank') reading = { channel: 'telemetry', kind: 'water_tank', deviceId: d.id, ts: t, values: { levelMm: 1500, levelPercent: 60, volumeM3: 33 } };
    else if (d.kind === 'voice_pole') reading = { channel: 'telemetry', kind: 'voice_pole', deviceId: d.id, ts: t, values: { playback: 'idle', volume: 70 } };
    else reading = { channel: 'telemetry', kind: 'camera', deviceId: d.id, ts: t, values: { panDeg: (t / 1000) % 360, tiltDeg: 0, zoom: 0 } };
    insert.append(reading);
    total++;
  });
}
const fillS = (performance.now() - fillStarted) / 1000;
outbox.close();
err(`replay: ${total} readings (${hours} h of ${ledger.length} devices) in the outbox, written in ${fillS.toFixed(1)} s`);

// 2. InfluxDB and the gateway come back.
const influx = await startInfluxd();
const configDoc = {
  log: { level: 'warn' },
  gateway: {
    mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true },
    http: { host: '127.0.0.1', port: 0 },
    influx: { url: influx.url, database: 'replay', gzip: false },
    dataDir: join(dir, 'gateway'),
  },
};
resolveConfig(configDoc, { source: 'bench', baseDir: join(REPO, 'config') }); // fail early on a bad document
const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'bench/gateway-child.ts')], {
  cwd: REPO,
  env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(configDoc) },
  stdio: ['pipe', 'pipe', 'inherit'],
});
const ready = await new Promise<{ pid: number; mqttPort: number }>((resolve, reject) => {
  child.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l.includes('"ready"')) resolve(JSON.parse(l) as { pid: number; mqttPort: number });
  });
});

// 3. The agent sends its backlog.
const { config } = resolveConfig(
  { agent: { id: 'agent-chashan', brokerUrl: `mqtt://127.0.0.1:${ready.mqttPort}`, outboxFile, maxInflight: Number(values['max-inflight']) } },
  { source: 'bench', baseDir: join(REPO, 'config') },
);
const agent = buildAgent({ config: config.agent!, log: pino({ level: 'warn' }), collectors: [], deviceCount: ledger.length });
const replayStarted = performance.now();
await agent.start();
let peakRssMb = 0;
while (agent.stats().queued > 0) {
  await new Promise((r) => setTimeout(r, 250));
  peakRssMb = Math.max(peakRssMb, (readProc(ready.pid)?.rssKb ?? 0) / 1024);
  const s = agent.stats();
  if (Math.random() < 0.1) err(`replay: ${total - s.queued}/${total} acknowledged`);
}
const replayS = (performance.now() - replayStarted) / 1000;
await agent.stop();

// 4. Everything in InfluxDB?
let stored = 0;
const countDeadline = Date.now() + 120_000;
while (Date.now() < countDeadline) {
  stored = 0;
  for (const m of ['water_tank', 'voice_pole', 'camera']) {
    const field = m === 'water_tank' ? 'levelMm' : m === 'voice_pole' ? 'volume' : 'panDeg';
    const r = await influx.query('replay', `SELECT COUNT("${field}") FROM "${m}"`);
    stored += Number(r.results[0]?.series?.[0]?.values[0]?.[1] ?? 0);
  }
  if (stored >= total) break;
  await new Promise((r) => setTimeout(r, 1000));
}
child.stdin?.end();
await new Promise((r) => child.once('exit', r));
await influx.stop();
rmSync(dir, { recursive: true, force: true });
clearTimeout(deadline);
const msgPerS = Math.round(total / replayS);
process.stdout.write(
  `${JSON.stringify({ bench: 'replay', hours, devices: ledger.length, messages: total, fill_s: Math.round(fillS * 10) / 10, replay_s: Math.round(replayS * 10) / 10, msg_per_s: msgPerS, stored, lost: total - stored, gateway_peak_rss_mb: Math.round(peakRssMb), target_msg_per_s: 5000, ratio_to_limit: Math.round((msgPerS / 5000) * 100) / 100, target_met: msgPerS >= 5000 && stored === total })}\n`,
);
