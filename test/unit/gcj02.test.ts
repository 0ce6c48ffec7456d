import { describe, expect, it } from 'vitest';
import { gcj02ToWgs84, outOfChina, wgs84ToGcj02 } from '../../dashboard/src/geo/gcj02.js';

/** Great-circle distance in metres (haversine); plenty accurate at these distances. */
function metres(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const R = 6_371_008.8;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(h));
}

// Reference pairs published with googollee/eviltransform's test suite (wgsLat, wgsLon, gcjLat, gcjLon),
// i.e. computed by an independent implementation, not by the code under test.
const KNOWN: Array<[string, number, number, number, number]> = [
  ['Shanghai', 31.1774276, 121.5272106, 31.17530398364597, 121.531541859215],
  ['Shenzhen', 22.543847, 113.912316, 22.540796131694766, 113.9171764808363],
  ['Beijing', 39.911954, 116.377817, 39.91334545536069, 116.38404722455657],
];

describe('WGS-84 -> GCJ-02', () => {
  it.each(KNOWN)('%s matches the published pair to within 1 m', (_city, wLat, wLon, gLat, gLon) => {
    const got = wgs84ToGcj02(wLat, wLon);
    expect(metres(got, { lat: gLat, lon: gLon })).toBeLessThan(1);
  });

  it('shifts a point in the Chashan site by the expected few hundred metres', () => {
    const wgs = { lat: 29.43, lon: 105.88 };
    const shift = metres(wgs, wgs84ToGcj02(wgs.lat, wgs.lon));
    expect(shift).toBeGreaterThan(100);
    expect(shift).toBeLessThan(1000);
  });

  it('leaves points outside China unchanged', () => {
    expect(outOfChina(51.5, -0.12)).toBe(true);
    expect(wgs84ToGcj02(51.5, -0.12)).toEqual({ lat: 51.5, lon: -0.12 });
  });
});

describe('GCJ-02 -> WGS-84', () => {
  it.each(KNOWN)('%s inverts the published pair to within 1 m', (_city, wLat, wLon, gLat, gLon) => {
    expect(metres(gcj02ToWgs84(gLat, gLon), { lat: wLat, lon: wLon })).toBeLessThan(1);
  });
});
