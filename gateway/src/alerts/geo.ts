/**
 * Spherical-earth helpers for the alert engine (fire location, nearest devices). The gateway keeps
 * its own copy rather than importing simulators/src/geo.ts: production code must not depend on
 * the simulators.
 *
 * The model is a sphere of the mean earth radius. Against the WGS-84 ellipsoid that is off by at
 * most ~0.5 % in distance and ~0.15° in bearing (the ratio of the ellipsoid's two radii of
 * curvature), i.e. ≤ 26 m at 10 km — below the bearing accuracy of a fire-watch camera.
 */
export const EARTH_RADIUS_M = 6_371_008.8;

/** WGS-84 position, degrees. */
export interface LatLon {
  lat: number;
  lon: number;
}

const rad = (d: number) => (d * Math.PI) / 180;
const deg = (r: number) => (r * 180) / Math.PI;

/** Great-circle (haversine) distance in metres. */
export function distanceM(a: LatLon, b: LatLon): number {
  const dLat = rad(b.lat - a.lat);
  const dLon = rad(b.lon - a.lon);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Initial great-circle bearing from a to b, degrees clockwise from true north, 0 ≤ x < 360. */
export function bearingDeg(a: LatLon, b: LatLon): number {
  const y = Math.sin(rad(b.lon - a.lon)) * Math.cos(rad(b.lat));
  const x = Math.cos(rad(a.lat)) * Math.sin(rad(b.lat)) - Math.sin(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.cos(rad(b.lon - a.lon));
  return normalizeDeg(deg(Math.atan2(y, x)));
}

/** The point `distance` metres from `from` along the great circle leaving it at `bearing`. */
export function destination(from: LatLon, bearing: number, distance: number): LatLon {
  const d = distance / EARTH_RADIUS_M;
  const b = rad(bearing);
  const lat1 = rad(from.lat);
  const lon1 = rad(from.lon);
  const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(b));
  const lon2 = lon1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
  return { lat: deg(lat2), lon: normalizeLon(deg(lon2)) };
}

/** An angle in degrees folded into 0 ≤ x < 360. */
export function normalizeDeg(x: number): number {
  const r = x % 360;
  return r < 0 ? r + 360 : r === 360 ? 0 : r;
}

function normalizeLon(lon: number): number {
  return ((((lon + 180) % 360) + 360) % 360) - 180;
}

/** Mean position on the sphere (the normalised mean of unit vectors), so it is right across ±180°. */
export function sphericalMean(points: readonly LatLon[]): LatLon {
  let x = 0;
  let y = 0;
  let z = 0;
  for (const p of points) {
    const lat = rad(p.lat);
    const lon = rad(p.lon);
    x += Math.cos(lat) * Math.cos(lon);
    y += Math.cos(lat) * Math.sin(lon);
    z += Math.sin(lat);
  }
  return { lat: deg(Math.atan2(z, Math.hypot(x, y))), lon: deg(Math.atan2(y, x)) };
}

/** A local east/north plane in metres; `toXY` and `toLatLon` are inverses. */
export interface TangentPlane {
  readonly origin: LatLon;
  toXY(p: LatLon): { x: number; y: number };
  toLatLon(x: number, y: number): LatLon;
}

/**
 * Gnomonic projection onto the plane touching the sphere at `origin`. It maps every great circle
 * to a straight line, so a camera's bearing line is exactly a straight line in the plane and
 * line intersection needs no curvature correction. Distances are stretched by at most
 * 1/cos²(d/R) - 1 ≈ (d/R)²: 1e-5 at 20 km from the origin, 6e-5 at 50 km.
 */
export function gnomonicPlane(origin: LatLon): TangentPlane {
  const lat0 = rad(origin.lat);
  const lon0 = rad(origin.lon);
  const sin0 = Math.sin(lat0);
  const cos0 = Math.cos(lat0);
  return {
    origin,
    toXY(p) {
      const lat = rad(p.lat);
      const dLon = rad(p.lon) - lon0;
      const cosC = sin0 * Math.sin(lat) + cos0 * Math.cos(lat) * Math.cos(dLon);
      return {
        x: (EARTH_RADIUS_M * Math.cos(lat) * Math.sin(dLon)) / cosC,
        y: (EARTH_RADIUS_M * (cos0 * Math.sin(lat) - sin0 * Math.cos(lat) * Math.cos(dLon))) / cosC,
      };
    },
    toLatLon(x, y) {
      const rho = Math.hypot(x, y);
      if (rho === 0) return { lat: origin.lat, lon: origin.lon };
      const c = Math.atan(rho / EARTH_RADIUS_M);
      const sinC = Math.sin(c);
      const cosC = Math.cos(c);
      const lat = Math.asin(cosC * sin0 + (y * sinC * cos0) / rho);
      const lon = lon0 + Math.atan2(x * sinC, rho * cos0 * cosC - y * sin0 * sinC);
      return { lat: deg(lat), lon: normalizeLon(deg(lon)) };
    },
  };
}
