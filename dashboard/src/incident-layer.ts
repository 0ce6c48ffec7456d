/**
 * Incidents on the map: a pulsing marker where each open incident is; for a fire fixed from
 * several cameras, its uncertainty circle and the cameras' bearing lines; for a fire seen by one
 * camera so far, the dashed bearing line along which it must be. Few objects (open incidents are
 * few), so plain Leaflet vectors are fine here, unlike the 50,000 device markers.
 */
import * as L from 'leaflet';
import type { Incident } from '../../protocol/incidents.js';
import { incidentPoint, isOpenIncident, type IncidentFeed } from './incident-feed.js';

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
  readonly #drawn = new Map<string, L.Layer[]>();
  #focused: string | null = null;

  constructor(opts: IncidentLayerOptions) {
    this.#opts = opts;
    this.#group.addTo(opts.map);
    opts.feed.onChange((e) => {
      if (e.kind === 'incident') this.#draw(e.incident);
      if (e.kind === 'snapshot') this.redraw();
    });
    this.redraw();
  }

  redraw(): void {
    for (const id of Array.from(this.#drawn.keys())) this.#remove(id);
    for (const i of this.#opts.feed.open()) this.#draw(i);
  }

  /** Pans to an incident and shows its geometry (also for one that was closed meanwhile). */
  focus(incident: Incident): void {
    this.#focused = incident.id;
    this.#draw(incident, true);
    const layers = this.#drawn.get(incident.id) ?? [];
    const bounds = L.latLngBounds([]);
    for (const l of layers) {
      if (l instanceof L.Polyline || l instanceof L.Circle) bounds.extend(l.getBounds());
      else if (l instanceof L.CircleMarker) bounds.extend(l.getLatLng());
    }
    if (bounds.isValid()) this.#opts.map.flyToBounds(bounds.pad(0.3), { maxZoom: 15, duration: 0.6 });
  }

  #remove(id: string): void {
    for (const l of this.#drawn.get(id) ?? []) this.#group.removeLayer(l);
    this.#drawn.delete(id);
  }

  #draw(i: Incident, force = false): void {
    this.#remove(i.id);
    if (!isOpenIncident(i) && !force && this.#focused !== i.id) return;
    const p = incidentPoint(i);
    if (!p) return;
    const { project } = this.#opts;
    const color = COLORS[i.severity];
    const layers: L.Layer[] = [];
    const loc = i.location!;
    if (loc.method === 'triangulated') {
      layers.push(L.circle(project(loc.lat, loc.lon), { radius: Math.max(loc.uncertaintyM, 30), color, weight: 1, fillOpacity: 0.12, interactive: false }));
      for (const c of i.cameras) {
        if (c.bearingDeg === null) continue;
        layers.push(L.polyline([project(c.lat, c.lon), project(loc.lat, loc.lon)], { color, weight: 1.5, opacity: 0.7, dashArray: '2 6', interactive: false }));
      }
    } else if (loc.method === 'bearing_line') {
      layers.push(L.polyline([project(loc.from.lat, loc.from.lon), project(loc.to.lat, loc.to.lon)], { color, weight: 3, opacity: 0.85, dashArray: '8 8', interactive: false }));
    }
    const marker = L.circleMarker(project(p.lat, p.lon), {
      radius: i.category === 'fire' ? 11 : 8,
      color: '#fff',
      weight: 2,
      fillColor: color,
      fillOpacity: 0.95,
      className: `incident-marker${isOpenIncident(i) && (i.status === 'new' || i.status === 'dispatched') ? ' pulse' : ''}`,
    });
    // An element, not a string: Leaflet would parse a string as HTML, and titles carry device names.
    const tip = document.createElement('span');
    tip.textContent = i.title;
    marker.bindTooltip(tip, { direction: 'top', offset: [0, -10] });
    marker.on('click', () => this.#opts.onSelect(i));
    layers.push(marker);
    for (const l of layers) this.#group.addLayer(l);
    this.#drawn.set(i.id, layers);
  }
}
