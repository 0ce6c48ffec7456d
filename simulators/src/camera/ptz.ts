/**
 * The pan-tilt-zoom head. Positions are in ONVIF's generic spaces, mapped to the real world:
 *
 *   pan   x ∈ [-1, 1] ↔ −180°…+180° from the camera's mechanical zero, which faces the ledger's
 *         `heading_deg`; bearing (° true, clockwise from north) = (heading + 180·x) mod 360.
 *         Pan is continuous (no end stops): x = −1 and x = 1 are the same direction.
 *   tilt  y ∈ [-1, 1] ↔ −90°…+90° (0 = horizon, negative = down)
 *   zoom  z ∈ [0, 1]  ↔ 1×…maxZoom× optical
 *
 * Each axis moves at a constant rate until a stop time, so the position is computed on demand
 * from (start, rate, until) and nothing ticks in the background — 1657 heads cost nothing idle.
 */

export interface PtzLimits {
  /** pan speed at velocity / speed 1 */
  maxPanDegPerSec: number;
  maxTiltDegPerSec: number;
  /** time to cross the zoom range at speed 1 */
  zoomFullRangeSec: number;
  /** optical zoom at z = 1, for display only */
  maxZoom: number;
}

/** A heavy forest-fire pan-tilt head is slow next to a dome camera (100°/s and more). */
export const DEFAULT_PTZ_LIMITS: PtzLimits = {
  maxPanDegPerSec: 40,
  maxTiltDegPerSec: 20,
  zoomFullRangeSec: 4,
  maxZoom: 30,
};

export function mod360(deg: number): number {
  const r = deg % 360;
  return r < 0 ? r + 360 : r;
}
/** Into (−180, 180]. */
export function wrap180(deg: number): number {
  const r = mod360(deg);
  return r > 180 ? r - 360 : r;
}
/** The pan x that points the camera at `bearingDeg`. */
export function bearingToPanX(bearingDeg: number, headingDeg: number): number {
  return wrap180(bearingDeg - headingDeg) / 180;
}
/** The bearing a pan x points at. */
export function panXToBearing(x: number, headingDeg: number): number {
  return mod360(headingDeg + x * 180);
}

/** An axis moving at `rate` units/ms from `from` at `t0`, stopping at `until`. */
interface Motion {
  from: number;
  t0: number;
  rate: number;
  until: number;
}
const still = (value: number, t: number): Motion => ({ from: value, t0: t, rate: 0, until: t });

export interface PtzPosition {
  x: number;
  y: number;
  zoom: number;
}
export interface PtzStatus extends PtzPosition {
  bearingDeg: number;
  tiltDeg: number;
  panTiltMoving: boolean;
  zoomMoving: boolean;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export class PtzHead {
  #pan: Motion; // degrees from mechanical zero, unwrapped
  #tilt: Motion; // degrees
  #zoom: Motion; // 0..1
  constructor(
    readonly headingDeg: number,
    private readonly limits: PtzLimits,
    private readonly now: () => number,
    initialBearingDeg = headingDeg,
  ) {
    const t = now();
    this.#pan = still(wrap180(initialBearingDeg - headingDeg), t);
    this.#tilt = still(0, t);
    this.#zoom = still(0, t);
  }

  static #at(m: Motion, t: number): number {
    return m.from + m.rate * (Math.min(t, m.until) - m.t0);
  }
  #tiltAt(t: number): number {
    return clamp(PtzHead.#at(this.#tilt, t), -90, 90);
  }
  #zoomAt(t: number): number {
    return clamp(PtzHead.#at(this.#zoom, t), 0, 1);
  }

