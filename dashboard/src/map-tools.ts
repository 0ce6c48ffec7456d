/**
 * Over the map's top left: search by device id or name (a results list; pick one to fly to it and
 * open its card) and filters by kind, status and grid. Names are set as text, never parsed as
 * HTML. Searching 50,000 devices is one pass over precomputed lower-case keys per keystroke pause.
 */
import type { DeviceKind } from '../../protocol/payloads.js';
import type { Availability } from '../../protocol/ws.js';
import { KINDS, STATUSES, type DeviceStore } from './devices.js';
import { h } from './dom.js';
import type { I18n } from './i18n.js';
import { KIND_STYLE, STATUS_STROKE, type DeviceFilter, type GridInfo } from './map.js';

const RESULTS_SHOWN = 12;
const SEARCH_DELAY_MS = 120;

export interface MapToolsOptions {
  root: HTMLElement;
  i18n: I18n;
  store: DeviceStore;
  /** The filter changed (null: everything shown). */
  onFilter: (filter: DeviceFilter | null) => void;
  /** A search result was picked. */
  onPick: (id: string) => void;
}

/** Search keys: lower-case id and name, rebuilt when the device set is replaced. */
interface SearchEntry {
  id: string;
  key: string;
}

export function searchDevices(entries: readonly SearchEntry[], query: string): string[] {
  const q = query.trim().toLowerCase();
  if (q === '') return [];
  const exact: string[] = [];
  const prefix: string[] = [];
  const inside: string[] = [];
  for (const e of entries) {
    const at = e.key.indexOf(q);
    if (at < 0) continue;
    if (e.id.toLowerCase() === q) exact.push(e.id);
    else if (at === 0 || e.key.charCodeAt(at - 1) === 0) prefix.push(e.id);
    else inside.push(e.id);
  }
  return [...exact, ...prefix, ...inside];
}

export class MapTools {
  readonly #opts: MapToolsOptions;
  readonly #input = h('input', { type: 'search', class: 'search-input', 'data-testid': 'device-search', autocomplete: 'off', spellcheck: 'false', role: 'combobox', 'aria-expanded': 'false', 'aria-controls': 'device-search-results', 'aria-autocomplete': 'list' });
  readonly #results = h('ul', { id: 'device-search-results', class: 'search-results', role: 'listbox', 'data-testid': 'search-results' });
  readonly #resultNote = h('p', { class: 'muted search-note', 'data-testid': 'search-note' });
  readonly #filters = h('div', { class: 'map-filters', 'data-testid': 'map-filters' });
  readonly #shown = h('span', { class: 'filter-shown', 'data-testid': 'filter-shown' });
  readonly #kinds = new Set<DeviceKind>(KINDS);
  readonly #statuses = new Set<Availability>(STATUSES);
  #grid: string | null = null;
  #grids: GridInfo[] = [];
  #entries: SearchEntry[] | null = null;
  #matches: string[] = [];
  #active = -1;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #shownCounts = { visible: 0, total: 0 };

