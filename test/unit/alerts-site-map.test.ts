import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { destination, distanceM, type LatLon } from '../../gateway/src/alerts/geo.js';
import { SiteMap, SiteMapError } from '../../gateway/src/alerts/site-map.js';
import type { DeviceKind } from '../../protocol/payloads.js';
import { prng } from '../../simulators/src/fleet/geography.js';

const GEOJSON = 'config/sites/chashan-zhuhai.geojson';
const ledger = loadLedger('config/ledger/chashan-zhuhai.csv');
const site = SiteMap.fromFile(GEOJSON, ledger);
const KINDS: DeviceKind[] = ['camera', 'voice_pole', 'water_tank'];


/** A random point in the site's box, with a margin of ~2 km around it. */
function randomPoint(rand: () => number): LatLon {
  return { lat: 29.36 + rand() * 0.14, lon: 105.8 + rand() * 0.17 };
}

function device(id: string, kind: DeviceKind, at: LatLon, grid = 'G01'): LedgerDevice {
  const base = { id, name: id, ...at, grid, community: 'c', agent: 'agent-1' };
  if (kind === 'camera') return { ...base, kind, settings: { viewRangeM: 1000, vendor: 'generic' } };
  if (kind === 'water_tank') return { ...base, kind, settings: { capacityM3: 50, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 } };
  return { ...base, kind, settings: {} };
}

/** The reference answer: every device measured, nearest first, ties in ledger order. */
function bruteForce(devices: readonly LedgerDevice[], p: LatLon, kind?: DeviceKind, maxM = Infinity) {
  return devices
    .map((d, i) => ({ d, i, distanceM: distanceM(p, d) }))
    .filter(({ d, distanceM }) => (!kind || d.kind === kind) && distanceM <= maxM)
    .sort((a, b) => a.distanceM - b.distanceM || a.i - b.i)
    .map(({ d, distanceM }) => ({ id: d.id, distanceM }));
}
const ids = (found: Array<{ device: LedgerDevice; distanceM: number }>) => found.map((f) => ({ id: f.device.id, distanceM: f.distanceM }));

function square(west: number, south: number, size: number): Array<[number, number]> {
  return [
    [west, south],
    [west + size, south],
    [west + size, south + size],
    [west, south + size],
    [west, south],
  ];
}
function collection(...features: object[]) {
  return { type: 'FeatureCollection', features };
}
function grid(id: string, geometry: object, community: string | null = 'c') {
  return { type: 'Feature', properties: { layer: 'grid', id, name: `grid ${id}`, community }, geometry };
}

