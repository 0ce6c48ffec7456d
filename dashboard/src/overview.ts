/**
 * 一屏统揽, the one-screen overview: the figures a command center reads from across the room on
 * the wall screen. Device counts and tank bands come from the live device store; open incidents,
 * today's fire danger and broadcasts in progress come from `OverviewSources`, which the incident
 * and broadcast parts of the dashboard plug in. Until a source provides data its tile shows "—"
 * and says it is waiting: never a made-up number.
 *
 * Plugging in (e.g. in main.ts, where the incident store is created):
 *
 *   const incidents = new OverviewFeed<OpenIncidentCounts>();
 *   overview.connect({ incidents });
 *   incidentStore.onChange(() => incidents.set(countOpenByStatus(incidentStore.all())));
 *   // incidents.set(null) when the data is gone (signed out, feed lost)
 *
 * Full screen: the ⛶ button (Fullscreen API), or open the page as `/?wall=1` on the wall screen's
 * browser (a kiosk browser started full screen): the overview alone, in wall-sized type.
 */
import type { IncidentStatus } from '../../protocol/incidents.js';
import type { ConnState } from './api.js';
import { KINDS, STATUSES, type DeviceStore } from './devices.js';
import { h } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';
import { KIND_STYLE, STATUS_STROKE } from './map.js';

// ---- sources ----------------------------------------------------------------------------------

/** A value that changes over time; `listener(null)` means "no data (yet)". */
export interface OverviewSource<T> {
  /** Calls `listener` with the current value at once, then on every change; returns unsubscribe. */
  subscribe(listener: (value: T | null) => void): () => void;
}

/** A settable OverviewSource: the producer calls `set`, the overview listens. */
export class OverviewFeed<T> implements OverviewSource<T> {
  #value: T | null = null;
  readonly #listeners = new Set<(value: T | null) => void>();

  get value(): T | null {
    return this.#value;
  }

  set(value: T | null): void {
    this.#value = value;
    for (const listener of this.#listeners) {
      try {
        listener(value);
      } catch (err) {
        console.error('overview listener failed', err);
      }
    }
  }

  subscribe(listener: (value: T | null) => void): () => void {
    this.#listeners.add(listener);
    listener(this.#value);
    return () => this.#listeners.delete(listener);
  }
}

// Local copy of the open statuses (protocol/incidents.ts OPEN_STATUSES): importing the value would
// put the protocol module in the bundle for four strings; `satisfies` keeps the names checked.
export const OPEN_INCIDENT_STATUSES = ['new', 'dispatched', 'acknowledged', 'on_site'] as const satisfies readonly IncidentStatus[];
export type OpenIncidentStatus = (typeof OPEN_INCIDENT_STATUSES)[number];
/** Open incidents by status (a status with none may be left out). */
export type OpenIncidentCounts = Partial<Record<OpenIncidentStatus, number>>;

/** Today's fire danger level, 1 (low, green) .. 5 (extremely high, red), QX/T 77-2007. */
export interface FireDangerToday {
  level: 1 | 2 | 3 | 4 | 5;
  /** Where the level comes from (a duty officer's from the weather bureau, or computed). */
  source?: 'manual' | 'computed' | 'previous_day';
}

export interface BroadcastsInProgress {
  /** Jobs running now. */
  jobs: number;
  /** Poles playing now, if known. */
  polesPlaying?: number;
}

export interface OverviewSources {
  incidents?: OverviewSource<OpenIncidentCounts>;
  fireDanger?: OverviewSource<FireDangerToday>;
  broadcasts?: OverviewSource<BroadcastsInProgress>;
}

const FIRE_DANGER_COLOR: Record<FireDangerToday['level'], string> = { 1: '#2fb35a', 2: '#2f7fe0', 3: '#f2c200', 4: '#ff8a1f', 5: '#ff3b3b' };

// ---- the view ---------------------------------------------------------------------------------

export interface OverviewOptions {
  root: HTMLElement;
  i18n: I18n;
  store: DeviceStore;
  siteName: () => string;
  conn: () => ConnState;
}

interface Tile {
  el: HTMLElement;
  value: HTMLElement;
  detail: HTMLElement;
}

export class OverviewView {
  readonly #opts: OverviewOptions;
  readonly #clock = h('div', { class: 'ov-clock', 'data-testid': 'ov-clock' });
  readonly #site = h('div', { class: 'ov-site' });
  readonly #conn = h('div', { class: 'ov-conn', 'data-testid': 'ov-conn', role: 'status' });
  readonly #fullscreen = h('button', { type: 'button', class: 'ov-fullscreen', 'data-testid': 'ov-fullscreen' });
  readonly #exitWall = h('a', { class: 'ov-exit-wall', href: '?#/overview', 'data-testid': 'ov-exit-wall' });
  readonly #title = h('h1', { class: 'ov-title' });
  readonly #updated = h('div', { class: 'ov-updated', 'data-testid': 'ov-updated' });
  readonly #kindTiles = new Map<string, Tile & { offline: HTMLElement; unknown: HTMLElement }>();
  readonly #allTile: Tile;
  readonly #tanks: { el: HTMLElement; warning: HTMLElement; danger: HTMLElement; none: HTMLElement; title: HTMLElement; labels: HTMLElement[] };
  readonly #incidents: Tile & { breakdown: HTMLElement };
  readonly #fire: Tile;
  readonly #broadcasts: Tile;
  readonly #sections: Array<{ el: HTMLElement; key: MessageKey }> = [];
  #incidentValue: OpenIncidentCounts | null = null;
  #fireValue: FireDangerToday | null = null;
  #broadcastValue: BroadcastsInProgress | null = null;
  #visible = false;
  #dirty = true;
  #lastUpdate: number | null = null;
  readonly #unsubscribe: Array<() => void> = [];

