/**
 * The site map: administrative boundaries from the site GeoJSON and every device drawn by one
 * canvas layer (device-layer.ts), so a district's 50,000 devices pan, zoom and change colour
 * smoothly. Works with no base map at all (most sites have no internet); an XYZ tile layer is
 * added only when the gateway configures one.
 */
import * as L from 'leaflet';
import type { Feature, FeatureCollection, MultiPolygon, Polygon, Position } from 'geojson';
import type { DeviceKind } from '../../protocol/payloads.js';
import type { Availability, DeviceView } from '../../protocol/ws.js';
import type { SiteInfo } from './api.js';
import { tankLevel, type TankBand } from './devices.js';
import { DeviceLayer, type LayerDevices, type LayerStats, type MarkerLook, type MarkerShape } from './device-layer.js';
import { wgs84ToGcj02 } from './geo/gcj02.js';
import type { I18n } from './i18n.js';

export type { LayerStats, MarkerShape };

// ---- marker look ------------------------------------------------------------------------------

/** Shape and size say what a device is; fill says how it is doing; outline says whether it talks. */
export const KIND_STYLE: Record<DeviceKind, { shape: MarkerShape; radius: number; color: string }> = {
  camera: { shape: 'circle', radius: 3.5, color: '#4ea8ff' },
  voice_pole: { shape: 'square', radius: 5, color: '#c792ea' },
  water_tank: { shape: 'diamond', radius: 7, color: '#2fd47a' },
};
export const TANK_BAND_COLOR: Record<TankBand, string> = {
  ok: '#2fd47a',
  warning: '#ffb020',
  danger: '#ff4d4f',
  none: '#8797a6',
};
export const STATUS_STROKE = { online: '#e8f1f8', offline: '#ff4d4f', unknown: '#6f7f8c' } as const;
const OFFLINE_FILL = '#3a4652';

/**
 * The outline is as wide in every status: a kind's markers then cover the same pixels whatever
 * their state, so the canvas 2D painter can redraw a changed marker in place (device-layer.ts).
 */
const OUTLINE_WEIGHT = 1.25;

/**
 * One object per distinct look (a few dozen), so 50,000 devices do not make 50,000 objects; found
 * by kind, status and band without building a key string per device.
 */
const LOOKS: Record<DeviceKind, Record<Availability, Partial<Record<TankBand, MarkerLook>>>> = {
  camera: { online: {}, offline: {}, unknown: {} },
  voice_pole: { online: {}, offline: {}, unknown: {} },
  water_tank: { online: {}, offline: {}, unknown: {} },
};

/** `band` is the tank's level band by its own thresholds (DeviceStore.band); ignored for other kinds. */
export function markerLook(d: DeviceView, band: TankBand): MarkerLook {
  const looks = LOOKS[d.kind][d.status];
  const key: TankBand = d.kind === 'water_tank' ? band : 'none';
  return (looks[key] ??= makeLook(d, band));
}

function makeLook(d: DeviceView, band: TankBand): MarkerLook {
  const kind = KIND_STYLE[d.kind];
  const fill = d.kind === 'water_tank' ? TANK_BAND_COLOR[band] : kind.color;
  switch (d.status) {
    case 'online':
      return { shape: kind.shape, radius: kind.radius, fillColor: fill, fillOpacity: 0.95, color: STATUS_STROKE.online, weight: OUTLINE_WEIGHT };
    case 'offline':
      return { shape: kind.shape, radius: kind.radius, fillColor: OFFLINE_FILL, fillOpacity: 0.9, color: STATUS_STROKE.offline, weight: OUTLINE_WEIGHT };
    case 'unknown':
      // Dimmed but still coloured: a tank's last known level matters even before it reports in.
      return { shape: kind.shape, radius: kind.radius, fillColor: fill, fillOpacity: 0.45, color: STATUS_STROKE.unknown, weight: OUTLINE_WEIGHT };
  }
}

/** What the map shows: kinds and statuses ticked, and one grid or all (null). */
export interface DeviceFilter {
  kinds: ReadonlySet<DeviceKind>;
  statuses: ReadonlySet<Availability>;
  grid: string | null;
}

export function passes(filter: DeviceFilter, d: DeviceView): boolean {
  return filter.kinds.has(d.kind) && filter.statuses.has(d.status) && (filter.grid === null || d.grid === filter.grid);
}

