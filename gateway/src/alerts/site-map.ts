/**
 * The site map for the alert engine: which grid (网格) a fire is in, who is responsible for it,
 * and which devices are near it — the water tanks to draw from, the voice poles to broadcast on,
 * the cameras to turn towards it.
 *
 * Grids come from the site GeoJSON (features with properties.layer = 'grid'); devices come from
 * the ledger. Lookups by grid or community use the ledger's own `grid`/`community` columns, which
 * the command center maintains; geometry answers the questions about arbitrary points.
 */
import { readFileSync } from 'node:fs';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { DeviceKind } from '../../../protocol/payloads.js';
import { distanceM, EARTH_RADIUS_M, type LatLon } from './geo.js';

export interface GridArea {
  id: string;
  name: string;
  community: string | null;
}

export interface DeviceDistance {
  device: LedgerDevice;
  distanceM: number;
}

/** A site map that cannot be used; the message names the feature and field at fault. */
export class SiteMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SiteMapError';
  }
}

type Position = readonly [lon: number, lat: number];
type Ring = readonly Position[];
/** Outer ring first, then holes (GeoJSON Polygon). */
type Polygon = readonly Ring[];

interface Box {
  south: number;
  west: number;
  north: number;
  east: number;
}

interface GridShape {
  area: GridArea;
  polygons: Polygon[];
  box: Box;
}

const DEG_M = (Math.PI * EARTH_RADIUS_M) / 180;
const ALL = 'all';

export class SiteMap {
  readonly #grids: GridShape[];
  readonly #gridById = new Map<string, GridShape>();
  readonly #byGrid = new Map<string, LedgerDevice[]>();
  readonly #byCommunity = new Map<string, LedgerDevice[]>();
  readonly #index: Record<DeviceKind | typeof ALL, DeviceIndex>;

