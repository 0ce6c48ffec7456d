/**
 * Where is the fire: cross the bearings that cameras report for the same smoke column.
 *
 * Two rays are intersected; three or more are solved by least squares on the perpendicular
 * distances to the rays, dropping outliers one at a time, then the rays the fix contradicts (it
 * lies behind the camera or beyond its view range), and solving again. When no trustworthy fix
 * remains, the answer is the most recent camera's bearing line, which a dispatcher can still
 * follow on the map.
 *
 * Geometry is done in a gnomonic tangent plane centred on the cameras (see geo.ts): bearing lines
 * are exactly straight there and distances are off by under 1e-5 within 20 km of the centre, so
 * the fix is as good as the bearings. (An equirectangular plane would bend each bearing line by
 * ≈ L²·tan(lat)/(8R): ~1 m over 10 km at latitude 29°, growing with the square of the range.)
 */
import { destination, distanceM, gnomonicPlane, normalizeDeg, sphericalMean, type LatLon } from './geo.js';

export { bearingDeg, destination, distanceM, type LatLon } from './geo.js';

export interface BearingObservation {
  cameraId: string;
  lat: number;
  lon: number;
  /** Degrees clockwise from true north. */
  bearingDeg: number;
  /** camera's view range, m; the fire cannot be farther */
  maxRangeM?: number;
  /** When the bearing was taken (ms); the newest observation of a camera wins. */
  ts?: number;
}

export type RejectReason = 'parallel' | 'behind' | 'out_of_range' | 'outlier' | 'duplicate_camera';
export interface RejectedObservation {
  cameraId: string;
  reason: RejectReason;
}

export type FireLocation =
  | {
      method: 'triangulated';
      lat: number;
      lon: number;
      /** RMS perpendicular distance from the point to the used rays, m (0 for two rays). */
      residualM: number;
      /**
       * Rough 1-sigma radial position uncertainty, m: σ·√trace(A⁻¹), where A = Σ(I − d dᵀ) is
       * the normal matrix (it carries the crossing geometry: narrow crossings make it large) and
       * σ is the per-ray perpendicular error: the larger of the measured one, √(Σr²/(n−2)), and
       * the one implied by `bearingSigmaDeg` at each camera's distance to the fire.
       */
      uncertaintyM: number;
      /** The cameras whose rays were used, in input order. */
      cameras: string[];
      /** observations left out and why */
      rejected: RejectedObservation[];
    }
  | {
      method: 'bearing_line';
      cameraId: string;
      from: LatLon;
      /** The end of the line: `from` moved along the bearing by the camera's view range. */
      to: LatLon;
      bearingDeg: number;
      rejected: RejectedObservation[];
    }
  | { method: 'none'; rejected: RejectedObservation[] };

export interface LocateOptions {
  /** Rays crossing at less than this are too close to parallel to fix a point. Default 10. */
  minCrossingAngleDeg?: number;
  /** View range for observations without `maxRangeM`. Default 10,000 m. */
  defaultRangeM?: number;
  /** Drop the worst ray while the residual is above this and more than two rays remain. Default 300 m. */
  maxResidualM?: number;
  /** Assumed 1-sigma bearing error of a camera, for `uncertaintyM`. Default 0.5°. */
  bearingSigmaDeg?: number;
}

/** One usable observation as a ray in the tangent plane; `index` is its place in the input. */
interface Ray {
  obs: BearingObservation;
  index: number;
  bearingDeg: number;
  rangeM: number;
  px: number;
  py: number;
  /** Unit direction. */
  dx: number;
  dy: number;
}

interface Solution {
  x: number;
  y: number;
  /** Perpendicular distance of the point from each ray, m. */
  offsets: number[];
  residualM: number;
  /** trace(A⁻¹), the geometry factor of the uncertainty. */
  traceInv: number;
}

/**
 * Locates a fire from camera bearings. Which ray is blamed when a fix fails:
 * - `behind` / `out_of_range`: every ray the fix lies behind or beyond the range of (the fix is
 *   only checked once the residual is acceptable, so it is not one dragged off by an outlier);
 * - `outlier`: the ray farthest from the least-squares point, while the RMS is above `maxResidualM`;
 * - `parallel`: all rays but the one kept for the bearing line (the most recent).
 * Throws a RangeError for an observation with non-finite or out-of-range numbers.
 */
