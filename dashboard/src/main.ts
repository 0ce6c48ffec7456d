/**
 * Dashboard bootstrap. Nothing but the sign-in screen shows until the gateway accepts a session
 * (`/api/auth/me` on load, or the sign-in form). Signed in, the map loads the site and keeps
 * device state live from `/ws`; update batches are applied once per animation frame, so a burst of
 * messages costs one redraw. Any 401 later, from the API or as a refused WebSocket upgrade, means
 * the session ended: the page goes back to the sign-in screen and says so.
 */
import type { DeviceUpdate, DeviceView, ServerMessage } from '../../protocol/ws.js';
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
  type SiteInfo,
  type User,
} from './api.js';
import { AuditView } from './audit.js';
import { DeviceStore, mergeUpdates } from './devices.js';
import { byId, h } from './dom.js';
import { describeError } from './errors.js';
import { I18n, LANGS, rememberedLang } from './i18n.js';
import { DeviceMap, gridNames } from './map.js';
import { Panel } from './panel.js';
import { RoleGate, can, type Role } from './roles.js';
import { SignInView, type SignInNotice } from './signin.js';
import { UsersView } from './users.js';

/** Hooks for browser tests (test/e2e): open a card without clicking canvas pixels, and so on. */
export interface GreenShieldTestHooks {
  selectDevice(id: string): void;
  deviceCount(): number;
  /** Drops the live WebSocket as a network fault would (it reconnects, if the session allows). */
  dropLiveSocket(): void;
}

