/**
 * Runs the whole simulated Chashan Zhuhai site until interrupted:
 *   npm run fleet [-- --time-scale 60 --host 127.0.0.1 --control-port 0 --out .data/fleet]
 * Writes <out>/ledger.csv, the ledger with every simulated device's address, for an edge agent
 * (`ledger.file` in its config), and serves a small control API:
 *   GET  /status                                  what runs, RSS and CPU
 *   POST /fire   {"lat":29.43,"lon":105.885,"timeScale":60}   ignite the fire scenario
 *   POST /fault  {"deviceId":"tank-001","fault":"disconnected"} inject a fault ("none" clears)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ledgerToCsv, loadLedger } from '../../../config/ledger.js';
import { startSiteFleet } from './fleet.js';

const { values } = parseArgs({
  options: {
    ledger: { type: 'string', default: 'config/ledger/chashan-zhuhai.csv' },
    seed: { type: 'string', default: '20250401' },
    'time-scale': { type: 'string', default: '60' },
    host: { type: 'string', default: '127.0.0.1' },
    'control-port': { type: 'string', default: '0' },
    out: { type: 'string', default: '.data/fleet' },
  },
});
const log = (line: string) => process.stderr.write(`${line}\n`);
const started = performance.now();
const ledger = loadLedger(values.ledger);
log(`starting the simulated site: ${ledger.length} devices from ${values.ledger}`);
const fleet = await startSiteFleet(ledger, {
  seed: Number(values.seed),
  timeScale: Number(values['time-scale']),
  host: values.host,
  onProgress: (part, detail) => log(`  ✓ ${part.padEnd(12)} ${detail}`),
});
const out = resolve(values.out);
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'ledger.csv'), ledgerToCsv(fleet.siteLedger()));

const cpuAtStart = process.cpuUsage();
const wallAtStart = performance.now();
const status = () => {
  const cpu = process.cpuUsage(cpuAtStart);
  return {
    devices: ledger.length,
    tanks: fleet.tanks?.endpoints.size ?? 0,
    poles: fleet.poles?.endpoints.size ?? 0,
    cameras: fleet.cameras?.ids.length ?? 0,
    activeStreams: fleet.rtsp?.activeEncoders() ?? [],
    rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    cpu_percent: Math.round(((cpu.user + cpu.system) / 1000 / (performance.now() - wallAtStart)) * 1000) / 10,
  };
};

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 10_000) throw new Error('body too large');
  }
  return JSON.parse(text || '{}') as Record<string, unknown>;
}

const control = createServer((req, res) => {
  const send = (status: number, payload: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(payload));
  };
  void (async () => {
    try {
      if (req.method === 'GET' && req.url === '/status') return send(200, status());
      if (req.method === 'POST' && req.url === '/fire') {
        const b = await body(req);
        if (typeof b.lat !== 'number' || typeof b.lon !== 'number') return send(400, { code: 'BAD_REQUEST', message: 'lat and lon (numbers) are required' });
        const playing = fleet.igniteFire({ lat: b.lat, lon: b.lon }, { timeScale: typeof b.timeScale === 'number' ? b.timeScale : 60 });
        return send(200, { detections: playing.plan.detections.length, cameras: new Set(playing.plan.detections.map((d) => d.cameraId)).size, firstReportMs: playing.plan.detections[0]?.atMs ?? null, tanks: playing.plan.tanks });
      }
      if (req.method === 'POST' && req.url === '/fault') {
        const b = await body(req);
        await fleet.injectFault(String(b.deviceId), String(b.fault));
        return send(200, { ok: true });
      }
      return send(404, { code: 'NOT_FOUND', message: 'GET /status, POST /fire, POST /fault' });
    } catch (err) {
      return send(400, { code: 'BAD_REQUEST', message: (err as Error).message });
    }
  })();
});
await new Promise<void>((r) => control.listen(Number(values['control-port']), values.host, () => r()));
const port = (control.address() as AddressInfo).port;
log(`site up in ${Math.round(performance.now() - started)} ms; ledger with addresses: ${join(out, 'ledger.csv')}`);
log(`control API: http://${values.host}:${port}/status  (POST /fire, POST /fault); Ctrl-C stops`);
process.stdout.write(`${JSON.stringify({ controlPort: port, ledger: join(out, 'ledger.csv'), ...status() })}\n`);
const stop = () => {
  control.close();
  void fleet.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
