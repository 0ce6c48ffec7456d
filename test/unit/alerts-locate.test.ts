import { describe, expect, it } from 'vitest';
import { bearingDeg, destination, distanceM, locateFire, type BearingObservation, type FireLocation, type LatLon } from '../../gateway/src/alerts/locate.js';
import { prng } from '../../simulators/src/fleet/geography.js';

/** A point in the Chashan Zhuhai hills. */
const FIRE: LatLon = { lat: 29.43, lon: 105.88 };

/** Standard normal (Box–Muller). */
function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** A camera `distance` m from the fire, in direction `fromFireDeg` as seen from the fire, looking at it. */
function camera(id: string, fromFireDeg: number, distance: number, extra: Partial<BearingObservation> = {}, fire = FIRE): BearingObservation {
  const at = destination(fire, fromFireDeg, distance);
  return { cameraId: id, ...at, bearingDeg: bearingDeg(at, fire), ...extra };
}

function triangulated(result: FireLocation) {
  if (result.method !== 'triangulated') throw new Error(`expected a fix, got ${JSON.stringify(result)}`);
  return result;
}
function bearingLine(result: FireLocation) {
  if (result.method !== 'bearing_line') throw new Error(`expected a bearing line, got ${JSON.stringify(result)}`);
  return result;
}

describe('geo helpers', () => {
  it('destination, distanceM and bearingDeg agree with each other', () => {
    const to = destination(FIRE, 37, 8000);
    expect(distanceM(FIRE, to)).toBeCloseTo(8000, 6);
    expect(bearingDeg(FIRE, to)).toBeCloseTo(37, 9);
    // One degree of latitude on the mean-radius sphere.
    expect(distanceM({ lat: 29, lon: 105 }, { lat: 30, lon: 105 })).toBeCloseTo(111_195, 0);
    expect(bearingDeg({ lat: 29, lon: 105 }, { lat: 29, lon: 104 })).toBeCloseTo(270.24, 2);
  });
});

