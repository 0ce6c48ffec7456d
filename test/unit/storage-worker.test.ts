/**
 * The storage worker thread (gateway/src/storage/worker-writer.ts): a barrier resolves only
 * when the worker has the lines on disk; when the worker dies, what it had not confirmed is
 * refused (its publishers are not acknowledged) and a new worker recovers the spool from disk.
 * InfluxDB is deliberately unreachable here: this is about the spool; the integration tests
 * (storage-outage, fault-influx-stall, fault-gateway-kill) run the same worker against InfluxDB.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { createTarget } from '../../gateway/src/storage/target.js';
import type { StorageStatus } from '../../gateway/src/storage/types.js';
import { WorkerSeriesWriter } from '../../gateway/src/storage/worker-writer.js';
import { waitFor } from '../helpers/gateway.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gs-storage-worker-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function makeWriter(spool: { commitIntervalMs?: number } = {}) {
  // Port 1 on loopback: refused at once, so InfluxDB stays down and everything stays in the spool.
  const { config } = resolveConfig({ gateway: { influx: { url: 'http://127.0.0.1:1', database: 'x' }, dataDir: dir, spool } }, { source: 'test', baseDir: dir });
  const influx = config.gateway!.influx;
  const statuses: StorageStatus[] = [];
  const metrics = createMetrics();
  const writer = new WorkerSeriesWriter({
    config: influx,
    spool: { ...config.gateway!.spool, dir: join(dir, 'spool') },
    log: pino({ level: 'silent' }),
    onStatus: (s) => statuses.push(s),
    metrics,
    queryTarget: createTarget(influx),
  });
  return { writer, statuses, metrics };
}

const line = (i: number) => `water_tank,device=tank-${i % 7} levelPercent=${i % 100} ${1_700_000_000_000 + i}`;

describe('storage worker thread', () => {
  it('confirms lines once on disk, refuses what a dead worker had not confirmed, and recovers the spool', async () => {
    const { writer, statuses, metrics } = makeWriter();
    await writer.start();
    try {
      expect(writer.status.state).toBe('down'); // unreachable InfluxDB: not fatal
      expect(statuses.at(-1)?.message).toMatch(/no answer from http:\/\/127.0.0.1:1/);

      for (let i = 0; i < 100; i++) writer.writeLine(line(i));
      expect(writer.buffered).toBe(100);
      await writer.barrier();
      expect(writer.barrier()).toBeUndefined(); // nothing left to wait for
      expect((await metrics.spoolCommitSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value).toBeGreaterThan(0);

      // Lines the worker never confirmed: their barrier must fail, never resolve.
      for (let i = 100; i < 150; i++) writer.writeLine(line(i));
      const unconfirmed = writer.barrier()!;
      await writer.terminateWorker();
      await expect(unconfirmed).rejects.toThrow(/storage worker exited/);

      // A new worker finds the 100 confirmed lines on disk and takes new ones.
      await waitFor(() => writer.buffered === 100 && writer.status.message !== 'storage worker restarting', { timeoutMs: 10_000, what: 'the restarted worker' });
      for (let i = 200; i < 210; i++) writer.writeLine(line(i));
      await writer.barrier();
      expect(writer.buffered).toBe(110);
    } finally {
      await writer.stop();
    }
  }, 30_000);

  it('sends batches at least commitIntervalMs apart, and at once after a quiet spell', async () => {
    const { writer, metrics } = makeWriter({ commitIntervalMs: 1000 });
    const commits = async () => (await metrics.spoolCommitSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    await writer.start();
    try {
      const before = await commits();
      const t0 = performance.now();
      writer.writeLine(line(0));
      await writer.barrier();
      // Nothing was sent for longer than the interval: this line is not held back for it.
      expect(performance.now() - t0).toBeLessThan(500);
      // Lines over the next turns wait until the interval since the last batch is over, then go as one batch.
      for (let i = 1; i <= 10; i++) {
        writer.writeLine(line(i));
        await new Promise((r) => setTimeout(r, 5));
      }
      await writer.barrier();
      expect(performance.now() - t0).toBeGreaterThanOrEqual(990);
      await waitFor(async () => (await commits()) - before >= 2, { timeoutMs: 2000, what: 'two commits' });
      expect((await commits()) - before).toBe(2);
      expect(writer.buffered).toBe(11);

      // The last batch went just now, but one connection with 16 messages in this one does not
      // wait out the interval: its PUBACKs share a write anyway (an agent emptying its outbox).
      const agent = {};
      const other = {};
      const acked: number[] = [];
      const t1 = performance.now();
      for (let i = 11; i < 27; i++) {
        writer.writeLine(line(i));
        writer.whenDurable(() => acked.push(i), agent);
        writer.whenDurable(() => undefined, other);
        if (i === 20) expect(writer.barrier()).toBeDefined(); // counts for no one
      }
      await writer.barrier();
      expect(performance.now() - t1).toBeLessThan(500);
      expect(acked).toHaveLength(16);
      expect(writer.buffered).toBe(27);
    } finally {
      await writer.stop();
    }
  }, 30_000);

  it('says full when the spool reaches its cap, counting lines still on their way', async () => {
    const { config } = resolveConfig({ gateway: { influx: { url: 'http://127.0.0.1:1', database: 'x' }, dataDir: dir, spool: { maxBytes: 1024 * 1024 } } }, { source: 'test', baseDir: dir });
    const influx = config.gateway!.influx;
    const writer = new WorkerSeriesWriter({
      config: influx,
      spool: { ...config.gateway!.spool, dir: join(dir, 'spool') },
      log: pino({ level: 'silent' }),
      onStatus: () => undefined,
      metrics: createMetrics(),
      queryTarget: createTarget(influx),
    });
    await writer.start();
    try {
      const big = `m,device=d v="${'x'.repeat(1000)}" `;
      let i = 0;
      while (!writer.full && i < 2000) writer.writeLine(`${big}${i++}`);
      expect(writer.full).toBe(true);
      expect(i).toBeGreaterThan(900); // ~1 MB of ~1 KB lines, not earlier
      expect(i).toBeLessThan(1100);
      await writer.barrier();
      expect(writer.full).toBe(true); // still full once on disk
    } finally {
      await writer.stop();
    }
  });

  it('puts every byte of every line on disk in order: non-ASCII text, lines that outgrow the batch buffer, many batches', async () => {
    const { writer } = makeWriter();
    await writer.start();
    try {
      const expected: string[] = [];
      const write = (l: string) => {
        writer.writeLine(l);
        expected.push(l);
      };
      // UTF-8 of more than one byte per character (Chinese names, a Latin-1 letter, an emoji),
      // where a byte count taken from the string length would be short.
      for (let i = 0; i < 50; i++) write(`event,device=cam-${i} note="茶山竹海 山火预警 ${i} é 🔥" ${1_700_000_000_000 + i}`);
      await writer.barrier();
      // One line larger than the first batch buffer (64 kB) and a batch of many small ones.
      write(`event,device=big note="${'火'.repeat(40_000)}" 1700000001000`);
      for (let i = 0; i < 5000; i++) write(line(i));
      await writer.barrier();
      for (let i = 0; i < 3; i++) write(`event,device=cam-${i} note="第${i}批" ${1_700_000_002_000 + i}`);
      await writer.barrier();
      expect(writer.buffered).toBe(expected.length);
      const spool = join(dir, 'spool');
      const segs = readdirSync(spool).filter((f) => f.endsWith('.seg')).sort();
      const onDisk = Buffer.concat(segs.map((f) => readFileSync(join(spool, f))));
      expect(onDisk.equals(Buffer.from(`${expected.join('\n')}\n`, 'utf8'))).toBe(true);
    } finally {
      await writer.stop();
    }
  }, 30_000);
});
