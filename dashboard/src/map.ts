/**
 * The site map: administrative boundaries from the site GeoJSON and one canvas-drawn marker per
 * device. Works with no base map at all (most sites have no internet); an XYZ tile layer is added
 * only when the gateway configures one.
 */
import * as L from 'leaflet';
import type { Feature, FeatureCollection, MultiPolygon, Polygon, Position } from 'geojson';
import type { DeviceKind } from '../../protocol/payloads.js';
import type { DeviceView } from '../../protocol/ws.js';
import type { SiteInfo } from './api.js';
import { tankBand, tankLevel, type TankBand } from './devices.js';
import { wgs84ToGcj02 } from './geo/gcj02.js';
import type { I18n } from './i18n.js';

// ---- marker look ------------------------------------------------------------------------------

export type MarkerShape = 'circle' | 'square' | 'diamond';

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

interface MarkerLook {
  shape: MarkerShape;
  radius: number;
  fillColor: string;
  fillOpacity: number;
  color: string;
  weight: number;
}

export function markerLook(d: DeviceView): MarkerLook {
  const kind = KIND_STYLE[d.kind];
  const fill = d.kind === 'water_tank' ? TANK_BAND_COLOR[tankBand(tankLevel(d))] : kind.color;
  switch (d.status) {
    case 'online':
      return { shape: kind.shape, radius: kind.radius, fillColor: fill, fillOpacity: 0.95, color: STATUS_STROKE.online, weight: 1 };
    case 'offline':
      return { shape: kind.shape, radius: kind.radius, fillColor: OFFLINE_FILL, fillOpacity: 0.9, color: STATUS_STROKE.offline, weight: 1.5 };
    case 'unknown':
      // Dimmed but still coloured: a tank's last known level matters even before it reports in.
      return { shape: kind.shape, radius: kind.radius, fillColor: fill, fillOpacity: 0.45, color: STATUS_STROKE.unknown, weight: 1 };
  }
}

const lookKey = (l: MarkerLook): string => `${l.shape}|${l.radius}|${l.fillColor}|${l.fillOpacity}|${l.color}|${l.weight}`;

/**
 * Leaflet internals DeviceMarker draws with. Leaflet's canvas renderer only knows circles; drawing
 * our own path in `_updatePath` keeps its batching, hit-testing and zoom animation. Pinned to
 * leaflet 1.9 (package.json); re-check these names on a Leaflet upgrade.
 */
interface CanvasRendererInternals {
  _ctx?: CanvasRenderingContext2D;
  _drawing?: boolean;
  _updateCircle(layer: L.CircleMarker): void;
  _fillStroke(ctx: CanvasRenderingContext2D, layer: L.CircleMarker): void;
}
interface CircleMarkerInternals {
  _renderer: CanvasRendererInternals;
  _point: L.Point;
  _radius: number;
  _empty(): boolean;
}

export class DeviceMarker extends L.CircleMarker {
  readonly deviceId: string;
  readonly kind: DeviceKind;
  shape: MarkerShape = 'circle';
  lookKey = '';

  constructor(latlng: L.LatLngExpression, deviceId: string, kind: DeviceKind, options: L.CircleMarkerOptions) {
    super(latlng, options);
    this.deviceId = deviceId;
    this.kind = kind;
  }

  setLook(look: MarkerLook): void {
    const key = lookKey(look);
    if (key === this.lookKey) return;
    this.lookKey = key;
    this.shape = look.shape;
    if (this.getRadius() !== look.radius) this.setRadius(look.radius);
    this.setStyle({ fillColor: look.fillColor, fillOpacity: look.fillOpacity, color: look.color, weight: look.weight });
  }

  /** Called by Leaflet's canvas renderer for each redraw of this marker. */
  _updatePath(): void {
    const self = this as unknown as CircleMarkerInternals;
    const renderer = self._renderer;
    const ctx = renderer._ctx;
    if (this.shape === 'circle' || !ctx) {
      renderer._updateCircle(this);
      return;
    }
    if (!renderer._drawing || self._empty()) return;
    const { x, y } = self._point;
    const r = Math.max(self._radius, 1);
    ctx.beginPath();
    if (this.shape === 'square') {
      const h = r * 0.85;
      ctx.rect(x - h, y - h, 2 * h, 2 * h);
    } else {
      ctx.moveTo(x, y - r);
      ctx.lineTo(x + r, y);
      ctx.lineTo(x, y + r);
      ctx.lineTo(x - r, y);
      ctx.closePath();
    }
    renderer._fillStroke(ctx, this);
  }
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
  onSelect: (id: string) => void;
}

/** Grid labels are clutter when the whole site is in view. */
const GRID_LABEL_MIN_ZOOM = 14;
/** Draw order on the shared canvas: the 58 tanks must never hide under 1657 cameras. */
const KIND_ORDER: Record<DeviceKind, number> = { camera: 0, voice_pole: 1, water_tank: 2 };

export class DeviceMap {
  readonly #map: L.Map;
  readonly #opts: DeviceMapOptions;
  readonly #renderer: L.Canvas;
  readonly #markers = new Map<string, DeviceMarker>();
  readonly #markerGroup: L.FeatureGroup;
  readonly #toDisplay: (lat: number, lon: number) => L.LatLng;
  readonly #hoverTooltip: L.Tooltip;
  #siteBounds: L.LatLngBounds | null = null;
  #selection: L.CircleMarker | null = null;
  #selectedId: string | null = null;

