/**
 * WGS-84 <-> GCJ-02 ("Mars coordinates"). Chinese tile providers (AutoNavi/Gaode, Tencent, Google
 * China) draw their maps in GCJ-02, so WGS-84 positions must be shifted before they are drawn on
 * such tiles or they land 300–600 m off. This is the widely published public approximation of the
 * official algorithm (as in eviltransform); it is accurate to well under a metre in mainland China.
 *
 * Display only: the ledger, the API and storage stay WGS-84.
 */

/** Semi-major axis and first eccentricity squared of the Krasovsky 1940 ellipsoid the formula uses. */
const A = 6378245.0;
const EE = 0.00669342162296594323;

export interface LatLon {
  lat: number;
  lon: number;
}

/** The offset is only applied inside a rough bounding box of China; elsewhere GCJ-02 = WGS-84. */
export function outOfChina(lat: number, lon: number): boolean {
  return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;
}

function transformLat(x: number, y: number): number {
  let ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  ret += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0;
  ret += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320.0 * Math.sin((y * Math.PI) / 30.0)) * 2.0) / 3.0;
  return ret;
}

function transformLon(x: number, y: number): number {
  let ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  ret += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0;
  ret += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0;
  return ret;
}

/** GCJ-02 minus WGS-84 at a WGS-84 point, in degrees. */
function offset(lat: number, lon: number): LatLon {
  let dLat = transformLat(lon - 105.0, lat - 35.0);
  let dLon = transformLon(lon - 105.0, lat - 35.0);
  const radLat = (lat / 180.0) * Math.PI;
  const sinLat = Math.sin(radLat);
  const magic = 1 - EE * sinLat * sinLat;
  const sqrtMagic = Math.sqrt(magic);
  dLat = (dLat * 180.0) / (((A * (1 - EE)) / (magic * sqrtMagic)) * Math.PI);
  dLon = (dLon * 180.0) / ((A / sqrtMagic) * Math.cos(radLat) * Math.PI);
  return { lat: dLat, lon: dLon };
}

export function wgs84ToGcj02(lat: number, lon: number): LatLon {
  if (outOfChina(lat, lon)) return { lat, lon };
  const d = offset(lat, lon);
  return { lat: lat + d.lat, lon: lon + d.lon };
}

/**
 * Inverse by fixed-point iteration (the forward offset varies slowly, so a few rounds converge to
 * millimetres). Used to turn a click on GCJ-02 tiles back into a WGS-84 position.
 */
export function gcj02ToWgs84(lat: number, lon: number): LatLon {
  if (outOfChina(lat, lon)) return { lat, lon };
  let wLat = lat;
  let wLon = lon;
  for (let i = 0; i < 10; i++) {
    const g = wgs84ToGcj02(wLat, wLon);
    const eLat = g.lat - lat;
    const eLon = g.lon - lon;
    wLat -= eLat;
    wLon -= eLon;
    if (Math.abs(eLat) < 1e-9 && Math.abs(eLon) < 1e-9) break;
  }
  return { lat: wLat, lon: wLon };
}
