import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Spool, type SpoolBatch } from '../../gateway/src/storage/spool.js';
import { toLine } from '../../gateway/src/storage/line-protocol.js';

const log = pino({ level: 'silent' });
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gs-spool-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function openSpool(opts: { maxBytes?: number; segmentBytes?: number; commitIntervalMs?: number; onCommit?: () => void } = {}): Promise<Spool> {
  const spool = new Spool({
    dir,
    maxBytes: opts.maxBytes ?? 1 << 30,
    fsync: true,
    commitIntervalMs: opts.commitIntervalMs ?? 1,
    log,
    ...(opts.segmentBytes ? { segmentBytes: opts.segmentBytes } : {}),
    ...(opts.onCommit ? { onCommit: opts.onCommit } : {}),
  });
  await spool.open();
  return spool;
}

const lines = (b: SpoolBatch | undefined) => (b ? b.body.toString().trimEnd().split('\n') : []);

describe('gateway spool', () => {
  it('makes appended lines durable at the barrier and hands them out in order', async () => {
    const spool = await openSpool();
    for (let i = 0; i < 5; i++) spool.append(`m v=${i} ${1000 + i}`);
    expect(spool.readBatch(100, 1 << 20)).toBeUndefined(); // not committed yet: not readable
    await spool.barrier();
    const batch = spool.readBatch(3, 1 << 20);
    expect(lines(batch)).toEqual(['m v=0 1000', 'm v=1 1001', 'm v=2 1002']);
    spool.ack(batch!.end, batch!.lines);
    expect(spool.backlog).toBe(2);
    expect(lines(spool.readBatch(100, 1 << 20))).toEqual(['m v=3 1003', 'm v=4 1004']);
    await spool.close();
  });

  it('starts group commits at least commitIntervalMs apart, and at once after a quiet spell', async () => {
    let commits = 0;
    const spool = await openSpool({ commitIntervalMs: 1000, onCommit: () => commits++ });
    const t0 = performance.now();
    spool.append('m v=0 0');
    await spool.barrier();
    // Nothing was committed for longer than the interval: this one is not held back for it.
    expect(performance.now() - t0).toBeLessThan(500);
    // Lines over the next turns wait until the interval since the last commit is over, then go together.
    for (let i = 1; i <= 10; i++) {
      spool.append(`m v=${i} ${i}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await spool.barrier();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(990);
    expect(commits).toBe(2);
    expect(lines(spool.readBatch(100, 1 << 20))).toHaveLength(11);
    await spool.close();
  });

  it('after a crash (no ack, no close) replays everything not acknowledged', async () => {
    let spool = await openSpool();
    for (let i = 0; i < 10; i++) spool.append(`m v=${i} ${i}`);
    await spool.barrier();
    const first = spool.readBatch(4, 1 << 20)!;
    spool.ack(first.end, first.lines);
    // "Crash": a second instance opens the same dir without the first closing.
    spool = await openSpool();
    expect(spool.backlog).toBe(6);
    expect(lines(spool.readBatch(100, 1 << 20))).toEqual([4, 5, 6, 7, 8, 9].map((i) => `m v=${i} ${i}`));
    await spool.close();
  });

  it('trims a torn last line that was never acknowledged', async () => {
    let spool = await openSpool();
    spool.append('m v=1 1');
    await spool.barrier();
    await spool.close();
    const seg = readdirSync(dir).find((f) => f.endsWith('.seg'))!;
    appendFileSync(join(dir, seg), 'm v=2 2'); // no newline: the process died mid-write
    spool = await openSpool();
    expect(spool.backlog).toBe(1);
    spool.append('m v=3 3');
    await spool.barrier();
    expect(lines(spool.readBatch(100, 1 << 20))).toEqual(['m v=1 1', 'm v=3 3']);
    await spool.close();
  });

  it('rotates segments and deletes them once acknowledged', async () => {
    const spool = await openSpool({ segmentBytes: 64 });
    for (let i = 0; i < 40; i++) {
      spool.append(`measurement value=${i} ${i}`);
      if (i % 5 === 4) await spool.barrier();
    }
    await spool.barrier();
    expect(readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(3);
    const seen: string[] = [];
    for (let b = spool.readBatch(7, 1 << 20); b; b = spool.readBatch(7, 1 << 20)) {
      seen.push(...lines(b));
      spool.ack(b.end, b.lines);
    }
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => `measurement value=${i} ${i}`));
    expect(spool.backlog).toBe(0);
    expect(readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBe(1);
    await spool.close();
  });

  it('reads a line longer than its first guess of a batch', async () => {
    const spool = await openSpool();
    const long = `m s="${'x'.repeat(100_000)}" 2`;
    spool.append(long);
    spool.append('m v=3 3');
    await spool.barrier();
    expect(lines(spool.readBatch(5, 1 << 20))).toEqual([long, 'm v=3 3']);
    await spool.close();
  });

  it('says when it is full', async () => {
    const spool = await openSpool({ maxBytes: 1024 * 1024 });
    expect(spool.full).toBe(false);
    const big = `m s="${'x'.repeat(1000)}" 1`;
    for (let i = 0; i < 1100; i++) spool.append(big);
    expect(spool.full).toBe(true);
    await spool.close();
  });
});

describe('line protocol', () => {
  it('escapes names, tags and strings, writes every number as a float, ms time', () => {
    expect(
      toLine({
        measurement: 'water tank',
        tags: { grid: 'G,1', device: 'tank=1', empty: '' },
        fields: { levelMm: 1200, note: 'say "hi"\\', ok: true, bad: Number.NaN },
        ts: 1767225600123,
      }),
    ).toBe('water\\ tank,device=tank\\=1,grid=G\\,1 levelMm=1200,note="say \\"hi\\"\\\\",ok=true 1767225600123');
    expect(toLine({ measurement: 'm', tags: {}, fields: { x: Number.POSITIVE_INFINITY }, ts: 1 })).toBeUndefined();
  });

  it('writes numbers exactly as String(n) does, so that InfluxDB reads back the same float', () => {
    const edge = [0, -0, 1, -1.5, 0.1, 0.1 + 0.2, 1 / 3, 1e21, 1e-7, 123456789.125, 2 ** 53, 5e-324, 1.7976931348623157e308, -273.15];
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 10 ** ((seed % 40) - 20);
    for (const x of [...edge, ...Array.from({ length: 2000 }, random)]) {
      expect(toLine({ measurement: 'm', tags: {}, fields: { x }, ts: 1767225600123.9 })).toBe(`m x=${String(x)} 1767225600123`);
    }
  });
});