  constructor(opts: MapToolsOptions) {
    this.#opts = opts;
    const searchBox = h('div', { class: 'map-search' }, this.#input, this.#results, this.#resultNote);
    this.#results.hidden = true;
    this.#resultNote.hidden = true;
    opts.root.replaceChildren(searchBox, this.#filters);
    // Leaflet must not turn clicks, drags and wheels over the tools into map moves.
    for (const type of ['mousedown', 'dblclick', 'wheel', 'pointerdown', 'touchstart'] as const) {
      opts.root.addEventListener(type, (e) => e.stopPropagation());
    }
    this.#input.addEventListener('input', () => this.#scheduleSearch());
    this.#input.addEventListener('keydown', (e) => this.#onKey(e));
    this.#input.addEventListener('focus', () => {
      if (this.#matches.length > 0 || this.#input.value.trim() !== '') this.#renderResults();
    });
    document.addEventListener('click', (e) => {
      if (!searchBox.contains(e.target as Node)) this.#closeResults();
    });
    opts.i18n.onChange(() => this.render());
    this.render();
  }

  /** The device set was replaced: the search keys are rebuilt at the next search (not on every snapshot). */
  devicesReplaced(): void {
    this.#entries = null;
    if (this.#input.value.trim() !== '') this.#search();
  }

  #searchEntries(): SearchEntry[] {
    if (!this.#entries) {
      const entries: SearchEntry[] = [];
      // \0 between id and name: a match never spans the two, and "starts a word" can see the gap.
      for (const d of this.#opts.store.all()) entries.push({ id: d.id, key: `${d.id}\0${d.name}`.toLowerCase() });
      this.#entries = entries;
    }
    return this.#entries;
  }

  setGrids(grids: GridInfo[]): void {
    this.#grids = grids;
    if (this.#grid !== null && !grids.some((g) => g.id === this.#grid)) this.#grid = null;
    this.render();
  }

  /** "Shown n of m" under the filters; from the map's layer (kept up to date per update batch). */
  setShown(visible: number, total: number): void {
    if (visible === this.#shownCounts.visible && total === this.#shownCounts.total) return;
    this.#shownCounts = { visible, total };
    this.#renderShown();
  }

  get filter(): DeviceFilter | null {
    const all = this.#kinds.size === KINDS.length && this.#statuses.size === STATUSES.length && this.#grid === null;
    return all ? null : { kinds: new Set(this.#kinds), statuses: new Set(this.#statuses), grid: this.#grid };
  }

  render(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    this.#input.placeholder = t('search.placeholder');
    this.#input.setAttribute('aria-label', t('search.label'));
    const chip = (kind: 'kind' | 'status', value: string, label: string, pressed: boolean, marker: HTMLElement) => {
      const b = h('button', { type: 'button', class: 'chip', 'data-filter': kind, 'data-value': value, 'aria-pressed': String(pressed), 'data-testid': `filter-${kind}-${value}` }, marker, label);
      b.addEventListener('click', () => this.#toggle(kind, value));
      return b;
    };
    const kindMarker = (kind: DeviceKind) => {
      const el = h('span', { class: `swatch shape-${KIND_STYLE[kind].shape}`, 'aria-hidden': 'true' });
      el.style.backgroundColor = KIND_STYLE[kind].color;
      el.style.borderColor = STATUS_STROKE.online;
      return el;
    };
    const statusMarker = (status: Availability) => {
      const el = h('span', { class: `status-dot status-${status}`, 'aria-hidden': 'true' });
      return el;
    };
    const grid = h('select', { class: 'grid-filter', 'data-testid': 'filter-grid', 'aria-label': t('filter.grid') });
    grid.append(h('option', { value: '' }, t('filter.allGrids')));
    const byCommunity = new Map<string, GridInfo[]>();
    for (const g of this.#grids) byCommunity.set(g.community, [...(byCommunity.get(g.community) ?? []), g]);
    for (const [community, grids] of byCommunity) {
      const group = h('optgroup', { label: community || t('filter.noCommunity') });
      for (const g of grids) group.append(h('option', { value: g.id }, g.name && g.name !== g.id ? `${g.id} · ${g.name}` : g.id));
      grid.append(group);
    }
    grid.value = this.#grid ?? '';
    grid.addEventListener('change', () => {
      this.#grid = grid.value === '' ? null : grid.value;
      this.#emit();
    });
    const reset = h('button', { type: 'button', class: 'link-button filter-reset', 'data-testid': 'filter-reset' }, t('filter.reset'));
    reset.hidden = this.filter === null;
    reset.addEventListener('click', () => {
      for (const k of KINDS) this.#kinds.add(k);
      for (const s of STATUSES) this.#statuses.add(s);
      this.#grid = null;
      this.#emit();
    });
    this.#filters.setAttribute('aria-label', t('filter.label'));
    this.#filters.replaceChildren(
      h('div', { class: 'chip-row', role: 'group', 'aria-label': t('filter.kind') }, ...KINDS.map((k) => chip('kind', k, t(`kind.${k}`), this.#kinds.has(k), kindMarker(k)))),
      h('div', { class: 'chip-row', role: 'group', 'aria-label': t('filter.status') }, ...STATUSES.map((s) => chip('status', s, t(`status.${s}`), this.#statuses.has(s), statusMarker(s)))),
      h('div', { class: 'chip-row' }, grid, this.#shown, reset),
    );
    this.#renderShown();
    if (!this.#results.hidden) this.#renderResults();
  }

  #renderShown(): void {
    const { i18n } = this.#opts;
    const { visible, total } = this.#shownCounts;
    this.#shown.dataset.visible = String(visible);
    this.#shown.dataset.total = String(total);
    this.#shown.textContent = i18n.t('filter.shown', { visible: i18n.number(visible), total: i18n.number(total) });
  }

  #toggle(kind: 'kind' | 'status', value: string): void {
    const set = (kind === 'kind' ? this.#kinds : this.#statuses) as Set<string>;
    if (set.has(value)) set.delete(value);
    else set.add(value);
    this.#emit();
  }

  #emit(): void {
    this.render();
    this.#opts.onFilter(this.filter);
  }

  // ---- search ----

  #scheduleSearch(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#search();
    }, SEARCH_DELAY_MS);
  }

  #search(): void {
    this.#matches = searchDevices(this.#searchEntries(), this.#input.value);
    this.#active = this.#matches.length > 0 ? 0 : -1;
    this.#renderResults();
  }

  #renderResults(): void {
    const { i18n, store } = this.#opts;
    const t = i18n.t.bind(i18n);
    const query = this.#input.value.trim();
    if (query === '') {
      this.#closeResults();
      return;
    }
    const shown = this.#matches.slice(0, RESULTS_SHOWN);
    const items = shown.map((id, i) => {
      const d = store.get(id);
      const li = h(
        'li',
        { role: 'option', id: `device-search-${i}`, class: 'search-result', 'data-device-id': id, 'aria-selected': String(i === this.#active) },
        h('span', { class: 'result-name' }, d?.name ?? id),
        h('span', { class: 'result-meta' }, d ? `${id} · ${t(`kind.${d.kind}`)} · ${d.grid} · ${t(`status.${d.status}`)}` : id),
      );
      li.dataset.status = d?.status ?? '';
      // mousedown, not click: the input's blur must not close the list under the pointer first.
      li.addEventListener('mousedown', (e) => {
        e.preventDefault();
        this.#pick(id);
      });
      return li;
    });
    this.#results.replaceChildren(...items);
    this.#results.hidden = items.length === 0;
    this.#input.setAttribute('aria-expanded', String(items.length > 0));
    if (this.#active >= 0) this.#input.setAttribute('aria-activedescendant', `device-search-${this.#active}`);
    else this.#input.removeAttribute('aria-activedescendant');
    const total = this.#matches.length;
    this.#resultNote.textContent =
      total === 0 ? t('search.none') : total > shown.length ? t('search.more', { shown: shown.length, total: i18n.number(total) }) : t('search.count', { total });
    this.#resultNote.hidden = false;
  }

  #closeResults(): void {
    this.#results.hidden = true;
    this.#resultNote.hidden = true;
    this.#input.setAttribute('aria-expanded', 'false');
    this.#input.removeAttribute('aria-activedescendant');
  }

  #pick(id: string): void {
    this.#closeResults();
    this.#input.blur();
    this.#opts.onPick(id);
  }

  #onKey(e: KeyboardEvent): void {
    const shown = Math.min(this.#matches.length, RESULTS_SHOWN);
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      if (shown === 0) return;
      e.preventDefault();
      this.#active = (this.#active + (e.key === 'ArrowDown' ? 1 : shown - 1)) % shown;
      this.#renderResults();
    } else if (e.key === 'Enter') {
      // Enter before the pause: search now, then take the first (or highlighted) match.
      if (this.#timer !== null) {
        clearTimeout(this.#timer);
        this.#timer = null;
        this.#search();
      }
      const id = this.#matches[Math.max(0, this.#active)];
      if (id !== undefined) {
        e.preventDefault();
        this.#pick(id);
      }
    } else if (e.key === 'Escape') {
      if (!this.#results.hidden) {
        e.stopPropagation(); // the page's Escape closes the card; here it closes the list first
        this.#closeResults();
      } else {
        this.#input.value = '';
      }
    }
  }
}
