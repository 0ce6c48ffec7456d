/**
 * One broadcast job, live: n of m poles done, the count in each delivery state, each pole's state
 * and reason, and its poles on the map coloured by state; Cancel and Retry for duty officers.
 *
 * The deliveries come from `GET /api/broadcasts/{id}` once; after that every `broadcast.progress`
 * carries the complete counts and the poles that changed, so nothing is polled. Progress that
 * arrives while the first answer is on its way is kept and applied on top of it, never letting
 * a pole step back (an answer may be newer than a message that overtook it).
 */
import type { DeviceView } from '../../protocol/ws.js';
import {
  DELIVERY_STATES,
  FINAL_STATES,
  cancelBroadcast,
  countTotal,
  describeSchedule,
  fetchBroadcast,
  isOpenJob,
  retryBroadcast,
  type BroadcastJob,
  type BroadcastJobs,
  type DeliveryState,
  type JobEvent,
} from './broadcast-feed.js';
import type { BroadcastMapLayer } from './broadcast-map.js';
import { h } from './dom.js';
import type { I18n } from './i18n.js';
import { can, type Role } from './roles.js';

interface PoleDelivery {
  state: DeliveryState;
  reason: string | null;
}

/** Rows drawn at most; a state filter finds the rest (10,000 poles are not read row by row). */
const MAX_ROWS = 400;
const RANK: Record<DeliveryState, number> = { queued: 0, sent: 1, accepted: 2, playing: 3, done: 4, failed: 4, expired: 4, preempted: 4, cancelled: 4 };

export interface JobDetailOptions {
  i18n: I18n;
  role: () => Role | null;
  jobs: BroadcastJobs;
  layer: BroadcastMapLayer;
  pole: (id: string) => DeviceView | undefined;
  onBack: () => void;
  /** Another job should be shown (the re-send just created). */
  onOpen: (id: string) => void;
  describe: (err: unknown) => string;
}

export class JobDetail {
  readonly el = h('section', { class: 'bc-detail', 'data-testid': 'bc-detail' });
  readonly #opts: JobDetailOptions;
  #id: string | null = null;
  #run = 0;
  #deliveries = new Map<string, PoleDelivery>();
  /** Pole order as the job lists them. */
  #order: string[] = [];
  #loaded = false;
  #buffer: Array<{ run: number; changes: Array<[string, DeliveryState, string?]> }> = [];
  #abort: AbortController | null = null;
  #error = '';
  #filter: DeliveryState | null = null;
  #cancelling = false;
  #busy = false;
  #actionsKey = '';
  #actionsJob = '';
  #cancelReason = '';
  #shown = false;
  /** Row elements by pole, updated in place as progress arrives. */
  #rows = new Map<string, HTMLElement>();

  readonly #head = h('header', { class: 'bc-detail-head' });
  readonly #facts = h('dl', { class: 'bc-facts' });
  readonly #progress = h('div', { class: 'bc-progress' });
  readonly #chips = h('div', { class: 'bc-chips bc-state-chips', 'data-testid': 'bc-state-counts' });
  readonly #actions = h('div', { class: 'bc-actions' });
  readonly #message = h('div', { class: 'bc-error', role: 'alert', 'data-testid': 'bc-detail-error' });
  readonly #list = h('table', { class: 'bc-deliveries', 'data-testid': 'bc-deliveries' });
  readonly #more = h('p', { class: 'bc-muted' });