  status(): PtzStatus {
    const t = this.now();
    const panDeg = wrap180(PtzHead.#at(this.#pan, t));
    const tiltDeg = this.#tiltAt(t);
    const zoom = this.#zoomAt(t);
    const moving = (m: Motion, value: number, lo: number, hi: number) =>
      m.rate !== 0 && t < m.until && !(value <= lo && m.rate < 0) && !(value >= hi && m.rate > 0);
    return {
      x: panDeg / 180,
      y: tiltDeg / 90,
      zoom,
      bearingDeg: mod360(this.headingDeg + panDeg),
      tiltDeg,
      panTiltMoving: (this.#pan.rate !== 0 && t < this.#pan.until) || moving(this.#tilt, tiltDeg, -90, 90),
      zoomMoving: moving(this.#zoom, zoom, 0, 1),
    };
  }

  get bearingDeg(): number {
    return this.status().bearingDeg;
  }

  /** Points the camera at a bearing at once (e.g. the detector centring an alarm). */
  setBearing(bearingDeg: number): void {
    this.#pan = still(wrap180(bearingDeg - this.headingDeg), this.now());
  }

  /** Moves each given axis by `delta` at `speed` (0–1 of the axis maximum). */
  #moveBy(axis: 'pan' | 'tilt' | 'zoom', delta: number, speed: number): void {
    const t = this.now();
    const current = axis === 'pan' ? PtzHead.#at(this.#pan, t) : axis === 'tilt' ? this.#tiltAt(t) : this.#zoomAt(t);
    const perSec =
      axis === 'pan'
        ? this.limits.maxPanDegPerSec
        : axis === 'tilt'
          ? this.limits.maxTiltDegPerSec
          : 1 / this.limits.zoomFullRangeSec;
    const rate = (clamp(speed, 0.001, 1) * perSec) / 1000;
    const motion: Motion =
      delta === 0 ? still(current, t) : { from: current, t0: t, rate: Math.sign(delta) * rate, until: t + Math.abs(delta) / rate };
    if (axis === 'pan') this.#pan = motion;
    else if (axis === 'tilt') this.#tilt = motion;
    else this.#zoom = motion;
  }

  /** AbsoluteMove / GotoPreset: pan takes the shorter way round. Speeds 0–1, default 1. */
  absoluteMove(to: Partial<PtzPosition>, speed: Partial<PtzPosition> = {}): void {
    const s = this.status();
    if (to.x !== undefined) this.#moveBy('pan', wrap180(clamp(to.x, -1, 1) * 180 - s.x * 180), speed.x ?? 1);
    if (to.y !== undefined) this.#moveBy('tilt', clamp(to.y, -1, 1) * 90 - s.tiltDeg, speed.y ?? 1);
    if (to.zoom !== undefined) this.#moveBy('zoom', clamp(to.zoom, 0, 1) - s.zoom, speed.zoom ?? 1);
  }

  /** RelativeMove: x = 1 is a half turn (+180°), not the shorter way. */
  relativeMove(by: Partial<PtzPosition>, speed: Partial<PtzPosition> = {}): void {
    const s = this.status();
    if (by.x) this.#moveBy('pan', clamp(by.x, -2, 2) * 180, speed.x ?? 1);
    if (by.y) this.#moveBy('tilt', clamp(s.tiltDeg + by.y * 90, -90, 90) - s.tiltDeg, speed.y ?? 1);
    if (by.zoom) this.#moveBy('zoom', clamp(s.zoom + by.zoom, 0, 1) - s.zoom, speed.zoom ?? 1);
  }

  /** ContinuousMove: velocities −1…1 of the maxima, until Stop or `timeoutMs`. */
  continuousMove(velocity: Partial<PtzPosition>, timeoutMs = Infinity): void {
    const t = this.now();
    const until = t + Math.max(0, timeoutMs);
    if (velocity.x !== undefined) {
      const from = PtzHead.#at(this.#pan, t);
      const rate = (clamp(velocity.x, -1, 1) * this.limits.maxPanDegPerSec) / 1000;
      this.#pan = rate === 0 ? still(from, t) : { from, t0: t, rate, until };
    }
    if (velocity.y !== undefined) {
      const from = this.#tiltAt(t);
      const rate = (clamp(velocity.y, -1, 1) * this.limits.maxTiltDegPerSec) / 1000;
      this.#tilt = rate === 0 ? still(from, t) : { from, t0: t, rate, until: Math.min(until, t + this.#timeToLimit(from, rate, -90, 90)) };
    }
    if (velocity.zoom !== undefined) {
      const from = this.#zoomAt(t);
      const rate = clamp(velocity.zoom, -1, 1) / this.limits.zoomFullRangeSec / 1000;
      this.#zoom = rate === 0 ? still(from, t) : { from, t0: t, rate, until: Math.min(until, t + this.#timeToLimit(from, rate, 0, 1)) };
    }
  }

  #timeToLimit(from: number, rate: number, lo: number, hi: number): number {
    return rate > 0 ? (hi - from) / rate : (lo - from) / rate;
  }

  stop(panTilt = true, zoom = true): void {
    const t = this.now();
    if (panTilt) {
      this.#pan = still(PtzHead.#at(this.#pan, t), t);
      this.#tilt = still(this.#tiltAt(t), t);
    }
    if (zoom) this.#zoom = still(this.#zoomAt(t), t);
  }
}

/** A named preset; positions are kept as bearings so they mean the same on every camera. */
export interface PtzPreset {
  token: string;
  name: string;
  bearingDeg: number;
  tiltDeg: number;
  zoom: number;
}

/** Every camera starts with the four cardinal directions, as installers usually set them. */
export const DEFAULT_PRESETS: readonly PtzPreset[] = [
  { token: '1', name: '北', bearingDeg: 0, tiltDeg: 0, zoom: 0 },
  { token: '2', name: '东', bearingDeg: 90, tiltDeg: 0, zoom: 0 },
  { token: '3', name: '南', bearingDeg: 180, tiltDeg: 0, zoom: 0 },
  { token: '4', name: '西', bearingDeg: 270, tiltDeg: 0, zoom: 0 },
];
