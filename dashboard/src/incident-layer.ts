/**
 * Incidents on the map: a pulsing marker where each open incident is; for a fire fixed from
 * several cameras, its uncertainty circle and the cameras' bearing lines; for a fire seen by one
 * camera so far, the dashed bearing line along which it must be. Plain Leaflet vectors (open
 * incidents are hundreds at most, not the 50,000 device markers), redrawn only when what they show
 * changed and at most 4 times a second: each change repaints Leaflet's map-sized SVG, in software here.
 * The pulse of a new incident is a ring in a pane that fades as a whole (compositor-only), not an
 * animated SVG stroke (a repaint of that SVG on every frame).
 */
import * as L from 'leaflet';
import type { Incident } from '../../protocol/incidents.js';
import { FrameThrottle } from './dom.js';
import { incidentPoint, isOpenIncident, type IncidentFeed } from './incident-feed.js';

const PULSE_PANE = 'gs-incident-pulse';
/**
 * The incident vectors' own pane and SVG, apart from the site's boundaries (the overlay pane's
 * SVG, hundreds of long outlines): an incident opening or closing then re-rasterises its own
 * small shapes, not the outlines under it.
 */
const VECTOR_PANE = 'gs-incidents';
const COLORS = { critical: '#ff3b30', warning: '#ffb020', info: '#8fb3d9' } as const;

export interface IncidentLayerOptions {
  map: L.Map;
  feed: IncidentFeed;
  /** WGS-84 → what the map draws in (GCJ-02 for Chinese tile providers), as [lat, lon]. */
  project: (lat: number, lon: number) => [number, number];
  onSelect: (incident: Incident) => void;
}

export class IncidentLayer {
  readonly #opts: IncidentLayerOptions;
  readonly #group = L.layerGroup();
  readonly #renderer: L.Renderer;
  readonly #pulseRenderer: L.Renderer;
  readonly #drawn = new Map<string, Drawn>();
  /** Incidents changed since the last frame (the latest state of each). */
  readonly #pending = new Map<string, Incident>();
  /** At a frame, at most 4 times a second: incidents come in bursts when many tanks run low. */
  readonly #drawSoon = new FrameThrottle(() => this.#drawPending(), 250);
  #focused: string | null = null;

  constructor(opts: IncidentLayerOptions) {
    this.#opts = opts;
    // Every pulse ring in one pane whose opacity is the one animation (incidents.css), however many
    // incidents pulse: one composited layer that fades, nothing repainted per frame. Above the
    // device markers (450), so a ring shows where an incident sits under them.
    if (!opts.map.getPane(PULSE_PANE)) opts.map.createPane(PULSE_PANE).style.zIndex = '455';
    // Where they were in the overlay pane (400): over the boundaries, under the device markers (450).
    if (!opts.map.getPane(VECTOR_PANE)) opts.map.createPane(VECTOR_PANE).style.zIndex = '420';
    this.#renderer = L.svg({ pane: VECTOR_PANE });
    this.#pulseRenderer = L.svg({ pane: PULSE_PANE });
    this.#group.addTo(opts.map);
    opts.feed.onChange((e) => {
      if (e.kind === 'incident') {
        this.#pending.set(e.incident.id, e.incident);
        this.#drawSoon.request();
      }
      if (e.kind === 'snapshot') this.redraw();
    });
    this.redraw();
  }