// ---- boundaries -------------------------------------------------------------------------------

type BoundaryLayer = 'site' | 'community' | 'grid';
interface BoundaryProperties {
  layer: BoundaryLayer;
  id: string;
  name: string;
}
type BoundaryFeature = Feature<Polygon | MultiPolygon, BoundaryProperties>;

function isBoundary(f: Feature): f is BoundaryFeature {
  const p = f.properties;
  return (
    p !== null &&
    (p.layer === 'site' || p.layer === 'community' || p.layer === 'grid') &&
    typeof p.id === 'string' &&
    (f.geometry?.type === 'Polygon' || f.geometry?.type === 'MultiPolygon')
  );
}

/** Grid names by grid id, for the device card ("G07 · 竹海社区第2网格"). */
export function gridNames(site: SiteInfo): Map<string, string> {
  const names = new Map<string, string>();
  for (const f of site.geojson.features) {
    if (isBoundary(f) && f.properties.layer === 'grid') names.set(f.properties.id, f.properties.name ?? f.properties.id);
  }
  return names;
}

export interface GridInfo {
  id: string;
  name: string;
  community: string;
}

/** The site's grids with their community (GeoJSON `properties.community`), sorted by community then id. */
export function siteGrids(site: SiteInfo): GridInfo[] {
  const grids: GridInfo[] = [];
  for (const f of site.geojson.features) {
    if (!isBoundary(f) || f.properties.layer !== 'grid') continue;
    const community = (f.properties as unknown as Record<string, unknown>).community;
    grids.push({ id: f.properties.id, name: f.properties.name ?? f.properties.id, community: typeof community === 'string' ? community : '' });
  }
  return grids.sort((a, b) => a.community.localeCompare(b.community, 'zh-CN') || a.id.localeCompare(b.id, 'en', { numeric: true }));
}

const BOUNDARY_STYLE: Record<BoundaryLayer, L.PathOptions> = {
  grid: { color: '#5f7f93', weight: 0.8, opacity: 0.7, fill: false },
  community: { color: '#9cc3d8', weight: 2, opacity: 0.9, fill: true, fillColor: '#1c3343', fillOpacity: 0.25 },
  site: { color: '#35c07a', weight: 3, opacity: 1, fill: false },
};

/** Area-weighted centroid of the largest outer ring: a label spot that is usually inside the shape. */
function labelPoint(geometry: Polygon | MultiPolygon): Position | null {
  const polygons = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates;
  let best: { area: number; x: number; y: number } | null = null;
  for (const polygon of polygons) {
    const ring = polygon[0];
    if (!ring || ring.length < 4) continue;
    let a = 0;
    let cx = 0;
    let cy = 0;
    for (let i = 0; i < ring.length - 1; i++) {
      const p = ring[i];
      const q = ring[i + 1];
      if (!p || !q) continue;
      const [x0 = 0, y0 = 0] = p;
      const [x1 = 0, y1 = 0] = q;
      const cross = x0 * y1 - x1 * y0;
      a += cross;
      cx += (x0 + x1) * cross;
      cy += (y0 + y1) * cross;
    }
    if (a === 0) continue;
    const area = Math.abs(a / 2);
    if (!best || area > best.area) best = { area, x: cx / (3 * a), y: cy / (3 * a) };
  }
  return best ? [best.x, best.y] : null;
}

function labelElement(text: string): HTMLElement {
  const el = document.createElement('span');
  el.textContent = text; // names come from site config: text, never markup
  return el;
}

// ---- the map ----------------------------------------------------------------------------------

export interface DeviceMapOptions {
  container: HTMLElement;
  site: SiteInfo;
  i18n: I18n;
  /** Current data for a device, for the hover tooltip. */
  lookup: (id: string) => DeviceView | undefined;
  /** A tank's level band by its own thresholds. */
  band: (d: DeviceView) => TankBand;
  onSelect: (id: string) => void;
  /** Width (px) of what covers the map's left edge (the search and filters), kept clear when fitting the site. */
  insetLeft?: () => number;
}

/**
 * `?renderer=canvas2d|webgl` in the page address overrides the automatic choice (device-layer.ts):
 * for comparing the two on a given wall PC, and for tests of the WebGL painter without a GPU.
 */
