/**
 * The simulated Chashan Zhuhai site: an outline, communities and grids (网格) in the box
 * lat 29.38–29.48 N, lon 105.82–105.95 E, and the device fleet placed in them. Everything is
 * deterministic from the seed, so a ledger generated twice is the same file.
 *
 * The site is a lattice of quadrilateral cells whose corners are jittered (shared corners stay
 * shared, so neighbouring grids meet exactly); cells inside an irregular blob form the site, each
 * cell is one grid, and blocks of cells form communities.
 */
import type { LedgerDevice } from '../../../config/ledger.js';

export const SITE_BOX = { south: 29.38, north: 29.48, west: 105.82, east: 105.95 } as const;
const COLS = 10;
const ROWS = 8;

/** Small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type LonLat = [number, number];
export interface Cell {
  col: number;
  row: number;
  gridId: string;
  gridName: string;
  community: string;
  /** Corners counter-clockwise: SW, SE, NE, NW. */
  corners: [LonLat, LonLat, LonLat, LonLat];
}

// Simulated community names (not the real administrative units of the sub-district).
const COMMUNITIES = ['茶山社区', '竹海社区', '凤凰湖社区', '青峰社区', '松林社区', '观音岩社区'];

export interface SiteGeography {
  cells: Cell[];
  communities: string[];
}