  constructor(opts: OverviewOptions) {
    this.#opts = opts;
    const tile = (testid: string, extra = ''): Tile => {
      const value = h('div', { class: 'ov-value' });
      const detail = h('div', { class: 'ov-detail' });
      const el = h('div', { class: `ov-tile ${extra}`, 'data-testid': testid }, h('div', { class: 'ov-label' }), value, detail);
      return { el, value, detail };
    };
    for (const kind of KINDS) {
      const t = tile(`ov-kind-${kind}`, 'ov-kind');
      const offline = h('span', { class: 'ov-offline' });
      const unknown = h('span', { class: 'ov-unknown' });
      t.detail.append(offline, unknown);
      this.#kindTiles.set(kind, { ...t, offline, unknown });
    }
    this.#allTile = tile('ov-all', 'ov-all');
    const bandCell = (cls: string) => {
      const value = h('span', { class: `ov-band-value ${cls}` });
      const label = h('span', { class: 'ov-band-label' });
      return { cell: h('div', { class: `ov-band ${cls}` }, value, label), value, label };
    };
    const warning = bandCell('band-warning');
    const danger = bandCell('band-danger');
    const none = bandCell('band-none');
    const tanksTitle = h('div', { class: 'ov-label' });
    this.#tanks = {
      el: h('div', { class: 'ov-tile ov-tanks', 'data-testid': 'ov-tanks' }, tanksTitle, h('div', { class: 'ov-bands' }, danger.cell, warning.cell, none.cell)),
      warning: warning.value,
      danger: danger.value,
      none: none.value,
      title: tanksTitle,
      labels: [danger.label, warning.label, none.label],
    };
    const incidents = tile('ov-incidents', 'ov-incidents');
    const breakdown = h('div', { class: 'ov-breakdown' });
    incidents.el.append(breakdown);
    this.#incidents = { ...incidents, breakdown };
    this.#fire = tile('ov-fire-danger', 'ov-fire');
    this.#broadcasts = tile('ov-broadcasts', 'ov-broadcasts');