function rendererOption(): 'auto' | 'canvas2d' | 'webgl' {
  const wanted = new URLSearchParams(window.location.search).get('renderer');
  return wanted === 'canvas2d' || wanted === 'webgl' ? wanted : 'auto';
}

/** Grid labels are clutter when the whole site is in view. */
const GRID_LABEL_MIN_ZOOM = 14;
/** Draw order: the few tanks must never hide under thousands of cameras. */
const KIND_RANK: Record<DeviceKind, number> = { camera: 0, voice_pole: 1, water_tank: 2 };
/** Zoom a search result is shown at (at least): a few hundred metres across. */
const FLY_TO_ZOOM = 16;

export class DeviceMap {
  readonly #map: L.Map;
  readonly #opts: DeviceMapOptions;
  readonly #layer: DeviceLayer;
  readonly #toDisplay: (lat: number, lon: number) => L.LatLng;
  /** Positions are shifted to GCJ-02 for display (GCJ-02 tiles). */
  readonly #shift: boolean;
  readonly #hoverTooltip: L.Tooltip;
  #siteBounds: L.LatLngBounds | null = null;
  /** The devices' extent (display coordinates), for a site without a GeoJSON outline. */
  #deviceBounds: L.LatLngBounds | null = null;
  #filter: DeviceFilter | null = null;
  #hovered: string | null = null;
  #hoverFrame = 0;
  #hoverPoint: L.Point | null = null;

