/**
 * Micro-benchmark of the gateway's per-message path without sockets: ingest (topic, validation,
 * de-duplication) -> bus -> registry -> storage (line protocol into the spool) -> push hub.
 *   npm run bench:ingest-path [-- --messages 200000]
 * Prints one JSON line with the cost per message in microseconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveConfig } from '../config/load.js';
import { buildGateway } from '../gateway/src/gateway.js';
import { createLogger } from '../gateway/src/log.js';
import { topics } from '../protocol/topics.js';
import type { SeriesTarget } from '../gateway/src/storage/types.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '200000' } } });
const n = Number(values.messages);
const dir = mkdtempSync(join(tmpdir(), 'gs-path-'));
const { config } = resolveConfig(
  { log: { level: 'silent' }, gateway: { mqtt: { port: 0, host: '127.0.0.1', allowAnonymous: true }, http: { port: 0, host: '127.0.0.1' }, dataDir: dir, spool: { fsync: false } } },
  { source: 'bench', baseDir: join(import.meta.dirname, '../config') },
);
// A target that accepts every write at once: this measures the gateway, not InfluxDB.
const sink: SeriesTarget = { url: 'sink://', connect: async () => undefined, writeLines: async () => undefined, query: async () => [] };
const gateway = buildGateway(config, { log: createLogger('silent'), storageTarget: sink });
await gateway.start();
const devices = gateway.registry.views().filter((d) => d.kind === 'water_tank').map((d) => d.id);
const payloads = Array.from({ length: 1000 }, (_, i) => Buffer.from(JSON.stringify({ ts: Date.UTC(2026, 0, 1) + i, seq: i, values: { levelMm: 1000 + i, levelPercent: 40.5, volumeM3: 20.25 } })));
const topicsList = devices.map((d) => topics.telemetry(d));
// Warm-up, then the measured run.
for (let i = 0; i < 20_000; i++) gateway.ingest.handle(topicsList[i % topicsList.length]!, payloads[i % payloads.length]!);
const t0 = performance.now();
const cpu0 = process.cpuUsage();
for (let i = 0; i < n; i++) {
  // Distinct (seq, ts) per message so nothing is dropped as a duplicate.
  const payload = Buffer.from(JSON.stringify({ ts: Date.UTC(2026, 1, 1) + i, seq: 100_000 + i, values: { levelMm: 1000 + (i % 500), levelPercent: 40.5, volumeM3: 20.25 } }));
  gateway.ingest.handle(topicsList[i % topicsList.length]!, payload);
  gateway.storage.writer.barrier();
}
const wallMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
await gateway.stop();
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ bench: 'ingest-path', messages: n, us_per_msg: Math.round((wallMs * 1000) / n * 10) / 10, cpu_us_per_msg: Math.round(((cpu.user + cpu.system) / n) * 10) / 10, msg_per_s: Math.round(n / (wallMs / 1000)) })}\n`);