  /** Throws a SiteMapError naming the first thing wrong with `geojson`. */
  constructor(geojson: unknown, devices: readonly LedgerDevice[]) {
    this.#grids = readGrids(geojson);
    for (const g of this.#grids) this.#gridById.set(g.area.id, g);
    for (const d of devices) {
      push(this.#byGrid, d.grid, d);
      push(this.#byCommunity, d.community, d);
    }
    const ofKind = (kind: DeviceKind) => devices.filter((d) => d.kind === kind);
    this.#index = {
      all: new DeviceIndex(devices),
      camera: new DeviceIndex(ofKind('camera')),
      voice_pole: new DeviceIndex(ofKind('voice_pole')),
      water_tank: new DeviceIndex(ofKind('water_tank')),
    };
  }

  static fromFile(file: string, devices: readonly LedgerDevice[]): SiteMap {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new SiteMapError(`invalid site map ${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new SiteMapError(`invalid site map ${file}: not JSON: ${(err as Error).message}`);
    }
    try {
      return new SiteMap(json, devices);
    } catch (err) {
      if (err instanceof SiteMapError) throw new SiteMapError(err.message.replace(/^invalid site map/, `invalid site map ${file}`));
      throw err;
    }
  }

  /** The grid containing the point (holes excluded); the first in file order if grids overlap. */
  gridAt(p: LatLon): GridArea | null {
    for (const g of this.#grids) {
      if (inBox(p, g.box) && g.polygons.some((poly) => inPolygon(p, poly))) return { ...g.area };
    }
    return null;
  }

  /**
   * The grid containing the point (distance 0), else the one whose boundary is nearest within
   * `maxM`: a fire line on the site edge, or a GPS fix a little outside it, still has an owner.
   */
  nearestGrid(p: LatLon, maxM = 2000): (GridArea & { distanceM: number }) | null {
    const inside = this.gridAt(p);
    if (inside) return { ...inside, distanceM: 0 };
    const reach = circleBox(p, maxM);
    let best: { grid: GridShape; distanceM: number } | undefined;
    for (const g of this.#grids) {
      if (!boxesOverlap(reach, g.box)) continue;
      const d = Math.min(...g.polygons.flatMap((poly) => poly.map((ring) => ringDistanceM(p, ring))));
      if (d <= maxM && (!best || d < best.distanceM)) best = { grid: g, distanceM: d };
    }
    return best ? { ...best.grid.area, distanceM: best.distanceM } : null;
  }

  communityOf(gridId: string): string | null {
    return this.#gridById.get(gridId)?.area.community ?? null;
  }

  /** Every grid, in file order. */
  grids(): GridArea[] {
    return this.#grids.map((g) => ({ ...g.area }));
  }

  /** The `limit` (default 3) devices of a kind nearest to the point, nearest first, optionally only within `withinM`. */
  nearest(p: LatLon, kind: DeviceKind, opts: { limit?: number; withinM?: number } = {}): DeviceDistance[] {
    const limit = opts.limit ?? 3;
    const withinM = opts.withinM ?? Infinity;
    const index = this.#index[kind];
    if (limit <= 0 || index.size === 0) return [];
    // Widen a circle until it holds `limit` devices: everything within r is then found, so the
    // nearest `limit` in it are the nearest overall. Start where about 2·limit are expected.
    for (let r = Math.min(withinM, index.radiusHolding(2 * limit)); ; r = Math.min(2 * r, withinM)) {
      const found: Found[] = [];
      const spansAll = index.visitCircle(p, r, (i, d) => {
        if (d <= r) found.push({ i, d });
      });
      if (found.length >= limit || r >= withinM) return index.sorted(found).slice(0, limit);
      // A query far from every device: measure them all once instead of widening further.
      if (spansAll) return index.sorted(index.measureAll(p).filter((f) => f.d <= withinM)).slice(0, limit);
    }
  }

  /** Devices (of a kind, or all) within `radiusM` of the point, nearest first. */
  within(p: LatLon, radiusM: number, kind?: DeviceKind): DeviceDistance[] {
    const index = this.#index[kind ?? ALL];
    const found: Found[] = [];
    index.visitCircle(p, radiusM, (i, d) => {
      if (d <= radiusM) found.push({ i, d });
    });
    return index.sorted(found);
  }

  /** Devices (of a kind, or all) inside a drawn ring of [lon, lat] positions, in ledger order. */
  inPolygon(ring: ReadonlyArray<[lon: number, lat: number]>, kind?: DeviceKind): LedgerDevice[] {
    if (ring.length < 3 || !ring.every((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]))) {
      throw new RangeError('inPolygon: the ring needs at least three [lon, lat] positions of finite numbers');
    }
    const index = this.#index[kind ?? ALL];
    const box = ringBox(ring);
    const hits: number[] = [];
    index.visitBox(box, (i) => {
      if (inRing(index.device(i), ring)) hits.push(i);
    });
    return hits.sort((a, b) => a - b).map((i) => index.device(i));
  }

  /** Devices the ledger assigns to the grid, in ledger order. */
  devicesInGrid(gridId: string, kind?: DeviceKind): LedgerDevice[] {
    return ofKind(this.#byGrid.get(gridId), kind);
  }

  /** Devices the ledger assigns to the community, in ledger order. */
  devicesInCommunity(community: string, kind?: DeviceKind): LedgerDevice[] {
    return ofKind(this.#byCommunity.get(community), kind);
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function ofKind(devices: readonly LedgerDevice[] | undefined, kind: DeviceKind | undefined): LedgerDevice[] {
  if (!devices) return [];
  return kind ? devices.filter((d) => d.kind === kind) : [...devices];
}

// ---- Spatial index ----------------------------------------------------------------------------

const CELL_M = 1000;
const KEY_OFFSET = 2 ** 20;
const KEY_SPAN = 2 ** 21;

/** A device of an index, by its position there, and its distance from the query point. */
interface Found {
  i: number;
  d: number;
}

/**
 * Devices bucketed in a uniform lat/lon grid of ~1 km cells (sparse: only occupied cells exist).
 * A query visits the cells overlapping its bounding box, or, when that box spans more cells than
 * are occupied (a far-away query, a stray device at 0,0), the occupied cells themselves; the box
 * test on each device is cheap, so only devices in the box cost a haversine.
 */
class DeviceIndex {
  readonly #devices: readonly LedgerDevice[];
  readonly #lat: Float64Array;
  readonly #lon: Float64Array;
  readonly #cells = new Map<number, number[]>();
  readonly #cellLat = CELL_M / DEG_M;
  readonly #cellLon: number;
  #minX = Infinity;
  #maxX = -Infinity;
  #minY = Infinity;
  #maxY = -Infinity;

  constructor(devices: readonly LedgerDevice[]) {
    this.#devices = devices;
    this.#lat = Float64Array.from(devices, (d) => d.lat);
    this.#lon = Float64Array.from(devices, (d) => d.lon);
    const meanLat = devices.length ? devices.reduce((s, d) => s + d.lat, 0) / devices.length : 0;
    this.#cellLon = this.#cellLat / Math.cos((Math.min(85, Math.abs(meanLat)) * Math.PI) / 180);
    devices.forEach((d, i) => {
      const x = Math.floor(d.lon / this.#cellLon);
      const y = Math.floor(d.lat / this.#cellLat);
      push(this.#cells, key(x, y), i);
      this.#minX = Math.min(this.#minX, x);
      this.#maxX = Math.max(this.#maxX, x);
      this.#minY = Math.min(this.#minY, y);
      this.#maxY = Math.max(this.#maxY, y);
    });
  }

  get size(): number {
    return this.#devices.length;
  }

  device(i: number): LedgerDevice {
    return this.#devices[i]!;
  }

  /** The radius of a circle expected to hold `count` devices, at the index's mean density over occupied cells. */
  radiusHolding(count: number): number {
    const perM2 = this.#devices.length / (this.#cells.size * CELL_M * CELL_M);
    return Math.max(50, Math.sqrt(count / (Math.PI * perM2)));
  }

  /** Nearest first; equal distances in ledger order. */
  sorted(found: Found[]): DeviceDistance[] {
    return found.sort((a, b) => a.d - b.d || a.i - b.i).map(({ i, d }) => ({ device: this.#devices[i]!, distanceM: d }));
  }

  measureAll(p: LatLon): Found[] {
    return this.#devices.map((device, i) => ({ i, d: distanceM(p, device) }));
  }

  /**
   * Calls `visit` with the distance of every device within `radiusM` (and maybe a few beyond).
   * Returns whether the search box spanned every occupied cell.
   */
  visitCircle(p: LatLon, radiusM: number, visit: (i: number, distanceM: number) => void): boolean {
    const box = circleBox(p, radiusM);
    return this.visitBox(box, (i) => visit(i, distanceM(p, this.#devices[i]!)));
  }

  /** Calls `visit` for every device inside the box. Returns whether the box spanned every occupied cell. */
  visitBox(box: Box, visit: (i: number) => void): boolean {
    const x0 = Math.max(this.#minX, Math.floor(box.west / this.#cellLon));
    const x1 = Math.min(this.#maxX, Math.floor(box.east / this.#cellLon));
    const y0 = Math.max(this.#minY, Math.floor(box.south / this.#cellLat));
    const y1 = Math.min(this.#maxY, Math.floor(box.north / this.#cellLat));
    if (x0 > x1 || y0 > y1) return false;
    const lat = this.#lat;
    const lon = this.#lon;
    const visitCell = (members: readonly number[]) => {
      for (const i of members) {
        if (lat[i]! >= box.south && lat[i]! <= box.north && lon[i]! >= box.west && lon[i]! <= box.east) visit(i);
      }
    };
    if ((x1 - x0 + 1) * (y1 - y0 + 1) > this.#cells.size) {
      for (const [k, members] of this.#cells) {
        const x = Math.floor(k / KEY_SPAN) - KEY_OFFSET;
        const y = (k % KEY_SPAN) - KEY_OFFSET;
        if (x >= x0 && x <= x1 && y >= y0 && y <= y1) visitCell(members);
      }
    } else {
      for (let x = x0; x <= x1; x++) {
        for (let y = y0; y <= y1; y++) {
          const members = this.#cells.get(key(x, y));
          if (members) visitCell(members);
        }
      }
    }
    return x0 === this.#minX && x1 === this.#maxX && y0 === this.#minY && y1 === this.#maxY;
  }
}

function key(x: number, y: number): number {
  return (x + KEY_OFFSET) * KEY_SPAN + (y + KEY_OFFSET);
}

// ---- Geometry ---------------------------------------------------------------------------------

/** A lat/lon box holding every point within `radiusM` of p on the sphere (the exact spherical-cap extent). */
function circleBox(p: LatLon, radiusM: number): Box {
  const delta = radiusM / EARTH_RADIUS_M;
  const dLat = (delta * 180) / Math.PI + 1e-9;
  const south = p.lat - dLat;
  const north = p.lat + dLat;
  const sinRatio = Math.sin(Math.min(delta, Math.PI / 2)) / Math.cos((p.lat * Math.PI) / 180);
  if (!Number.isFinite(radiusM) || north >= 90 || south <= -90 || sinRatio >= 1) return { south: Math.max(-90, south), west: -180, north: Math.min(90, north), east: 180 };
  const dLon = (Math.asin(sinRatio) * 180) / Math.PI + 1e-9;
  return { south, west: p.lon - dLon, north, east: p.lon + dLon };
}

function ringBox(ring: Ring): Box {
  const box = { south: Infinity, west: Infinity, north: -Infinity, east: -Infinity };
  for (const [lon, lat] of ring) {
    box.south = Math.min(box.south, lat);
    box.north = Math.max(box.north, lat);
    box.west = Math.min(box.west, lon);
    box.east = Math.max(box.east, lon);
  }
  return box;
}

function inBox(p: LatLon, b: Box): boolean {
  return p.lat >= b.south && p.lat <= b.north && p.lon >= b.west && p.lon <= b.east;
}

function boxesOverlap(a: Box, b: Box): boolean {
  return a.south <= b.north && b.south <= a.north && a.west <= b.east && b.west <= a.east;
}

/** Ray casting (even–odd) in lon/lat; the ring may be closed or not. */
function inRing(p: LatLon, ring: Ring): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i]!;
    const [xj, yj] = ring[j]!;
    if (yi > p.lat !== yj > p.lat && p.lon < ((xj - xi) * (p.lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inPolygon(p: LatLon, polygon: Polygon): boolean {
  return inRing(p, polygon[0]!) && !polygon.slice(1).some((hole) => inRing(p, hole));
}

/**
 * Distance in metres from p to the nearest edge of the ring, in an equirectangular plane centred
 * on p: its scale error is about tan(lat)·Δlat, under 0.02 % (0.4 m) within 2 km at this latitude.
 */
function ringDistanceM(p: LatLon, ring: Ring): number {
  const kx = DEG_M * Math.cos((p.lat * Math.PI) / 180);
  let best = Infinity;
  for (let i = 1; i < ring.length; i++) {
    const ax = (ring[i - 1]![0] - p.lon) * kx;
    const ay = (ring[i - 1]![1] - p.lat) * DEG_M;
    const bx = (ring[i]![0] - p.lon) * kx;
    const by = (ring[i]![1] - p.lat) * DEG_M;
    const ex = bx - ax;
    const ey = by - ay;
    const len2 = ex * ex + ey * ey;
    const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, -(ax * ex + ay * ey) / len2));
    best = Math.min(best, Math.hypot(ax + t * ex, ay + t * ey));
  }
  return best;
}

// ---- GeoJSON validation -----------------------------------------------------------------------

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads the grid features. Features of other layers (site, community, or any a later map adds)
 * are not needed here and are not checked beyond being objects.
 */
function readGrids(geojson: unknown): GridShape[] {
  const fail = (path: string, problem: string): never => {
    throw new SiteMapError(`invalid site map: ${path}: ${problem}`);
  };
  if (!isRecord(geojson)) return fail('(root)', 'expected a GeoJSON object');
  if (geojson.type !== 'FeatureCollection') return fail('type', `expected "FeatureCollection", got ${JSON.stringify(geojson.type)}`);
  if (!Array.isArray(geojson.features)) return fail('features', 'expected an array of features');

  const grids: GridShape[] = [];
  const seen = new Map<string, string>();
  geojson.features.forEach((feature: unknown, n) => {
    const at = `features[${n}]`;
    if (!isRecord(feature)) return fail(at, 'expected a Feature object');
    const props = feature.properties;
    if (!isRecord(props) || props.layer !== 'grid') return;
    const id = props.id;
    if (typeof id !== 'string' || id === '') return fail(`${at}.properties.id`, 'a grid needs a non-empty string id');
    const where = `${at} (grid ${id})`;
    if (props.name !== undefined && typeof props.name !== 'string') fail(`${where}.properties.name`, 'expected a string');
    if (props.community !== undefined && props.community !== null && typeof props.community !== 'string') {
      fail(`${where}.properties.community`, 'expected a string or null');
    }
    const first = seen.get(id);
    if (first) fail(`${where}.properties.id`, `"${id}" is already used by ${first}`);
    seen.set(id, at);
    const polygons = readGeometry(feature.geometry, `${where}.geometry`, fail);
    grids.push({
      area: { id, name: typeof props.name === 'string' ? props.name : id, community: typeof props.community === 'string' ? props.community : null },
      polygons,
      box: ringBox(polygons.flatMap((poly) => poly[0]!)),
    });
  });
  if (grids.length === 0) fail('features', 'no grid features (properties.layer = "grid")');
  return grids;
}

function readGeometry(geometry: unknown, at: string, fail: (path: string, problem: string) => never): Polygon[] {
  if (!isRecord(geometry)) return fail(at, 'expected a Polygon or MultiPolygon geometry');
  const coords = geometry.coordinates;
  if (geometry.type === 'Polygon') return [readPolygon(coords, `${at}.coordinates`, fail)];
  if (geometry.type === 'MultiPolygon') {
    if (!Array.isArray(coords) || coords.length === 0) return fail(`${at}.coordinates`, 'expected a non-empty array of polygons');
    return coords.map((poly, i) => readPolygon(poly, `${at}.coordinates[${i}]`, fail));
  }
  return fail(`${at}.type`, `expected "Polygon" or "MultiPolygon", got ${JSON.stringify(geometry.type)}`);
}

function readPolygon(coords: unknown, at: string, fail: (path: string, problem: string) => never): Polygon {
  if (!Array.isArray(coords) || coords.length === 0) return fail(at, 'expected a non-empty array of linear rings');
  return coords.map((ring: unknown, r) => {
    const ringAt = `${at}[${r}]`;
    if (!Array.isArray(ring) || ring.length < 4) return fail(ringAt, 'a linear ring needs at least 4 positions');
    const positions = ring.map((pos: unknown, i): Position => {
      if (!Array.isArray(pos) || pos.length < 2) return fail(`${ringAt}[${i}]`, 'expected a [lon, lat] position');
      const [lon, lat] = pos as unknown[];
      if (typeof lon !== 'number' || !(Math.abs(lon) <= 180)) return fail(`${ringAt}[${i}]`, `longitude ${JSON.stringify(lon)} is not a number within -180..180`);
      if (typeof lat !== 'number' || !(Math.abs(lat) <= 90)) return fail(`${ringAt}[${i}]`, `latitude ${JSON.stringify(lat)} is not a number within -90..90`);
      return [lon, lat];
    });
    const a = positions[0]!;
    const b = positions[positions.length - 1]!;
    if (a[0] !== b[0] || a[1] !== b[1]) fail(ringAt, 'the ring is not closed (the last position must repeat the first)');
    return positions;
  });
}
