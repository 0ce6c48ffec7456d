/**
 * The broadcast console's own Leaflet layer: picking poles on the map (click a pole, click a
 * grid, a circle around a clicked point, a polygon drawn with plain clicks), the selected poles
 * highlighted, and while a job is open its poles coloured by delivery state.
 *
 * Everything sits in one pane (`gs-broadcast`, over the device canvas) drawn by one SVG renderer
 * whose root takes no pointer events: only the pickable pole rings and, while a map tool is on,
 * a transparent "click catcher" over the whole world are interactive. Neither lets its clicks
 * bubble to the map, so picking does not also open device cards, and a double-click that ends a
 * polygon does not zoom. Positions are WGS-84 in and out; `project` places them on the map
 * (GCJ-02 over Chinese tiles), `unproject` turns a click back into WGS-84.
 */
import * as L from 'leaflet';
import type { DeliveryState, ResolvedPole } from './broadcast-feed.js';
import { unprojectWith, type LatLon, type Ring } from './broadcast-targets.js';

export type MapTool = 'poles' | 'grids' | 'radius' | 'polygon';
export type { LatLon, Ring };

export interface PickablePole {
  id: string;
  name: string;
  lat: number;
  lon: number;
  status: 'online' | 'offline' | 'unknown';
}

export interface BroadcastMapOptions {
  project: (lat: number, lon: number) => [number, number];
  /** A pole ring was clicked (tool `poles`). */
  onPole: (id: string) => void;
  /** The map was clicked with tool `grids` or `radius`. */
  onPoint: (tool: 'grids' | 'radius', at: LatLon) => void;
  /** A polygon was finished (a ring of ≥ 3 positions), or drawing was cancelled (null). */
  onPolygon: (ring: Ring | null) => void;
  /** The number of vertices drawn so far changed (0: not drawing). */
  onDrawing: (vertices: number) => void;
}

/** What the selection looks like on the map besides its poles. */
export type SelectionShape =
  | { kind: 'none' }
  | { kind: 'circle'; center: LatLon; radiusM: number }
  | { kind: 'polygon'; ring: Ring }
  | { kind: 'areas'; rings: Ring[] };

export const STATE_COLOR: Record<DeliveryState, string> = {
  queued: '#8aa0b1',
  sent: '#4ea8ff',
  accepted: '#36cfc9',
  playing: '#ffb020',
  done: '#2fd47a',
  failed: '#ff4d4f',
  expired: '#d4733a',
  preempted: '#b37feb',
  cancelled: '#5b6b78',
};

const PANE = 'gs-broadcast';
const SELECT_COLOR = '#ffe14d';
const SHAPE_STYLE: L.PathOptions = { color: SELECT_COLOR, weight: 2, opacity: 0.9, fillColor: SELECT_COLOR, fillOpacity: 0.08, dashArray: '6 4', interactive: false };
/** Two clicks this close (px) are the same vertex: a double-click makes two clicks before it says dblclick. */
const SAME_VERTEX_PX = 6;

const deliveryStyle = (state: DeliveryState): L.PathOptions => ({ color: STATE_COLOR[state], fillColor: STATE_COLOR[state] });

