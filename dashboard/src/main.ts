/**
 * Dashboard bootstrap: load the site, draw the map, then keep device state live from `/ws`.
 * Update batches are applied once per animation frame, so a burst of messages costs one redraw.
 */
import type { DeviceUpdate, DeviceView, ServerMessage } from '../../protocol/ws.js';
import { LiveSocket, defaultWsUrl, fetchDevices, fetchSite, type SiteInfo } from './api.js';
import { DeviceStore, mergeUpdates } from './devices.js';
import { I18n, rememberedLang } from './i18n.js';
import { DeviceMap, gridNames } from './map.js';
import { Panel } from './panel.js';

/** Hooks for browser tests (test/e2e): open a card without clicking canvas pixels. */
export interface GreenShieldTestHooks {
  selectDevice(id: string): void;
  deviceCount(): number;
}

declare global {
  interface Window {
    __gs?: GreenShieldTestHooks;
  }
}

function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html is missing #${id}`);
  return el;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Dashboard {
  readonly #i18n = new I18n(rememberedLang());
  readonly #store = new DeviceStore();
  readonly #panel: Panel;
  readonly #loadStatus = byId('load-status');
  #map: DeviceMap | null = null;
  #site: SiteInfo | null = null;
  #selectedId: string | null = null;
  /** Coalesced per device until the next frame; bounded by the fleet size even in a hidden tab. */
  readonly #pending = new Map<string, DeviceUpdate>();
  #frame = 0;
  #snapshotSeen = false;

  constructor() {
    this.#panel = new Panel({
      elements: {
        panel: byId('panel'),
        connState: byId('conn-state'),
        storageBanner: byId('storage-banner'),
        siteName: byId('site-name'),
        langSwitch: byId('lang-switch'),
      },
      i18n: this.#i18n,
      store: this.#store,
      onSelect: (id) => this.select(id),
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.#selectedId !== null) this.select(null);
    });
  }

  async start(): Promise<void> {
    // Both requests go out at once; devices are drawn from REST first so the map is useful even
    // before (or without) the WebSocket.
    const devices = fetchDevices().catch((err: unknown) => {
      console.warn('GET /api/devices failed; waiting for the /ws snapshot', err);
      return null;
    });
    const site = await this.#loadSite();
    this.#site = site;
    this.#panel.setSite(site.name, gridNames(site));
    this.#map = new DeviceMap({
      container: byId('map'),
      site,
      i18n: this.#i18n,
      lookup: (id) => this.#store.get(id),
      onSelect: (id) => this.select(id),
    });
    // The storage banner appears above the map and changes its height.
    new ResizeObserver(() => this.#map?.invalidateSize()).observe(byId('map'));

    new LiveSocket({
      url: defaultWsUrl(),
      onState: (state, attempt) => this.#panel.setConnState(state, attempt),
      onMessage: (msg) => this.#onMessage(msg),
    }).start();

    const initial = await devices;
    if (initial && !this.#snapshotSeen) this.#replaceDevices(initial);

    window.__gs = {
      selectDevice: (id: string) => this.select(id),
      deviceCount: () => this.#store.size,
    };
  }

  select(id: string | null): void {
    this.#selectedId = id;
    this.#panel.showDevice(id);
    this.#map?.select(id);
  }

  /** Retries until the gateway answers: the dashboard is often open before the gateway is up. */
  async #loadSite(): Promise<SiteInfo> {
    for (let attempt = 0; ; attempt++) {
      this.#showLoadStatus(this.#i18n.t('load.loading'));
      try {
        const site = await fetchSite();
        this.#showLoadStatus(null);
        return site;
      } catch (err) {
        const seconds = Math.min(30, 2 ** Math.min(attempt, 5));
        const message = err instanceof Error ? err.message : String(err);
        this.#showLoadStatus(this.#i18n.t('load.failed', { message, seconds }), true);
        await sleep(seconds * 1000);
      }
    }
  }

  #showLoadStatus(text: string | null, isError = false): void {
    this.#loadStatus.hidden = text === null;
    this.#loadStatus.textContent = text ?? '';
    this.#loadStatus.classList.toggle('error', isError);
  }

  #onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'hello':
        if (this.#site && msg.site !== this.#site.id) {
          console.warn(`/ws reports site ${msg.site}, page loaded site ${this.#site.id}`);
        }
        this.#panel.setStorage(msg.storage);
        break;
      case 'devices.snapshot':
        this.#snapshotSeen = true;
        // Updates queued before the snapshot are older than it.
        this.#pending.clear();
        this.#replaceDevices(msg.devices);
        break;
      case 'devices.update':
        for (const u of msg.updates) {
          const queued = this.#pending.get(u.id);
          this.#pending.set(u.id, queued ? mergeUpdates(queued, u) : u);
        }
        if (this.#frame === 0 && this.#pending.size > 0) this.#frame = requestAnimationFrame(() => this.#flush());
        break;
      case 'storage':
        this.#panel.setStorage(msg.storage);
        break;
    }
  }

  #replaceDevices(devices: DeviceView[]): void {
    this.#store.replaceAll(devices);
    this.#map?.setDevices(this.#store.all());
    this.#panel.devicesChanged('all');
  }

  #flush(): void {
    this.#frame = 0;
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    const changed = this.#store.applyUpdates(batch);
    if (changed.length === 0) return;
    this.#map?.updateDevices(changed);
    this.#panel.devicesChanged(changed);
  }
}

new Dashboard().start().catch((err: unknown) => {
  console.error('dashboard failed to start', err);
});
