/**
 * Test-only page for test/e2e/broadcast-console.test.ts: signs in (cookie), opens `/ws`, draws the
 * real site map (DeviceMap with the live devices) and mounts the BroadcastConsole beside it, wired
 * the way the app will wire it. Bundled by the test with esbuild; not part of the dashboard.
 *
 * `window.__bc` lets the test find map pixels and read what the page saw; a MutationObserver
 * records every state each delivery row showed, and every n of m, so the test can tell live
 * progress from a page that was only right at the end.
 */
import type { Incident } from '../../../protocol/incidents.js';
import type { DeviceView } from '../../../protocol/ws.js';
import { fetchSite, frameText, login, parseServerMessage } from '../../../dashboard/src/api.js';
import { BroadcastConsole, parseBroadcastMessage } from '../../../dashboard/src/broadcast-console.js';
import { DeviceStore } from '../../../dashboard/src/devices.js';
import { I18n } from '../../../dashboard/src/i18n.js';
import { DeviceMap } from '../../../dashboard/src/map.js';

export interface HarnessState {
  ready: boolean;
  role: string;
  /** Broadcast messages the console took, by type. */
  messages: Record<string, number>;
  /** Every state each delivery row showed, in order, per job and pole. */
  rowStates: Record<string, Record<string, string[]>>;
  /** Every n shown in the open job's "n/m", per job. */
  progress: Record<string, number[]>;
  /** Page pixel of a WGS-84 position on the map. */
  pixel(lat: number, lon: number): { x: number; y: number };
  /** WGS-84 at a page pixel (the harness map draws WGS-84 as is: no tiles, no GCJ-02). */
  at(x: number, y: number): { lat: number; lon: number };
  fit(points: Array<{ lat: number; lon: number }>, padPx: number): void;
  /** What the incident card's "warn nearby poles" will call. */
  prefill(incident: Incident): void;
}

declare global {
  interface Window {
    __bc: HarnessState;
    startHarness(username: string, password: string): Promise<void>;
  }
}

window.startHarness = async (username: string, password: string) => {
  const { user } = await login(username, password);
  const i18n = new I18n(new URLSearchParams(location.search).get('lang') === 'en' ? 'en' : 'zh-CN');
  const store = new DeviceStore();
  const site = await fetchSite();
  const mapEl = document.getElementById('map')!;
  const map = new DeviceMap({ container: mapEl, site, i18n, lookup: (id) => store.get(id), band: (d) => store.band(d), onSelect: () => undefined });
  const project = (lat: number, lon: number): [number, number] => [lat, lon];
  const poles = (): DeviceView[] => [...store.all()].filter((d) => d.kind === 'voice_pole');
  const bc = new BroadcastConsole({ root: document.getElementById('console')!, i18n, role: () => user.role, map: () => map.leaflet, project, poles });

  const state: HarnessState = {
    ready: false,
    role: user.role,
    messages: {},
    rowStates: {},
    progress: {},
    pixel(lat, lon) {
      const p = map.leaflet.latLngToContainerPoint(project(lat, lon));
      const r = mapEl.getBoundingClientRect();
      return { x: r.left + p.x, y: r.top + p.y };
    },
    at(x, y) {
      const r = mapEl.getBoundingClientRect();
      const ll = map.leaflet.containerPointToLatLng([x - r.left, y - r.top]);
      return { lat: ll.lat, lon: ll.lng };
    },
    prefill(incident) {
      bc.prefillFromIncident(incident);
    },
    fit(points, padPx) {
      map.leaflet.fitBounds(
        points.map((p) => project(p.lat, p.lon)),
        { padding: [padPx, padPx], animate: false, maxZoom: 16 },
      );
    },
  };
  window.__bc = state;

  new MutationObserver(() => {
    const detail = document.querySelector<HTMLElement>('[data-testid="bc-detail"]');
    const job = detail?.dataset.job;
    if (!detail || !job || detail.hidden) return;
    const rows = (state.rowStates[job] ??= {});
    for (const row of detail.querySelectorAll<HTMLElement>('[data-testid="bc-delivery"]')) {
      const pole = row.dataset.pole;
      const s = row.dataset.state;
      if (!pole || !s) continue;
      const seen = (rows[pole] ??= []);
      if (seen.at(-1) !== s) seen.push(s);
    }
    const n = detail.querySelector<HTMLElement>('[data-testid="bc-job-progress"]')?.dataset.done;
    const shown = (state.progress[job] ??= []);
    if (n !== undefined && shown.at(-1) !== Number(n)) shown.push(Number(n));
  }).observe(document.getElementById('console')!, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state', 'data-done', 'data-job'] });

  let snapshot = false;
  await new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
    ws.onerror = () => reject(new Error('/ws failed'));
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (event) => {
      const text = frameText(event.data)!;
      const raw = JSON.parse(text) as Record<string, unknown>;
      // What api.ts will do once it chains parseBroadcastMessage.
      const broadcast = parseBroadcastMessage(raw);
      if (broadcast) {
        state.messages[broadcast.type] = (state.messages[broadcast.type] ?? 0) + 1;
        if (!bc.handle(broadcast)) throw new Error(`console refused ${broadcast.type}`);
        return;
      }
      const msg = parseServerMessage(text);
      if (msg?.type === 'devices.snapshot') {
        store.replaceAll(msg.devices);
        map.setDevices(store.all());
        snapshot = true;
        resolve();
      } else if (msg?.type === 'devices.update') {
        map.updateDevices(store.applyUpdates(msg.updates));
      }
    };
  });
  if (!snapshot) throw new Error('no device snapshot');
  bc.show();
  state.ready = true;
};
