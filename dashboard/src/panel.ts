/**
 * Everything around the map: connection state, storage banner and the side panel
 * (fleet counts, the selected device's card, low tanks, legend). Device names and other data are
 * always set with textContent; nothing from the gateway is parsed as HTML.
 */
import type { DeviceKind } from '../../protocol/payloads.js';
import type { Availability, StorageStatus, TelemetryValue, DeviceView } from '../../protocol/ws.js';
import type { ConnState } from './api.js';
import { DeviceChart, FIELD_FORMAT } from './chart.js';
import { KINDS, STATUSES, TANK_CRITICAL_PERCENT, TANK_LOW_PERCENT, numericValue, tankLevel, type DeviceStore } from './devices.js';
import { FrameThrottle, h, setText, type Child } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';
import { KIND_STYLE, STATUS_STROKE, TANK_BAND_COLOR } from './map.js';
import type { Role } from './roles.js';
import { VideoPlayer } from './video-player.js';

function swatch(shape: string, fill: string, stroke: string): HTMLElement {
  const el = h('span', { class: `swatch shape-${shape}`, 'aria-hidden': 'true' });
  el.style.backgroundColor = fill;
  el.style.borderColor = stroke;
  return el;
}

// ---- value formatting -------------------------------------------------------------------------

export function formatValue(i18n: I18n, field: string, value: TelemetryValue): string {
  if (typeof value === 'boolean') return i18n.t(value ? 'value.true' : 'value.false');
  if (typeof value === 'string') {
    const key = `${field}.${value}`;
    return i18n.has(key) ? i18n.t(key) : value;
  }
  if (field === 'sensorStatus') return `0x${value.toString(16).toUpperCase().padStart(4, '0')}`;
  const format = FIELD_FORMAT[field];
  if (!format) return i18n.number(value, Number.isInteger(value) ? 0 : 2);
  const n = i18n.number(value, format.digits);
  return format.unit ? `${n} ${format.unit}` : n;
}

/** Fixed "63.2 %" form (not locale-formatted) so operators and tests read the same string. */
export const formatPercent = (v: number): string => `${v.toFixed(1)} %`;

// ---- the panel --------------------------------------------------------------------------------

export interface PanelElements {
  panel: HTMLElement;
  connState: HTMLElement;
  storageBanner: HTMLElement;
  siteName: HTMLElement;
}

export interface PanelOptions {
  elements: PanelElements;
  i18n: I18n;
  store: DeviceStore;
  /** A device picked in the panel (low-tank list), or null when the card is closed. */
  onSelect: (id: string | null) => void;
  /** The signed-in role: a camera card offers PTZ to duty officers. */
  role: () => Role | null;
}

interface OpenCard {
  id: string;
  el: HTMLElement;
  chart: DeviceChart | null;
  /** A camera's live picture, kept across redraws so the stream does not restart. */
  video?: VideoPlayer;
  lastValuesTs: number | null;
}

const LOW_TANKS_SHOWN = 8;

/** A row of the counts table and its figure cells. */
interface CountRow {
  row: HTMLElement;
  total: HTMLElement;
  byStatus: Record<Availability, HTMLElement>;
}

/** Sets `data-<key>` only when it differs: an equal write still restyles the element. */
function setData(el: HTMLElement, key: string, value: string): void {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}

