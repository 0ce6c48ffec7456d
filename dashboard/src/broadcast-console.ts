/**
 * 广播喊话 — the broadcast console. A duty officer picks poles (on the map or from lists), says
 * what they should speak, checks what will happen and sends; everyone signed in watches each job
 * reach its poles live and looks through the history. Viewers and grid workers see jobs and
 * progress only: no form, no Cancel, no Retry (the gateway refuses them anyway, 403).
 *
 * The app mounts it into an element and feeds it the `/ws` broadcast messages (`handle`); it
 * draws on the live map through its own layer (broadcast-map.ts) only while it is shown.
 *
 *   const console = new BroadcastConsole({ root, i18n, role, map, project, poles });
 *   socket message → console.handle(msg)         (true when it was a broadcast message)
 *   view shown/hidden → console.show() / hide()
 *   incident card "warn nearby poles" → console.prefillFromIncident(incident); then show the view
 *   signed out → console.reset()
 *   overview tile → overview.connect({ broadcasts: console.inProgress })
 */
import './broadcast.css';
import type * as L from 'leaflet';
import type { Incident } from '../../protocol/incidents.js';
import type { DeviceView } from '../../protocol/ws.js';
import { ApiError, fetchSite } from './api.js';
import { ComposeForm } from './broadcast-compose.js';
import {
  BroadcastJobs,
  DELIVERY_STATES,
  JOB_STATUSES,
  PRIORITIES,
  countTotal,
  fetchCatalogue,
  isOpenJob,
  listBroadcasts,
  type BroadcastCatalogue,
  type BroadcastJob,
  type BroadcastPriority,
  type BroadcastStatus,
  type JobEvent,
} from './broadcast-feed.js';
import { BroadcastMapLayer } from './broadcast-map.js';
import { JobDetail } from './broadcast-job.js';
import { siteAreas, type SiteAreas } from './broadcast-targets.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n } from './i18n.js';
import type { BroadcastsInProgress, OverviewSource } from './overview.js';
import { can, type Role } from './roles.js';

export { parseBroadcastMessage } from './broadcast-feed.js';

export interface BroadcastConsoleOptions {
  /** An empty element the app shows as the "广播" view or side panel. */
  root: HTMLElement;
  i18n: I18n;
  role: () => Role | null;
  /** The live map (may be null until the map view was shown). */
  map: () => L.Map | null;
  /** WGS-84 → map coordinates (GCJ-02 over Chinese tiles), as [lat, lon]. */
  project: (lat: number, lon: number) => [number, number];
  /** Current pole views (kind `voice_pole`). */
  poles: () => DeviceView[];
}

type Tab = 'compose' | 'jobs' | 'history';
/** History filter: one status, the open ones together, or all (''). */
const HISTORY_STATUS: Record<string, readonly BroadcastStatus[]> = { '': [], open: ['scheduled', 'active'], finished: ['finished'], cancelled: ['cancelled'] };
const HISTORY_PAGE = 50;
const RECENT_MS = 3_600_000;
const RECENT_SHOWN = 30;
/** How often a shown console looks for the map appearing (or being replaced) and for new poles. */
const MAP_WATCH_MS = 1000;
/** The pole index is rebuilt at most this often (`poles()` may build a new array on every call). */
const POLE_INDEX_MS = 2000;

/** A settable value with subscribers (the overview's source shape, overview.ts). */
class Feed<T> implements OverviewSource<T> {
  #value: T | null = null;
  readonly #listeners = new Set<(value: T | null) => void>();

