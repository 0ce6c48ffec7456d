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
import { h } from './dom.js';
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
      if (e.kind !== 'fireDanger') this.#render();
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

  #render(): void {
    const { feed, i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    i18n.applyStatic(this.el);
    const open = feed.open();
    this.#count.textContent = t('inc.inbox.open', { count: open.length });
    this.#mute.textContent = feed.sound.muted ? t('inc.inbox.unmute') : t('inc.inbox.mute');
    this.#export.textContent = t('inc.inbox.export');
    this.el.classList.toggle('has-unseen', feed.unseen.size > 0);
    const items = open.map((i) => {
      const li = h(
        'li',
        {
          class: `inbox-item severity-${i.severity}${feed.unseen.has(i.id) ? ' unseen' : ''}${this.card.incidentId === i.id ? ' selected' : ''}`,
          'data-testid': 'inbox-item',
          'data-incident': i.id,
          'data-status': i.status,
          tabindex: '0',
        },
        h('div', { class: 'line1' }, h('span', { class: `badge status-${i.status}` }, t(`inc.status.${i.status}`)), ' ', h('strong', {}, i18n.has(`inc.kind.${i.kind}`) ? t(`inc.kind.${i.kind}` as MessageKey) : i.kind), feed.unseen.has(i.id) ? h('span', { class: 'badge new' }, t('inc.inbox.new')) : ''),
        h('div', { class: 'line2' }, i.gridName ?? i.grid ?? '', ' · ', t(`inc.level.${i.level}`), ' · ', i18n.relative(i.createdAt)),
      );
      li.addEventListener('click', () => this.open(i));
      li.addEventListener('keydown', (e) => e.key === 'Enter' && this.open(i));
      return li;
    });
    this.#list.replaceChildren(...(items.length ? items : [h('li', { class: 'muted empty' }, t('inc.inbox.empty'))]));
  }
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