export function buildGeography(seed: number): SiteGeography {
  const rand = prng(seed);
  const dLon = (SITE_BOX.east - SITE_BOX.west) / COLS;
  const dLat = (SITE_BOX.north - SITE_BOX.south) / ROWS;
  // Jittered lattice corners; the outer ring is not moved, so the site stays inside the box.
  const corner: LonLat[][] = [];
  for (let r = 0; r <= ROWS; r++) {
    const line: LonLat[] = [];
    for (let c = 0; c <= COLS; c++) {
      const edge = r === 0 || c === 0 || r === ROWS || c === COLS;
      const jx = edge ? 0 : (rand() - 0.5) * 0.5 * dLon;
      const jy = edge ? 0 : (rand() - 0.5) * 0.5 * dLat;
      line.push([round6(SITE_BOX.west + c * dLon + jx), round6(SITE_BOX.south + r * dLat + jy)]);
    }
    corner.push(line);
  }
  // An irregular blob: radius varies with angle (a few low harmonics), so the outline looks natural.
  const phases = [rand(), rand(), rand()].map((p) => p * Math.PI * 2);
  const inside = (c: number, r: number) => {
    const x = (c + 0.5) / COLS - 0.5;
    const y = (r + 0.5) / ROWS - 0.5;
    const a = Math.atan2(y, x);
    const radius =
      0.46 + 0.07 * Math.sin(2 * a + phases[0]!) + 0.05 * Math.sin(3 * a + phases[1]!) + 0.03 * Math.sin(5 * a + phases[2]!);
    return Math.hypot(x, y) <= radius;
  };
  const cells: Cell[] = [];
  let n = 0;
  for (let r = 0; r < ROWS; r++) {
    for (let c = 0; c < COLS; c++) {
      if (!inside(c, r)) continue;
      n++;
      // Communities: 3 columns of blocks by 2 rows of blocks.
      const community = COMMUNITIES[Math.min(2, Math.floor((c * 3) / COLS)) + 3 * Math.min(1, Math.floor((r * 2) / ROWS))]!;
      cells.push({
        col: c,
        row: r,
        gridId: `G${String(n).padStart(2, '0')}`,
        gridName: '',
        community,
        corners: [corner[r]![c]!, corner[r]![c + 1]!, corner[r + 1]![c + 1]!, corner[r + 1]![c]!],
      });
    }
  }
  // Number grids within each community (第N网格), the way grid rosters are kept.
  const perCommunity = new Map<string, number>();
  for (const cell of cells) {
    const k = (perCommunity.get(cell.community) ?? 0) + 1;
    perCommunity.set(cell.community, k);
    cell.gridName = `${cell.community}第${k}网格`;
  }
  return { cells, communities: COMMUNITIES.filter((c) => perCommunity.has(c)) };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** A uniformly-ish random point in a (convex) cell: bilinear interpolation of its corners. */
function pointInCell(cell: Cell, rand: () => number): LonLat {
  const u = 0.05 + 0.9 * rand();
  const v = 0.05 + 0.9 * rand();
  const [sw, se, ne, nw] = cell.corners;
  const lon = (1 - u) * (1 - v) * sw[0] + u * (1 - v) * se[0] + u * v * ne[0] + (1 - u) * v * nw[0];
  const lat = (1 - u) * (1 - v) * sw[1] + u * (1 - v) * se[1] + u * v * ne[1] + (1 - u) * v * nw[1];
  return [round6(lon), round6(lat)];
}

/** The boundary of a union of cells: edges used by exactly one cell, chained into closed rings. */
function unionOutline(cells: readonly Cell[]): LonLat[][] {
  const key = (p: LonLat) => `${p[0]},${p[1]}`;
  const edges = new Map<string, [LonLat, LonLat]>();
  for (const cell of cells) {
    for (let i = 0; i < 4; i++) {
      const a = cell.corners[i]!;
      const b = cell.corners[(i + 1) % 4]!;
      const reverse = `${key(b)}>${key(a)}`;
      if (edges.has(reverse)) edges.delete(reverse);
      else edges.set(`${key(a)}>${key(b)}`, [a, b]);
    }
  }
  const next = new Map<string, [LonLat, LonLat][]>();
  for (const e of edges.values()) next.set(key(e[0]), [...(next.get(key(e[0])) ?? []), e]);
  const rings: LonLat[][] = [];
  const used = new Set<[LonLat, LonLat]>();
  for (const start of edges.values()) {
    if (used.has(start)) continue;
    const ring: LonLat[] = [start[0]];
    let e: [LonLat, LonLat] | undefined = start;
    while (e && !used.has(e)) {
      used.add(e);
      ring.push(e[1]);
      e = next.get(key(e[1]))?.find((x) => !used.has(x));
    }
    rings.push(ring);
  }
  return rings;
}

export function siteGeoJson(geo: SiteGeography, site: { id: string; name: string }): object {
  const features: object[] = [
    {
      type: 'Feature',
      properties: { layer: 'site', id: site.id, name: site.name },
      geometry: { type: 'Polygon', coordinates: unionOutline(geo.cells) },
    },
  ];
  for (const community of geo.communities) {
    features.push({
      type: 'Feature',
      properties: { layer: 'community', id: community, name: community },
      geometry: { type: 'Polygon', coordinates: unionOutline(geo.cells.filter((c) => c.community === community)) },
    });
  }
  for (const cell of geo.cells) {
    features.push({
      type: 'Feature',
      properties: { layer: 'grid', id: cell.gridId, name: cell.gridName, community: cell.community },
      geometry: { type: 'Polygon', coordinates: [[...cell.corners, cell.corners[0]]] },
    });
  }
  return { type: 'FeatureCollection', name: site.id, crs_note: 'WGS-84 (EPSG:4326)', features };
}

export interface FleetSize {
  cameras: number;
  voicePoles: number;
  waterTanks: number;
}
/** The real sub-district's counts. */
export const CHASHAN_FLEET: FleetSize = { cameras: 1657, voicePoles: 73, waterTanks: 58 };

export function generateFleet(geo: SiteGeography, size: FleetSize, opts: { seed: number; agent: string }): LedgerDevice[] {
  const rand = prng(opts.seed ^ 0x5eed);
  const pick = () => geo.cells[Math.floor(rand() * geo.cells.length)]!;
  const devices: LedgerDevice[] = [];
  const place = (cell: Cell) => {
    const [lon, lat] = pointInCell(cell, rand);
    return { lat, lon, grid: cell.gridId, community: cell.community, agent: opts.agent };
  };
  for (let i = 1; i <= size.waterTanks; i++) {
    const cell = pick();
    const big = rand() < 0.15;
    const capacityM3 = big ? 100 + Math.round(rand() * 10) * 10 : 40 + Math.round(rand() * 4) * 5;
    devices.push({
      id: `tank-${String(i).padStart(3, '0')}`,
      kind: 'water_tank',
      name: `${cell.community}消防水池${i}号`,
      ...place(cell),
      settings: { capacityM3, heightMm: big ? 3500 : 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 },
    });
  }
  for (let i = 1; i <= size.voicePoles; i++) {
    const cell = pick();
    devices.push({
      id: `pole-${String(i).padStart(3, '0')}`,
      kind: 'voice_pole',
      name: `${cell.community}广播${i}号`,
      ...place(cell),
      settings: {},
    });
  }
  for (let i = 1; i <= size.cameras; i++) {
    const cell = pick();
    devices.push({
      id: `cam-${String(i).padStart(4, '0')}`,
      kind: 'camera',
      name: `${cell.gridName}监控${i}号`,
      ...place(cell),
      // Mixed vendors, as real districts buy from several; most are generic ONVIF.
      settings: {
        headingDeg: Math.round(rand() * 3600) / 10,
        // One in twenty is a long-range fire-watch tower camera (5–10 km); the rest are
        // short-range sensing cameras on poles and ridges (0.5–1.5 km).
        viewRangeM: i % 20 === 1 ? 5000 + Math.round(rand() * 5) * 1000 : 500 + Math.round(rand() * 10) * 100,
        vendor: i % 10 === 0 ? 'hikvision-like' : i % 10 === 5 ? 'dahua-like' : 'generic',
      },
    });
  }
  return devices;
}