describe('SiteMap on the shipped Chashan Zhuhai map and ledger', () => {
  it('puts every ledger device in the grid the ledger names', () => {
    expect(ledger.length).toBe(1788);
    const misplaced = ledger.filter((d) => site.gridAt(d)?.id !== d.grid).map((d) => `${d.id}: ledger ${d.grid}, map ${site.gridAt(d)?.id}`);
    expect(misplaced).toEqual([]);
    for (const d of ledger) expect(site.communityOf(d.grid)).toBe(d.community);
  });

  it('lists the grids with their communities', () => {
    const grids = site.grids();
    expect(grids).toHaveLength(55);
    expect(grids[0]).toEqual({ id: 'G01', name: '茶山社区第1网格', community: '茶山社区' });
    expect(site.communityOf('G37')).toBe('青峰社区');
    expect(site.communityOf('G99')).toBeNull();
  });

  it('finds no grid outside the site, and the nearest one within 2 km', () => {
    // The site's west edge runs along lon 105.82 between lat 29.43 and 29.455.
    const edge = { lat: 29.44, lon: 105.82 };
    const inside = site.gridAt(destination(edge, 90, 50));
    expect(inside).not.toBeNull();
    const outside = destination(edge, 270, 500);
    expect(site.gridAt(outside)).toBeNull();
    const near = site.nearestGrid(outside);
    expect(near).toMatchObject({ id: inside!.id });
    expect(near!.distanceM).toBeCloseTo(500, -0.5);

    const far = destination(edge, 270, 5000);
    expect(site.nearestGrid(far)).toBeNull();
    expect(site.nearestGrid(far, 10_000)).toMatchObject({ id: inside!.id });
    expect(site.nearestGrid(far, 10_000)!.distanceM).toBeCloseTo(5000, -1);
    // A point inside a grid is in it, at distance 0.
    expect(site.nearestGrid(ledger[0]!)).toEqual({ ...site.gridAt(ledger[0]!), distanceM: 0 });
  });

  it('lists devices by ledger grid and community', () => {
    const g37 = site.devicesInGrid('G37');
    expect(g37.length).toBeGreaterThan(0);
    expect(g37).toEqual(ledger.filter((d) => d.grid === 'G37'));
    expect(site.devicesInGrid('G37', 'water_tank')).toEqual(ledger.filter((d) => d.grid === 'G37' && d.kind === 'water_tank'));
    expect(site.devicesInCommunity('青峰社区', 'voice_pole')).toEqual(ledger.filter((d) => d.community === '青峰社区' && d.kind === 'voice_pole'));
    expect(site.devicesInGrid('G99')).toEqual([]);
    // Callers get their own arrays.
    site.devicesInGrid('G37').pop();
    expect(site.devicesInGrid('G37')).toHaveLength(g37.length);
  });

  it('orders nearest() like a brute-force sort of every device', () => {
    const rand = prng(1);
    for (let q = 0; q < 200; q++) {
      const p = randomPoint(rand);
      const kind = KINDS[q % 3]!;
      const limit = 1 + (q % 7);
      expect(ids(site.nearest(p, kind, { limit }))).toEqual(bruteForce(ledger, p, kind).slice(0, limit));
    }
    const p = { lat: 29.43, lon: 105.88 };
    expect(site.nearest(p, 'water_tank')).toHaveLength(3);
    const within = bruteForce(ledger, p, 'water_tank', 1500);
    expect(ids(site.nearest(p, 'water_tank', { limit: 100, withinM: 1500 }))).toEqual(within);
    // Asking for more than there are gives them all.
    expect(ids(site.nearest(p, 'water_tank', { limit: 100 }))).toEqual(bruteForce(ledger, p, 'water_tank'));
    expect(site.nearest(p, 'water_tank', { limit: 100 })).toHaveLength(58);
  });

  it('answers within() like brute force', () => {
    const rand = prng(2);
    for (let q = 0; q < 100; q++) {
      const p = randomPoint(rand);
      const radius = 200 + rand() * 3000;
      const kind = q % 4 === 3 ? undefined : KINDS[q % 4]!;
      expect(ids(site.within(p, radius, kind))).toEqual(bruteForce(ledger, p, kind, radius));
    }
  });

  it('finds the devices inside a small triangle', () => {
    const target = ledger.find((d) => d.kind === 'voice_pole')!;
    const a = destination(target, 0, 800);
    const b = destination(target, 120, 800);
    const c = destination(target, 240, 800);
    const triangle: Array<[number, number]> = [a, b, c].map((v) => [v.lon, v.lat]);
    // Independent reference: the point is on the same side of all three edges (a→b→c runs clockwise).
    const side = (p: LatLon, u: LatLon, v: LatLon) => (v.lon - u.lon) * (p.lat - u.lat) - (v.lat - u.lat) * (p.lon - u.lon);
    const inside = (p: LatLon) => side(p, a, b) < 0 && side(p, b, c) < 0 && side(p, c, a) < 0;
    const expected = ledger.filter(inside);
    expect(expected.length).toBeGreaterThan(1);
    expect(site.inPolygon(triangle)).toEqual(expected);
    expect(site.inPolygon(triangle, 'voice_pole')).toEqual(expected.filter((d) => d.kind === 'voice_pole'));
    expect(site.inPolygon(triangle, 'voice_pole')).toContain(target);
    expect(() => site.inPolygon([[105.8, 29.4]])).toThrow(RangeError);
  });
});