  constructor(opts: JobDetailOptions) {
    this.#opts = opts;
    this.el.append(this.#head, this.#progress, this.#chips, this.#actions, this.#message, this.#facts, this.#list, this.#more);
    opts.jobs.onChange((e) => this.#onJobs(e));
  }

  get jobId(): string | null {
    return this.#id;
  }

  /** Shows a job (its deliveries are fetched; progress meanwhile is kept). */
  open(id: string): void {
    this.#abort?.abort();
    this.#id = id;
    this.#run = this.#opts.jobs.get(id)?.run ?? 0;
    this.#deliveries = new Map();
    this.#order = [];
    this.#rows = new Map();
    this.#loaded = false;
    this.#buffer = [];
    this.#error = '';
    this.#filter = null;
    this.#cancelling = false;
    this.#cancelReason = '';
    this.#actionsKey = '';
    this.render();
    void this.#load(id);
  }

  close(): void {
    this.#abort?.abort();
    this.#abort = null;
    this.#id = null;
    this.#deliveries = new Map();
    this.#order = [];
    this.#rows = new Map();
    this.#opts.layer.showDeliveries(null);
  }

  /** Shown or hidden: its poles are on the map only while it is shown. */
  setShown(shown: boolean): void {
    this.#shown = shown;
    this.redrawMap();
  }

  async #load(id: string): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    try {
      const { broadcast, deliveries } = await fetchBroadcast(id, abort.signal);
      if (abort.signal.aborted || this.#id !== id) return;
      this.#opts.jobs.remember(broadcast);
      this.#run = broadcast.run;
      this.#order = deliveries.map((d) => d.pole);
      for (const d of deliveries) this.#deliveries.set(d.pole, { state: d.state, reason: d.reason });
      this.#loaded = true;
      for (const b of this.#buffer) if (b.run === this.#run) this.#apply(b.changes, true);
      this.#buffer = [];
    } catch (err) {
      if (abort.signal.aborted) return;
      this.#error = this.#opts.describe(err);
    }
    this.render();
    this.#fitPoles();
  }

  #onJobs(e: JobEvent): void {
    const id = this.#id;
    if (id === null) return;
    if (e.kind === 'progress' && e.id === id) {
      if (!this.#loaded) {
        this.#buffer.push({ run: e.run, changes: e.changes });
        this.#renderSummary();
        return;
      }
      if (e.run > this.#run) {
        // A daily job's next run: its deliveries start afresh.
        this.open(id);
        return;
      }
      if (e.run < this.#run) return;
      this.#apply(e.changes, false);
      this.#renderSummary();
      return;
    }
    if (e.kind === 'job' && e.job.id === id) {
      if (this.#loaded && e.job.run > this.#run) this.open(id);
      else this.#renderSummary();
      return;
    }
    if (e.kind === 'snapshot') this.#renderSummary();
  }

  /** Applies pole changes; `catchUp`: changes that may be older than the deliveries fetched. */
  #apply(changes: Array<[string, DeliveryState, string?]>, catchUp: boolean): void {
    let listChanged = false;
    for (const [pole, state, reason] of changes) {
      const known = this.#deliveries.get(pole);
      if (catchUp && known && RANK[state] < RANK[known.state]) continue;
      if (catchUp && known && FINAL_STATES.has(known.state) && known.state !== state) continue;
      const next: PoleDelivery = { state, reason: reason ?? null };
      if (!known) this.#order.push(pole);
      const filtered = this.#filter !== null && (known?.state === this.#filter) !== (state === this.#filter);
      this.#deliveries.set(pole, next);
      const row = this.#rows.get(pole);
      if (row && !filtered) this.#fillRow(row, pole, next);
      else if (filtered || !known) listChanged = true;
      this.#opts.layer.updateDelivery(pole, state);
    }
    if (listChanged) this.#renderList();
  }

  // ---- rendering ----------------------------------------------------------------------------------

  render(): void {
    this.#renderSummary();
    this.#renderList();
    this.redrawMap();
  }

  redrawMap(): void {
    const layer = this.#opts.layer;
    if (!this.#shown || this.#id === null) {
      layer.showDeliveries(null);
      return;
    }
    layer.showSelection({ kind: 'none' }, []);
    const points: Array<{ id: string; lat: number; lon: number; state: DeliveryState }> = [];
    for (const id of this.#order) {
      const p = this.#opts.pole(id);
      const d = this.#deliveries.get(id);
      if (p && d) points.push({ id, lat: p.lat, lon: p.lon, state: d.state });
    }
    layer.showDeliveries(points);
  }

  #fitPoles(): void {
    if (!this.#shown) return;
    const points = this.#order.map((id) => this.#opts.pole(id)).filter((p): p is DeviceView => p !== undefined);
    this.#opts.layer.fit(points);
  }

  /** Everything but the per-pole list: cheap, redone on every progress message. */
  #renderSummary(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    const id = this.#id;
    const job = id === null ? undefined : this.#opts.jobs.get(id);
    const back = h('button', { type: 'button', class: 'bc-back', 'data-testid': 'bc-detail-back' }, t('bc.detail.back'));
    back.addEventListener('click', () => this.#opts.onBack());
    if (!job) {
      this.#head.replaceChildren(back, h('p', { class: 'bc-muted' }, this.#error || t('bc.detail.loading')));
      for (const el of [this.#progress, this.#chips, this.#actions, this.#facts]) el.replaceChildren();
      this.#actionsKey = '';
      this.#message.hidden = true;
      return;
    }
    this.el.dataset.job = job.id;
    this.el.dataset.status = job.status;
    this.#head.replaceChildren(
      back,
      h(
        'h3',
        { class: 'bc-detail-title' },
        h('span', { class: `bc-badge bc-priority-${job.priority}` }, t(`bc.priority.${job.priority}`)),
        ' ',
        h('span', { 'data-testid': 'bc-detail-title' }, job.title),
        ' ',
        h('span', { class: `bc-badge bc-status-${job.status}`, 'data-testid': 'bc-detail-status' }, t(`bc.status.${job.status}`)),
      ),
    );

    const total = countTotal(job.counts) || job.poleCount;
    const done = job.counts.done;
    const bar = h('div', { class: 'bc-bar', role: 'img', 'aria-label': t('bc.progress.of', { done, total }) });
    for (const s of DELIVERY_STATES) {
      const n = job.counts[s];
      if (n > 0) bar.append(h('span', { class: `bc-bar-part bc-state-${s}`, style: `flex-grow:${n}`, title: `${t(`bc.state.${s}`)} ${n}` }));
    }
    const running = job.status === 'scheduled' ? t('bc.progress.scheduled', { time: job.nextRunAt ? i18n.dateTime(job.nextRunAt) : '—' }) : '';
    this.#progress.replaceChildren(
      h(
        'div',
        { class: 'bc-progress-line' },
        h('strong', { class: 'bc-progress-num', 'data-testid': 'bc-job-progress', 'data-done': String(done), 'data-total': String(total) }, `${done}/${total}`),
        h('span', {}, t('bc.progress.done')),
        running ? h('span', { class: 'bc-muted' }, running) : '',
      ),
      bar,
    );

    this.#chips.replaceChildren(
      ...DELIVERY_STATES.map((s) => {
        const n = job.counts[s];
        const chip = h(
          'button',
          { type: 'button', class: `bc-chip bc-state-${s}${n === 0 ? ' zero' : ''}`, 'data-testid': 'bc-state-count', 'data-state': s, 'data-count': String(n), 'aria-pressed': String(this.#filter === s) },
          h('span', { class: 'bc-dot' }),
          t(`bc.state.${s}`),
          ' ',
          h('strong', {}, String(n)),
        );
        chip.addEventListener('click', () => {
          this.#filter = this.#filter === s ? null : s;
          this.#renderSummary();
          this.#renderList();
        });
        return chip;
      }),
    );

    this.#renderActions(job);
    this.#message.hidden = this.#error === '';
    this.#message.textContent = this.#error;

    const fact = (key: Parameters<typeof t>[0], value: string | Node) => [h('dt', {}, t(key)), h('dd', {}, value)];
    this.#facts.replaceChildren(
      ...fact('bc.detail.target', t('bc.detail.targetText', { label: job.targetLabel, count: job.poleCount })),
      ...fact('bc.detail.content', h('span', { class: 'bc-spoken' }, job.text ?? t('bc.detail.clip', { id: job.clipId ?? '' }))),
      ...(job.repeat > 1 || job.volume !== null ? fact('bc.detail.playback', t('bc.detail.playbackText', { repeat: job.repeat, volume: job.volume ?? t('bc.volume.default') })) : []),
      ...fact('bc.schedule', describeSchedule(i18n, job)),
      ...(job.runExpiresAt ? fact('bc.expires', i18n.dateTime(job.runExpiresAt)) : []),
      ...(job.reason ? fact('bc.reason', job.reason) : []),
      ...fact('bc.detail.created', t('bc.detail.createdText', { name: job.createdByName, user: job.createdBy, time: i18n.dateTime(job.createdAt) })),
      ...(job.incidentId ? fact('bc.detail.incident', job.incidentId) : []),
      ...(job.retryOf ? fact('bc.detail.retryOf', job.retryOf) : []),
      ...(job.cancelledAt ? fact('bc.detail.cancelled', t('bc.detail.cancelledText', { user: job.cancelledBy ?? '', time: i18n.dateTime(job.cancelledAt), reason: job.cancelReason ?? '' })) : []),
      ...(job.finishedAt ? fact('bc.detail.finished', i18n.dateTime(job.finishedAt)) : []),
    );
  }

  /**
   * Cancel and Retry. Rebuilt only when what they offer changes, not on every progress message:
   * a cancel reason being typed must not be wiped by the poles' news.
   */
  #renderActions(job: BroadcastJob): void {
    const t = this.#opts.i18n.t.bind(this.#opts.i18n);
    const duty = can(this.#opts.role(), 'duty_officer');
    const missed = job.counts.failed + job.counts.expired + job.counts.preempted;
    const key = [this.#opts.i18n.lang, duty, isOpenJob(job), job.status, this.#cancelling, this.#busy, missed].join('|');
    if (key === this.#actionsKey && this.#actionsJob === job.id) return;
    this.#actionsKey = key;
    this.#actionsJob = job.id;
    const actions: Node[] = [];
    if (duty && isOpenJob(job)) {
      if (this.#cancelling) {
        const reason = h('input', { type: 'text', maxlength: '500', 'data-testid': 'bc-cancel-reason', placeholder: t('bc.cancel.reason') });
        reason.value = this.#cancelReason;
        reason.addEventListener('input', () => {
          this.#cancelReason = reason.value;
        });
        queueMicrotask(() => reason.isConnected && !this.#busy && reason.focus());
        const confirm = h('button', { type: 'button', class: 'bc-danger', 'data-testid': 'bc-cancel-confirm' }, t('bc.cancel.confirm'));
        const keep = h('button', { type: 'button' }, t('bc.cancel.keep'));
        confirm.disabled = this.#busy;
        confirm.addEventListener('click', () => void this.#cancel(job.id, reason.value));
        keep.addEventListener('click', () => {
          this.#cancelling = false;
          this.#renderSummary();
        });
        actions.push(reason, confirm, keep);
      } else {
        const cancel = h('button', { type: 'button', class: 'bc-danger', 'data-testid': 'bc-cancel' }, t('bc.cancel'));
        cancel.addEventListener('click', () => {
          this.#cancelling = true;
          this.#renderSummary();
        });
        actions.push(cancel);
      }
    }
    if (duty && job.status === 'finished' && missed > 0) {
      const retry = h('button', { type: 'button', 'data-testid': 'bc-retry' }, t('bc.retry', { count: missed }));
      retry.disabled = this.#busy;
      retry.addEventListener('click', () => void this.#retry(job.id));
      actions.push(retry);
    }
    this.#actions.replaceChildren(...actions);
    this.#actions.hidden = actions.length === 0;
  }

  #renderList(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    this.#rows = new Map();
    if (!this.#loaded) {
      this.#list.replaceChildren(h('tbody', {}, h('tr', {}, h('td', { class: 'bc-muted' }, this.#error ? '' : t('bc.detail.loading')))));
      this.#more.hidden = true;
      return;
    }
    const ids = this.#filter === null ? this.#order : this.#order.filter((id) => this.#deliveries.get(id)?.state === this.#filter);
    const body = h('tbody', {});
    for (const id of ids.slice(0, MAX_ROWS)) {
      const d = this.#deliveries.get(id);
      if (!d) continue;
      const row = h('tr', { 'data-testid': 'bc-delivery', 'data-pole': id });
      this.#fillRow(row, id, d);
      this.#rows.set(id, row);
      body.append(row);
    }
    this.#list.replaceChildren(
      h('thead', {}, h('tr', {}, h('th', {}, t('bc.detail.pole')), h('th', {}, t('bc.detail.state')), h('th', {}, t('bc.detail.reason')))),
      body,
    );
    this.#more.hidden = ids.length <= MAX_ROWS;
    this.#more.textContent = t('bc.detail.more', { count: ids.length - MAX_ROWS });
  }

  #fillRow(row: HTMLElement, id: string, d: PoleDelivery): void {
    const { i18n } = this.#opts;
    row.dataset.state = d.state;
    const name = this.#opts.pole(id)?.name;
    row.replaceChildren(
      h('td', {}, name ? h('span', { class: 'bc-name' }, name) : '', h('span', { class: 'bc-muted' }, id)),
      h('td', {}, h('span', { class: `bc-badge bc-state-${d.state}` }, i18n.t(`bc.state.${d.state}`))),
      h('td', { class: 'bc-reason-cell' }, d.reason ?? ''),
    );
  }

  // ---- actions ----------------------------------------------------------------------------------------

  async #cancel(id: string, reason: string): Promise<void> {
    this.#busy = true;
    this.#renderSummary();
    try {
      this.#opts.jobs.remember(await cancelBroadcast(id, reason));
      this.#cancelling = false;
      this.#cancelReason = '';
      this.#error = '';
    } catch (err) {
      this.#error = this.#opts.describe(err);
    } finally {
      this.#busy = false;
    }
    this.#renderSummary();
  }

  async #retry(id: string): Promise<void> {
    this.#busy = true;
    this.#renderSummary();
    try {
      const job = await retryBroadcast(id);
      this.#opts.jobs.remember(job);
      this.#busy = false;
      this.#opts.onOpen(job.id);
      return;
    } catch (err) {
      this.#error = this.#opts.describe(err);
    }
    this.#busy = false;
    this.#renderSummary();
  }
}