declare global {
  interface Window {
    __gs?: GreenShieldTestHooks;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- the map and its live feed ------------------------------------------------------------------

class Dashboard {
  readonly #i18n: I18n;
  readonly #store = new DeviceStore();
  readonly #panel: Panel;
  readonly #loadStatus = byId('load-status');
  readonly #mapEl = byId('map');
  readonly #onRefused: () => void;
  #map: DeviceMap | null = null;
  /** The map was made while hidden (another view was open); fit the site once it has a size. */
  #needsFit = false;
  #site: SiteInfo | null = null;
  #selectedId: string | null = null;
  #socket: LiveSocket | null = null;
  #active = false;
  /** Bumped on every activate/deactivate, so work of an earlier session drops its results. */
  #generation = 0;
  /** Coalesced per device until the next frame; bounded by the fleet size even in a hidden tab. */
  readonly #pending = new Map<string, DeviceUpdate>();
  #frame = 0;
  #snapshotSeen = false;

  constructor(i18n: I18n, opts: { onRefused: () => void }) {
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
    };
  }

  /** Signed in: load the site once, then start the live feed. */
  async activate(): Promise<void> {
    if (this.#active) return;
    this.#active = true;
    const generation = ++this.#generation;
    // Both requests go out at once; devices are drawn from REST first so the map is useful even
    // before (or without) the WebSocket.
    const devices = fetchDevices().catch((err: unknown) => {
      if (!(err instanceof ApiError && err.status === 401)) console.warn('GET /api/devices failed; waiting for the /ws snapshot', err);
      return null;
    });
    if (!this.#site) {
      const site = await this.#loadSite(generation);
      if (!site || generation !== this.#generation) return;
      this.#site = site;
      this.#panel.setSite(site.name, gridNames(site));
      this.#needsFit = this.#mapEl.clientWidth === 0;
      this.#map = new DeviceMap({
        container: this.#mapEl,
        site,
        i18n: this.#i18n,
        lookup: (id) => this.#store.get(id),
        onSelect: (id) => this.select(id),
      });
    }

    this.#snapshotSeen = false;
    this.#socket = new LiveSocket({
      url: defaultWsUrl(),
      onState: (state, attempt) => this.#panel.setConnState(state, attempt),
      onMessage: (msg) => this.#onMessage(msg),
      onRefused: this.#onRefused,
    });
    this.#socket.start();

    const initial = await devices;
    if (generation !== this.#generation) return;
    if (initial && !this.#snapshotSeen) this.#replaceDevices(initial);
  }

  /** Signed out or expired: stop the feed. `clear` also forgets the devices (another user may sign in). */
  deactivate(clear: boolean): void {
    this.#active = false;
    this.#generation++;
    this.#socket?.stop();
    this.#socket = null;
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
  async #loadSite(generation: number): Promise<SiteInfo | null> {
    for (let attempt = 0; generation === this.#generation; attempt++) {
      this.#showLoadStatus(this.#i18n.t('load.loading'));
      try {
        const site = await fetchSite();
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

// ---- the app: session, header, views ---------------------------------------------------------------

type View = 'map' | 'users' | 'audit';
const VIEW_MIN_ROLE: Record<View, Role> = { map: 'viewer', users: 'admin', audit: 'duty_officer' };

function viewFromHash(hash: string): View {
  const name = hash.replace(/^#\/?/, '');
  return name === 'users' || name === 'audit' ? name : 'map';
}

/** How often an open page asks whether its session still holds (expiry, disabled user, new role). */
const SESSION_CHECK_MS = 60_000;

class App {
  readonly #i18n = new I18n(rememberedLang());
  readonly #gate = new RoleGate();
  readonly #views: Record<View, HTMLElement> = { map: byId('map-view'), users: byId('users-view'), audit: byId('audit-view') };
  readonly #nav = byId('main-nav');
  readonly #userName = byId('user-name');
  readonly #userRole = byId('user-role');
  readonly #signOutButton = byId('sign-out') as HTMLButtonElement;
  readonly #headerMessage = byId('header-message');
  readonly #langSwitch = byId('lang-switch');
  readonly #dashboard: Dashboard;
  readonly #signIn: SignInView;
  readonly #users: UsersView;
  readonly #audit: AuditView;
  #user: User | null = null;
  #view: View | null = null;
  #signingOut = false;
  #verifying = false;
  #headerMessageTimer: ReturnType<typeof setTimeout> | null = null;

  constructor() {
    this.#gate.register(document);
    this.#gate.apply(null);
    this.#dashboard = new Dashboard(this.#i18n, { onRefused: () => void this.#verifySession() });
    this.#signIn = new SignInView({ root: byId('signin-view'), i18n: this.#i18n, onSignedIn: (user) => this.#enter(user, true) });
    this.#users = new UsersView({ root: this.#views.users, i18n: this.#i18n, currentUser: () => this.#user });
    this.#audit = new AuditView({ root: this.#views.audit, i18n: this.#i18n });

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

  /** On load: signed in already (the cookie) → the app; 401 → the sign-in screen. */
  async boot(): Promise<void> {
    document.body.dataset.auth = 'pending';
    for (let attempt = 0; ; attempt++) {
      this.#signIn.showPending(() => this.#i18n.t('auth.checking'));
      try {
        const user = await fetchMe({ reportUnauthenticated: false });
        this.#enter(user, false);
        return;
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.#showSignIn(null);
          return;
        }
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
    // A fresh sign-in starts on the map; a reload keeps the view in the address.
    if (fromSignIn && viewFromHash(window.location.hash) !== 'map') history.replaceState(null, '', '#/');
    this.#view = null;
    this.#route();
    void this.#dashboard.activate();
  }

  /** Leaves the signed-in state: nothing of the session stays on screen. */
  #leave(clearData: boolean): void {
    this.#user = null;
    this.#view = null;
    this.#dashboard.deactivate(clearData);
    this.#users.reset();
    this.#audit.reset();
    for (const el of Object.values(this.#views)) el.hidden = true;
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
    const wanted = viewFromHash(window.location.hash);
    const view = can(user.role, VIEW_MIN_ROLE[wanted]) ? wanted : 'map';
    if (view !== wanted) history.replaceState(null, '', '#/');
    for (const [name, el] of Object.entries(this.#views)) el.hidden = name !== view;
    for (const a of this.#nav.querySelectorAll<HTMLAnchorElement>('a[data-view]')) {
      if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (view === this.#view) return;
    this.#view = view;
    if (view === 'users') this.#users.show();
    if (view === 'audit') this.#audit.show();
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

new App().boot().catch((err: unknown) => {
  console.error('dashboard failed to start', err);
});