    const section = (key: MessageKey, cls: string, ...tiles: HTMLElement[]) => {
      const heading = h('h2', {});
      this.#sections.push({ el: heading, key });
      return h('section', { class: `ov-section ${cls}` }, heading, h('div', { class: 'ov-tiles' }, ...tiles));
    };
    this.#fullscreen.addEventListener('click', () => void this.#toggleFullscreen());
    document.addEventListener('fullscreenchange', () => this.#renderChrome());
    opts.root.replaceChildren(
      h('header', { class: 'ov-header' }, h('div', { class: 'ov-heading' }, this.#title, this.#site), this.#conn, this.#clock, this.#fullscreen, this.#exitWall),
      h(
        'div',
        { class: 'ov-body' },
        section('overview.devices', 'ov-devices', this.#allTile.el, ...[...this.#kindTiles.values()].map((t) => t.el)),
        section('overview.tanks', 'ov-water', this.#tanks.el),
        section('overview.duty', 'ov-duty', this.#incidents.el, this.#fire.el, this.#broadcasts.el),
      ),
      h('footer', { class: 'ov-footer' }, this.#updated),
    );
    opts.i18n.onChange(() => this.render());
    setInterval(() => {
      if (this.#visible) this.#renderClock();
    }, 1000);
  }

  /** Plugs in the incident, fire danger and broadcast sources; each may come at any time. */
  connect(sources: OverviewSources): () => void {
    const offs: Array<() => void> = [];
    if (sources.incidents) offs.push(sources.incidents.subscribe((v) => ((this.#incidentValue = v), this.#changed())));
    if (sources.fireDanger) offs.push(sources.fireDanger.subscribe((v) => ((this.#fireValue = v), this.#changed())));
    if (sources.broadcasts) offs.push(sources.broadcasts.subscribe((v) => ((this.#broadcastValue = v), this.#changed())));
    this.#unsubscribe.push(...offs);
    return () => {
      for (const off of offs) off();
      if (sources.incidents) this.#incidentValue = null;
      if (sources.fireDanger) this.#fireValue = null;
      if (sources.broadcasts) this.#broadcastValue = null;
      this.#changed();
    };
  }

  /** Devices changed (snapshot or update batch): cheap, the store keeps its counts. */
  devicesChanged(): void {
    this.#lastUpdate = Date.now();
    this.#changed();
  }

  /** The connection state changed. */
  connChanged(): void {
    if (this.#visible) this.#renderChrome();
  }

  show(): void {
    this.#visible = true;
    this.render();
  }

  hide(): void {
    this.#visible = false;
  }

  #changed(): void {
    this.#dirty = true;
    if (this.#visible) this.#renderFigures();
  }

  render(): void {
    this.#dirty = true;
    const t = this.#opts.i18n.t.bind(this.#opts.i18n);
    this.#title.textContent = t('overview.title');
    for (const { el, key } of this.#sections) el.textContent = t(key);
    for (const kind of KINDS) {
      const label = this.#kindTiles.get(kind)!.el.querySelector('.ov-label')!;
      const marker = h('span', { class: `swatch shape-${KIND_STYLE[kind].shape}`, 'aria-hidden': 'true' });
      marker.style.backgroundColor = KIND_STYLE[kind].color;
      marker.style.borderColor = STATUS_STROKE.online;
      label.replaceChildren(marker, t(`kind.${kind}`));
    }
    this.#allTile.el.querySelector('.ov-label')!.textContent = t('overview.allDevices');
    this.#tanks.title.textContent = t('overview.tanksBelow');
    const [danger, warning, none] = this.#tanks.labels;
    danger!.textContent = t('overview.tankCritical');
    warning!.textContent = t('overview.tankLow');
    none!.textContent = t('overview.tankNoData');
    this.#incidents.el.querySelector('.ov-label')!.textContent = t('overview.incidents');
    this.#fire.el.querySelector('.ov-label')!.textContent = t('overview.fireDanger');
    this.#broadcasts.el.querySelector('.ov-label')!.textContent = t('overview.broadcasts');
    this.#renderChrome();
    this.#renderFigures();
  }

  #renderChrome(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    this.#site.textContent = this.#opts.siteName();
    const conn = this.#opts.conn();
    this.#conn.dataset.state = conn;
    this.#conn.textContent = t(`overview.conn.${conn}`);
    const full = document.fullscreenElement !== null;
    document.body.toggleAttribute('data-fullscreen', full);
    this.#fullscreen.hidden = !document.fullscreenEnabled;
    this.#fullscreen.textContent = full ? t('overview.exitFullscreen') : t('overview.fullscreen');
    this.#fullscreen.setAttribute('aria-pressed', String(full));
    this.#exitWall.hidden = document.body.dataset.wall !== '1';
    this.#exitWall.textContent = t('overview.exitWall');
    this.#renderClock();
  }

  #renderClock(): void {
    const { i18n } = this.#opts;
    this.#clock.textContent = i18n.dateTime(Date.now());
    this.#updated.textContent =
      this.#lastUpdate === null ? '' : i18n.t('overview.updated', { time: i18n.dateTime(this.#lastUpdate), ago: i18n.relative(this.#lastUpdate) });
  }

  #renderFigures(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    const { i18n, store } = this.#opts;
    const t = i18n.t.bind(i18n);
    const n = (v: number) => i18n.number(v);
    const counts = store.counts();
    let online = 0;
    let total = 0;
    for (const kind of KINDS) {
      const c = counts[kind];
      online += c.online;
      total += c.total;
      const tile = this.#kindTiles.get(kind)!;
      for (const s of STATUSES) tile.el.dataset[s] = String(c[s]);
      tile.el.dataset.total = String(c.total);
      tile.value.replaceChildren(h('span', { class: 'ov-big status-online' }, n(c.online)), h('span', { class: 'ov-of' }, ` / ${n(c.total)}`));
      tile.offline.textContent = t('overview.offline', { count: n(c.offline) });
      tile.offline.classList.toggle('zero', c.offline === 0);
      tile.unknown.textContent = t('overview.unknown', { count: n(c.unknown) });
      tile.unknown.classList.toggle('zero', c.unknown === 0);
    }
    this.#allTile.el.dataset.online = String(online);
    this.#allTile.el.dataset.total = String(total);
    this.#allTile.value.replaceChildren(h('span', { class: 'ov-big status-online' }, n(online)), h('span', { class: 'ov-of' }, ` / ${n(total)}`));
    this.#allTile.detail.textContent = total > 0 ? t('overview.onlineRate', { rate: ((100 * online) / total).toFixed(1) }) : '';

    const bands = store.tankBands();
    this.#tanks.el.dataset.low = String(bands.warning);
    this.#tanks.el.dataset.critical = String(bands.danger);
    this.#tanks.el.dataset.none = String(bands.none);
    this.#tanks.danger.textContent = n(bands.danger);
    this.#tanks.warning.textContent = n(bands.warning);
    this.#tanks.none.textContent = n(bands.none);
    this.#tanks.el.classList.toggle('alarm', bands.danger > 0);

    this.#renderIncidents();
    this.#renderFire();
    this.#renderBroadcasts();
  }

  #renderIncidents(): void {
    const { i18n } = this.#opts;
    const tile = this.#incidents;
    const v = this.#incidentValue;
    tile.el.dataset.state = v === null ? 'pending' : 'ready';
    if (v === null) {
      this.#pending(tile);
      tile.breakdown.replaceChildren();
      return;
    }
    let open = 0;
    for (const s of OPEN_INCIDENT_STATUSES) open += v[s] ?? 0;
    tile.el.dataset.open = String(open);
    tile.el.classList.toggle('alarm', (v.new ?? 0) > 0);
    tile.value.replaceChildren(h('span', { class: 'ov-big' }, i18n.number(open)));
    tile.detail.textContent = i18n.t('overview.incidentsOpen');
    tile.breakdown.replaceChildren(
      ...OPEN_INCIDENT_STATUSES.map((s) =>
        h('div', { class: `ov-status ov-status-${s}`, 'data-status': s }, h('span', { class: 'ov-status-value' }, i18n.number(v[s] ?? 0)), h('span', { class: 'ov-status-label' }, i18n.t(`overview.incident.${s}`))),
      ),
    );
  }

  #renderFire(): void {
    const { i18n } = this.#opts;
    const tile = this.#fire;
    const v = this.#fireValue;
    tile.el.dataset.state = v === null ? 'pending' : 'ready';
    if (v === null) {
      this.#pending(tile);
      tile.el.style.removeProperty('--fire-color');
      delete tile.el.dataset.level;
      return;
    }
    tile.el.dataset.level = String(v.level);
    tile.el.style.setProperty('--fire-color', FIRE_DANGER_COLOR[v.level]);
    tile.value.replaceChildren(h('span', { class: 'ov-big ov-fire-level' }, i18n.t(`overview.fireLevel.${v.level}`)));
    tile.detail.textContent = v.source ? i18n.t(`overview.fireSource.${v.source}`) : '';
  }

  #renderBroadcasts(): void {
    const { i18n } = this.#opts;
    const tile = this.#broadcasts;
    const v = this.#broadcastValue;
    tile.el.dataset.state = v === null ? 'pending' : 'ready';
    if (v === null) {
      this.#pending(tile);
      return;
    }
    tile.el.dataset.jobs = String(v.jobs);
    tile.el.classList.toggle('active', v.jobs > 0);
    tile.value.replaceChildren(h('span', { class: 'ov-big' }, i18n.number(v.jobs)));
    tile.detail.textContent = v.polesPlaying !== undefined ? i18n.t('overview.polesPlaying', { count: i18n.number(v.polesPlaying) }) : i18n.t('overview.broadcastJobs');
  }

  /** No source yet: a dash, and why. */
  #pending(tile: Tile): void {
    tile.el.classList.remove('alarm', 'active');
    tile.value.replaceChildren(h('span', { class: 'ov-big ov-none' }, '—'));
    tile.detail.textContent = this.#opts.i18n.t('overview.noSource');
  }

  async #toggleFullscreen(): Promise<void> {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await document.documentElement.requestFullscreen();
    } catch (err) {
      console.warn('full screen refused', err);
    }
    this.#renderChrome();
  }
}
