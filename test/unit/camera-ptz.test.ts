/**
 * The simulated PTZ head on a hand-driven clock: pan ↔ bearing mapping, the shorter way round,
 * continuous moves with timeouts and stops, and presets kept as bearings.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRESETS, PtzHead, bearingToPanX, panXToBearing, wrap180, type PtzLimits } from '../../simulators/src/camera/ptz.js';

const LIMITS: PtzLimits = { maxPanDegPerSec: 40, maxTiltDegPerSec: 20, zoomFullRangeSec: 4, maxZoom: 30 };

function head(headingDeg: number, initialBearingDeg?: number) {
  let t = 1_000_000;
  const h = new PtzHead(headingDeg, LIMITS, () => t, initialBearingDeg);
  return { h, advance: (ms: number) => (t += ms) };
}

describe('pan x ↔ bearing', () => {
  it('x = 0 faces the heading; ±1 faces the opposite way; bearing = heading + 180·x', () => {
    expect(panXToBearing(0, 30)).toBe(30);
    expect(panXToBearing(1, 30)).toBe(210);
    expect(panXToBearing(-1, 30)).toBe(210);
    expect(panXToBearing(-0.5, 30)).toBe(300);
    expect(panXToBearing(0.5, 300)).toBe(30);
  });

  it('bearingToPanX is the inverse, into (−1, 1]', () => {
    for (const heading of [0, 30, 181.5, 359.9]) {
      for (const bearing of [0, 45, 90, 179.9, 180, 270, 359]) {
        const x = bearingToPanX(bearing, heading);
        expect(x).toBeGreaterThan(-1);
        expect(x).toBeLessThanOrEqual(1);
        expect(wrap180(panXToBearing(x, heading) - bearing)).toBeCloseTo(0, 9);
      }
    }
  });
});

describe('PTZ head', () => {
  it('starts pointing at its heading, idle', () => {
    const { h } = head(123.4);
    const s = h.status();
    expect(s.x).toBe(0);
    expect(s.bearingDeg).toBeCloseTo(123.4, 9);
    expect(s.panTiltMoving).toBe(false);
  });

  it('AbsoluteMove takes the shorter way round at the maximum speed, then stops exactly there', () => {
    const { h, advance } = head(0, 350); // pointing at 350°
    h.absoluteMove({ x: bearingToPanX(10, 0) }); // 20° clockwise through north, not 340° back
    expect(h.status().panTiltMoving).toBe(true);
    advance(250); // 10° at 40°/s
    expect(h.status().bearingDeg).toBeCloseTo(0, 6);
    advance(250);
    expect(h.status().bearingDeg).toBeCloseTo(10, 6);
    expect(h.status().panTiltMoving).toBe(false);
    advance(10_000);
    expect(h.status().bearingDeg).toBeCloseTo(10, 6);
  });

  it('a speed below 1 moves proportionally slower', () => {
    const { h, advance } = head(0);
    h.absoluteMove({ x: 0.5 }, { x: 0.25 }); // 90° at 10°/s
    advance(4500);
    expect(h.status().bearingDeg).toBeCloseTo(45, 6);
    advance(4500);
    expect(h.status().bearingDeg).toBeCloseTo(90, 6);
  });

  it('ContinuousMove pans at velocity × max speed, wraps through ±180°, and Stop holds the position', () => {
    const { h, advance } = head(90);
    h.continuousMove({ x: -0.5 }); // −20°/s
    advance(3000);
    expect(h.status().bearingDeg).toBeCloseTo(30, 6);
    advance(6000); // 180° from start: x wraps from −1 to +1
    expect(Math.abs(h.status().x)).toBeCloseTo(1, 6);
    expect(h.status().bearingDeg).toBeCloseTo(270, 6);
    h.stop();
    advance(5000);
    expect(h.status().bearingDeg).toBeCloseTo(270, 6);
    expect(h.status().panTiltMoving).toBe(false);
  });

  it('ContinuousMove ends by itself after its Timeout', () => {
    const { h, advance } = head(0);
    h.continuousMove({ x: 1 }, 500); // 20°, then still
    advance(2000);
    expect(h.status().bearingDeg).toBeCloseTo(20, 6);
    expect(h.status().panTiltMoving).toBe(false);
  });

  it('tilt and zoom stop at their limits and then report idle', () => {
    const { h, advance } = head(0);
    h.continuousMove({ y: -1, zoom: 1 });
    advance(20_000);
    const s = h.status();
    expect(s.tiltDeg).toBe(-90);
    expect(s.y).toBe(-1);
    expect(s.zoom).toBe(1);
    expect(s.panTiltMoving).toBe(false);
    expect(s.zoomMoving).toBe(false);
  });

  it('RelativeMove x = 0.5 is a quarter turn clockwise', () => {
    const { h, advance } = head(45);
    h.relativeMove({ x: 0.5 });
    advance(10_000);
    expect(h.status().bearingDeg).toBeCloseTo(135, 6);
  });

  it('setBearing points at once', () => {
    const { h } = head(200);
    h.continuousMove({ x: 1 });
    h.setBearing(63.5);
    expect(h.status().bearingDeg).toBeCloseTo(63.5, 9);
    expect(h.status().panTiltMoving).toBe(false);
  });

  it('default presets are the four cardinal bearings', () => {
    expect(DEFAULT_PRESETS.map((p) => [p.token, p.name, p.bearingDeg])).toEqual([
      ['1', '北', 0],
      ['2', '东', 90],
      ['3', '南', 180],
      ['4', '西', 270],
    ]);
  });
});
