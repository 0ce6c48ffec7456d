/**
 * Broadcast targets as the console edits them: one draft per kind of target (switching between
 * "grids" and "radius" keeps what was picked in each), turned into the API's `BroadcastTarget`;
 * and the site's grid and community outlines, for clicking a grid on the map and outlining what
 * is selected. Pure geometry and data: no DOM, no Leaflet (unit-tested in Node).
 */
import type { Feature, MultiPolygon, Polygon } from 'geojson';
import type { SiteInfo } from './api.js';
import type { BroadcastTarget } from './broadcast-feed.js';
import type { SelectionShape } from './broadcast-map.js';

export type LatLon = { lat: number; lon: number };
/** A ring of [lon, lat] positions, GeoJSON order (what a polygon target takes). */
export type Ring = Array<[number, number]>;

export const TARGET_KINDS = ['poles', 'grids', 'communities', 'group', 'radius', 'polygon', 'all'] as const satisfies readonly BroadcastTarget['type'][];
export type TargetKind = (typeof TARGET_KINDS)[number];

export interface TargetDraft {
  kind: TargetKind;
  /** Picked poles, in the order picked. */
  poles: string[];
  grids: Set<string>;
  communities: Set<string>;
  group: string;
  center: LatLon | null;
  radiusM: number;
  ring: Ring | null;
}

export const DEFAULT_RADIUS_M = 3000;

export function emptyTargetDraft(): TargetDraft {
  return { kind: 'grids', poles: [], grids: new Set(), communities: new Set(), group: '', center: null, radiusM: DEFAULT_RADIUS_M, ring: null };
}

/** The API target for the draft's kind, or null while it selects nothing yet. */
export function draftTarget(d: TargetDraft): BroadcastTarget | null {
  switch (d.kind) {
    case 'poles':
      return d.poles.length ? { type: 'poles', poles: [...d.poles] } : null;
    case 'grids':
      return d.grids.size ? { type: 'grids', grids: [...d.grids].sort(byId) } : null;
    case 'communities':
      return d.communities.size ? { type: 'communities', communities: [...d.communities].sort() } : null;
    case 'group':
      return d.group ? { type: 'group', group: d.group } : null;
    case 'radius':
      return d.center && d.radiusM > 0 && d.radiusM <= 100_000
        ? { type: 'radius', center: { lat: round6(d.center.lat), lon: round6(d.center.lon) }, radiusM: Math.round(d.radiusM) }
        : null;
    case 'polygon':
      return d.ring && d.ring.length >= 3 ? { type: 'polygon', ring: d.ring.map(([lon, lat]) => [round6(lon), round6(lat)] as [number, number]) } : null;
    case 'all':
      return { type: 'all' };
  }
}

/** ~0.1 m: the API needs no more, and the request stays short. */
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;
export const byId = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

// ---- geometry --------------------------------------------------------------------------------------

/** WGS-84 from a map position: `project` inverted by fixed-point iteration (GCJ-02 shifts are small and smooth). */
export function unprojectWith(project: (lat: number, lon: number) => [number, number], lat: number, lon: number): LatLon {
  let w = { lat, lon };
  for (let i = 0; i < 6; i++) {
    const [plat, plon] = project(w.lat, w.lon);
    const dLat = lat - plat;
    const dLon = lon - plon;
    w = { lat: w.lat + dLat, lon: w.lon + dLon };
    if (Math.abs(dLat) < 1e-10 && Math.abs(dLon) < 1e-10) break;
  }
  return w;
}

/** Even-odd ray casting on [lon, lat] rings (the first ring is the outline, later ones holes). */
export function insideRings(rings: readonly Ring[], p: LatLon): boolean {
  let inside = false;
  for (const ring of rings) {
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i]!;
      const [xj, yj] = ring[j]!;
      if (yi > p.lat !== yj > p.lat && p.lon < ((xj - xi) * (p.lat - yi)) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}

// ---- site areas ---------------------------------------------------------------------------------

/** A grid or community outline: polygons of rings ([lon, lat], WGS-84); the first ring of each is its outline. */
export interface SiteArea {
  id: string;
  name: string;
  /** The community a grid belongs to (grids only; '' if the site map does not say). */
  community: string;
  polygons: Ring[][];
}

export interface SiteAreas {
  grids: Map<string, SiteArea>;
  /** By community name (what a `communities` target names). */
  communities: Map<string, SiteArea>;
}

type AreaFeature = Feature<Polygon | MultiPolygon, Record<string, unknown>>;

function isArea(f: Feature): f is AreaFeature {
  const p = f.properties;
  return p !== null && typeof p === 'object' && (f.geometry?.type === 'Polygon' || f.geometry?.type === 'MultiPolygon');
}

/** Grids and communities from the site GeoJSON (features whose `properties.layer` is `grid` or `community`). */
export function siteAreas(site: SiteInfo): SiteAreas {
  const grids = new Map<string, SiteArea>();
  const communities = new Map<string, SiteArea>();
  for (const f of site.geojson.features) {
    if (!isArea(f)) continue;
    const p = f.properties;
    const layer = p.layer;
    if (layer !== 'grid' && layer !== 'community') continue;
    const id = typeof p.id === 'string' ? p.id : '';
    const name = typeof p.name === 'string' ? p.name : id;
    const g = f.geometry;
    const polygons = (g.type === 'Polygon' ? [g.coordinates] : g.coordinates).map((poly) => poly.map((ring) => ring.map((pos) => [pos[0] ?? 0, pos[1] ?? 0] as [number, number])));
    if (layer === 'grid' && id) grids.set(id, { id, name, community: typeof p.community === 'string' ? p.community : '', polygons });
    // A `communities` target names communities as the ledger does: by name.
    if (layer === 'community' && name) communities.set(name, { id, name, community: name, polygons });
  }
  return { grids, communities };
}

/** The grid under a point, if any. */
export function gridAt(areas: SiteAreas, p: LatLon): SiteArea | null {
  for (const grid of areas.grids.values()) if (grid.polygons.some((poly) => insideRings(poly, p))) return grid;
  return null;
}

/** What to outline on the map for a draft (the poles are drawn from the preview). */
export function draftShape(d: TargetDraft, areas: SiteAreas | null): SelectionShape {
  switch (d.kind) {
    case 'radius':
      return d.center ? { kind: 'circle', center: d.center, radiusM: d.radiusM } : { kind: 'none' };
    case 'polygon':
      return d.ring ? { kind: 'polygon', ring: d.ring } : { kind: 'none' };
    case 'grids':
    case 'communities': {
      const names = d.kind === 'grids' ? d.grids : d.communities;
      const source = d.kind === 'grids' ? areas?.grids : areas?.communities;
      const rings: Ring[] = [];
      for (const name of names) for (const poly of source?.get(name)?.polygons ?? []) if (poly[0]) rings.push(poly[0]);
      return rings.length ? { kind: 'areas', rings } : { kind: 'none' };
    }
    default:
      return { kind: 'none' };
  }
}