  constructor(options: DeviceMapOptions) {
    this.#opts = options;
    const { site } = options;
    // GCJ-02 shifting is only for lining up with GCJ-02 tiles; with no tiles, WGS-84 is drawn as is.
    const shift = site.map.tileUrl !== null && site.map.tileCrs === 'gcj02';
    this.#shift = shift;
    this.#toDisplay = shift
      ? (lat, lon) => {
          const g = wgs84ToGcj02(lat, lon);
          return L.latLng(g.lat, g.lon);
        }
      : (lat, lon) => L.latLng(lat, lon);

    this.#map = L.map(options.container, {
      zoomSnap: 0.25,
      zoomDelta: 0.5,
      wheelPxPerZoomLevel: 120,
      minZoom: 8,
      maxZoom: 19,
      attributionControl: true,
      zoomControl: false,
    });
    // Top right: the top left holds the search and filters (map-tools.ts).
    L.control.zoom({ position: 'topright' }).addTo(this.#map);
    this.#map.attributionControl.setPrefix('Leaflet');
    L.control.scale({ imperial: false, position: 'bottomleft' }).addTo(this.#map);

    // Panes, bottom to top: boundaries (overlayPane, 400) < devices < labels. Labels sit on top
    // to stay readable over the markers; they take no pointer events, so clicks reach the map.
    this.#map.createPane('gs-devices').style.zIndex = '450';
    this.#map.createPane('gs-labels').style.zIndex = '460';
    this.#layer = new DeviceLayer({ pane: 'gs-devices', padding: 0.1, tolerance: 4, renderer: rendererOption() }).addTo(this.#map);
    this.#hoverTooltip = L.tooltip({ direction: 'top', offset: [0, -8], className: 'gs-device-tip', opacity: 1 });

    if (site.map.tileUrl) {
      L.tileLayer(site.map.tileUrl, {
        // Operator-configured attribution (may contain a link); it comes from gateway config, not devices.
        attribution: site.map.tileAttribution,
        maxZoom: 19,
      }).addTo(this.#map);
    } else {
      options.container.classList.add('gs-no-tiles');
    }

    this.#drawBoundaries();
    this.#bindDeviceEvents();
    this.#map.on('zoomend', () => this.#updateZoomClasses());
    this.fitSite();
    this.#updateZoomClasses();
  }

  /** The Leaflet map, for views that add their own layers (picking poles, incident locations). */
  get leaflet(): L.Map {
    return this.#map;
  }

  /** Replaces the device set (a snapshot). */
  setDevices(devices: Iterable<DeviceView>): void {
    const all = Array.isArray(devices) ? (devices as DeviceView[]) : [...devices];
    const n = all.length;
    const columns: LayerDevices = { ids: new Array<string>(n), lat: new Float64Array(n), lng: new Float64Array(n), rank: new Uint8Array(n), looks: new Array<MarkerLook>(n), visible: new Uint8Array(n) };
    const ids = columns.ids as string[];
    const looks = columns.looks as MarkerLook[];
    let south = Infinity;
    let west = Infinity;
    let north = -Infinity;
    let east = -Infinity;
    const shift = this.#shift;
    const filter = this.#filter;
    for (let k = 0; k < n; k++) {
      const d = all[k]!;
      let lat = d.lat;
      let lng = d.lon;
      if (shift) ({ lat, lng } = this.#display(d));
      if (lat < south) south = lat;
      if (lat > north) north = lat;
      if (lng < west) west = lng;
      if (lng > east) east = lng;
      ids[k] = d.id;
      columns.lat[k] = lat;
      columns.lng[k] = lng;
      columns.rank[k] = KIND_RANK[d.kind];
      // The band (thresholds) matters for tanks only: a lookup per camera is 50,000 wasted ones.
      looks[k] = markerLook(d, d.kind === 'water_tank' ? this.#opts.band(d) : 'none');
      columns.visible[k] = filter === null || passes(filter, d) ? 1 : 0;
    }
    this.#deviceBounds = n > 0 ? L.latLngBounds([south, west], [north, east]) : null;
    this.#layer.setDevices(columns);
    if (this.#hovered !== null && !this.#opts.lookup(this.#hovered)) this.#hover(null);
  }

  /** Where a device is drawn: its ledger position, shifted to GCJ-02 over GCJ-02 tiles. */
  #display(d: DeviceView): { lat: number; lng: number } {
    const p = this.#toDisplay(d.lat, d.lon);
    return { lat: p.lat, lng: p.lng };
  }

  #position(id: string): L.LatLng | undefined {
    const d = this.#opts.lookup(id);
    return d ? this.#toDisplay(d.lat, d.lon) : undefined;
  }

  /** Restyles changed devices (and re-applies the filter to them); one redraw in the next frame. */
  updateDevices(devices: Iterable<DeviceView>): void {
    const filter = this.#filter;
    for (const d of devices) {
      this.#layer.setLook(d.id, markerLook(d, d.kind === 'water_tank' ? this.#opts.band(d) : 'none'));
      if (filter) this.#layer.setVisible(d.id, passes(filter, d));
      if (d.id === this.#hovered) this.#hoverTooltip.setContent(this.#tooltipContent(d));
    }
  }

  /** Shows only the devices passing `filter` (null: all). `devices` is the whole current set. */
  setFilter(filter: DeviceFilter | null, devices: Iterable<DeviceView>): void {
    this.#filter = filter;
    for (const d of devices) this.#layer.setVisible(d.id, filter === null || passes(filter, d));
  }

  /** Rings the device and pans to it if it is off screen; null clears the ring. */
  select(id: string | null): void {
    this.#layer.select(id);
    const pos = id === null ? undefined : this.#position(id);
    if (pos && !this.#map.getBounds().pad(-0.1).contains(pos)) this.#map.panTo(pos);
  }

  /** Flies to a device (search result) and zooms in to street level if further out. */
  flyTo(id: string): void {
    const pos = this.#position(id);
    if (!pos) return;
    const zoom = Math.max(this.#map.getZoom(), FLY_TO_ZOOM);
    // A long flight over a dense district is hard to follow; a short one is not worth animating.
    this.#map.flyTo(pos, zoom, { duration: 0.8 });
  }

  /** Container pixel of a device, or null (tests hover it; panels can point at it). */
  devicePoint(id: string): { x: number; y: number } | null {
    const pos = this.#position(id);
    if (!pos) return null;
    const p = this.#map.latLngToContainerPoint(pos);
    return { x: p.x, y: p.y };
  }

  /** Which device is under a container point (the same test a click uses). */
  deviceAt(x: number, y: number): string | null {
    return this.#layer.hitTest(L.point(x, y));
  }

  get stats(): LayerStats {
    return this.#layer.stats;
  }

  fitSite(): void {
    const bounds = this.#siteBounds ?? this.#deviceBounds;
    if (!bounds?.isValid()) {
      this.#map.setView([35, 105], 4);
      return;
    }
    // Keep the site clear of the search and filters where the map is wide enough to afford it.
    const width = this.#map.getSize().x;
    const inset = width > 900 ? Math.min(this.#opts.insetLeft?.() ?? 0, width * 0.35) : 0;
    this.#map.fitBounds(bounds, { paddingTopLeft: [24 + inset, 24], paddingBottomRight: [24, 24] });
  }

  /** Leaflet measures its container once; call after the layout around the map changes. */
  invalidateSize(): void {
    this.#map.invalidateSize();
  }

  #drawBoundaries(): void {
    const coordsToLatLng = (c: [number, number] | [number, number, number]): L.LatLng => this.#toDisplay(c[1], c[0]);
    const features = this.#opts.site.geojson.features.filter(isBoundary);
    const labels = L.layerGroup().addTo(this.#map);
    // Drawn grids first so community and site outlines sit on top of them.
    for (const layer of ['grid', 'community', 'site'] as const) {
      const subset = features.filter((f) => f.properties.layer === layer);
      if (subset.length === 0) continue;
      const collection: FeatureCollection = { type: 'FeatureCollection', features: subset };
      const geo = L.geoJSON(collection, {
        style: BOUNDARY_STYLE[layer],
        interactive: false,
        coordsToLatLng,
      }).addTo(this.#map);
      if (layer === 'site') this.#siteBounds = geo.getBounds();
      if (layer === 'site') continue;
      for (const f of subset) {
        const at = labelPoint(f.geometry);
        if (!at || at[0] === undefined || at[1] === undefined) continue;
        const text = layer === 'grid' ? f.properties.id : f.properties.name;
        L.tooltip({
          permanent: true,
          direction: 'center',
          interactive: false,
          pane: 'gs-labels',
          className: `gs-label gs-label-${layer}`,
        })
          .setLatLng(this.#toDisplay(at[1], at[0]))
          .setContent(labelElement(text))
          .addTo(labels);
      }
    }
  }

  #bindDeviceEvents(): void {
    this.#map.on('click', (e: L.LeafletMouseEvent) => {
      const id = this.#layer.hitTest(e.containerPoint);
      if (id !== null) this.#opts.onSelect(id);
    });
    // Hover is tested once per animation frame, however fast the mouse moves.
    this.#map.on('mousemove', (e: L.LeafletMouseEvent) => {
      this.#hoverPoint = e.containerPoint;
      if (this.#hoverFrame !== 0) return;
      this.#hoverFrame = requestAnimationFrame(() => {
        this.#hoverFrame = 0;
        const point = this.#hoverPoint;
        this.#hover(point ? this.#layer.hitTest(point) : null);
      });
    });
    const leave = () => {
      this.#hoverPoint = null;
      this.#hover(null);
    };
    this.#map.on('mouseout', leave);
    this.#map.on('dragstart', leave);
    this.#map.on('zoomstart', leave);
  }

  #hover(id: string | null): void {
    if (id === this.#hovered) return;
    this.#hovered = id;
    this.#opts.container.classList.toggle('gs-device-hover', id !== null);
    const d = id === null ? undefined : this.#opts.lookup(id);
    const pos = id === null ? undefined : this.#position(id);
    if (!d || !pos) {
      this.#map.closeTooltip(this.#hoverTooltip);
      return;
    }
    this.#hoverTooltip.setLatLng(pos).setContent(this.#tooltipContent(d));
    this.#map.openTooltip(this.#hoverTooltip);
  }

  #tooltipContent(d: DeviceView): HTMLElement {
    const { i18n } = this.#opts;
    const root = document.createElement('div');
    root.dataset.testid = 'device-tip';
    const name = document.createElement('strong');
    name.textContent = d.name; // names come from the ledger: text, never markup
    const meta = document.createElement('div');
    meta.className = 'gs-tip-meta';
    const level = tankLevel(d);
    meta.textContent = [
      d.id,
      i18n.t(`kind.${d.kind}`),
      i18n.t(`status.${d.status}`),
      ...(level !== undefined ? [`${level.toFixed(1)} %`] : []),
    ].join(' · ');
    root.append(name, meta);
    return root;
  }

  #updateZoomClasses(): void {
    this.#opts.container.classList.toggle('gs-show-grid-labels', this.#map.getZoom() >= GRID_LABEL_MIN_ZOOM);
  }
}