export function locateFire(observations: readonly BearingObservation[], opts: LocateOptions = {}): FireLocation {
  const minCrossingAngleDeg = opts.minCrossingAngleDeg ?? 10;
  const defaultRangeM = opts.defaultRangeM ?? 10_000;
  const maxResidualM = opts.maxResidualM ?? 300;
  const bearingSigmaRad = ((opts.bearingSigmaDeg ?? 0.5) * Math.PI) / 180;
  if (!(minCrossingAngleDeg >= 0 && minCrossingAngleDeg <= 90)) throw new RangeError('minCrossingAngleDeg must be within 0..90');
  if (!(defaultRangeM > 0)) throw new RangeError('defaultRangeM must be positive');
  if (!(maxResidualM >= 0)) throw new RangeError('maxResidualM must not be negative');
  if (!(bearingSigmaRad >= 0)) throw new RangeError('bearingSigmaDeg must not be negative');
  observations.forEach(validate);

  const rejected = new Map<number, RejectReason>();
  const latestByCamera = new Map<string, number>();
  observations.forEach((o, i) => {
    const kept = latestByCamera.get(o.cameraId);
    if (kept === undefined) {
      latestByCamera.set(o.cameraId, i);
    } else if (isNewer(o, observations[kept]!)) {
      rejected.set(kept, 'duplicate_camera');
      latestByCamera.set(o.cameraId, i);
    } else {
      rejected.set(i, 'duplicate_camera');
    }
  });
  const keptIndexes = [...latestByCamera.values()].sort((a, b) => a - b);
  if (keptIndexes.length === 0) return { method: 'none', rejected: [] };

  const plane = gnomonicPlane(sphericalMean(keptIndexes.map((i) => observations[i]!)));
  const rays: Ray[] = keptIndexes.map((index) => {
    const obs = observations[index]!;
    const bearing = normalizeDeg(obs.bearingDeg);
    const p = plane.toXY(obs);
    // Any point on the great circle gives the line's direction: it is straight in this plane.
    const q = plane.toXY(destination(obs, bearing, 1000));
    const len = Math.hypot(q.x - p.x, q.y - p.y);
    return { obs, index, bearingDeg: bearing, rangeM: obs.maxRangeM ?? defaultRangeM, px: p.x, py: p.y, dx: (q.x - p.x) / len, dy: (q.y - p.y) / len };
  });
  const rejectedList = () =>
    [...rejected.entries()].sort(([a], [b]) => a - b).map(([i, reason]) => ({ cameraId: observations[i]!.cameraId, reason }));

  let active = rays;
  let parallel = false;
  while (active.length >= 2) {
    const solution = maxCrossingAngleDeg(active) < minCrossingAngleDeg ? undefined : solve(active);
    if (!solution) {
      parallel = true;
      break;
    }
    if (active.length > 2 && solution.residualM > maxResidualM) {
      let worst = 0;
      solution.offsets.forEach((d, i) => {
        if (d > solution.offsets[worst]!) worst = i;
      });
      rejected.set(active[worst]!.index, 'outlier');
      active = active.filter((_, i) => i !== worst);
      continue;
    }
    const fix = plane.toLatLon(solution.x, solution.y);
    const contradiction = (r: Ray): RejectReason | undefined => {
      if (r.dx * (solution.x - r.px) + r.dy * (solution.y - r.py) < 0) return 'behind';
      if (distanceM(r.obs, fix) > r.rangeM) return 'out_of_range';
      return undefined;
    };
    const before = active.length;
    active = active.filter((r) => {
      const reason = contradiction(r);
      if (reason) rejected.set(r.index, reason);
      return !reason;
    });
    if (active.length < before) continue;
    const sigmaPrior = Math.sqrt(
      active.reduce((s, r) => s + (distanceM(r.obs, fix) * bearingSigmaRad) ** 2, 0) / active.length,
    );
    const sigmaMeasured =
      active.length > 2 ? Math.sqrt(solution.offsets.reduce((s, d) => s + d * d, 0) / (active.length - 2)) : 0;
    return {
      method: 'triangulated',
      lat: fix.lat,
      lon: fix.lon,
      residualM: solution.residualM,
      uncertaintyM: Math.max(sigmaPrior, sigmaMeasured) * Math.sqrt(solution.traceInv),
      cameras: active.map((r) => r.obs.cameraId),
      rejected: rejectedList(),
    };
  }

  // No fix: one bearing line, from the most recent ray still standing, else the most recent ray
  // that failed only for geometric reasons (e.g. two rays that diverge).
  const pool = active.length > 0 ? active : rays.filter((r) => rejected.get(r.index) !== 'outlier');
  const line = pool.reduce((best, r) => (isNewer(r.obs, best.obs) ? r : best));
  if (parallel) for (const r of active) rejected.set(r.index, 'parallel');
  rejected.delete(line.index);
  return {
    method: 'bearing_line',
    cameraId: line.obs.cameraId,
    from: { lat: line.obs.lat, lon: line.obs.lon },
    to: destination(line.obs, line.bearingDeg, line.rangeM),
    bearingDeg: line.bearingDeg,
    rejected: rejectedList(),
  };
}

