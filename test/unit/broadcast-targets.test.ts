/**
 * Target resolution against the shipped site: the real GeoJSON and ledger through the real
 * SiteMap. Every spatial answer is checked against a brute-force pass over the ledger.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { distanceM } from '../../gateway/src/alerts/geo.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { TargetResolver } from '../../gateway/src/broadcast/targets.js';
import { ApiError } from '../../gateway/src/errors.js';
import type { BroadcastTarget } from '../../protocol/broadcasts.js';
import { CONFIG_DIR } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const site = SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), ledger);
const poles = ledger.filter((d) => d.kind === 'voice_pole');
const resolver = new TargetResolver({ site, devices: ledger, groups: { 'scenic-area': ['pole-003', 'pole-001'] } });
const ids = (t: BroadcastTarget) => resolver.resolve(t).poles.map((p) => p.id);
const sorted = (xs: string[]) => [...xs].sort();
const refusal = (t: BroadcastTarget): string => {
  try {
    resolver.resolve(t);
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('BROADCAST_BAD_TARGET');
    return (err as ApiError).message;
  }
  throw new Error(`expected ${JSON.stringify(t)} to be refused`);
};

/** Grids with at least `n` poles, from the ledger. */
function gridsWithPoles(n: number): string[] {
  const count = new Map<string, number>();
  for (const p of poles) count.set(p.grid, (count.get(p.grid) ?? 0) + 1);
  return [...count].filter(([, c]) => c >= n).map(([g]) => g).sort();
}

describe('TargetResolver on the Chashan Zhuhai site', () => {
  it('has the 73 poles of the site', () => {
    expect(poles).toHaveLength(73);
    expect(ids({ type: 'all' })).toEqual(poles.map((p) => p.id));
  });

  it('poles: in the order given, duplicates once', () => {
    expect(ids({ type: 'poles', poles: ['pole-007', 'pole-002', 'pole-007'] })).toEqual(['pole-007', 'pole-002']);
    expect(resolver.resolve({ type: 'poles', poles: ['pole-007', 'pole-002'] }).label).toBe('广播杆 pole-007、pole-002');
  });

  it('grids and communities: exactly the ledger’s poles of them', () => {
    const [g1, g2] = gridsWithPoles(3);
    expect(g1 && g2).toBeTruthy();
    for (const grids of [[g1!], [g1!, g2!]]) {
      expect(sorted(ids({ type: 'grids', grids }))).toEqual(sorted(poles.filter((p) => grids.includes(p.grid)).map((p) => p.id)));
    }
    const community = poles[0]!.community;
    expect(sorted(ids({ type: 'communities', communities: [community] }))).toEqual(sorted(poles.filter((p) => p.community === community).map((p) => p.id)));
    expect(resolver.resolve({ type: 'grids', grids: [g1!] }).label).toBe(`网格 ${g1}`);
  });

  it('radius: every pole within the distance, nearest first, with its distance', () => {
    // Around a pole, so even the small circle selects one.
    const center = { lat: poles[10]!.lat, lon: poles[10]!.lon };
    for (const radiusM of [500, 2000, 5000]) {
      const r = resolver.resolve({ type: 'radius', center, radiusM });
      const brute = poles.filter((p) => distanceM(center, p) <= radiusM).map((p) => p.id);
      expect(sorted(r.poles.map((p) => p.id))).toEqual(sorted(brute));
      const d = r.poles.map((p) => r.distanceM!.get(p.id)!);
      expect(d).toEqual([...d].sort((a, b) => a - b));
    }
    expect(resolver.resolve({ type: 'radius', center: { lat: 29.43, lon: 105.88 }, radiusM: 5000 }).label).toBe('半径 5 km（29.43000, 105.88000）');
  });

  it('polygon: every pole inside the drawn ring', () => {
    // The western half of the site box.
    const ring: Array<[number, number]> = [
      [105.82, 29.38],
      [105.885, 29.38],
      [105.885, 29.48],
      [105.82, 29.48],
    ];
    const inside = poles.filter((p) => p.lon > 105.82 && p.lon < 105.885 && p.lat > 29.38 && p.lat < 29.48).map((p) => p.id);
    expect(inside.length).toBeGreaterThan(5);
    expect(inside.length).toBeLessThan(73);
    expect(sorted(ids({ type: 'polygon', ring }))).toEqual(sorted(inside));
    expect(sorted(ids({ type: 'polygon', ring: [...ring, ring[0]!] }))).toEqual(sorted(inside)); // closed ring: the same
  });

  it('group: the configured poles', () => {
    expect(ids({ type: 'group', group: 'scenic-area' })).toEqual(['pole-003', 'pole-001']);
  });

  it('refuses unknown names, non-poles and empty selections with a clear message', () => {
    expect(refusal({ type: 'poles', poles: ['pole-001', 'pole-999', 'nope'] })).toBe('no device "pole-999", "nope" in the ledger');
    expect(refusal({ type: 'poles', poles: ['pole-001', 'cam-0001', 'tank-001'] })).toBe('not a voice pole: "cam-0001 (camera)", "tank-001 (water_tank)"');
    expect(refusal({ type: 'grids', grids: ['G99'] })).toBe('no grid "G99" on the site map or in the ledger');
    expect(refusal({ type: 'communities', communities: ['火星社区'] })).toBe('no community "火星社区" on the site map or in the ledger');
    expect(refusal({ type: 'group', group: 'nope' })).toBe('no pole group "nope" (groups: scenic-area)');
    expect(refusal({ type: 'radius', center: { lat: 39.9, lon: 116.4 }, radiusM: 1000 })).toMatch(/the target selects no voice pole$/);
    expect(refusal({ type: 'polygon', ring: [[105.83, 29.4], [105.84, 29.41], [105.85, 29.42]] })).toBe('the polygon has no area (its corners are on one line)');
    const gridWithout = [...new Set(ledger.map((d) => d.grid))].find((g) => !poles.some((p) => p.grid === g));
    expect(gridWithout).toBeDefined();
    expect(refusal({ type: 'grids', grids: [gridWithout!] })).toBe(`网格 ${gridWithout}: the target selects no voice pole`);
  });

  it('refuses a configured group that names something other than a voice pole, at start', () => {
    expect(() => new TargetResolver({ site, devices: ledger, groups: { bad: ['pole-001', 'cam-0001'] } })).toThrow(
      'gateway.broadcast.groups.bad: "cam-0001" is not a voice pole in the ledger',
    );
  });

  it('keeps ledger grids the map does not draw (a bench ledger) resolvable', () => {
    const extra: LedgerDevice = { ...poles[0]!, id: 'pole-x', grid: 'bench-grid-1', community: '基准社区' } as LedgerDevice;
    const r = new TargetResolver({ site: SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), [extra]), devices: [extra], groups: {} });
    expect(r.resolve({ type: 'grids', grids: ['bench-grid-1'] }).poles.map((p) => p.id)).toEqual(['pole-x']);
  });
});
