/**
 * The gateway under test for the dashboard benchmarks, in its own process: bench/gateway-child.ts
 * plus one thing, the dashboard it serves (GS_BENCH_DASHBOARD_DIR, default the built
 * dashboard/dist), so bench/map.ts can measure an earlier build against the same gateway.
 * Config in GS_BENCH_CONFIG (JSON); stdout: `{"ready":true,"pid":…,"mqttPort":…,"httpPort":…}`,
 * and `{"gc":true,"heapUsedMb":…}` after a "gc" line on stdin (needs --expose-gc). Closing stdin
 * (or SIGTERM) stops it.
 */
import { createInterface } from 'node:readline';
import { getHeapStatistics } from 'node:v8';
import { pino } from 'pino';
import { resolveConfig } from '../../config/load.js';
import { buildGateway } from '../../gateway/src/gateway.js';
import { readNofile, REPO } from './proc.js';

const raw = process.env.GS_BENCH_CONFIG;
if (!raw) {
  process.stderr.write('GS_BENCH_CONFIG (a JSON config document) is required\n');
  process.exit(2);
}
const { config } = resolveConfig(JSON.parse(raw) as unknown, { source: 'bench', baseDir: `${REPO}/config` });
const log = pino({ level: config.log.level }, pino.destination(2));
const dashboardDir = process.env.GS_BENCH_DASHBOARD_DIR;
const gateway = buildGateway(config, { log, ...(dashboardDir ? { dashboardDir } : {}) });
await gateway.start();
process.stdout.write(
  `${JSON.stringify({ ready: true, pid: process.pid, mqttPort: gateway.mqttPort, httpPort: gateway.httpPort, nofile: readNofile('self') ?? null })}\n`,
);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(1), 30_000);
  hard.unref();
  try {
    await gateway.stop();
  } finally {
    process.exit(0);
  }
}
const gc = (globalThis as { gc?: () => void }).gc;
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() !== 'gc') return;
    gc?.();
    process.stdout.write(`${JSON.stringify({ gc: gc !== undefined, heapUsedMb: getHeapStatistics().used_heap_size / 2 ** 20 })}\n`);
  })
  .on('close', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