export class Panel {
  readonly #el: PanelElements;
  readonly #i18n: I18n;
  readonly #store: DeviceStore;
  readonly #onSelect: (id: string | null) => void;
  readonly #countsSection = h('section', { class: 'counts' });
  readonly #cardSlot = h('div', { class: 'card-slot' });
  readonly #lowTankTitle = h('span');
  readonly #lowTankBadge = h('span', { class: 'badge' });
  readonly #lowTankList = h('ul');
  readonly #lowTankNote = h('p', { class: 'muted' });
  readonly #lowTanksSection = h(
    'section',
    { class: 'low-tanks', 'data-testid': 'low-tanks' },
    h('h2', {}, this.#lowTankTitle, this.#lowTankBadge),
    this.#lowTankList,
    this.#lowTankNote,
  );
  #lowTankRows = new Map<string, HTMLLIElement>();
  readonly #countRows = new Map<DeviceKind, CountRow>();
  readonly #figuresSoon = new FrameThrottle(() => {
    this.#updateCounts();
    this.#renderLowTanks();
  }, 250);
  readonly #legendSection = h('section', { class: 'legend' });
  #conn: { state: ConnState; attempt: number } = { state: 'connecting', attempt: 0 };
  #storage: StorageStatus | null = null;
  #siteName = '';
  #gridNames = new Map<string, string>();
  #card: OpenCard | null = null;

  readonly #role: () => Role | null;

  constructor(options: PanelOptions) {
    this.#el = options.elements;
    this.#i18n = options.i18n;
    this.#store = options.store;
    this.#onSelect = options.onSelect;
    this.#role = options.role;
    this.#el.panel.replaceChildren(this.#countsSection, this.#cardSlot, this.#lowTanksSection, this.#legendSection);
    this.#i18n.onChange(() => this.renderAll());
    // Relative times ("12 秒前") age even when no message arrives.
    setInterval(() => this.#refreshCardTimes(), 1000);
    this.renderAll();
  }

  setSite(name: string, gridNames: Map<string, string>): void {
    this.#siteName = name;
    this.#gridNames = gridNames;
    this.#el.siteName.textContent = name;
    if (this.#card) this.#rebuildCard();
  }

  setConnState(state: ConnState, attempt: number): void {
    this.#conn = { state, attempt };
    this.#renderConn();
  }

  setStorage(status: StorageStatus): void {
    this.#storage = status;
    this.#renderStorage();
  }

  /** Opens the card for `id` (or closes it for null). */
  showDevice(id: string | null): void {
    if (this.#card?.id === id) return;
    this.#card?.chart?.dispose();
    this.#card?.video?.stop();
    this.#card = null;
    if (id !== null) this.#card = { id, el: h('section'), chart: null, lastValuesTs: null };
    this.#rebuildCard();
  }

  get selectedId(): string | null {
    return this.#card?.id ?? null;
  }

  /** After a snapshot or an update batch: counts, low tanks, and the card if its device changed. */
  devicesChanged(changed: readonly DeviceView[] | 'all'): void {
    if (changed === 'all') {
      this.#figuresSoon.run();
    } else {
      // Counts and low tanks at most 4 times a second: a second of 1,000 changes is no more to read.
      this.#figuresSoon.request();
    }
    const card = this.#card;
    if (!card) return;
    // A snapshot may change what the device is (or drop it), so the card is rebuilt, not just refilled.
    if (changed === 'all') this.#rebuildCard();
    else if (changed.some((d) => d.id === card.id)) this.#fillCard();
  }

  renderAll(): void {
    this.#el.siteName.textContent = this.#siteName;
    this.#renderConn();
    this.#renderStorage();
    this.#renderCounts();
    this.#renderLowTanks();
    this.#renderLegend();
    this.#rebuildCard();
  }

  // ---- header and banner --------------------------------------------------------------------

  #renderConn(): void {
    const { state, attempt } = this.#conn;
    const el = this.#el.connState;
    el.dataset.state = state;
    el.textContent = this.#i18n.t(`conn.${state}`, { attempt });
    // Marker colours are stale while disconnected; the page dims them (styles.css).
    document.body.dataset.conn = state;
  }

  #renderStorage(): void {
    const el = this.#el.storageBanner;
    const status = this.#storage;
    el.dataset.state = status?.state ?? 'pending';
    if (!status || status.state === 'ok') {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    el.hidden = false;
    el.setAttribute('role', status.state === 'down' ? 'alert' : 'status');
    const parts: Child[] = [h('strong', {}, this.#i18n.t(status.state === 'down' ? 'storage.down' : 'storage.disabled'))];
    // 'disabled' is fully said by the translated text; for 'down' the server's reason helps the operator.
    const detail = status.state === 'down' ? [status.url, status.message].filter((s): s is string => !!s).join(' — ') : '';
    if (detail) parts.push(h('span', { class: 'banner-detail' }, detail));
    el.replaceChildren(...parts);
  }

  // ---- counts -------------------------------------------------------------------------------

  /** The table with its labels (language); the figures are #updateCounts' to fill. */
  #renderCounts(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, t('counts.kind')),
      h('th', { scope: 'col', class: 'num' }, t('counts.total')),
      ...STATUSES.map((s) => h('th', { scope: 'col', class: `num status-${s}` }, t(`status.${s}`))),
    );
    this.#countRows.clear();
    const rows = KINDS.map((kind) => {
      const style = KIND_STYLE[kind];
      const total = h('td', { class: 'num total' });
      const cell = (s: Availability) => h('td', { class: `num status-${s}`, 'data-status': s });
      const byStatus: CountRow['byStatus'] = { online: cell('online'), offline: cell('offline'), unknown: cell('unknown') };
      const row = h(
        'tr',
        { 'data-testid': `count-${kind}` },
        h('th', { scope: 'row' }, swatch(style.shape, style.color, STATUS_STROKE.online), t(`kind.${kind}`)),
        total,
        ...STATUSES.map((s) => byStatus[s]),
      );
      this.#countRows.set(kind, { row, total, byStatus });
      return row;
    });
    this.#countsSection.replaceChildren(
      h('h2', {}, t('counts.title')),
      h('table', { class: 'count-table' }, h('thead', {}, head), h('tbody', {}, ...rows)),
    );
    this.#updateCounts();
  }

  /** The figures, written in place where they changed (an update batch changes a few cells). */
  #updateCounts(): void {
    const counts = this.#store.counts();
    for (const [kind, { row, total, byStatus }] of this.#countRows) {
      const c = counts[kind];
      setData(row, 'total', String(c.total));
      setText(total, String(c.total));
      for (const s of STATUSES) {
        setData(row, s, String(c[s]));
        setText(byStatus[s], String(c[s]));
        byStatus[s].classList.toggle('zero', c[s] === 0);
      }
    }
  }

  // ---- low tanks ----------------------------------------------------------------------------

  #renderLowTanks(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    const low: Array<{ d: DeviceView; level: number }> = [];
    for (const d of this.#store.tanks()) {
      const level = tankLevel(d);
      if (level !== undefined && level < this.#store.thresholds(d.id).lowPercent) low.push({ d, level });
    }
    low.sort((a, b) => a.level - b.level);
    const shown = low.slice(0, LOW_TANKS_SHOWN);
    // Rows are reused per tank: the list refreshes with every update batch, and a button replaced
    // between mousedown and mouseup would swallow the operator's click. Only what changed is
    // written, and the list is rearranged only when its order did.
    const rows = new Map<string, HTMLLIElement>();
    for (const { d, level } of shown) {
      const li = this.#lowTankRows.get(d.id) ?? this.#lowTankRow(d.id);
      const button = li.firstElementChild as HTMLButtonElement;
      const className = `low-tank band-${this.#store.band(d)}`;
      if (button.className !== className) button.className = className;
      const [nameEl, levelEl] = button.children;
      if (nameEl instanceof HTMLElement) setText(nameEl, d.name);
      if (levelEl instanceof HTMLElement) setText(levelEl, formatPercent(level));
      rows.set(d.id, li);
    }
    this.#lowTankRows = rows;
    const list = this.#lowTankList;
    const inOrder = list.children.length === rows.size && [...rows.values()].every((li, k) => list.children[k] === li);
    if (!inOrder) list.replaceChildren(...rows.values());
    setText(this.#lowTankBadge, String(low.length));
    setText(this.#lowTankTitle, t('lowTanks.title'));
    const note = low.length === 0 ? t('lowTanks.none') : low.length > shown.length ? t('lowTanks.more', { count: low.length - shown.length }) : '';
    setText(this.#lowTankNote, note);
    if (this.#lowTankNote.hidden !== (note === '')) this.#lowTankNote.hidden = note === '';
  }

  #lowTankRow(id: string): HTMLLIElement {
    const button = h(
      'button',
      { type: 'button', class: 'low-tank', 'data-device-id': id },
      h('span', { class: 'low-tank-name' }),
      h('span', { class: 'low-tank-level' }),
    );
    button.addEventListener('click', () => this.#onSelect(id));
    return h('li', {}, button);
  }

  // ---- legend -------------------------------------------------------------------------------

  #renderLegend(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    const kinds = KINDS.map((kind) => {
      const s = KIND_STYLE[kind];
      return h('li', {}, swatch(s.shape, s.color, STATUS_STROKE.online), t(`kind.${kind}`));
    });
    const bands = (['ok', 'warning', 'danger', 'none'] as const).map((band) =>
      h('li', {}, swatch(KIND_STYLE.water_tank.shape, TANK_BAND_COLOR[band], STATUS_STROKE.online), t(`tank.band.${band}`)),
    );
    this.#legendSection.replaceChildren(
      h('h2', {}, t('legend.title')),
      h('ul', { class: 'legend-list' }, ...kinds),
      h('ul', { class: 'legend-list' }, ...bands),
      h('p', { class: 'muted' }, t('tank.thresholdsPerTank', { low: TANK_LOW_PERCENT, critical: TANK_CRITICAL_PERCENT })),
      h('p', { class: 'muted' }, t('legend.statusStroke')),
    );
  }

  // ---- device card --------------------------------------------------------------------------

  /** Builds the card skeleton for the selected device; #fillCard writes the live parts. */
  #rebuildCard(): void {
    const card = this.#card;
    if (!card) {
      this.#cardSlot.replaceChildren();
      return;
    }
    const t = this.#i18n.t.bind(this.#i18n);
    const d = this.#store.get(card.id);
    const close = h('button', { type: 'button', class: 'card-close', 'aria-label': t('card.close'), title: t('card.close') }, '×');
    close.addEventListener('click', () => this.#onSelect(null));
    const el = h('section', { class: 'device-card', 'data-testid': 'device-card', 'data-device-id': card.id });
    const header = h('header', {}, h('h2', { class: 'card-name' }), close);
    el.append(header);
    const thresholds = this.#store.thresholds(card.id);
    if (d?.kind === 'water_tank') {
      el.append(
        h(
          'div',
          { class: 'tank' },
          h(
            'div',
            { class: 'tank-figures' },
            h('div', { class: 'tank-figure' }, h('span', { class: 'figure-label' }, t('tank.level')), h('span', { class: 'tank-level', 'data-testid': 'tank-level' })),
            h('div', { class: 'tank-figure' }, h('span', { class: 'figure-label' }, t('tank.volume')), h('span', { class: 'tank-volume', 'data-testid': 'tank-volume' })),
          ),
          h('div', { class: 'tank-bar' }, h('div', { class: 'tank-bar-fill' }), this.#thresholdMark(thresholds.lowPercent, 'low'), this.#thresholdMark(thresholds.criticalPercent, 'critical')),
          h('div', { class: 'muted tank-thresholds', 'data-testid': 'tank-thresholds' }, t('tank.thresholds', { low: thresholds.lowPercent, critical: thresholds.criticalPercent })),
          h('div', { class: 'tank-band' }),
        ),
      );
    }
    const facts: Array<[MessageKey, string]> = [
      ['card.id', 'id'],
      ['card.kind', 'kind'],
      ['card.status', 'status'],
      ['card.grid', 'grid'],
      ['card.community', 'community'],
      ['card.lastSeen', 'lastSeen'],
      ['card.valuesTs', 'valuesTs'],
    ];
    el.append(
      h('dl', { class: 'facts' }, ...facts.flatMap(([label, field]) => [h('dt', {}, t(label)), h('dd', { 'data-field': field })])),
      h('h3', {}, t('card.values')),
      h('dl', { class: 'values' }),
    );
    if (d) {
      card.chart ??= new DeviceChart({
        i18n: this.#i18n,
        deviceId: card.id,
        kind: d.kind,
        thresholds: () => (d.kind === 'water_tank' ? this.#store.thresholds(card.id) : null),
        storage: () => this.#storage?.state ?? null,
      });
      card.chart.render();
      el.append(card.chart.el);
      if (d.kind === 'camera') {
        card.video ??= new VideoPlayer({ cameraId: card.id, i18n: this.#i18n, role: this.#role, ptz: true, compact: true });
        el.append(card.video.el);
        card.video.start();
      }
    }
    card.el = el;
    this.#cardSlot.replaceChildren(el);
    this.#fillCard();
  }

  #thresholdMark(percent: number, which: 'low' | 'critical'): HTMLElement {
    const mark = h('div', { class: `tank-threshold tank-threshold-${which}` });
    mark.style.left = `${percent}%`;
    return mark;
  }

  #fillCard(): void {
    const card = this.#card;
    if (!card) return;
    const t = this.#i18n.t.bind(this.#i18n);
    const el = card.el;
    const d = this.#store.get(card.id);
    const name = el.querySelector<HTMLElement>('.card-name');
    if (!d) {
      if (name) name.textContent = card.id;
      el.dataset.status = 'gone';
      el.querySelector('.values')?.replaceChildren(h('dd', { class: 'muted' }, t('card.gone')));
      return;
    }
    if (name) name.textContent = d.name;
    el.dataset.kind = d.kind;
    el.dataset.status = d.status;

    const set = (field: string, ...content: Child[]) => el.querySelector(`.facts dd[data-field="${field}"]`)?.replaceChildren(...content);
    set('id', d.id);
    set('kind', t(`kind.${d.kind}`));
    set('status', h('span', { class: `status-dot status-${d.status}` }), t(`status.${d.status}`));
    const gridName = this.#gridNames.get(d.grid);
    set('grid', gridName && gridName !== d.grid ? `${d.grid} · ${gridName}` : d.grid);
    set('community', d.community);
    this.#refreshCardTimes();

    if (d.kind === 'water_tank') {
      const level = tankLevel(d);
      const volume = numericValue(d, 'volumeM3');
      const band = this.#store.band(d);
      const levelEl = el.querySelector<HTMLElement>('.tank-level');
      if (levelEl) {
        levelEl.textContent = level !== undefined ? formatPercent(level) : '—';
        levelEl.dataset.band = band;
      }
      const volumeEl = el.querySelector<HTMLElement>('.tank-volume');
      // Same formatter as the value list below, so the two never disagree in the last digit.
      if (volumeEl) volumeEl.textContent = volume !== undefined ? formatValue(this.#i18n, 'volumeM3', volume) : '—';
      const fill = el.querySelector<HTMLElement>('.tank-bar-fill');
      if (fill) {
        fill.style.width = `${Math.min(Math.max(level ?? 0, 0), 100)}%`;
        fill.style.backgroundColor = TANK_BAND_COLOR[band];
      }
      const bandEl = el.querySelector<HTMLElement>('.tank-band');
      if (bandEl) {
        bandEl.dataset.band = band;
        bandEl.textContent = t(`tank.band.${band}`);
      }
    }
    if (d.valuesTs !== null && d.valuesTs !== card.lastValuesTs) {
      card.lastValuesTs = d.valuesTs;
      card.chart?.append(d.valuesTs, d.values);
    }

    const entries = Object.entries(d.values).sort(([a], [b]) => a.localeCompare(b));
    const values = el.querySelector('.values');
    if (values) {
      values.replaceChildren(
        ...(entries.length === 0
          ? [h('dd', { class: 'muted' }, t('card.noValues'))]
          : entries.flatMap(([field, value]) => {
              const key = `field.${field}`;
              return [h('dt', {}, this.#i18n.has(key) ? t(key) : field), h('dd', { 'data-field': field }, formatValue(this.#i18n, field, value))];
            })),
      );
    }
  }

  #refreshCardTimes(): void {
    const card = this.#card;
    if (!card) return;
    const d = this.#store.get(card.id);
    if (!d) return;
    const when = (ms: number | null): string =>
      ms === null ? this.#i18n.t('card.never') : `${this.#i18n.dateTime(ms)} (${this.#i18n.relative(ms)})`;
    const lastSeen = card.el.querySelector('.facts dd[data-field="lastSeen"]');
    if (lastSeen) lastSeen.textContent = when(d.lastSeen);
    const valuesTs = card.el.querySelector('.facts dd[data-field="valuesTs"]');
    if (valuesTs) valuesTs.textContent = when(d.valuesTs);
  }
}