describe('SiteMap geometry', () => {
  it('respects holes and multipolygons', () => {
    const map = new SiteMap(
      collection(
        grid('RING', { type: 'Polygon', coordinates: [square(100, 20, 0.1), square(100.03, 20.03, 0.04).reverse()] }),
        grid('ISLAND', { type: 'Polygon', coordinates: [square(100.04, 20.04, 0.02)] }, null),
        grid('PAIR', { type: 'MultiPolygon', coordinates: [[square(101, 20, 0.01)], [square(101.1, 20, 0.01)]] }),
      ),
      [],
    );
    expect(map.gridAt({ lat: 20.01, lon: 100.01 })?.id).toBe('RING');
    expect(map.gridAt({ lat: 20.05, lon: 100.05 })).toEqual({ id: 'ISLAND', name: 'grid ISLAND', community: null });
    // In the hole but not on the island.
    expect(map.gridAt({ lat: 20.035, lon: 100.035 })).toBeNull();
    expect(map.gridAt({ lat: 20.005, lon: 101.105 })?.id).toBe('PAIR');
    expect(map.gridAt({ lat: 20.005, lon: 101.05 })).toBeNull();
    // A point in the hole, off the island: its nearest boundary is the island's edge, 0.0015° south of it.
    expect(map.nearestGrid({ lat: 20.0385, lon: 100.05 })).toMatchObject({ id: 'ISLAND' });
    expect(map.nearestGrid({ lat: 20.0385, lon: 100.05 })!.distanceM).toBeCloseTo(0.0015 * 111_195, -1);
  });

  it('matches brute force with 50,000 devices, a stray device at 0,0 and far-away queries, fast enough', () => {
    const rand = prng(3);
    const devices: LedgerDevice[] = [];
    for (let i = 0; i < 50_000; i++) devices.push(device(`d-${i}`, KINDS[i % 3]!, randomPoint(rand)));
    devices.push(device('stray', 'water_tank', { lat: 0, lon: 0 }));
    const map = new SiteMap(JSON.parse(`{"type":"FeatureCollection","features":[${JSON.stringify(grid('G01', { type: 'Polygon', coordinates: [square(105.8, 29.36, 0.2)] }))}]}`), devices);

    const queries = Array.from({ length: 1000 }, () => randomPoint(rand));
    const started = performance.now();
    for (const p of queries) map.nearest(p, 'camera');
    const elapsedMs = performance.now() - started;
    // Typically 20–50 ms; the bound only catches a lost index (brute force takes seconds).
    expect(elapsedMs).toBeLessThan(1000);

    for (const p of queries.slice(0, 10)) {
      expect(ids(map.nearest(p, 'voice_pole', { limit: 5 }))).toEqual(bruteForce(devices, p, 'voice_pole').slice(0, 5));
      expect(ids(map.within(p, 700))).toEqual(bruteForce(devices, p, undefined, 700));
    }
    // Far from everything: the search widens until it has enough, or has seen every device.
    const faraway = { lat: 10, lon: 10 };
    expect(ids(map.nearest(faraway, 'water_tank', { limit: 2 }))).toEqual(bruteForce(devices, faraway, 'water_tank').slice(0, 2));
    expect(map.nearest(faraway, 'water_tank', { limit: 2 })[0]!.device.id).toBe('stray');
    expect(map.nearest(faraway, 'camera', { withinM: 100_000 })).toEqual([]);
    expect(new SiteMap(collection(grid('G', { type: 'Polygon', coordinates: [square(0, 0, 1)] })), []).nearest(faraway, 'camera')).toEqual([]);
  });
});

describe('SiteMap validation', () => {
  const polygon = { type: 'Polygon', coordinates: [square(100, 20, 0.1)] };
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'hello', /\(root\): expected a GeoJSON object/],
    ['a bare Feature', { type: 'Feature' }, /type: expected "FeatureCollection", got "Feature"/],
    ['no features', { type: 'FeatureCollection' }, /features: expected an array/],
    ['no grids', collection({ type: 'Feature', properties: { layer: 'site', id: 's' }, geometry: polygon }), /no grid features/],
    ['a grid without id', collection({ type: 'Feature', properties: { layer: 'grid' }, geometry: polygon }), /features\[0\]\.properties\.id: a grid needs a non-empty string id/],
    ['a duplicate id', collection(grid('G1', polygon), grid('G1', polygon)), /features\[1\] \(grid G1\)\.properties\.id: "G1" is already used by features\[0\]/],
    ['a point geometry', collection(grid('G1', { type: 'Point', coordinates: [100, 20] })), /\(grid G1\)\.geometry\.type: expected "Polygon" or "MultiPolygon", got "Point"/],
    ['an open ring', collection(grid('G1', { type: 'Polygon', coordinates: [square(100, 20, 0.1).slice(0, 4)] })), /coordinates\[0\]: the ring is not closed/],
    ['a short ring', collection(grid('G1', { type: 'Polygon', coordinates: [[[100, 20], [100.1, 20], [100, 20]]] })), /coordinates\[0\]: a linear ring needs at least 4 positions/],
    ['a text coordinate', collection(grid('G1', { type: 'Polygon', coordinates: [[[100, 20], [100.1, '20'], [100.1, 20.1], [100, 20]]] })), /coordinates\[0\]\[1\]: latitude "20" is not a number/],
    ['lat/lon swapped', collection(grid('G1', { type: 'Polygon', coordinates: [[[29, 105], [29, 106], [30, 106], [29, 105]]] })), /coordinates\[0\]\[0\]: latitude 105 is not a number within -90\.\.90/],
  ];
  it.each(cases)('names the problem: %s', (_name, geojson, message) => {
    expect(() => new SiteMap(geojson, [])).toThrow(SiteMapError);
    expect(() => new SiteMap(geojson, [])).toThrow(message);
  });

  it('names the file when loading fails', () => {
    const dir = mkdtempSync(join(tmpdir(), 'site-map-'));
    expect(() => SiteMap.fromFile(join(dir, 'missing.geojson'), [])).toThrow(/invalid site map .*missing\.geojson: cannot read: ENOENT/);
    writeFileSync(join(dir, 'broken.geojson'), '{"type": "FeatureCollection",');
    expect(() => SiteMap.fromFile(join(dir, 'broken.geojson'), [])).toThrow(/invalid site map .*broken\.geojson: not JSON/);
    writeFileSync(join(dir, 'empty.geojson'), JSON.stringify(collection()));
    expect(() => SiteMap.fromFile(join(dir, 'empty.geojson'), [])).toThrow(/invalid site map .*empty\.geojson: features: no grid features/);
  });
});