  constructor(options: DeviceMapOptions) {
    this.#opts = options;
    const { site } = options;
    // GCJ-02 shifting is only for lining up with GCJ-02 tiles; with no tiles, WGS-84 is drawn as is.
    const shift = site.map.tileUrl !== null && site.map.tileCrs === 'gcj02';
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
    });
    this.#map.attributionControl.setPrefix('Leaflet');
    L.control.scale({ imperial: false, position: 'bottomleft' }).addTo(this.#map);

    // Panes, bottom to top: boundaries (overlayPane, 400) < devices < labels. Labels sit on top
    // to stay readable over 1788 markers; they take no pointer events, so clicks reach the canvas.
    this.#map.createPane('gs-devices').style.zIndex = '450';
    this.#map.createPane('gs-labels').style.zIndex = '460';
    this.#renderer = L.canvas({ pane: 'gs-devices', tolerance: 4, padding: 0.2 });
    this.#markerGroup = L.featureGroup().addTo(this.#map);
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

  /** Replaces the device set (snapshot): adds new markers, moves or removes changed ones. */
  setDevices(devices: Iterable<DeviceView>): void {
    const seen = new Set<string>();
    const fresh: DeviceView[] = [];
    for (const d of devices) {
      seen.add(d.id);
      const marker = this.#markers.get(d.id);
      if (marker) {
        const pos = this.#toDisplay(d.lat, d.lon);
        if (!marker.getLatLng().equals(pos)) marker.setLatLng(pos);
        marker.setLook(markerLook(d));
      } else {
        fresh.push(d);
      }
    }
    for (const [id, marker] of this.#markers) {
      if (!seen.has(id)) {
        this.#markerGroup.removeLayer(marker);
        this.#markers.delete(id);
      }
    }
    fresh.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
    for (const d of fresh) {
      const look = markerLook(d);
      const marker = new DeviceMarker(this.#toDisplay(d.lat, d.lon), d.id, d.kind, {
        renderer: this.#renderer,
        pane: 'gs-devices',
        radius: look.radius,
        fill: true,
        bubblingMouseEvents: false,
      });
      marker.setLook(look);
      this.#markers.set(d.id, marker);
      this.#markerGroup.addLayer(marker);
    }
    if (fresh.length > 0 && fresh.length < this.#markers.size) {
      // Devices added later were appended above the existing tanks; restore the draw order.
      for (const m of this.#markers.values()) if (m.kind === 'water_tank') m.bringToFront();
    }
    // Keep the ring on the selected device (it may have moved, or arrived only now) without
    // yanking the view around on every reconnect.
    this.#drawSelection(false);
  }

  /** Restyles changed devices; Leaflet batches the canvas redraw into the next frame. */
  updateDevices(devices: Iterable<DeviceView>): void {
    for (const d of devices) this.#markers.get(d.id)?.setLook(markerLook(d));
  }

  /** Rings the device and pans to it if it is off screen; null clears the ring. */
  select(id: string | null): void {
    this.#selectedId = id;
    this.#drawSelection(true);
  }

  #drawSelection(pan: boolean): void {
    const marker = this.#selectedId === null ? undefined : this.#markers.get(this.#selectedId);
    if (!marker) {
      this.#selection?.remove();
      this.#selection = null;
      return;
    }
    const pos = marker.getLatLng();
    if (!this.#selection) {
      this.#selection = L.circleMarker(pos, {
        renderer: this.#renderer,
        pane: 'gs-devices',
        radius: 12,
        color: '#ffffff',
        weight: 2.5,
        fill: false,
        interactive: false,
      }).addTo(this.#map);
    } else {
      this.#selection.setLatLng(pos).bringToFront();
    }
    if (pan && !this.#map.getBounds().pad(-0.1).contains(pos)) this.#map.panTo(pos);
  }

  fitSite(): void {
    const bounds = this.#siteBounds ?? this.#deviceBounds();
    if (bounds?.isValid()) this.#map.fitBounds(bounds, { padding: [24, 24] });
    else this.#map.setView([35, 105], 4);
  }

  /** Leaflet measures its container once; call after the layout around the map changes. */
  invalidateSize(): void {
    this.#map.invalidateSize();
  }

  #deviceBounds(): L.LatLngBounds | null {
    if (this.#markers.size === 0) return null;
    return L.latLngBounds([...this.#markers.values()].map((m) => m.getLatLng()));
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
    this.#markerGroup.on('click', (e: L.LeafletEvent) => {
      const marker: unknown = e.propagatedFrom;
      if (marker instanceof DeviceMarker) this.#opts.onSelect(marker.deviceId);
    });
    this.#markerGroup.on('mouseover', (e: L.LeafletEvent) => {
      const marker: unknown = e.propagatedFrom;
      if (!(marker instanceof DeviceMarker)) return;
      const d = this.#opts.lookup(marker.deviceId);
      if (!d) return;
      this.#hoverTooltip.setLatLng(marker.getLatLng()).setContent(this.#tooltipContent(d));
      this.#map.openTooltip(this.#hoverTooltip);
    });
    this.#markerGroup.on('mouseout', () => this.#map.closeTooltip(this.#hoverTooltip));
  }

  #tooltipContent(d: DeviceView): HTMLElement {
    const { i18n } = this.#opts;
    const root = document.createElement('div');
    const name = document.createElement('strong');
    name.textContent = d.name;
    const meta = document.createElement('div');
    meta.className = 'gs-tip-meta';
    const level = tankLevel(d);
    meta.textContent = [
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
