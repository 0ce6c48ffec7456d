/**
 * Dashboard bootstrap. Nothing but the sign-in screen shows until the gateway accepts a session
 * (`/api/auth/me` on load, or the sign-in form). On load, boot.ts has already asked for the
 * session, the site, the tank thresholds and the live feed (`/ws`, in its worker) before this
 * bundle runs, and the app takes those over (early.ts). Update batches are applied once per
 * animation frame, so a burst of messages costs one redraw. Any 401 later, from the API or as a refused WebSocket
 * upgrade, means the session ended: the page goes back to the sign-in screen and says so.
 *
 * Views (`#/map`, `#/overview`, `#/users`, `#/audit`) are listed in `VIEW_MIN_ROLE` below; the
 * comment there says how to add one.
 */
import type * as L from 'leaflet';
import type { DeviceUpdate, DeviceView } from '../../protocol/ws.js';
import {
  ApiError,
  LiveSocket,
  beginSessionEpoch,
  currentSessionEpoch,
  defaultWsUrl,
  fetchDevices,
  fetchMe,
  fetchSite,
  logout,
  onUnauthenticated,
  type ConnState,
  type LiveMessage,
  type SiteInfo,
  type User,
} from './api.js';
import { AuditView } from './audit.js';
import { takeEarlyStart, type EarlyStart, type JsonAnswer } from './early.js';
import { DeviceStore, mergeUpdates } from './devices.js';
import { byId, h } from './dom.js';
import { describeError } from './errors.js';
import { I18n, LANGS, rememberedLang } from './i18n.js';
import { DEVICES_DRAWN_EVENT } from './device-layer.js';
import { DeviceMap, gridNames, siteGrids, type DeviceFilter, type LayerStats } from './map.js';
import { MapTools } from './map-tools.js';
import { OverviewFeed, OverviewView, type BroadcastsInProgress, type FireDangerToday, type OpenIncidentCounts, type OverviewSources } from './overview.js';
import { Panel } from './panel.js';
import { RoleGate, can, type Role } from './roles.js';
import { SignInView, type SignInNotice } from './signin.js';
import { UsersView } from './users.js';
import { BroadcastConsole } from './broadcast-console.js';
import { wgs84ToGcj02 } from './geo/gcj02.js';
import { FireDangerBadge, InboxView } from './inbox.js';
import { IncidentFeed } from './incident-feed.js';
import { IncidentLayer } from './incident-layer.js';
import { PhoneView } from './phone.js';
import { VideoWall } from './video-wall.js';

/** Hooks for browser tests (test/e2e) and bench/map.ts: no clicking canvas pixels blind. */
export interface GreenShieldTestHooks {
  selectDevice(id: string): void;
  deviceCount(): number;
  /** Drops the live WebSocket as a network fault would (it reconnects, if the session allows). */
  dropLiveSocket(): void;
  /** The device layer's figures (null before the map exists). */
  mapStats(): LayerStats | null;
  /** Container pixel of a device on the map, to hover or click it. */
  devicePoint(id: string): { x: number; y: number } | null;
  /** What a click at a container pixel would select. */
  deviceAt(x: number, y: number): string | null;
  mapView(): { lat: number; lng: number; zoom: number } | null;
  /** Shows the whole site, as on load. */
  fitSite(): void;
  /** What the live feed delivered: snapshots (each redraws everything), update messages, updates. */
  feedStats(): { snapshots: number; updateMessages: number; updates: number; flushes: number };
  /** How often the incident alarm sounded (headless Chromium has no speakers to listen to). */
  incidentSounds?(): number;
  /** Plugs fixed values into the overview's sources, as the incident and broadcast views will. */
  plugOverview?(values: { incidents?: OpenIncidentCounts; fireDanger?: FireDangerToday; broadcasts?: BroadcastsInProgress }): void;
}

