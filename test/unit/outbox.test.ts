import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Outbox } from '../../edge-agent/src/outbox.js';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';

const ts = Date.UTC(2026, 5, 1);
const tank = (deviceId: string, i: number): Reading => ({
  channel: 'telemetry',
  kind: 'water_tank',
  deviceId,
  ts: ts + i,
  values: { levelMm: i, levelPercent: 1, volumeM3: 1 },
});
const fire = (deviceId: string, i: number): Reading => ({ channel: 'event', deviceId, ts: ts + i, event: { type: 'fire', phase: 'start', bearingDeg: 90 } });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gs-outbox-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const open = (max = 1000) => new Outbox(join(dir, 'outbox.sqlite'), { maxMessages: max });

describe('agent outbox', () => {
  it('numbers each device separately and keeps numbering across a restart', () => {
    let box = open();
    box.append(tank('a', 0));
    box.append(tank('a', 1));
    box.append(tank('b', 2));
    box.close();
    box = open();
    box.append(tank('a', 3));
    const seqs = box.fetch(0, 0, 10).map((r) => [r.topic, (JSON.parse(r.payload.toString()) as { seq: number }).seq]);
    expect(seqs).toEqual([
      ['gs/v1/devices/a/telemetry', 0],
      ['gs/v1/devices/a/telemetry', 1],
      ['gs/v1/devices/b/telemetry', 0],
      ['gs/v1/devices/a/telemetry', 2],
    ]);
    box.close();
  });

  it('keeps events apart so they can go first, and removes only what was acknowledged', () => {
    const box = open();
    box.append(tank('a', 0));
    box.append(fire('cam', 1));
    box.append(tank('a', 2));
    const [ev] = box.fetch(1, 0, 10);
    expect(ev?.topic).toBe('gs/v1/devices/cam/event');
    expect(JSON.parse(ev!.payload.toString())).toEqual({ ts: ts + 1, seq: 0, type: 'fire', phase: 'start', bearingDeg: 90 });
    box.remove(ev!.id);
    expect(box.stats()).toEqual({ queued: 2, dropped: 0 });
    expect(box.fetch(1, 0, 10)).toEqual([]);
    box.close();
  });

  it('when full drops the oldest telemetry, never events, and counts it', () => {
    const box = open(1000);
    for (let i = 0; i < 10; i++) box.append(fire('cam', i));
    for (let i = 0; i < 1100; i++) box.append(tank('a', i));
    const { queued, dropped } = box.stats();
    expect(queued).toBeLessThanOrEqual(1000);
    expect(queued + dropped).toBe(1110);
    expect(box.fetch(1, 0, 100)).toHaveLength(10);
    const telemetry = box.fetch(0, 0, 2000);
    // What is left is the newest telemetry, still in order.
    expect((JSON.parse(telemetry.at(-1)!.payload.toString()) as { values: { levelMm: number } }).values.levelMm).toBe(1099);
    expect((JSON.parse(telemetry[0]!.payload.toString()) as { values: { levelMm: number } }).values.levelMm).toBe(dropped);
    box.close();
  });
});
