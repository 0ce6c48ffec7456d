import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { destination, distanceM } from '../../simulators/src/geo.js';
import { planFire, playFire, type FireDetection } from '../../simulators/src/scenario/fire.js';

const ledger = loadLedger(join(import.meta.dirname, '../../config/ledger/chashan-zhuhai.csv'));
const ignition = { lat: 29.43, lon: 105.885 };

describe('fire scenario', () => {
  it('is seen only by cameras in range, each with its own bearing to the fire', () => {
    const plan = planFire(ledger, ignition, { seed: 3 });
    const cams = new Map(ledger.filter((d) => d.kind === 'camera').map((d) => [d.id, d]));
    expect(plan.detections.length).toBeGreaterThan(10);
    for (const d of plan.detections) {
      const cam = cams.get(d.cameraId)!;
      expect(d.distanceM).toBeLessThanOrEqual((cam.settings as { viewRangeM: number }).viewRangeM);
      // Walking the true bearing for the distance lands on the fire.
      expect(distanceM(destination(cam, d.trueBearingDeg, d.distanceM), ignition)).toBeLessThan(2);
      const err = Math.abs(((d.bearingDeg - d.trueBearingDeg + 540) % 360) - 180);
      expect(err).toBeLessThan(2);
    }
  });

  it('reports smoke before fire, not before the cruise and the smoke allow it', () => {
    const plan = planFire(ledger, ignition, { seed: 3, cruisePeriodS: 240, smokeGrowthSPerKm: 20 });
    const byCam = new Map<string, FireDetection[]>();
    for (const d of plan.detections) byCam.set(d.cameraId, [...(byCam.get(d.cameraId) ?? []), d]);
    for (const ds of byCam.values()) {
      expect(ds[0]!.kind).toBe('smoke');
      expect(ds[0]!.atMs).toBeGreaterThanOrEqual(ds[0]!.distanceM * 20);
      if (ds[1]) expect(ds[1].atMs).toBeGreaterThan(ds[0]!.atMs + 30_000);
    }
    expect(plan.detections.map((d) => d.atMs)).toEqual([...plan.detections.map((d) => d.atMs)].sort((a, b) => a - b));
    expect(plan.tanks.every((t) => t.distanceM <= 1500)).toBe(true);
  });

  it('is the same plan for the same seed', () => {
    expect(planFire(ledger, ignition, { seed: 9 })).toEqual(planFire(ledger, ignition, { seed: 9 }));
    expect(planFire(ledger, ignition, { seed: 9 })).not.toEqual(planFire(ledger, ignition, { seed: 10 }));
  });

  it('plays in scaled time and stops cleanly', () => {
    vi.useFakeTimers();
    try {
      const plan = planFire(ledger, ignition, { seed: 3, maxCameras: 3 });
      const raised: string[] = [];
      const cleared: string[] = [];
      const playing = playFire(plan, { raise: (id, d) => raised.push(`${id}:${d.kind}`), clear: (id) => cleared.push(id) }, { timeScale: 60 });
      vi.advanceTimersByTime(plan.detections[0]!.atMs / 60 - 1);
      expect(raised).toEqual([]);
      vi.advanceTimersByTime(2);
      expect(raised).toEqual([`${plan.detections[0]!.cameraId}:smoke`]);
      playing.stop();
      expect(cleared).toEqual([plan.detections[0]!.cameraId]);
      vi.advanceTimersByTime(10 * 3600_000);
      expect(raised).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
