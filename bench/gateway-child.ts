/**
 * The gateway under test, in its own process so the benchmark can measure its CPU and RSS from
 * /proc. Built the way the tests build it (`resolveConfig` + `buildGateway`) from a config
 * document passed in GS_BENCH_CONFIG (JSON). Logs go to stderr; stdout carries JSON lines only:
 *
 *   {"ready":true,"pid":…,"mqttPort":…,"httpPort":…,"nofile":…}   once listening
 *   {"gc":true,"heapUsedMb":…}                                    after a "gc" command
 *
 * GS_BENCH_GC_OUT, if set, is a file that gets one JSON line per garbage-collection pause.
 * GS_BENCH_DASHBOARD_DIR, if set, is the dashboard build it serves (default dashboard/dist).
 * Commands on stdin, one per line: "gc" (needs --expose-gc). Closing stdin (or SIGTERM) stops
 * the gateway cleanly (flushes to InfluxDB) and exits.
 */
import { appendFileSync } from 'node:fs';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { getHeapStatistics } from 'node:v8';
import { pino } from 'pino';
import { resolveConfig } from '../config/load.js';
import { buildGateway } from '../gateway/src/gateway.js';
import { readNofile, REPO } from './lib/proc.js';

const raw = process.env.GS_BENCH_CONFIG;
if (!raw) {
  process.stderr.write('GS_BENCH_CONFIG (a JSON config document) is required\n');
  process.exit(2);
}
const { config } = resolveConfig(JSON.parse(raw) as unknown, { source: 'bench', baseDir: `${REPO}/config` });
const log = pino({ level: config.log.level }, pino.destination(2));
// GS_BENCH_DASHBOARD_DIR: serve another dashboard build (bench/map.ts compares builds).
const dashboardDir = process.env.GS_BENCH_DASHBOARD_DIR;
// GS_BENCH_GC_OUT: append every garbage-collection pause (JSON lines: wall_ms, kind, ms) to this file.
const gcOut = process.env.GS_BENCH_GC_OUT;
if (gcOut) {
  const kinds: Record<number, string> = {
    [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  new PerformanceObserver((list) => {
    const lines = list
      .getEntries()
      .map((e) => {
        const kind = ((e as { detail?: { kind?: number } }).detail)?.kind ?? -1;
        return JSON.stringify({ wall_ms: Math.round(performance.timeOrigin + e.startTime), kind: kinds[kind] ?? String(kind), ms: Math.round(e.duration * 100) / 100 });
      })
      .join('\n');
    if (lines) appendFileSync(gcOut, `${lines}\n`);
  }).observe({ entryTypes: ['gc'] });
}
// GS_BENCH_HEAP_SAMPLE=<file>:<delay s>:<seconds>[:survivors|retained]: a sampling heap profile of
// every allocation over that window (collected ones included), written as a .heapprofile (Chrome
// DevTools); with `survivors`, only what outlived its first young-generation GC (what makes
// scavenges long and gets promoted); with `retained`, only what is still alive when the window
// ends (what a leak looks like: the allocation sites that keep memory).
const heapSample = process.env.GS_BENCH_HEAP_SAMPLE;
if (heapSample) {
  const [file, delayS, seconds, which] = heapSample.split(':');
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  setTimeout(() => {
    void post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: which !== 'retained', includeObjectsCollectedByMinorGC: which !== 'survivors' && which !== 'retained' }).then(() =>
      setTimeout(() => {
        void post('HeapProfiler.stopSampling').then((res) => {
          appendFileSync(file!, JSON.stringify((res as { profile: unknown }).profile));
          process.stderr.write(`heap sample written to ${file}\n`);
        });
      }, Number(seconds) * 1000),
    );
  }, Number(delayS) * 1000);
}
const gateway = buildGateway(config, { log, ...(dashboardDir ? { dashboardDir } : {}) });
await gateway.start();
process.stdout.write(
  `${JSON.stringify({ ready: true, pid: process.pid, mqttPort: gateway.mqttPort, httpPort: gateway.httpPort, nofile: readNofile('self') ?? null })}\n`,
);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(1), 60_000);
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
    if (line.trim() === 'gc') {
      gc?.();
      // Not process.memoryUsage(): it opens /proc/self/statm, which fails with EMFILE when every
      // descriptor is taken by connections. The parent reads RSS from /proc itself.
      const heap = getHeapStatistics();
      process.stdout.write(`${JSON.stringify({ gc: gc !== undefined, heapUsedMb: heap.used_heap_size / 2 ** 20 })}\n`);
    }
  })
  .on('close', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
