/**
 * 视频墙 — up to nine live cameras for a wall screen, in a 1, 4 or 9 view layout. The cameras are
 * picked from the ledger (search by id or name) and remembered in this browser (localStorage), so
 * a wall screen comes back to the same cameras after a restart.
 *
 * Only what is on screen streams: a camera chosen but outside the layout has no player, and
 * hide() stops every player (the gateway closes a camera's stream `lingerMs` after its last viewer).
 *
 *   const wall = new VideoWall({ root, i18n, role, cameras: () => cameraViews });
 *   view shown / left → wall.show() / wall.hide();  signed out → wall.reset()
 *   "show these on the wall" (an incident's cameras) → wall.setCameras(ids); then show the view
 */
import type { DeviceView } from '../../protocol/ws.js';
import { h } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';
import type { Role } from './roles.js';
import { VideoPlayer } from './video-player.js';

export interface VideoWallOptions {
  /** An empty element the app shows as the video wall view. */
  root: HTMLElement;
  i18n: I18n;
  role: () => Role | null;
  /** The ledger's devices as the app knows them (cameras are picked from those of kind `camera`). */
  cameras: () => DeviceView[];
}

export const WALL_LAYOUTS = [1, 4, 9] as const;
export type WallLayout = (typeof WALL_LAYOUTS)[number];
const LAYOUT_KEYS: Record<WallLayout, MessageKey> = { 1: 'video.wall.layout1', 4: 'video.wall.layout4', 9: 'video.wall.layout9' };
const STATUS_KEYS: Record<DeviceView['status'], MessageKey> = { online: 'status.online', offline: 'status.offline', unknown: 'status.unknown' };
export const WALL_MAX_CAMERAS = 9;
const STORAGE_KEY = 'greenshield.videoWall';
/** The picker lists at most this many matches (a district has 1,600+ cameras). */
const PICKER_LIMIT = 100;

interface Saved {
  layout: WallLayout;
  ids: string[];
}

function isLayout(v: unknown): v is WallLayout {
  return (WALL_LAYOUTS as readonly unknown[]).includes(v);
}

/** The smallest layout that shows `count` cameras. */
function layoutFor(count: number): WallLayout {
  return WALL_LAYOUTS.find((l) => l >= count) ?? 9;
}

function cleanIds(ids: readonly unknown[]): string[] {
  return [...new Set(ids.filter((id): id is string => typeof id === 'string' && id !== ''))].slice(0, WALL_MAX_CAMERAS);
}

function load(): Saved {
  try {
    const raw: unknown = JSON.parse(window.localStorage.getItem(STORAGE_KEY) ?? 'null');
    if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
      const { layout, ids } = raw as Record<string, unknown>;
      return { layout: isLayout(layout) ? layout : 4, ids: Array.isArray(ids) ? cleanIds(ids) : [] };
    }
  } catch {
    // Unreadable or no storage: start empty.
  }
  return { layout: 4, ids: [] };
}

export class VideoWall {
  readonly #opts: VideoWallOptions;
  readonly #el = h('section', { class: 'vw', 'data-testid': 'video-wall' });
  readonly #title = h('h2', { class: 'vw-title' });
  readonly #layoutLabel = h('span', { class: 'vw-layout-label muted' });
  readonly #layoutButtons = new Map<WallLayout, HTMLButtonElement>();
  readonly #pickButton = h('button', { type: 'button', class: 'vw-pick', 'data-testid': 'vw-pick', 'aria-expanded': 'false' });
  readonly #count = h('span', { class: 'vw-count muted', 'data-testid': 'vw-count' });
  readonly #picker = h('div', { class: 'vw-picker', 'data-testid': 'vw-picker' });
  readonly #search = h('input', { type: 'search', class: 'vw-search', 'data-testid': 'vw-search', autocomplete: 'off' });
  readonly #clear = h('button', { type: 'button', 'data-testid': 'vw-clear' });
  readonly #done = h('button', { type: 'button', 'data-testid': 'vw-done' });
  readonly #pickerNote = h('div', { class: 'vw-picker-note muted', 'data-testid': 'vw-picker-note' });
  readonly #options = h('ul', { class: 'vw-options', 'data-testid': 'vw-options' });
  readonly #grid = h('div', { class: 'vw-grid', 'data-testid': 'vw-grid' });
  readonly #players = new Map<string, { player: VideoPlayer; ptz: boolean }>();
  #layout: WallLayout;
  #ids: string[];
  #shown = false;
  #pickerOpen = false;
  /** What the grid was last built for: rebuilt only when this changes, so playing videos are not moved. */
  #gridKey = '';