  redraw(): void {
    this.#pending.clear();
    for (const id of Array.from(this.#drawn.keys())) this.#remove(id);
    for (const i of this.#opts.feed.open()) this.#draw(i);
  }

  /** Pans to an incident and shows its geometry (also for one that was closed meanwhile). */
  focus(given: Incident): void {
    // The caller's copy can be older than the feed's (the inbox redraws at most 4 times a second):
    // draw the latest, or a fix that came in meanwhile would be dropped with the pending redraw.
    const latest = this.#opts.feed.incidents.get(given.id);
    const incident = latest && latest.updatedAt >= given.updatedAt ? latest : given;
    this.#focused = incident.id;
    this.#pending.delete(incident.id);
    this.#draw(incident, true);
    const layers = this.#drawn.get(incident.id)?.layers ?? [];
    const bounds = L.latLngBounds([]);
    for (const l of layers) {
      if (l instanceof L.Polyline || l instanceof L.Circle) bounds.extend(l.getBounds());
      else if (l instanceof L.CircleMarker) bounds.extend(l.getLatLng());
    }
    if (bounds.isValid()) this.#opts.map.flyToBounds(bounds.pad(0.3), { maxZoom: 15, duration: 0.6 });
  }

  #drawPending(): void {
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    for (const i of batch) this.#draw(i);
  }

  #remove(id: string): void {
    for (const l of this.#drawn.get(id)?.layers ?? []) this.#group.removeLayer(l);
    this.#drawn.delete(id);
  }

  #draw(i: Incident, force = false): void {
    const shown = isOpenIncident(i) || force || this.#focused === i.id;
    const p = shown ? incidentPoint(i) : null;
    if (!p) {
      this.#remove(i.id);
      return;
    }
    const pulse = isOpenIncident(i) && (i.status === 'new' || i.status === 'dispatched');
    // What the drawing depends on; the rest of an update (levels, timeline) leaves it as it is.
    const key = JSON.stringify([i.severity, i.category, pulse, i.location, i.cameras.map((c) => [c.lat, c.lon, c.bearingDeg])]);
    const drawn = this.#drawn.get(i.id);
    if (drawn && drawn.key === key) {
      drawn.incident = i;
      if (drawn.tip.textContent !== i.title) drawn.tip.textContent = i.title;
      return;
    }
    this.#remove(i.id);
    const { project } = this.#opts;
    const renderer = this.#renderer;
    const color = COLORS[i.severity];
    const layers: L.Layer[] = [];
    // An element, not a string: Leaflet would parse a string as HTML, and titles carry device names.
    const tip = document.createElement('span');
    tip.textContent = i.title;
    const entry: Drawn = { key, incident: i, layers, tip };
    const loc = i.location!;
    if (loc.method === 'triangulated') {
      layers.push(L.circle(project(loc.lat, loc.lon), { radius: Math.max(loc.uncertaintyM, 30), color, weight: 1, fillOpacity: 0.12, interactive: false, renderer }));
      for (const c of i.cameras) {
        if (c.bearingDeg === null) continue;
        layers.push(L.polyline([project(c.lat, c.lon), project(loc.lat, loc.lon)], { color, weight: 1.5, opacity: 0.7, dashArray: '2 6', interactive: false, renderer }));
      }
    } else if (loc.method === 'bearing_line') {
      layers.push(L.polyline([project(loc.from.lat, loc.from.lon), project(loc.to.lat, loc.to.lon)], { color, weight: 3, opacity: 0.85, dashArray: '8 8', interactive: false, renderer }));
    }
    const radius = i.category === 'fire' ? 11 : 8;
    const at = project(p.lat, p.lon);
    const marker = L.circleMarker(at, {
      radius,
      color: '#fff',
      weight: 2,
      fillColor: color,
      fillOpacity: 0.95,
      className: `incident-marker${pulse ? ' pulse' : ''}`,
      renderer,
    });
    marker.bindTooltip(tip, { direction: 'top', offset: [0, -10] });
    marker.on('click', () => this.#opts.onSelect(entry.incident));
    if (pulse) {
      // A circle in the pulse pane's one SVG, not a marker element: Leaflet places each marker
      // with a 3D transform, which made every ring a composited layer of its own and the fading
      // pane a map-sized offscreen pass, redrawn by the (software) compositor at every step.
      layers.push(L.circleMarker(at, { radius: radius + 4.5, color, weight: 3, opacity: 1, fill: false, interactive: false, className: 'incident-pulse', renderer: this.#pulseRenderer }));
    }
    layers.push(marker);
    for (const l of layers) this.#group.addLayer(l);
    this.#drawn.set(i.id, entry);
  }
}

interface Drawn {
  /** What the layers were drawn from (severity, place, pulse, cameras); the title is only text. */
  key: string;
  /** The latest state, for a click. */
  incident: Incident;
  layers: L.Layer[];
  /** The marker's tooltip, updated in place. */
  tip: HTMLElement;
}