declare global {
  interface Window {
    __gs?: GreenShieldTestHooks;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Without a `/ws` snapshot by then, the devices are fetched over REST. */
const REST_FALLBACK_MS = 8000;

// ---- the map and its live feed ------------------------------------------------------------------

/** What the dashboard tells views that show device data (the overview). */
export interface DeviceFeedListener {
  devicesChanged(): void;
  connChanged(): void;
}

class Dashboard {
  readonly #i18n: I18n;
  readonly #store = new DeviceStore();
  readonly #panel: Panel;
  readonly #tools: MapTools;
  readonly #loadStatus = byId('load-status');
  readonly #mapEl = byId('map');
  readonly #onRefused: () => void;
  readonly #listeners = new Set<DeviceFeedListener>();
  #map: DeviceMap | null = null;
  /** The map was made while hidden (another view was open); fit the site once it has a size. */
  #needsFit = false;
  #site: SiteInfo | null = null;
  #selectedId: string | null = null;
  #socket: LiveSocket | null = null;
  #conn: ConnState = 'connecting';
  #active = false;
  /** Bumped on every activate/deactivate, so work of an earlier session drops its results. */
  #generation = 0;
  /** Coalesced per device until the next frame; bounded by the fleet size even in a hidden tab. */
  readonly #pending = new Map<string, DeviceUpdate>();
  #frame = 0;
  #snapshotSeen = false;
  #filter: DeviceFilter | null = null;
  readonly #feedStats = { snapshots: 0, updateMessages: 0, updates: 0, flushes: 0 };
  /** Views fed by the live feed's other messages (incidents, broadcasts); each says if it took one. */
  readonly #messageHandlers: Array<(msg: LiveMessage) => boolean> = [];
  readonly #mapReady = new Set<(map: DeviceMap, site: SiteInfo) => void>();
  /** What boot.ts started before the app ran (site, tanks, socket): used by the first activation only. */
  #early: Omit<EarlyStart, 'me'> | null = null;

  constructor(i18n: I18n, opts: { onRefused: () => void; role: () => Role | null }) {
    this.#i18n = i18n;
    this.#onRefused = opts.onRefused;
    this.#panel = new Panel({
      elements: {
        panel: byId('panel'),
        connState: byId('conn-state'),
        storageBanner: byId('storage-banner'),
        siteName: byId('site-name'),
      },
      i18n: this.#i18n,
      store: this.#store,
      onSelect: (id) => this.select(id),
      role: () => opts.role(),
    });
    this.#tools = new MapTools({
      root: byId('map-tools'),
      i18n: this.#i18n,
      store: this.#store,
      onFilter: (filter) => {
        this.#filter = filter;
        this.#map?.setFilter(filter, this.#store.all());
        this.#showCounts();
      },
      onPick: (id) => {
        this.select(id);
        this.#map?.flyTo(id);
      },
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.#selectedId !== null) this.select(null);
    });
    // The storage banner appears above the map and changes its height; the map view is hidden
    // while another view is open.
    new ResizeObserver(() => {
      if (!this.#map) return;
      this.#map.invalidateSize();
      if (this.#needsFit && this.#mapEl.clientWidth > 0) {
        this.#needsFit = false;
        this.#map.fitSite();
      }
    }).observe(this.#mapEl);
    window.__gs = {
      selectDevice: (id: string) => this.select(id),
      deviceCount: () => this.#store.size,
      dropLiveSocket: () => this.#socket?.drop(),
      mapStats: () => this.#map?.stats ?? null,
      devicePoint: (id: string) => this.#map?.devicePoint(id) ?? null,
      deviceAt: (x: number, y: number) => this.#map?.deviceAt(x, y) ?? null,
      mapView: () => {
        const m = this.#map?.leaflet;
        if (!m) return null;
        const c = m.getCenter();
        return { lat: c.lat, lng: c.lng, zoom: m.getZoom() };
      },
      feedStats: () => ({ ...this.#feedStats }),
      fitSite: () => this.#map?.fitSite(),
    };
  }

  get store(): DeviceStore {
    return this.#store;
  }

  get conn(): ConnState {
    return this.#conn;
  }

  get siteName(): string {
    return this.#site?.name ?? '';
  }

  /** The map, once the site has loaded (views that draw on it: incidents, broadcast targets). */
  get map(): DeviceMap | null {
    return this.#map;
  }

  /** Incident and broadcast messages of the live feed go to `handler` (it returns true if it took one). */
  onMessage(handler: (msg: LiveMessage) => boolean): void {
    this.#messageHandlers.push(handler);
  }

  /** Runs once the map exists (at once if it does): views that draw on it (incidents, broadcast targets). */
  onMapReady(listener: (map: DeviceMap, site: SiteInfo) => void): void {
    this.#mapReady.add(listener);
    if (this.#map && this.#site) listener(this.#map, this.#site);
  }

  /** WGS-84 → the map's coordinates (GCJ-02 only when the tiles are GCJ-02), as [lat, lon]. */
  project(lat: number, lon: number): [number, number] {
    const site = this.#site;
    if (site && site.map.tileUrl !== null && site.map.tileCrs === 'gcj02') {
      const g = wgs84ToGcj02(lat, lon);
      return [g.lat, g.lon];
    }
    return [lat, lon];
  }

  /** Views that show device data subscribe here; they are told after each applied batch. */
  subscribe(listener: DeviceFeedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Hands over what boot.ts started; the next activate() uses it instead of asking again. */
  adoptEarly(early: Omit<EarlyStart, 'me'> | null): void {
    if (this.#early && this.#early !== early) this.#early.socket?.conn.close();
    this.#early = early;
  }

  /**
   * Signed in: request the site, the tanks' thresholds and the live feed at once; draw as they
   * arrive. The devices come with the feed's snapshot; the full REST list (the same 10+ MB for a
   * district) is fetched only when the feed has not delivered one (refused, or not there in time),
   * so the map is useful without the WebSocket too.
   */
  async activate(): Promise<void> {
    if (this.#active) return;
    this.#active = true;
    const generation = ++this.#generation;
    performance.mark('gs:activate');
    const early = this.#early;
    this.#early = null;
    const site = this.#site ? Promise.resolve(this.#site) : this.#loadSite(generation, early?.site);
    const tanks = fetchDevices({ kind: 'water_tank', sent: early?.tanks }).catch((err: unknown) => {
      if (!(err instanceof ApiError && err.status === 401)) console.warn('GET /api/devices?kind=water_tank failed; default tank thresholds apply', err);
      return null;
    });
    this.#snapshotSeen = false;
    let restStarted = false;
    const restFallback = () => {
      if (restStarted || this.#snapshotSeen || generation !== this.#generation) return;
      restStarted = true;
      void this.#loadRestDevices(generation);
    };
    const fallbackTimer = setTimeout(restFallback, REST_FALLBACK_MS);
    this.#socket = new LiveSocket({
      url: defaultWsUrl(),
      onState: (state, attempt) => {
        this.#conn = state;
        this.#panel.setConnState(state, attempt);
        for (const l of this.#listeners) l.connChanged();
        // Closed before a snapshot (gateway down, upgrade refused): use the REST list meanwhile.
        if (state === 'reconnecting') restFallback();
      },
      onMessage: (msg) => {
        if (msg.type === 'devices.snapshot') clearTimeout(fallbackTimer);
        this.#onMessage(msg);
      },
      onRefused: this.#onRefused,
      early: early?.socket ?? null,
    });
    this.#socket.start();

    const loaded = await site;
    if (!loaded || generation !== this.#generation) return;
    if (!this.#site) {
      performance.mark('gs:site');
      this.#site = loaded;
      this.#panel.setSite(loaded.name, gridNames(loaded));
      this.#tools.setGrids(siteGrids(loaded));
      this.#needsFit = this.#mapEl.clientWidth === 0;
      const mapStarted = performance.now();
      this.#map = new DeviceMap({
        container: this.#mapEl,
        site: loaded,
        i18n: this.#i18n,
        lookup: (id) => this.#store.get(id),
        band: (d) => this.#store.band(d),
        onSelect: (id) => this.select(id),
        insetLeft: () => byId('map-tools').offsetWidth,
      });
      this.#map.setFilter(this.#filter, []);
      performance.measure('gs:map-create', { start: mapStarted });
      // Devices that arrived while the site loaded (the snapshot often does).
      if (this.#store.size > 0) this.#map.setDevices(this.#store.all());
      this.#map.select(this.#selectedId);
      this.#showCounts();
      for (const l of this.#mapReady) {
        try {
          l(this.#map, loaded);
        } catch (err) {
          console.error('map listener failed', err);
        }
      }
    }

    const tankList = await tanks;
    if (generation !== this.#generation || !tankList) return;
    performance.mark('gs:tank-thresholds');
    this.#store.setTankThresholds(tankList.tankThresholds);
    // Thresholds change tank bands: restyle the tanks, recount.
    this.#map?.updateDevices(this.#store.tanks());
    this.#panel.devicesChanged('all');
    this.#notify();
  }

  async #loadRestDevices(generation: number): Promise<void> {
    try {
      const list = await fetchDevices();
      if (generation !== this.#generation || this.#snapshotSeen) return;
      performance.mark('gs:rest-devices');
      if (list.tankThresholds.size > 0) this.#store.setTankThresholds(list.tankThresholds);
      this.#replaceDevices(list.devices);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) console.warn('GET /api/devices failed; waiting for the /ws snapshot', err);
    }
  }

  /** Signed out or expired: stop the feed. `clear` also forgets the devices (another user may sign in). */
  deactivate(clear: boolean): void {
    this.#active = false;
    this.#generation++;
    this.#socket?.stop();
    this.#socket = null;
    this.#conn = 'connecting';
    this.#panel.setConnState('connecting', 0);
    if (this.#frame !== 0) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    this.#pending.clear();
    this.#showLoadStatus(null);
    this.select(null);
    if (clear) this.#replaceDevices([]);
  }

  select(id: string | null): void {
    this.#selectedId = id;
    this.#panel.showDevice(id);
    this.#map?.select(id);
  }

  /**
   * Retries until the gateway answers: the dashboard is often open before the gateway is up.
   * Null when the session ended (401; the app shows the sign-in screen) or the dashboard was
   * deactivated meanwhile.
   */
  async #loadSite(generation: number, sent?: Promise<JsonAnswer>): Promise<SiteInfo | null> {
    for (let attempt = 0; generation === this.#generation; attempt++) {
      this.#showLoadStatus(this.#i18n.t('load.loading'));
      try {
        const site = await fetchSite(undefined, attempt === 0 ? sent : undefined);
        if (generation === this.#generation) this.#showLoadStatus(null);
        return site;
      } catch (err) {
        if (generation !== this.#generation || (err instanceof ApiError && err.status === 401)) return null;
        const seconds = Math.min(30, 2 ** Math.min(attempt, 5));
        const message = err instanceof Error ? err.message : String(err);
        this.#showLoadStatus(this.#i18n.t('load.failed', { message, seconds }), true);
        await sleep(seconds * 1000);
      }
    }
    return null;
  }

  #showLoadStatus(text: string | null, isError = false): void {
    this.#loadStatus.hidden = text === null;
    this.#loadStatus.textContent = text ?? '';
    this.#loadStatus.classList.toggle('error', isError);
  }

  #onMessage(msg: LiveMessage): void {
    switch (msg.type) {
      case 'hello':
        if (this.#site && msg.site !== this.#site.id) {
          console.warn(`/ws reports site ${msg.site}, page loaded site ${this.#site.id}`);
        }
        this.#panel.setStorage(msg.storage);
        break;
      case 'devices.snapshot':
        this.#feedStats.snapshots++;
        performance.mark('gs:ws-snapshot');
        this.#snapshotSeen = true;
        // Updates queued before the snapshot are older than it.
        this.#pending.clear();
        this.#replaceDevices(msg.devices);
        break;
      case 'devices.update':
        this.#feedStats.updateMessages++;
        this.#feedStats.updates += msg.updates.length;
        for (const u of msg.updates) {
          const queued = this.#pending.get(u.id);
          this.#pending.set(u.id, queued ? mergeUpdates(queued, u) : u);
        }
        if (this.#frame === 0 && this.#pending.size > 0) this.#frame = requestAnimationFrame(() => this.#flush());
        break;
      case 'storage':
        this.#panel.setStorage(msg.storage);
        break;
      default:
        // Incident and broadcast messages: their views take them.
        for (const handle of this.#messageHandlers) if (handle(msg)) break;
        break;
    }
  }

  #replaceDevices(devices: DeviceView[]): void {
    const started = performance.now();
    this.#store.replaceAll(devices);
    this.#map?.setDevices(this.#store.all());
    this.#map?.select(this.#selectedId);
    this.#tools.devicesReplaced();
    this.#panel.devicesChanged('all');
    this.#showCounts();
    this.#notify();
    performance.measure('gs:devices-replace', { start: started });
    performance.mark('gs:devices-replaced');
  }

  #flush(): void {
    this.#frame = 0;
    if (this.#pending.size === 0) return;
    this.#feedStats.flushes++;
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    const changed = this.#store.applyUpdates(batch);
    if (changed.length === 0) return;
    this.#map?.updateDevices(changed);
    this.#panel.devicesChanged(changed);
    this.#showCounts();
    this.#notify();
  }

  #showCounts(): void {
    const stats = this.#map?.stats;
    this.#tools.setShown(stats?.visible ?? this.#store.size, this.#store.size);
  }

  #notify(): void {
    for (const l of this.#listeners) {
      try {
        l.devicesChanged();
      } catch (err) {
        console.error('device listener failed', err);
      }
    }
  }
}

// ---- the app: session, header, views ---------------------------------------------------------------

/**
 * The views and the least role that may open each. To add one (say `incidents`):
 *   1. index.html: `<main id="incidents-view" class="view" data-view="incidents" data-min-role="…" hidden>`
 *      and a nav link `<a href="#/incidents" data-view="incidents" data-min-role="…" data-i18n="nav.incidents">`;
 *   2. here: `incidents: '<role>'` in VIEW_MIN_ROLE;
 *   3. in App's constructor: `this.#controllers.incidents = new IncidentsView({ root: this.#views.incidents, … })`,
 *      an object with `show()` (opened) and optionally `hide()` (left) and `reset()` (signed out);
 *   4. its strings in i18n/zh-CN.json and i18n/en.json (`nav.incidents`, …).
 * Device data and the map are shared through `Dashboard` (`store`, `subscribe`, `map`); the
 * overview's incident/fire danger/broadcast tiles through `App.overviewSources` (overview.ts).
 */
type View = 'map' | 'overview' | 'video' | 'phone' | 'users' | 'audit';
const VIEW_MIN_ROLE: Record<View, Role> = { map: 'viewer', overview: 'viewer', video: 'viewer', phone: 'grid_worker', users: 'admin', audit: 'duty_officer' };
/** `#/broadcast` is the map with the broadcast console open beside it (poles are picked on the map). */
const BROADCAST_HASH = 'broadcast';
const VIEW_NAMES = Object.keys(VIEW_MIN_ROLE) as View[];

interface ViewController {
  show(): void;
  hide?(): void;
  /** Signed out: forget what the last user saw. */
  reset?(): void;
}

function viewFromHash(hash: string): View {
  const name = hash.replace(/^#\/?/, '');
  return (VIEW_NAMES as string[]).includes(name) ? (name as View) : 'map';
}

/** `?wall=1`: the wall screen. The overview alone, in wall-sized type, whatever the hash says. */
const WALL_MODE = new URLSearchParams(window.location.search).get('wall') === '1';

/** How often an open page asks whether its session still holds (expiry, disabled user, new role). */
const SESSION_CHECK_MS = 60_000;

class App {
  readonly #i18n = new I18n(rememberedLang());
  readonly #gate = new RoleGate();
  readonly #views = Object.fromEntries(
    VIEW_NAMES.map((v) => {
      const el = document.querySelector<HTMLElement>(`main[data-view="${v}"]`);
      if (!el) throw new Error(`index.html is missing main[data-view="${v}"]`);
      return [v, el];
    }),
  ) as Record<View, HTMLElement>;
  readonly #controllers: Partial<Record<View, ViewController>> = {};
  readonly #nav = byId('main-nav');
  readonly #userName = byId('user-name');
  readonly #userRole = byId('user-role');
  readonly #signOutButton = byId('sign-out') as HTMLButtonElement;
  readonly #headerMessage = byId('header-message');
  readonly #langSwitch = byId('lang-switch');
  readonly #dashboard: Dashboard;
  readonly #overview: OverviewView;
  readonly #signIn: SignInView;
  readonly #incidents = new IncidentFeed();
  readonly #inbox: InboxView;
  readonly #phone: PhoneView;
  readonly #broadcast: BroadcastConsole;
  readonly #broadcastDrawer = byId('broadcast-drawer');
  #incidentLayer: IncidentLayer | null = null;
  #user: User | null = null;
  #view: View | null = null;
  #signingOut = false;
  #verifying = false;
  #headerMessageTimer: ReturnType<typeof setTimeout> | null = null;

  constructor() {
    this.#gate.register(document);
    this.#gate.apply(null);
    if (WALL_MODE) document.body.dataset.wall = '1';
    this.#dashboard = new Dashboard(this.#i18n, { onRefused: () => void this.#verifySession(), role: () => this.#user?.role ?? null });
    this.#signIn = new SignInView({ root: byId('signin-view'), i18n: this.#i18n, onSignedIn: (user) => this.#enter(user, true) });
    this.#overview = new OverviewView({
      root: this.#views.overview,
      i18n: this.#i18n,
      store: this.#dashboard.store,
      siteName: () => this.#dashboard.siteName,
      conn: () => this.#dashboard.conn,
    });
    this.#dashboard.subscribe(this.#overview);
    if (window.__gs) {
      window.__gs.plugOverview = (values) => {
        const feed = <T>(value: T | undefined) => {
          if (value === undefined) return undefined;
          const f = new OverviewFeed<T>();
          f.set(value);
          return f;
        };
        const incidents = feed(values.incidents);
        const fireDanger = feed(values.fireDanger);
        const broadcasts = feed(values.broadcasts);
        this.connectOverview({ ...(incidents ? { incidents } : {}), ...(fireDanger ? { fireDanger } : {}), ...(broadcasts ? { broadcasts } : {}) });
      };
    }
    // Incidents: the inbox on the map, the fire danger in the header, the phone view.
    const role = () => this.#user?.role ?? null;
    this.#broadcast = new BroadcastConsole({
      root: this.#broadcastDrawer,
      i18n: this.#i18n,
      role,
      map: () => this.#dashboard.map?.leaflet ?? null,
      project: (lat, lon) => this.#dashboard.project(lat, lon),
      poles: () => [...this.#dashboard.store.all()].filter((d) => d.kind === 'voice_pole'),
    });
    this.#inbox = new InboxView({
      feed: this.#incidents,
      i18n: this.#i18n,
      role,
      onShowOnMap: (incident) => {
        if (this.#view !== 'map') window.location.hash = '#/';
        this.#incidentLayer?.focus(incident);
      },
      onWarnPoles: (incident) => {
        this.#broadcast.prefillFromIncident(incident);
        window.location.hash = `#/${BROADCAST_HASH}`;
      },
    });
    byId('map-view').querySelector('.map-wrap')!.append(this.#inbox.el);
    const danger = new FireDangerBadge({ feed: this.#incidents, i18n: this.#i18n, role });
    byId('conn-state').before(danger.el);
    this.#phone = new PhoneView({ root: this.#views.phone, feed: this.#incidents, i18n: this.#i18n, role });
    this.#dashboard.onMessage((msg) => this.#incidents.handle(msg) || this.#broadcast.handle(msg));
    this.#dashboard.onMapReady((map) => {
      this.#incidentLayer ??= new IncidentLayer({
        map: map.leaflet,
        feed: this.#incidents,
        project: (lat, lon) => this.#dashboard.project(lat, lon),
        onSelect: (incident) => this.#inbox.open(incident),
      });
      // Starting the audio output costs the page's main thread 20–300 ms: do it when the map is
      // drawn and the page is idle, not when the first alarm comes in (a stalled map at that moment).
      const warmAlarm = (e: L.LeafletEvent) => {
        if ((e as L.LeafletEvent & { devices?: number }).devices === 0) return;
        map.leaflet.off(DEVICES_DRAWN_EVENT, warmAlarm);
        const warm = () => this.#incidents.sound.warm();
        if ('requestIdleCallback' in window) requestIdleCallback(warm, { timeout: 10_000 });
        else setTimeout(warm, 1000);
      };
      map.leaflet.on(DEVICES_DRAWN_EVENT, warmAlarm);
    });
    const openCounts = new OverviewFeed<OpenIncidentCounts>();
    const dangerToday = new OverviewFeed<FireDangerToday>();
    this.#incidents.onChange((e) => {
      const counts: OpenIncidentCounts = {};
      for (const i of this.#incidents.open()) counts[i.status as keyof OpenIncidentCounts] = (counts[i.status as keyof OpenIncidentCounts] ?? 0) + 1;
      openCounts.set(counts);
      if (e.kind === 'fireDanger') {
        const s = e.status;
        dangerToday.set(s.level !== null && s.source !== 'none' ? { level: s.level as FireDangerToday['level'], source: s.source } : null);
      }
    });
    if (window.__gs) window.__gs.incidentSounds = () => this.#incidents.sound.played;
    this.#overview.connect({ incidents: openCounts, fireDanger: dangerToday, broadcasts: this.#broadcast.inProgress });
    this.#controllers.map = { show: () => undefined };
    this.#controllers.phone = { show: () => this.#phone.setUser(this.#user), reset: () => this.#phone.setUser(null) };
    this.#controllers.video = new VideoWall({
      root: this.#views.video,
      i18n: this.#i18n,
      role,
      cameras: () => [...this.#dashboard.store.all()].filter((d) => d.kind === 'camera'),
    });
    this.#controllers.overview = this.#overview;
    this.#controllers.users = new UsersView({ root: this.#views.users, i18n: this.#i18n, currentUser: () => this.#user });
    this.#controllers.audit = new AuditView({ root: this.#views.audit, i18n: this.#i18n });

    this.#signOutButton.addEventListener('click', () => void this.#signOut());
    this.#i18n.onChange(() => this.#renderChrome());
    // A 401 to a request of the current session: it expired, was ended elsewhere (sign-out in
    // another tab, password reset, user disabled) or the gateway lost it.
    onUnauthenticated((epoch) => {
      if (this.#user && epoch === currentSessionEpoch()) this.#expire();
    });
    window.addEventListener('hashchange', () => this.#route());
    // The live feed does not notice a session ending while it stays connected; ask now and then.
    setInterval(() => {
      if (this.#user && document.visibilityState === 'visible') void this.#verifySession();
    }, SESSION_CHECK_MS);
    document.addEventListener('visibilitychange', () => {
      if (this.#user && document.visibilityState === 'visible') void this.#verifySession();
    });
    this.#renderChrome();
  }

  /** Where the incident and broadcast parts plug their figures into the overview (overview.ts). */
  connectOverview(sources: OverviewSources): () => void {
    return this.#overview.connect(sources);
  }

  /**
   * On load: signed in already (the cookie) → the app; 401 → the sign-in screen. The first check,
   * the site, the tanks and the live feed were already started by boot.ts (early.ts).
   */
  async boot(): Promise<void> {
    document.body.dataset.auth = 'pending';
    const early = takeEarlyStart();
    if (early) this.#dashboard.adoptEarly(early);
    for (let attempt = 0; ; attempt++) {
      this.#signIn.showPending(() => this.#i18n.t('auth.checking'));
      try {
        const user = await fetchMe({ reportUnauthenticated: false, sent: attempt === 0 ? early?.me : undefined });
        this.#enter(user, false);
        return;
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          // No session: what boot.ts started was refused too.
          this.#dashboard.adoptEarly(null);
          this.#showSignIn(null);
          return;
        }
        // Not answered: the early requests failed too, or will be stale by the time it answers.
        this.#dashboard.adoptEarly(null);
        // The gateway is not up yet (or not answering): keep asking, and say so.
        const seconds = Math.min(30, 2 ** Math.min(attempt, 5));
        this.#signIn.showPending(() => this.#i18n.t('auth.checkFailed', { message: describeError(this.#i18n, err), seconds }));
        await sleep(seconds * 1000);
      }
    }
  }

  #enter(user: User, fromSignIn: boolean): void {
    beginSessionEpoch();
    this.#user = user;
    document.body.dataset.auth = 'signed-in';
    document.body.dataset.role = user.role;
    this.#gate.apply(user.role);
    this.#signIn.hide();
    this.#renderChrome();
    // A fresh sign-in starts on the map (the wall screen: the overview); a reload keeps the view in the address.
    if (fromSignIn && !WALL_MODE && viewFromHash(window.location.hash) !== 'map') history.replaceState(null, '', '#/');
    // A grid worker on a phone lands on their incidents, not on the district map.
    if (fromSignIn && user.role === 'grid_worker' && window.matchMedia('(max-width: 720px)').matches) history.replaceState(null, '', '#/phone');
    this.#view = null;
    this.#route();
    void this.#dashboard.activate();
  }

  /** Leaves the signed-in state: nothing of the session stays on screen. */
  #leave(clearData: boolean): void {
    this.#user = null;
    this.#view = null;
    this.#dashboard.deactivate(clearData);
    this.#incidents.clear();
    this.#inbox.card.close();
    this.#broadcast.hide();
    this.#broadcast.reset();
    this.#broadcastDrawer.hidden = true;
    for (const c of Object.values(this.#controllers)) {
      c.hide?.();
      c.reset?.();
    }
    for (const el of Object.values(this.#views)) el.hidden = true;
    delete document.body.dataset.view;
    delete document.body.dataset.role;
    this.#gate.apply(null);
    this.#showHeaderMessage(null);
    this.#renderChrome();
  }

  #showSignIn(notice: SignInNotice, username = ''): void {
    document.body.dataset.auth = 'signed-out';
    this.#signIn.show(notice, username);
  }

  #expire(): void {
    const username = this.#user?.username ?? '';
    this.#leave(false);
    this.#showSignIn('expired', username);
  }

  async #signOut(): Promise<void> {
    if (this.#signingOut || !this.#user) return;
    this.#signingOut = true;
    this.#renderChrome();
    try {
      await logout();
    } catch (err) {
      // 401: the session had already ended, which is what signing out wants.
      if (!(err instanceof ApiError && err.status === 401)) {
        this.#signingOut = false;
        this.#renderChrome();
        this.#showHeaderMessage(() => this.#i18n.t('auth.signOutFailed', { message: describeError(this.#i18n, err) }));
        return;
      }
    }
    this.#signingOut = false;
    this.#leave(true);
    this.#showSignIn('signedOut');
  }

  /** Asks the gateway who the session belongs to; a 401 ends up in #expire via onUnauthenticated. */
  async #verifySession(): Promise<void> {
    if (this.#verifying || !this.#user) return;
    this.#verifying = true;
    const epoch = currentSessionEpoch();
    try {
      const user = await fetchMe();
      const current = this.#user;
      if (!current || epoch !== currentSessionEpoch()) return;
      if (user.id !== current.id || user.role !== current.role) {
        // The cookie now belongs to someone else (a sign-in in another tab) or the role changed.
        this.#leave(true);
        this.#enter(user, false);
      } else {
        this.#user = user;
        this.#renderChrome();
      }
    } catch {
      // 401 is handled by the listener; anything else (gateway down) is left to the live feed's retries.
    } finally {
      this.#verifying = false;
    }
  }

  #route(): void {
    const user = this.#user;
    if (!user) return;
    const wanted = WALL_MODE ? 'overview' : viewFromHash(window.location.hash);
    const view = can(user.role, VIEW_MIN_ROLE[wanted]) ? wanted : 'map';
    if (view !== wanted) history.replaceState(null, '', '#/');
    for (const [name, el] of Object.entries(this.#views)) el.hidden = name !== view;
    document.body.dataset.view = view;
    // The broadcast console is a drawer over the map: its poles are picked there.
    const console = view === 'map' && !WALL_MODE && window.location.hash.replace(/^#\/?/, '') === BROADCAST_HASH;
    const current = console ? BROADCAST_HASH : view;
    for (const a of this.#nav.querySelectorAll<HTMLAnchorElement>('a[data-view]')) {
      if (a.dataset.view === current) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (console !== !this.#broadcastDrawer.hidden) {
      this.#broadcastDrawer.hidden = !console;
      if (console) this.#broadcast.show();
      else this.#broadcast.hide();
    }
    if (view === this.#view) return;
    if (this.#view) this.#controllers[this.#view]?.hide?.();
    this.#view = view;
    this.#controllers[view]?.show();
  }

  #showHeaderMessage(text: (() => string) | null): void {
    if (this.#headerMessageTimer !== null) clearTimeout(this.#headerMessageTimer);
    this.#headerMessageTimer = null;
    this.#headerMessage.hidden = text === null;
    this.#headerMessage.textContent = text?.() ?? '';
    if (text) this.#headerMessageTimer = setTimeout(() => this.#showHeaderMessage(null), 10_000);
  }

  /** Header texts that depend on the user or the language. */
  #renderChrome(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    this.#i18n.applyStatic(document);
    const user = this.#user;
    this.#userName.textContent = user?.displayName ?? '';
    this.#userName.title = user?.username ?? '';
    this.#userRole.textContent = user ? t(`role.${user.role}`) : '';
    this.#userRole.dataset.role = user?.role ?? '';
    this.#signOutButton.disabled = this.#signingOut;
    this.#signOutButton.textContent = t(this.#signingOut ? 'auth.signingOut' : 'auth.signOut');
    // A lone "map" link is no navigation at all.
    this.#nav.hidden = this.#nav.querySelectorAll('a[data-view]').length < 2;
    this.#renderLangSwitch();
  }

  #renderLangSwitch(): void {
    const buttons = LANGS.map((lang) => {
      const b = h('button', { type: 'button', lang, 'aria-pressed': String(lang === this.#i18n.lang) }, this.#i18n.tIn(lang, 'lang.name'));
      b.addEventListener('click', () => this.#i18n.setLang(lang));
      return b;
    });
    this.#langSwitch.setAttribute('aria-label', this.#i18n.t('lang.label'));
    this.#langSwitch.replaceChildren(...buttons);
  }
}

const app = new App();
app.boot().catch((err: unknown) => {
  console.error('dashboard failed to start', err);
});