describe('locateFire', () => {
  it('intersects two exact bearings to within a metre', () => {
    const result = triangulated(locateFire([camera('cam-a', 200, 5000), camera('cam-b', 300, 7000)]));
    expect(distanceM(result, FIRE)).toBeLessThan(1);
    expect(result.cameras).toEqual(['cam-a', 'cam-b']);
    expect(result.residualM).toBeLessThan(0.01);
    expect(result.rejected).toEqual([]);
    // Two rays at 100°, 5–7 km, 0.5° bearing sigma: tens of metres.
    expect(result.uncertaintyM).toBeGreaterThan(30);
    expect(result.uncertaintyM).toBeLessThan(120);
  });

  it('reports a larger uncertainty for a narrow crossing than for a square one', () => {
    const square = triangulated(locateFire([camera('a', 0, 5000), camera('b', 90, 5000)]));
    const narrow = triangulated(locateFire([camera('a', 0, 5000), camera('b', 15, 5000)]));
    expect(narrow.uncertaintyM).toBeGreaterThan(3 * square.uncertaintyM);
  });

  it('fixes three noisy bearings (±0.3°) to within 100 m', () => {
    const rand = prng(42);
    for (let trial = 0; trial < 20; trial++) {
      const observations = [40, 160, 280].map((dir, i) => {
        const cam = camera(`cam-${i}`, dir + (rand() - 0.5) * 40, 3000 + rand() * 5000);
        return { ...cam, bearingDeg: cam.bearingDeg + gaussian(rand) * 0.3 };
      });
      const result = triangulated(locateFire(observations));
      const error = distanceM(result, FIRE);
      expect(error).toBeLessThan(100);
      expect(result.cameras).toHaveLength(3);
      expect(result.residualM).toBeGreaterThan(0);
      expect(error).toBeLessThan(3 * result.uncertaintyM);
    }
  });

  it('rejects a wild outlier among four rays', () => {
    const rand = prng(7);
    const observations = [10, 100, 190, 280].map((dir, i) => {
      const cam = camera(`cam-${i}`, dir, 3000 + i * 1500);
      return { ...cam, bearingDeg: cam.bearingDeg + gaussian(rand) * 0.3 };
    });
    observations[2] = { ...observations[2]!, bearingDeg: observations[2]!.bearingDeg + 20 };
    const result = triangulated(locateFire(observations));
    expect(result.rejected).toEqual([{ cameraId: 'cam-2', reason: 'outlier' }]);
    expect(result.cameras).toEqual(['cam-0', 'cam-1', 'cam-3']);
    expect(distanceM(result, FIRE)).toBeLessThan(100);
    expect(result.residualM).toBeLessThan(300);
  });

  it('falls back to a bearing line when two rays cross at 5°', () => {
    const result = bearingLine(locateFire([camera('cam-a', 180, 6000, { ts: 2000 }), camera('cam-b', 185, 4000, { ts: 1000 })]));
    expect(result.cameraId).toBe('cam-a');
    expect(result.rejected).toEqual([{ cameraId: 'cam-b', reason: 'parallel' }]);
    // The fire lies on the line.
    expect(Math.abs(bearingDeg(result.from, FIRE) - result.bearingDeg)).toBeLessThan(1e-6);
  });

  it('falls back when three or more rays are all near-parallel', () => {
    const result = bearingLine(locateFire([camera('a', 90, 3000), camera('b', 94, 5000), camera('c', 97, 7000)]));
    expect(result.cameraId).toBe('c');
    expect(result.rejected).toEqual([
      { cameraId: 'a', reason: 'parallel' },
      { cameraId: 'b', reason: 'parallel' },
    ]);
  });

  it('honours minCrossingAngleDeg', () => {
    const pair = [camera('a', 180, 6000), camera('b', 185, 4000)];
    expect(triangulated(locateFire(pair, { minCrossingAngleDeg: 3 })).cameras).toEqual(['a', 'b']);
  });

  it('blames the camera the crossing lies behind', () => {
    // cam-b looks away from the fire: its line still crosses cam-a's, but behind cam-b.
    const away = camera('cam-b', 90, 4000);
    const result = bearingLine(locateFire([camera('cam-a', 0, 5000, { ts: 1 }), { ...away, bearingDeg: away.bearingDeg + 180, ts: 2 }]));
    expect(result.cameraId).toBe('cam-a');
    expect(result.rejected).toEqual([{ cameraId: 'cam-b', reason: 'behind' }]);
  });

  it('still draws a bearing line when two rays diverge (the crossing is behind both)', () => {
    const a = camera('cam-a', 0, 5000, { ts: 1 });
    const b = camera('cam-b', 90, 5000, { ts: 2 });
    const result = bearingLine(locateFire([{ ...a, bearingDeg: a.bearingDeg + 180 }, { ...b, bearingDeg: b.bearingDeg + 180 }]));
    expect(result.cameraId).toBe('cam-b');
    expect(result.rejected).toEqual([{ cameraId: 'cam-a', reason: 'behind' }]);
  });

  it('drops a ray pointing away from where three others agree', () => {
    const away = camera('cam-d', 300, 4000);
    const result = triangulated(
      locateFire([camera('cam-a', 0, 5000), camera('cam-b', 120, 6000), camera('cam-c', 240, 3000), { ...away, bearingDeg: away.bearingDeg + 180 }]),
    );
    expect(result.rejected).toEqual([{ cameraId: 'cam-d', reason: 'behind' }]);
    expect(distanceM(result, FIRE)).toBeLessThan(1);
  });

  it('rejects a crossing beyond a camera’s view range', () => {
    const result = bearingLine(locateFire([camera('near', 0, 3000, { maxRangeM: 5000 }), camera('short', 90, 6000, { maxRangeM: 5000 })]));
    expect(result.cameraId).toBe('near');
    expect(result.rejected).toEqual([{ cameraId: 'short', reason: 'out_of_range' }]);
    // defaultRangeM applies to observations without maxRangeM.
    const pair = [camera('a', 0, 3000), camera('b', 90, 12_000)];
    expect(bearingLine(locateFire(pair)).rejected).toEqual([{ cameraId: 'b', reason: 'out_of_range' }]);
    expect(triangulated(locateFire(pair, { defaultRangeM: 15_000 })).cameras).toEqual(['a', 'b']);
  });

  it('keeps only the latest observation of each camera', () => {
    const stale = { ...camera('cam-a', 0, 5000), bearingDeg: 123, ts: 1000 };
    const fresh = camera('cam-a', 0, 5000, { ts: 2000 });
    const older = { ...fresh, bearingDeg: 77, ts: 1500 };
    const result = triangulated(locateFire([stale, fresh, camera('cam-b', 90, 5000), older]));
    expect(distanceM(result, FIRE)).toBeLessThan(1);
    expect(result.cameras).toEqual(['cam-a', 'cam-b']);
    expect(result.rejected).toEqual([
      { cameraId: 'cam-a', reason: 'duplicate_camera' },
      { cameraId: 'cam-a', reason: 'duplicate_camera' },
    ]);
    // Without ts, the last one wins.
    const untimed = bearingLine(locateFire([{ ...fresh, ts: undefined }, { ...fresh, bearingDeg: 10, ts: undefined }]));
    expect(untimed.bearingDeg).toBe(10);
    expect(untimed.rejected).toEqual([{ cameraId: 'cam-a', reason: 'duplicate_camera' }]);
  });

  it('gives a single camera’s bearing line out to its view range', () => {
    const cam = camera('cam-a', 225, 4000, { maxRangeM: 8000 });
    const result = bearingLine(locateFire([cam]));
    expect(result).toMatchObject({ cameraId: 'cam-a', from: { lat: cam.lat, lon: cam.lon }, rejected: [] });
    expect(distanceM(result.from, result.to)).toBeCloseTo(8000, 3);
    expect(bearingDeg(result.from, result.to)).toBeCloseTo(cam.bearingDeg, 6);
    expect(distanceM(result.from, bearingLine(locateFire([{ ...cam, maxRangeM: undefined }])).to)).toBeCloseTo(10_000, 3);
  });

  it('answers none with no observations', () => {
    expect(locateFire([])).toEqual({ method: 'none', rejected: [] });
  });

  it('works at site scale: cameras 10 km apart at latitude 29.4°', () => {
    const west: LatLon = { lat: 29.4, lon: 105.83 };
    const east = destination(west, 90, 10_000);
    const fire = destination(west, 40, 8000);
    const observations = [
      { cameraId: 'tower-w', ...west, bearingDeg: bearingDeg(west, fire), maxRangeM: 10_000 },
      { cameraId: 'tower-e', ...east, bearingDeg: bearingDeg(east, fire), maxRangeM: 10_000 },
    ];
    const result = triangulated(locateFire(observations));
    expect(distanceM(result, fire)).toBeLessThan(1);
    // With a 0.5° error on one bearing the fix moves by tens of metres, not kilometres.
    const skewed = triangulated(locateFire([{ ...observations[0]!, bearingDeg: observations[0]!.bearingDeg + 0.5 }, observations[1]!]));
    expect(distanceM(skewed, fire)).toBeGreaterThan(20);
    expect(distanceM(skewed, fire)).toBeLessThan(150);
  });

  it('rejects non-finite input with the camera named', () => {
    expect(() => locateFire([{ cameraId: 'cam-x', lat: 29.4, lon: 105.9, bearingDeg: Number.NaN }])).toThrow(/cam-x.*bearingDeg/);
    expect(() => locateFire([{ cameraId: 'cam-x', lat: 95, lon: 105.9, bearingDeg: 0 }])).toThrow(/lat/);
  });
});