export class BroadcastMapLayer {
  readonly #opts: BroadcastMapOptions;
  #map: L.Map | null = null;
  #renderer: L.Renderer | null = null;
  readonly #root = L.layerGroup();
  readonly #shapes = L.layerGroup();
  readonly #picks = L.layerGroup();
  readonly #selected = L.layerGroup();
  readonly #deliveries = L.layerGroup();
  readonly #draft = L.layerGroup();
  readonly #deliveryMarkers = new Map<string, { marker: L.CircleMarker; state: DeliveryState }>();
  #catcher: L.Rectangle | null = null;
  #tool: MapTool | null = null;
  #pickable: PickablePole[] = [];
  #pickedIds = new Set<string>();
  #vertices: L.LatLng[] = [];
  #rubber: L.Polyline | null = null;
  readonly #onKey = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && this.#vertices.length > 0) {
      e.stopPropagation();
      this.cancelDrawing();
    }
  };
  readonly #onMove = (e: L.LeafletMouseEvent) => this.#drawRubber(e.latlng);

  constructor(opts: BroadcastMapOptions) {
    this.#opts = opts;
  }

  get map(): L.Map | null {
    return this.#map;
  }

  get tool(): MapTool | null {
    return this.#tool;
  }

  /**
   * Puts the layer on `map` (null: takes it off). Moving to another map instance drops what was
   * drawn: the owner draws its state again (it knows it; this layer only shows it).
   */
  attach(map: L.Map | null): void {
    if (map === this.#map) return;
    const tool = this.#tool;
    this.setTool(null);
    this.#root.remove();
    for (const g of this.#groups()) g.clearLayers();
    this.#deliveryMarkers.clear();
    if (this.#map && this.#renderer) this.#map.removeLayer(this.#renderer);
    this.#map = map;
    this.#renderer = null;
    if (!map) return;
    const pane = map.getPane(PANE) ?? map.createPane(PANE);
    // Over the device canvas (450), under the boundary labels (460).
    pane.style.zIndex = '455';
    pane.classList.add('bc-pane');
    this.#renderer = L.svg({ pane: PANE, padding: 0.2 });
    for (const g of this.#groups()) this.#root.addLayer(g);
    this.#root.addTo(map);
    this.setTool(tool);
  }

  #groups(): L.LayerGroup[] {
    return [this.#shapes, this.#selected, this.#deliveries, this.#picks, this.#draft];
  }

  // ---- tools ------------------------------------------------------------------------------------

  /** Which map tool answers clicks (null: none; the map behaves as usual). */
  setTool(tool: MapTool | null): void {
    const map = this.#map;
    if (this.#tool === 'polygon' && tool !== 'polygon') this.cancelDrawing(false);
    this.#tool = tool;
    this.#catcher?.remove();
    this.#catcher = null;
    this.#drawPicks();
    map?.getContainer().classList.toggle('bc-picking', tool !== null);
    if (!map || (tool !== 'grids' && tool !== 'radius' && tool !== 'polygon')) return;
    // Under everything else of this layer: added first, then the rest is put back on top.
    const catcher = L.rectangle(
      [
        [-85, -180],
        [85, 180],
      ],
      { ...this.#path(), stroke: false, fill: true, fillOpacity: 0, interactive: true, bubblingMouseEvents: false, className: `bc-catcher bc-catcher-${tool}` },
    );
    catcher.on('click', (e: L.LeafletMouseEvent) => this.#onCatcherClick(e));
    catcher.on('dblclick', (e: L.LeafletMouseEvent) => {
      L.DomEvent.stop(e.originalEvent);
      if (this.#tool === 'polygon') this.finishDrawing();
    });
    this.#catcher = catcher;
    this.#root.addLayer(catcher);
    catcher.bringToBack();
  }

  /** The poles a `poles` tool offers, and which of them are picked. */
  setPickable(poles: PickablePole[], picked: ReadonlySet<string>): void {
    this.#pickable = poles;
    this.#pickedIds = new Set(picked);
    this.#drawPicks();
  }

  #drawPicks(): void {
    this.#picks.clearLayers();
    if (this.#tool !== 'poles' || !this.#map) return;
    for (const pole of this.#pickable) {
      const picked = this.#pickedIds.has(pole.id);
      const ring = L.circleMarker(this.#at(pole.lat, pole.lon), {
        ...this.#path(),
        radius: 9,
        color: picked ? SELECT_COLOR : '#c792ea',
        weight: picked ? 3 : 1.5,
        opacity: picked ? 1 : 0.7,
        fill: true,
        fillColor: picked ? SELECT_COLOR : '#c792ea',
        fillOpacity: picked ? 0.25 : 0.05,
        interactive: true,
        bubblingMouseEvents: false,
        className: `bc-pick${picked ? ' bc-picked' : ''}`,
      });
      ring.on('click', () => this.#opts.onPole(pole.id));
      this.#picks.addLayer(ring);
    }
  }

  #onCatcherClick(e: L.LeafletMouseEvent): void {
    const tool = this.#tool;
    if (tool === 'grids' || tool === 'radius') {
      this.#opts.onPoint(tool, unprojectWith(this.#opts.project, e.latlng.lat, e.latlng.lng));
      return;
    }
    if (tool !== 'polygon' || !this.#map) return;
    const map = this.#map;
    const last = this.#vertices.at(-1);
    if (last && map.latLngToContainerPoint(last).distanceTo(e.containerPoint) < SAME_VERTEX_PX) return;
    // A click on the first vertex closes the ring.
    const first = this.#vertices[0];
    if (first && this.#vertices.length >= 3 && map.latLngToContainerPoint(first).distanceTo(e.containerPoint) < SAME_VERTEX_PX * 2) {
      this.finishDrawing();
      return;
    }
    if (this.#vertices.length === 0) {
      document.addEventListener('keydown', this.#onKey, true);
      map.on('mousemove', this.#onMove);
      this.#shapes.clearLayers();
    }
    this.#vertices.push(e.latlng);
    this.#drawDraft();
    this.#opts.onDrawing(this.#vertices.length);
  }

  /** Ends the polygon being drawn (the “完成” button, a double-click, a click on the first vertex). */
  finishDrawing(): void {
    if (this.#vertices.length < 3) return;
    const ring: Ring = this.#vertices.map((v) => {
      const w = unprojectWith(this.#opts.project, v.lat, v.lng);
      return [w.lon, w.lat];
    });
    this.#stopDrawing();
    this.#opts.onPolygon(ring);
  }

  /** Esc, or the tool was switched: the vertices are dropped. */
  cancelDrawing(report = true): void {
    const was = this.#vertices.length;
    this.#stopDrawing();
    if (was > 0 && report) this.#opts.onPolygon(null);
  }

  #stopDrawing(): void {
    this.#vertices = [];
    this.#rubber = null;
    this.#draft.clearLayers();
    document.removeEventListener('keydown', this.#onKey, true);
    this.#map?.off('mousemove', this.#onMove);
    this.#opts.onDrawing(0);
  }

  #drawDraft(): void {
    this.#draft.clearLayers();
    this.#rubber = null;
    if (this.#vertices.length === 0) return;
    this.#draft.addLayer(L.polyline(this.#vertices, { ...this.#path(), color: SELECT_COLOR, weight: 2, interactive: false, className: 'bc-draft' }));
    for (const v of this.#vertices) {
      this.#draft.addLayer(L.circleMarker(v, { ...this.#path(), radius: 4, color: SELECT_COLOR, weight: 2, fillColor: '#0a131a', fillOpacity: 1, interactive: false, className: 'bc-vertex' }));
    }
  }

  #drawRubber(to: L.LatLng): void {
    const last = this.#vertices.at(-1);
    const first = this.#vertices[0];
    if (!last || !first) return;
    const points = this.#vertices.length >= 2 ? [last, to, first] : [last, to];
    if (this.#rubber) this.#rubber.setLatLngs(points);
    else {
      this.#rubber = L.polyline(points, { ...this.#path(), color: SELECT_COLOR, weight: 1.5, opacity: 0.7, dashArray: '4 4', interactive: false });
      this.#draft.addLayer(this.#rubber);
    }
  }

  // ---- what is shown --------------------------------------------------------------------------------

  /** The selection: its shape and the poles it resolved to (offline ones dashed red). */
  showSelection(shape: SelectionShape, poles: readonly ResolvedPole[]): void {
    this.#shapes.clearLayers();
    this.#selected.clearLayers();
    if (!this.#map) return;
    if (shape.kind === 'circle') {
      this.#shapes.addLayer(L.circle(this.#at(shape.center.lat, shape.center.lon), { ...this.#path(), ...SHAPE_STYLE, radius: shape.radiusM, className: 'bc-shape bc-shape-circle' }));
      this.#shapes.addLayer(L.circleMarker(this.#at(shape.center.lat, shape.center.lon), { ...this.#path(), radius: 3, color: SELECT_COLOR, fillOpacity: 1, interactive: false }));
    } else if (shape.kind === 'polygon') {
      this.#shapes.addLayer(L.polygon(this.#ringLatLngs(shape.ring), { ...this.#path(), ...SHAPE_STYLE, className: 'bc-shape bc-shape-polygon' }));
    } else if (shape.kind === 'areas') {
      for (const ring of shape.rings) this.#shapes.addLayer(L.polygon(this.#ringLatLngs(ring), { ...this.#path(), ...SHAPE_STYLE, dashArray: '', className: 'bc-shape bc-shape-area' }));
    }
    for (const p of poles) {
      this.#selected.addLayer(
        L.circleMarker(this.#at(p.lat, p.lon), {
          ...this.#path(),
          radius: 8,
          color: p.status === 'offline' ? '#ff4d4f' : SELECT_COLOR,
          weight: 2.5,
          dashArray: p.status === 'offline' ? '3 3' : '',
          fill: false,
          interactive: false,
          className: `bc-selected bc-selected-${p.status}`,
        }),
      );
    }
  }

  /** A job's poles by delivery state (null: none shown). */
  showDeliveries(points: ReadonlyArray<{ id: string; lat: number; lon: number; state: DeliveryState }> | null): void {
    this.#deliveries.clearLayers();
    this.#deliveryMarkers.clear();
    if (!points || !this.#map) return;
    for (const p of points) {
      const marker = L.circleMarker(this.#at(p.lat, p.lon), {
        ...this.#path(),
        ...deliveryStyle(p.state),
        radius: 9,
        weight: 3,
        fill: true,
        fillOpacity: 0.35,
        interactive: false,
        className: `bc-delivery-marker bc-state-${p.state}`,
      });
      this.#deliveries.addLayer(marker);
      this.#deliveryMarkers.set(p.id, { marker, state: p.state });
    }
  }

  /** One pole of the shown job changed state: restyled in place (a 10,000-pole job is not redrawn per message). */
  updateDelivery(id: string, state: DeliveryState): void {
    const known = this.#deliveryMarkers.get(id);
    if (!known || known.state === state) return;
    known.marker.setStyle(deliveryStyle(state));
    const el = known.marker.getElement();
    el?.classList.remove(`bc-state-${known.state}`);
    el?.classList.add(`bc-state-${state}`);
    known.state = state;
  }

  /** Pans and zooms so `points` (WGS-84) are in view. */
  fit(points: readonly LatLon[], maxZoom = 15): void {
    if (!this.#map || points.length === 0) return;
    const bounds = L.latLngBounds(points.map((p) => this.#at(p.lat, p.lon)));
    this.#map.fitBounds(bounds.pad(0.1), { maxZoom, animate: false });
  }

  /** Pans and zooms to a circle (WGS-84 centre, metres). */
  fitCircle(center: LatLon, radiusM: number): void {
    if (!this.#map) return;
    const dLat = radiusM / 111_320;
    const dLon = radiusM / (111_320 * Math.max(0.01, Math.cos((center.lat * Math.PI) / 180)));
    this.fit(
      [
        { lat: center.lat - dLat, lon: center.lon - dLon },
        { lat: center.lat + dLat, lon: center.lon + dLon },
      ],
      16,
    );
  }

  /** Takes everything off the map and forgets it (sign-out). */
  clear(): void {
    this.setTool(null);
    this.#pickable = [];
    this.#pickedIds.clear();
    for (const g of this.#groups()) g.clearLayers();
    this.#deliveryMarkers.clear();
  }

  #path(): { renderer?: L.Renderer; pane: string } {
    return this.#renderer ? { renderer: this.#renderer, pane: PANE } : { pane: PANE };
  }

  #at(lat: number, lon: number): L.LatLngExpression {
    return this.#opts.project(lat, lon);
  }

  #ringLatLngs(ring: Ring): L.LatLngExpression[] {
    return ring.map(([lon, lat]) => this.#at(lat, lon));
  }
}