/** `candidate` comes later in the input than `current`: it is newer unless both carry ts and say otherwise. */
function isNewer(candidate: BearingObservation, current: BearingObservation): boolean {
  return candidate.ts === undefined || current.ts === undefined || candidate.ts >= current.ts;
}

function validate(o: BearingObservation, i: number): void {
  const where = `observation ${i} (camera ${JSON.stringify(o.cameraId)})`;
  if (typeof o.cameraId !== 'string' || o.cameraId === '') throw new RangeError(`observation ${i}: cameraId must be a non-empty string`);
  if (!(Math.abs(o.lat) <= 90)) throw new RangeError(`${where}: lat must be within -90..90`);
  if (!(Math.abs(o.lon) <= 180)) throw new RangeError(`${where}: lon must be within -180..180`);
  if (!Number.isFinite(o.bearingDeg)) throw new RangeError(`${where}: bearingDeg must be a finite number`);
  if (o.maxRangeM !== undefined && !(o.maxRangeM > 0 && Number.isFinite(o.maxRangeM))) throw new RangeError(`${where}: maxRangeM must be positive`);
  if (o.ts !== undefined && !Number.isFinite(o.ts)) throw new RangeError(`${where}: ts must be a finite number`);
}

/** The widest crossing angle between any two of the rays' lines, 0..90°. */
function maxCrossingAngleDeg(rays: readonly Ray[]): number {
  let max = 0;
  for (let i = 0; i < rays.length; i++) {
    for (let j = i + 1; j < rays.length; j++) {
      const a = rays[i]!;
      const b = rays[j]!;
      const angle = Math.atan2(Math.abs(a.dx * b.dy - a.dy * b.dx), Math.abs(a.dx * b.dx + a.dy * b.dy));
      max = Math.max(max, (angle * 180) / Math.PI);
    }
  }
  return max;
}

/**
 * The point minimising the sum of squared perpendicular distances to the rays' lines: the 2x2
 * normal equations Σ(I − d dᵀ)·x = Σ(I − d dᵀ)·p. Undefined when the matrix is singular.
 */
function solve(rays: readonly Ray[]): Solution | undefined {
  let a11 = 0;
  let a12 = 0;
  let a22 = 0;
  let b1 = 0;
  let b2 = 0;
  for (const r of rays) {
    const m11 = 1 - r.dx * r.dx;
    const m12 = -r.dx * r.dy;
    const m22 = 1 - r.dy * r.dy;
    a11 += m11;
    a12 += m12;
    a22 += m22;
    b1 += m11 * r.px + m12 * r.py;
    b2 += m12 * r.px + m22 * r.py;
  }
  const det = a11 * a22 - a12 * a12;
  if (!(det > 1e-12 * rays.length * rays.length)) return undefined;
  const x = (a22 * b1 - a12 * b2) / det;
  const y = (a11 * b2 - a12 * b1) / det;
  const offsets = rays.map((r) => Math.abs(r.dx * (y - r.py) - r.dy * (x - r.px)));
  const residualM = Math.sqrt(offsets.reduce((s, d) => s + d * d, 0) / rays.length);
  return { x, y, offsets, residualM, traceInv: (a11 + a22) / det };
}