  constructor(opts: VideoWallOptions) {
    this.#opts = opts;
    const saved = load();
    this.#layout = saved.layout;
    this.#ids = saved.ids;
    const layouts = h('div', { class: 'vw-layouts', role: 'group' });
    for (const layout of WALL_LAYOUTS) {
      const button = h('button', { type: 'button', 'data-testid': `vw-layout-${layout}`, 'data-layout': String(layout) });
      button.addEventListener('click', () => this.#setLayout(layout));
      this.#layoutButtons.set(layout, button);
      layouts.append(button);
    }
    this.#pickButton.addEventListener('click', () => this.#togglePicker(!this.#pickerOpen));
    this.#search.addEventListener('input', () => this.#renderOptions());
    this.#clear.addEventListener('click', () => this.#setIds([]));
    this.#done.addEventListener('click', () => this.#togglePicker(false));
    this.#picker.hidden = true;
    this.#picker.append(h('div', { class: 'vw-picker-bar' }, this.#search, this.#clear, this.#done), this.#pickerNote, this.#options);
    this.#el.append(
      h('header', { class: 'vw-toolbar' }, this.#title, this.#layoutLabel, layouts, this.#pickButton, this.#count),
      this.#picker,
      this.#grid,
    );
    opts.root.replaceChildren(this.#el);
    opts.i18n.onChange(() => this.#render(true));
    this.#render();
  }

  /** The view was opened: the visible cameras start streaming. */
  show(): void {
    this.#shown = true;
    this.#render();
  }

  /** The view was left: every player stops. */
  hide(): void {
    this.#shown = false;
    this.#render();
  }

  /** Signed out: stop everything, close the picker. The remembered cameras stay for the next session. */
  reset(): void {
    this.#shown = false;
    this.#search.value = '';
    this.#togglePicker(false);
    this.#render();
  }

  /** Shows these cameras (at most nine, in this order), growing the layout to fit them; remembered. */
  setCameras(ids: string[]): void {
    const clean = cleanIds(ids);
    if (clean.length > this.#layout) this.#layout = layoutFor(clean.length);
    this.#setIds(clean);
  }

  #setIds(ids: string[]): void {
    this.#ids = ids;
    this.#save();
    this.#render();
  }

  #setLayout(layout: WallLayout): void {
    this.#layout = layout;
    this.#save();
    this.#render();
  }

  #toggle(id: string, on: boolean): void {
    if (on === this.#ids.includes(id)) return;
    if (!on) {
      this.#setIds(this.#ids.filter((x) => x !== id));
      return;
    }
    if (this.#ids.length >= WALL_MAX_CAMERAS) return;
    const ids = [...this.#ids, id];
    // A camera added beyond the layout would not be seen: grow the layout to show it.
    if (ids.length > this.#layout) this.#layout = layoutFor(ids.length);
    this.#setIds(ids);
  }

  #togglePicker(open: boolean): void {
    this.#pickerOpen = open;
    this.#picker.hidden = !open;
    this.#pickButton.setAttribute('aria-expanded', String(open));
    if (open) {
      this.#renderOptions();
      this.#search.focus();
    }
  }

  #save(): void {
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify({ layout: this.#layout, ids: this.#ids } satisfies Saved));
    } catch {
      // Not remembered, but the wall still shows them now.
    }
  }

  #cameraViews(): Map<string, DeviceView> {
    return new Map(this.#opts.cameras().filter((d) => d.kind === 'camera').map((d) => [d.id, d]));
  }

  // ---- players ---------------------------------------------------------------------------------------

  /** Exactly the cameras on screen have a running player; PTZ on the single view only. */
  #syncPlayers(visible: string[], names: Map<string, DeviceView>): void {
    const ptz = this.#layout === 1;
    for (const [id, entry] of this.#players) {
      if (!visible.includes(id) || entry.ptz !== ptz) {
        entry.player.stop();
        this.#players.delete(id);
      }
    }
    for (const id of visible) {
      if (this.#players.has(id)) continue;
      const name = names.get(id)?.name;
      const player = new VideoPlayer({ cameraId: id, i18n: this.#opts.i18n, role: this.#opts.role, ptz, compact: !ptz, label: name ? `${name} · ${id}` : id });
      this.#players.set(id, { player, ptz });
      player.start();
    }
  }

  // ---- view ------------------------------------------------------------------------------------------

  #render(textOnly = false): void {
    const { i18n } = this.#opts;
    this.#title.textContent = i18n.t('video.wall.title');
    this.#layoutLabel.textContent = i18n.t('video.wall.layout');
    for (const [layout, button] of this.#layoutButtons) {
      button.textContent = i18n.t(LAYOUT_KEYS[layout]);
      button.setAttribute('aria-pressed', String(layout === this.#layout));
    }
    this.#pickButton.textContent = i18n.t('video.wall.pick');
    this.#count.textContent = i18n.t('video.wall.selected', { count: this.#ids.length, max: WALL_MAX_CAMERAS });
    this.#search.placeholder = i18n.t('video.wall.search');
    this.#search.setAttribute('aria-label', i18n.t('video.wall.search'));
    this.#clear.textContent = i18n.t('video.wall.clear');
    this.#done.textContent = i18n.t('video.wall.pickDone');
    this.#el.dataset.layout = String(this.#layout);
    this.#el.dataset.shown = String(this.#shown);
    if (this.#pickerOpen) this.#renderOptions();
    if (textOnly) {
      this.#renderEmptyTiles();
      return;
    }
    this.#renderGrid();
  }

  #renderGrid(): void {
    const visible = this.#shown ? this.#ids.slice(0, this.#layout) : [];
    const names = this.#cameraViews();
    this.#syncPlayers(visible, names);
    const key = `${this.#shown}|${this.#layout}|${visible.join(',')}`;
    if (key === this.#gridKey) return;
    this.#gridKey = key;
    this.#grid.dataset.layout = String(this.#layout);
    if (!this.#shown) {
      this.#grid.replaceChildren();
      return;
    }
    const tiles: HTMLElement[] = [];
    for (let i = 0; i < this.#layout; i++) {
      const id = visible[i];
      const entry = id === undefined ? undefined : this.#players.get(id);
      if (id === undefined || !entry) {
        const tile = h('button', { type: 'button', class: 'vw-tile vw-empty', 'data-testid': 'vw-empty' }, h('span', { class: 'vw-empty-title' }), h('span', { class: 'vw-empty-hint muted' }));
        tile.addEventListener('click', () => this.#togglePicker(true));
        tiles.push(tile);
        continue;
      }
      const remove = h('button', { type: 'button', class: 'vw-remove', 'data-testid': 'vw-remove' }, '×');
      remove.addEventListener('click', () => this.#toggle(id, false));
      tiles.push(h('div', { class: 'vw-tile', 'data-testid': 'vw-tile', 'data-camera': id }, entry.player.el, remove));
    }
    this.#grid.replaceChildren(...tiles);
    this.#renderEmptyTiles();
  }

  #renderEmptyTiles(): void {
    const { i18n } = this.#opts;
    for (const tile of this.#grid.querySelectorAll('.vw-empty')) {
      tile.querySelector('.vw-empty-title')!.textContent = i18n.t('video.wall.empty');
      tile.querySelector('.vw-empty-hint')!.textContent = i18n.t('video.wall.emptyHint');
    }
    for (const button of this.#grid.querySelectorAll<HTMLElement>('.vw-remove')) {
      button.title = i18n.t('video.wall.remove');
      button.setAttribute('aria-label', i18n.t('video.wall.remove'));
    }
  }

  #renderOptions(): void {
    const { i18n } = this.#opts;
    const cameras = [...this.#cameraViews().values()];
    const query = this.#search.value.trim().toLowerCase();
    const chosen = new Set(this.#ids);
    // Chosen cameras first (in wall order), then the matches by id.
    const matches = cameras
      .filter((d) => query === '' || d.id.toLowerCase().includes(query) || d.name.toLowerCase().includes(query))
      .sort((a, b) => {
        const ia = this.#ids.indexOf(a.id);
        const ib = this.#ids.indexOf(b.id);
        if (ia !== -1 || ib !== -1) return (ia === -1 ? Infinity : ia) - (ib === -1 ? Infinity : ib);
        return a.id.localeCompare(b.id);
      });
    const full = this.#ids.length >= WALL_MAX_CAMERAS;
    const notes: string[] = [];
    if (cameras.length === 0) notes.push(i18n.t('video.wall.noCameras'));
    else if (matches.length === 0) notes.push(i18n.t('video.wall.noMatch'));
    if (matches.length > PICKER_LIMIT) notes.push(i18n.t('video.wall.more', { count: matches.length - PICKER_LIMIT }));
    if (full) notes.push(i18n.t('video.wall.full', { max: WALL_MAX_CAMERAS }));
    this.#pickerNote.textContent = notes.join(' · ');
    this.#pickerNote.hidden = notes.length === 0;
    this.#options.replaceChildren(
      ...matches.slice(0, PICKER_LIMIT).map((d) => {
        const on = chosen.has(d.id);
        const box = h('input', { type: 'checkbox' });
        box.checked = on;
        box.disabled = !on && full;
        box.addEventListener('change', () => this.#toggle(d.id, box.checked));
        const index = this.#ids.indexOf(d.id);
        const label = h(
          'label',
          { class: `vw-option status-${d.status}`, 'data-testid': 'vw-option', 'data-camera': d.id },
          box,
          h('span', { class: 'vw-option-name' }, d.name),
          h('span', { class: 'vw-option-id muted' }, d.id),
          h('span', { class: 'vw-option-status' }, i18n.t(STATUS_KEYS[d.status])),
        );
        if (index >= this.#layout) label.append(h('span', { class: 'vw-option-hidden muted' }, i18n.t('video.wall.notShown')));
        return h('li', {}, label);
      }),
    );
  }
}