  set(value: T | null): void {
    if (JSON.stringify(value) === JSON.stringify(this.#value)) return;
    this.#value = value;
    for (const listener of this.#listeners) {
      try {
        listener(value);
      } catch (err) {
        console.error('broadcast overview listener failed', err);
      }
    }
  }

  subscribe(listener: (value: T | null) => void): () => void {
    this.#listeners.add(listener);
    listener(this.#value);
    return () => this.#listeners.delete(listener);
  }
}

export class BroadcastConsole {
  /** Jobs running now and poles playing, for the overview's tile (null until the first snapshot). */
  readonly inProgress: OverviewSource<BroadcastsInProgress>;
  readonly #inProgress = new Feed<BroadcastsInProgress>();
  readonly #opts: BroadcastConsoleOptions;
  readonly #jobs = new BroadcastJobs();
  readonly #layer: BroadcastMapLayer;
  readonly #compose: ComposeForm;
  readonly #detail: JobDetail;
  readonly #el = h('section', { class: 'bc-console', 'data-testid': 'broadcast-console' });
  readonly #liveCount = h('span', { class: 'bc-live-count', 'data-testid': 'bc-live-count' });
  readonly #tabs = h('nav', { class: 'bc-tabs', role: 'tablist' });
  readonly #notice = h('div', { class: 'bc-error', role: 'alert', 'data-testid': 'bc-notice' });
  readonly #jobsPanel = h('section', { class: 'bc-panel', 'data-testid': 'bc-jobs' });
  readonly #historyPanel = h('section', { class: 'bc-panel', 'data-testid': 'bc-history' });
  readonly #historyList = h('ol', { class: 'bc-job-list', 'data-testid': 'bc-history-list' });
  readonly #historyMore = h('button', { type: 'button', 'data-testid': 'bc-history-more' });
  readonly #historyStatus = h('select', { 'data-testid': 'bc-history-status' });
  readonly #historyPriority = h('select', { 'data-testid': 'bc-history-priority' });
  #tab: Tab | null = null;
  #shown = false;
  #watch: ReturnType<typeof setInterval> | null = null;
  #frame = 0;
  #catalogue: BroadcastCatalogue | null = null;
  #catalogueLoad: Promise<void> | null = null;
  #areas: SiteAreas | null = null;
  #areasLoad: Promise<void> | null = null;
  #notices: string[] = [];
  #history: { jobs: BroadcastJob[]; total: number; loading: boolean; error: string; stale: boolean } = { jobs: [], total: 0, loading: false, error: '', stale: true };
  #historyAbort: AbortController | null = null;
  #poleIndex: { at: number; byId: Map<string, DeviceView> } = { at: 0, byId: new Map() };
  /** How many poles `poles()` had at the last look: a change redraws the lists and the pickable poles. */
  #polesSeen = -1;
  /** Bumped by reset(): answers to requests of the last session are dropped. */
  #generation = 0;

  constructor(opts: BroadcastConsoleOptions) {
    this.#opts = opts;
    this.inProgress = this.#inProgress;
    const describe = (err: unknown) => this.#describe(err);
    this.#layer = new BroadcastMapLayer({
      project: opts.project,
      onPole: (id) => this.#compose.togglePole(id),
      onPoint: (tool, at) => this.#compose.pickPoint(tool, at),
      onPolygon: (ring) => this.#compose.polygonDrawn(ring),
      onDrawing: (n) => this.#compose.drawingChanged(n),
    });
    this.#compose = new ComposeForm({
      i18n: opts.i18n,
      layer: this.#layer,
      poles: () => this.#poles(),
      areas: () => this.#areas,
      catalogue: () => this.#catalogue,
      mapReady: () => this.#layer.map !== null,
      onSent: (job) => {
        this.#jobs.remember(job);
        this.#history.stale = true;
        this.#openJob(job.id);
      },
      describe,
    });
    this.#detail = new JobDetail({
      i18n: opts.i18n,
      role: opts.role,
      jobs: this.#jobs,
      layer: this.#layer,
      pole: (id) => this.#pole(id),
      onBack: () => this.#closeJob(),
      onOpen: (id) => this.#openJob(id),
      describe,
    });
    this.#jobs.onChange((e) => this.#onJobs(e));
    opts.i18n.onChange(() => this.#renderAll());
    this.#buildHistoryFilters();
    this.#el.append(
      h('header', { class: 'bc-header' }, h('h2', {}, h('span', { 'data-i18n': 'bc.title' }), ' ', this.#liveCount)),
      this.#tabs,
      this.#notice,
      this.#compose.el,
      this.#jobsPanel,
      this.#historyPanel,
      this.#detail.el,
    );
    // The console may sit over the map: its clicks, wheels and drags are not the map's.
    for (const type of ['mousedown', 'dblclick', 'wheel', 'pointerdown', 'touchstart'] as const) this.#el.addEventListener(type, (e) => e.stopPropagation());
    opts.root.replaceChildren(this.#el);
    this.#renderAll();
  }

  // ---- the app's calls ------------------------------------------------------------------------------

  /** A `/ws` message; true if it was a broadcast message. */
  handle(msg: { type: string }): boolean {
    return this.#jobs.handle(msg);
  }

  show(): void {
    if (this.#shown) return;
    this.#shown = true;
    this.#polesSeen = this.#opts.poles().length;
    this.#load();
    this.#attachMap();
    this.#watch = setInterval(() => this.#watchMap(), MAP_WATCH_MS);
    if (this.#tab === null || (this.#tab === 'compose' && !this.#duty())) this.#tab = this.#duty() ? 'compose' : 'jobs';
    this.#renderAll();
    this.#activatePanels();
  }

  /** Hidden: no map tool, nothing of the console left on the map. */
  hide(): void {
    if (!this.#shown) return;
    this.#shown = false;
    if (this.#watch !== null) clearInterval(this.#watch);
    this.#watch = null;
    this.#compose.deactivate();
    this.#detail.setShown(false);
    this.#layer.attach(null);
  }

  /** "Warn nearby poles": a form filled in from the incident (duty officers; others get the job list). */
  prefillFromIncident(incident: Incident): void {
    if (!this.#duty()) return;
    this.#detail.close();
    this.#tab = 'compose';
    const generation = this.#generation;
    const fill = () => {
      if (generation !== this.#generation) return;
      this.#compose.prefillFromIncident(incident);
      this.#renderAll();
      this.#activatePanels();
    };
    // The template list is needed to fill the template in; it is usually there already.
    if (this.#catalogue) fill();
    else void this.#loadCatalogue().then(fill);
  }

  /** Signed out: everything forgotten, nothing left on the map. */
  reset(): void {
    this.#generation++;
    this.hide();
    this.#historyAbort?.abort();
    this.#jobs.clear();
    this.#compose.reset();
    this.#detail.close();
    this.#layer.clear();
    this.#catalogue = null;
    this.#catalogueLoad = null;
    this.#areas = null;
    this.#areasLoad = null;
    this.#notices = [];
    this.#history = { jobs: [], total: 0, loading: false, error: '', stale: true };
    this.#historyStatus.value = '';
    this.#historyPriority.value = '';
    this.#poleIndex = { at: 0, byId: new Map() };
    this.#polesSeen = -1;
    this.#tab = null;
    this.#inProgress.set(null);
    this.#renderAll();
  }

  // ---- loading ----------------------------------------------------------------------------------------

  #load(): void {
    void this.#loadCatalogue();
    if (!this.#areas && !this.#areasLoad) {
      const generation = this.#generation;
      this.#areasLoad = fetchSite().then(
        (site) => {
          if (generation !== this.#generation) return;
          this.#areas = siteAreas(site);
          this.#compose.areasChanged();
        },
        (err: unknown) => {
          // Grids still come from the poles; only clicking a grid on the map needs the outlines.
          if (generation === this.#generation) this.#areasLoad = null;
          if (!(err instanceof ApiError && err.status === 401)) console.warn('broadcast console: GET /api/site failed', err);
        },
      );
    }
  }

  #loadCatalogue(): Promise<void> {
    if (this.#catalogue) return Promise.resolve();
    if (this.#catalogueLoad) return this.#catalogueLoad;
    const generation = this.#generation;
    this.#catalogueLoad = fetchCatalogue().then(
      (catalogue) => {
        if (generation !== this.#generation) return;
        this.#catalogue = catalogue;
        this.#setNotice('catalogue', null);
        this.#compose.catalogueChanged();
      },
      (err: unknown) => {
        if (generation !== this.#generation) return;
        this.#catalogueLoad = null;
        this.#setNotice('catalogue', this.#opts.i18n.t('bc.catalogueFailed', { message: this.#describe(err) }));
      },
    );
    return this.#catalogueLoad;
  }

  async #loadHistory(append = false): Promise<void> {
    this.#historyAbort?.abort();
    const abort = new AbortController();
    this.#historyAbort = abort;
    const status = HISTORY_STATUS[this.#historyStatus.value] ?? [];
    const priority = this.#historyPriority.value as BroadcastPriority | '';
    this.#history.loading = true;
    this.#history.stale = false;
    this.#renderHistory();
    try {
      const page = await listBroadcasts(
        { status, ...(priority ? { priority } : {}), limit: HISTORY_PAGE, offset: append ? this.#history.jobs.length : 0 },
        abort.signal,
      );
      if (abort.signal.aborted) return;
      this.#history.jobs = append ? [...this.#history.jobs, ...page.broadcasts] : page.broadcasts;
      this.#history.total = page.total;
      this.#history.error = '';
    } catch (err) {
      if (abort.signal.aborted) return;
      this.#history.error = this.#describe(err);
    }
    this.#history.loading = false;
    this.#renderHistory();
  }

  // ---- map ----------------------------------------------------------------------------------------------

  #attachMap(): void {
    const map = this.#opts.map();
    if (map === this.#layer.map) return;
    this.#layer.attach(map);
    this.#compose.render();
    this.#activatePanels();
  }

  /** While shown: the map may appear later (the map view not opened yet) and poles may arrive. */
  #watchMap(): void {
    this.#attachMap();
    const count = this.#opts.poles().length;
    if (count !== this.#polesSeen) {
      this.#polesSeen = count;
      this.#poleIndex.at = 0;
      this.#compose.areasChanged();
      this.#compose.refreshMap();
    }
  }

  /** The map tools and drawings of whichever panel is showing. */
  #activatePanels(): void {
    if (!this.#shown) return;
    const detailOpen = this.#detail.jobId !== null;
    if (!detailOpen && this.#tab === 'compose' && this.#duty()) {
      this.#detail.setShown(false);
      this.#compose.activate();
    } else {
      this.#compose.deactivate();
      this.#layer.showSelection({ kind: 'none' }, []);
      this.#detail.setShown(detailOpen);
    }
  }

  // ---- poles ------------------------------------------------------------------------------------------

  #poles(): DeviceView[] {
    return this.#opts.poles().filter((p) => p.kind === 'voice_pole');
  }

  #pole(id: string): DeviceView | undefined {
    const now = Date.now();
    if (now - this.#poleIndex.at > POLE_INDEX_MS) {
      const poles = this.#poles();
      this.#poleIndex = { at: now, byId: new Map(poles.map((p) => [p.id, p])) };
    }
    return this.#poleIndex.byId.get(id);
  }

  // ---- jobs -----------------------------------------------------------------------------------------------

  #openJob(id: string): void {
    this.#detail.open(id);
    if (this.#tab === 'compose' || this.#tab === null) this.#tab = 'jobs';
    this.#renderAll();
    this.#activatePanels();
  }

  #closeJob(): void {
    this.#detail.close();
    this.#renderAll();
    this.#activatePanels();
  }

  #onJobs(e: JobEvent): void {
    if (e.kind === 'job' && e.created) this.#history.stale = true;
    this.#updateInProgress();
    // Lists are redrawn once per frame, however many messages arrive.
    if (this.#frame === 0) {
      this.#frame = requestAnimationFrame(() => {
        this.#frame = 0;
        this.#renderHeader();
        this.#renderJobs();
        if (this.#tab === 'history' && this.#history.stale && this.#shown) void this.#loadHistory();
        else this.#renderHistory();
      });
    }
  }

  #updateInProgress(): void {
    if (!this.#jobs.snapshotSeen) return;
    const active = this.#jobs.all().filter((j) => j.status === 'active');
    this.#inProgress.set({ jobs: active.length, polesPlaying: active.reduce((n, j) => n + j.counts.playing, 0) });
  }

  // ---- rendering ----------------------------------------------------------------------------------------

  #duty(): boolean {
    return can(this.#opts.role(), 'duty_officer');
  }

  #renderAll(): void {
    const { i18n } = this.#opts;
    const duty = this.#duty();
    if (this.#tab === 'compose' && !duty) this.#tab = 'jobs';
    const tab = this.#tab ?? (duty ? 'compose' : 'jobs');
    const detailOpen = this.#detail.jobId !== null;
    const tabs: Tab[] = duty ? ['compose', 'jobs', 'history'] : ['jobs', 'history'];
    this.#tabs.replaceChildren(
      ...tabs.map((name) => {
        const b = h('button', { type: 'button', role: 'tab', 'data-testid': `bc-tab-${name}`, 'aria-selected': String(tab === name) }, i18n.t(`bc.tab.${name}`));
        b.addEventListener('click', () => this.#selectTab(name));
        return b;
      }),
    );
    // Viewers get no form at all: not a disabled one.
    if (duty) {
      if (this.#compose.el.parentNode !== this.#el) this.#jobsPanel.before(this.#compose.el);
    } else this.#compose.el.remove();
    this.#compose.el.hidden = detailOpen || tab !== 'compose';
    this.#jobsPanel.hidden = detailOpen || tab !== 'jobs';
    this.#historyPanel.hidden = detailOpen || tab !== 'history';
    this.#detail.el.hidden = !detailOpen;
    this.#renderHeader();
    if (duty) this.#compose.render();
    this.#renderJobs();
    this.#renderHistory();
    if (detailOpen) this.#detail.render();
    this.#renderNotice();
    i18n.applyStatic(this.#el);
  }

  #selectTab(tab: Tab): void {
    this.#tab = tab;
    if (this.#detail.jobId !== null) this.#detail.close();
    if (tab === 'history' && this.#history.stale) void this.#loadHistory();
    this.#renderAll();
    this.#activatePanels();
  }

  #renderHeader(): void {
    const open = this.#jobs.all().filter((j) => j.status === 'active').length;
    this.#liveCount.textContent = open > 0 ? this.#opts.i18n.t('bc.liveCount', { count: open }) : '';
  }

  #renderJobs(): void {
    const { i18n } = this.#opts;
    const jobs = this.#jobs.all();
    const open = jobs.filter(isOpenJob);
    // Ended in the last hour, as the /ws snapshot has them: the history tab has the rest.
    const since = Date.now() - RECENT_MS;
    const ended = jobs.filter((j) => !isOpenJob(j) && (j.finishedAt ?? j.cancelledAt ?? j.createdAt) >= since).slice(0, RECENT_SHOWN);
    const list = (items: BroadcastJob[], empty: string, testid: string) =>
      h('ol', { class: 'bc-job-list', 'data-testid': testid }, ...(items.length ? items.map((j) => this.#jobRow(j)) : [h('li', { class: 'bc-muted bc-empty' }, empty)]));
    this.#jobsPanel.replaceChildren(
      h('h3', {}, i18n.t('bc.jobs.open', { count: open.length })),
      list(open, i18n.t(this.#jobs.snapshotSeen ? 'bc.jobs.noneOpen' : 'bc.jobs.waiting'), 'bc-open-jobs'),
      h('h3', {}, i18n.t('bc.jobs.recent')),
      list(ended, i18n.t('bc.jobs.noneRecent'), 'bc-recent-jobs'),
    );
  }

  #jobRow(job: BroadcastJob): HTMLElement {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    const total = countTotal(job.counts) || job.poleCount;
    const bar = h('div', { class: 'bc-bar bc-bar-small' });
    for (const s of DELIVERY_STATES) if (job.counts[s] > 0) bar.append(h('span', { class: `bc-bar-part bc-state-${s}`, style: `flex-grow:${job.counts[s]}` }));
    const li = h(
      'li',
      {
        class: `bc-job bc-priority-${job.priority}${this.#detail.jobId === job.id ? ' selected' : ''}`,
        'data-testid': 'bc-job',
        'data-job': job.id,
        'data-status': job.status,
        tabindex: '0',
      },
      h(
        'div',
        { class: 'line1' },
        h('span', { class: `bc-badge bc-priority-${job.priority}` }, t(`bc.priority.${job.priority}`)),
        h('strong', { class: 'bc-job-title' }, job.title),
        h('span', { class: `bc-badge bc-status-${job.status}` }, t(`bc.status.${job.status}`)),
      ),
      h('div', { class: 'line2' }, h('span', { class: 'bc-job-progress', 'data-testid': 'bc-job-row-progress' }, t('bc.progress.of', { done: job.counts.done, total })), ' · ', job.targetLabel, ' · ', job.createdByName, ' · ', i18n.relative(job.createdAt)),
      bar,
    );
    li.addEventListener('click', () => this.#openJob(job.id));
    li.addEventListener('keydown', (e) => e.key === 'Enter' && this.#openJob(job.id));
    return li;
  }

  #buildHistoryFilters(): void {
    const refresh = h('button', { type: 'button', 'data-testid': 'bc-history-refresh', 'data-i18n': 'bc.history.refresh' });
    refresh.addEventListener('click', () => void this.#loadHistory());
    this.#historyStatus.addEventListener('change', () => void this.#loadHistory());
    this.#historyPriority.addEventListener('change', () => void this.#loadHistory());
    this.#historyMore.addEventListener('click', () => void this.#loadHistory(true));
    const fieldLabel = (key: 'bc.history.status' | 'bc.history.priority', control: HTMLElement) => h('label', { class: 'bc-field' }, h('span', { class: 'bc-label', 'data-i18n': key }), control);
    this.#historyPanel.append(
      h('div', { class: 'bc-row bc-filters' }, fieldLabel('bc.history.status', this.#historyStatus), fieldLabel('bc.history.priority', this.#historyPriority), refresh),
      this.#historyList,
      this.#historyMore,
    );
  }

  #renderHistory(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    const status = this.#historyStatus.value;
    const priority = this.#historyPriority.value;
    this.#historyStatus.replaceChildren(
      h('option', { value: '' }, t('bc.history.all')),
      h('option', { value: 'open' }, t('bc.history.open')),
      ...JOB_STATUSES.filter((s) => s === 'finished' || s === 'cancelled').map((s) => h('option', { value: s }, t(`bc.status.${s}`))),
    );
    this.#historyPriority.replaceChildren(h('option', { value: '' }, t('bc.history.all')), ...PRIORITIES.map((p) => h('option', { value: p }, t(`bc.priority.${p}`))));
    this.#historyStatus.value = status;
    this.#historyPriority.value = priority;
    const hist = this.#history;
    // A job the live feed knows is shown as the feed has it now.
    const rows = hist.jobs.map((j) => this.#jobRow(this.#jobs.get(j.id) ?? j));
    const note = hist.error ? h('li', { class: 'bc-warn bc-empty' }, hist.error) : hist.loading && rows.length === 0 ? h('li', { class: 'bc-muted bc-empty' }, t('bc.history.loading')) : rows.length === 0 ? h('li', { class: 'bc-muted bc-empty' }, t('bc.history.none')) : null;
    this.#historyList.replaceChildren(...rows, ...(note ? [note] : []));
    this.#historyList.dataset.loading = String(hist.loading);
    this.#historyMore.hidden = hist.jobs.length >= hist.total || hist.loading;
    this.#historyMore.textContent = t('bc.history.more', { count: hist.total - hist.jobs.length });
  }

  #setNotice(key: string, text: string | null): void {
    this.#notices = this.#notices.filter((n) => !n.startsWith(`${key}\u0000`));
    if (text) this.#notices.push(`${key}\u0000${text}`);
    this.#renderNotice();
  }

  #renderNotice(): void {
    this.#notice.hidden = this.#notices.length === 0;
    this.#notice.replaceChildren(...this.#notices.map((n) => h('div', {}, n.slice(n.indexOf('\u0000') + 1))));
  }

  /** The gateway's broadcast errors in the user's language where the catalogue has them (`bc.error.<CODE>`). */
  #describe(err: unknown): string {
    const { i18n } = this.#opts;
    if (err instanceof ApiError) {
      const key = `bc.error.${err.code}`;
      if (i18n.has(key)) return i18n.t('error.withCode', { text: i18n.t(key, { message: err.message }), code: err.code });
    }
    return describeError(i18n, err);
  }
}
