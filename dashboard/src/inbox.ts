/**
 * 警情处置 — the alert inbox of the command center: open incidents, most urgent first, live. A new
 * incident rings and stays marked until someone opens it; it stays in the list until it is
 * handled (resolved or dismissed). Clicking one opens its card and shows it on the map.
 *
 * Also the fire danger badge for the header (today's level, its colour, and for duty officers a
 * way to set it from the weather bureau's forecast).
 */
import './incidents.css';
import type { FireDangerStatus, Incident } from '../../protocol/incidents.js';
import { FrameThrottle, h, setText } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';
import { IncidentCard } from './incident-card.js';
import { setFireDanger, type IncidentFeed } from './incident-feed.js';
import { can, type Role } from './roles.js';

export interface InboxOptions {
  feed: IncidentFeed;
  i18n: I18n;
  role: () => Role | null;
  onShowOnMap: (incident: Incident) => void;
  onWarnPoles?: (incident: Incident) => void;
}

export class InboxView {
  readonly el = h('aside', { class: 'inbox', 'data-testid': 'inbox' });
  readonly card: IncidentCard;
  readonly #opts: InboxOptions;
  readonly #list = h('ol', { class: 'inbox-list', 'data-testid': 'inbox-list' });
  readonly #count = h('span', { class: 'inbox-count', 'data-testid': 'inbox-count' });
  readonly #mute = h('button', { type: 'button', class: 'small', 'data-testid': 'inbox-mute' });
  readonly #export = h('a', { class: 'button small', href: '/api/incidents.csv', download: '', 'data-testid': 'inbox-export' });
  readonly #empty = h('li', { class: 'muted empty' });
  readonly #rows = new Map<string, InboxRow>();
  /**
   * Incident messages come in bursts (tens a second while many tanks run low): the list is redrawn
   * at a frame, at most 4 times a second; the alarm and the ring do not wait for it.
   */
  readonly #renderSoon = new FrameThrottle(() => this.#render(), 250);
  /**
   * Rows scrolled into the list's view get `in-view`, and only those run the unseen highlight: with
   * hundreds of new incidents, an animation per row cost work on every frame for rows nobody sees.
   */
  readonly #inView = new IntersectionObserver(
    (entries) => {
      let shown = false;
      for (const e of entries) {
        e.target.classList.toggle('in-view', e.isIntersecting);
        shown ||= e.isIntersecting;
      }
      // Rows out of view are not kept up to date (#render): bring the ones scrolled in up to date.
      if (shown) this.#renderSoon.request();
    },
    { root: this.el },
  );
  #collapsed = false;

  constructor(opts: InboxOptions) {
    this.#opts = opts;
    this.card = new IncidentCard({
      i18n: opts.i18n,
      role: opts.role,
      onShowOnMap: opts.onShowOnMap,
      ...(opts.onWarnPoles ? { onWarnPoles: opts.onWarnPoles } : {}),
      onClose: () => {
        this.card.close();
        this.#render();
      },
    });
    this.#mute.addEventListener('click', () => {
      opts.feed.sound.setMuted(!opts.feed.sound.muted);
      this.#render();
    });
    const toggle = h('button', { type: 'button', class: 'icon inbox-toggle', 'aria-expanded': 'true', 'data-testid': 'inbox-toggle' }, '⇤');
    toggle.addEventListener('click', () => {
      this.#collapsed = !this.#collapsed;
      toggle.setAttribute('aria-expanded', String(!this.#collapsed));
      this.el.classList.toggle('collapsed', this.#collapsed);
    });
    this.el.replaceChildren(
      h('header', { class: 'inbox-header' }, h('h2', {}, h('span', { 'data-i18n': 'inc.inbox.title' }), ' ', this.#count), h('span', { class: 'spacer' }), this.#export, this.#mute, toggle),
      this.#list,
      this.card.el,
    );
    opts.feed.onChange((e) => {
      if (e.kind === 'incident') this.card.update(e.incident);
      if (e.kind !== 'fireDanger') this.#renderSoon.request();
    });
    opts.i18n.onChange(() => this.#render());
    this.#render();
  }

  /** Opens an incident's card (from the list, a map marker or a ring). */
  open(incident: Incident): void {
    this.#opts.feed.markSeen(incident.id);
    void this.card.open(incident);
    this.#opts.onShowOnMap(incident);
    this.#render();
  }

  #newRow(incident: Incident): InboxRow {
    const status = h('span');
    const kind = h('strong');
    const line2 = h('div', { class: 'line2' });
    const li = h('li', { 'data-testid': 'inbox-item', 'data-incident': incident.id, tabindex: '0' }, h('div', { class: 'line1' }, status, ' ', kind), line2);
    const row: InboxRow = { li, incident, className: '', status, kind, isNew: h('span', { class: 'badge new' }), line2 };
    li.addEventListener('click', () => this.open(row.incident));
    li.addEventListener('keydown', (e) => e.key === 'Enter' && this.open(row.incident));
    this.#rows.set(incident.id, row);
    this.#inView.observe(li);
    return row;
  }

  #render(): void {
    this.#renderSoon.cancel();
    const { feed, i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    i18n.applyStatic(this.el);
    const open = feed.open();
    setText(this.#count, t('inc.inbox.open', { count: open.length }));
    setText(this.#mute, feed.sound.muted ? t('inc.inbox.unmute') : t('inc.inbox.mute'));
    setText(this.#export, t('inc.inbox.export'));
    this.el.classList.toggle('has-unseen', feed.unseen.size > 0);
    // A row per incident, kept and updated in place (text only where it changed): rebuilding every
    // row on every message re-laid-out the whole list, many times a second while tanks swing.
    const wanted = new Set<string>();
    const rows: HTMLLIElement[] = [];
    for (const i of open) {
      wanted.add(i.id);
      const unseen = feed.unseen.has(i.id);
      const known = this.#rows.get(i.id);
      const row = known ?? this.#newRow(i);
      row.incident = i;
      const className = `inbox-item severity-${i.severity}${unseen ? ' unseen' : ''}${this.card.incidentId === i.id ? ' selected' : ''}`;
      if (row.className !== className) {
        const inView = row.li.classList.contains('in-view');
        row.li.className = row.className = className;
        row.li.classList.toggle('in-view', inView);
      }
      if (row.li.dataset.status !== i.status) row.li.dataset.status = i.status;
      rows.push(row.li);
      // Texts only for rows in view (and new ones): hundreds of open incidents, a dozen on screen;
      // a row scrolled into view is brought up to date then (the IntersectionObserver above).
      if (known && !row.li.classList.contains('in-view')) continue;
      const statusClass = `badge status-${i.status}`;
      if (row.status.className !== statusClass) row.status.className = statusClass;
      setText(row.status, t(`inc.status.${i.status}`));
      setText(row.kind, i18n.has(`inc.kind.${i.kind}`) ? t(`inc.kind.${i.kind}` as MessageKey) : i.kind);
      if (unseen) {
        setText(row.isNew, t('inc.inbox.new'));
        if (!row.isNew.parentNode) row.kind.after(row.isNew);
      } else row.isNew.remove();
      setText(row.line2, [i.gridName ?? i.grid ?? '', t(`inc.level.${i.level}`), i18n.relative(i.createdAt)].join(' · '));
    }
    for (const [id, row] of this.#rows) {
      if (wanted.has(id)) continue;
      this.#inView.unobserve(row.li);
      row.li.remove();
      this.#rows.delete(id);
    }
    if (rows.length === 0) {
      this.#empty.textContent = t('inc.inbox.empty');
      if (this.#list.firstChild !== this.#empty || this.#list.childNodes.length !== 1) this.#list.replaceChildren(this.#empty);
      return;
    }
    this.#empty.remove();
    // Moves only what is out of place (a new incident goes to the top; the rest stay put).
    let next = this.#list.firstChild;
    for (const li of rows) {
      if (li === next) next = next.nextSibling;
      else this.#list.insertBefore(li, next);
    }
  }
}

interface InboxRow {
  li: HTMLLIElement;
  /** The latest state, for a click. */
  incident: Incident;
  className: string;
  status: HTMLElement;
  kind: HTMLElement;
  /** The "new" badge, in the row while the incident is unseen. */
  isNew: HTMLElement;
  line2: HTMLElement;
}

/** Today's fire danger in the header: level, colour, where it comes from. */
export class FireDangerBadge {
  readonly el = h('button', { type: 'button', class: 'fire-danger', 'data-testid': 'fire-danger' });
  readonly #i18n: I18n;
  readonly #role: () => Role | null;
  #status: FireDangerStatus | null = null;

  constructor(opts: { feed: IncidentFeed; i18n: I18n; role: () => Role | null }) {
    this.#i18n = opts.i18n;
    this.#role = opts.role;
    opts.feed.onChange((e) => {
      if (e.kind === 'fireDanger') this.#status = e.status;
      if (e.kind === 'fireDanger' || e.kind === 'snapshot') this.#render();
    });
    opts.i18n.onChange(() => this.#render());
    this.el.addEventListener('click', () => void this.#set());
    this.#render();
  }

  async #set(): Promise<void> {
    if (!can(this.#role(), 'duty_officer')) return;
    const answer = window.prompt(this.#i18n.t('danger.setPrompt'), this.#status?.level ? String(this.#status.level) : '');
    if (answer === null) return;
    const level = answer.trim() === '' ? null : Number(answer);
    if (level !== null && !(Number.isInteger(level) && level >= 1 && level <= 5)) return;
    try {
      this.#status = await setFireDanger(level);
      this.#render();
    } catch (err) {
      window.alert(describeError(this.#i18n, err));
    }
  }

  #render(): void {
    const s = this.#status;
    const t = this.#i18n.t.bind(this.#i18n);
    const lang = this.#i18n.lang;
    this.el.disabled = !can(this.#role(), 'duty_officer');
    if (!s || s.level === null || !s.name) {
      this.el.textContent = t('danger.none');
      this.el.style.removeProperty('--danger-color');
      this.el.dataset.level = '';
      this.el.title = t('danger.title');
      return;
    }
    this.el.dataset.level = String(s.level);
    this.el.style.setProperty('--danger-color', s.color ?? '#888');
    this.el.textContent = `${t('danger.title')}：${lang === 'en' ? s.name.en : s.name.zh}`;
    const w = s.today;
    const detail =
      w && w.temperatureC !== null
        ? t('danger.detail', { t: w.temperatureC, rh: w.humidityPercent ?? '—', n: w.nesterov ?? '—', a: w.angstrom ?? '—' })
        : '';
    this.el.title = `${t(`danger.source.${s.source}`)}${detail ? ` · ${detail}` : ''}${w?.manualBy ? ` · ${w.manualBy}` : ''}`;
  }
}
