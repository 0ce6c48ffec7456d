/**
 * 网格员手机端 — the grid worker's phone view: my open incidents (the gateway sends a grid worker
 * only those of their grids), big buttons to acknowledge, navigate, report arrival, add a note or
 * a photo and close. A dispatch to me rings and brings its incident to the top. Mobile-sized:
 * one column, thumb-reachable buttons, nothing else on the screen.
 */
import type { Incident } from '../../protocol/incidents.js';
import type { User } from './api.js';
import { FrameThrottle, h } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';
import { IncidentCard } from './incident-card.js';
import type { IncidentFeed } from './incident-feed.js';
import type { Role } from './roles.js';

export class PhoneView {
  readonly #root: HTMLElement;
  readonly #feed: IncidentFeed;
  readonly #i18n: I18n;
  readonly #card: IncidentCard;
  readonly #list = h('ol', { class: 'phone-list', 'data-testid': 'phone-list' });
  readonly #who = h('p', { class: 'muted', 'data-testid': 'phone-who' });
  readonly #ring = h('p', { class: 'phone-ring', role: 'alert', 'data-testid': 'phone-ring', hidden: '' });
  readonly #back = h('button', { type: 'button', class: 'phone-back', 'data-testid': 'phone-back' });
  #user: User | null = null;
  #openId: string | null = null;
  /** Incidents come in bursts: the list is redrawn at a frame, at most 4 times a second. */
  readonly #renderSoon = new FrameThrottle(() => this.#render(), 250);

  constructor(opts: { root: HTMLElement; feed: IncidentFeed; i18n: I18n; role: () => Role | null }) {
    this.#root = opts.root;
    this.#feed = opts.feed;
    this.#i18n = opts.i18n;
    this.#card = new IncidentCard({ i18n: opts.i18n, role: opts.role, compact: true });
    this.#back.addEventListener('click', () => this.#show(null));
    this.#root.replaceChildren(
      h('div', { class: 'phone' }, h('header', {}, h('h1', { 'data-i18n': 'phone.title' }), this.#who), this.#ring, this.#back, this.#list, this.#card.el),
    );
    opts.feed.onChange((e) => {
      if (e.kind === 'ring') {
        this.#ring.textContent = this.#i18n.t('inc.ring', { title: e.title });
        this.#ring.hidden = false;
        navigator.vibrate?.([300, 100, 300]);
      }
      if (e.kind === 'incident') this.#card.update(e.incident);
      // Hidden (another view is shown): setUser renders it when it is opened.
      if (!this.#root.hidden) this.#renderSoon.request();
    });
    opts.i18n.onChange(() => this.#render());
    this.#render();
  }

  setUser(user: User | null): void {
    this.#user = user;
    if (!user) this.#show(null);
    this.#render();
  }

  #show(incident: Incident | null): void {
    this.#openId = incident?.id ?? null;
    if (incident) {
      this.#feed.markSeen(incident.id);
      this.#ring.hidden = true;
      void this.#card.open(incident);
    } else {
      this.#card.close();
    }
    this.#render();
  }

  #render(): void {
    this.#renderSoon.cancel();
    const t = this.#i18n.t.bind(this.#i18n);
    this.#i18n.applyStatic(this.#root);
    this.#who.textContent = this.#user ? t('phone.signedInAs', { name: this.#user.displayName, grids: this.#user.grids.join(', ') || '—' }) : '';
    this.#back.textContent = `← ${t('phone.back')}`;
    this.#back.hidden = this.#openId === null;
    this.#list.hidden = this.#openId !== null;
    const open = this.#feed.open();
    const items = open.map((i) => {
      const li = h(
        'li',
        { class: `phone-item severity-${i.severity}${this.#feed.unseen.has(i.id) ? ' unseen' : ''}`, 'data-testid': 'phone-item', 'data-incident': i.id, 'data-status': i.status },
        h('strong', {}, this.#i18n.has(`inc.kind.${i.kind}`) ? t(`inc.kind.${i.kind}` as MessageKey) : i.kind),
        h('span', { class: `badge status-${i.status}` }, t(`inc.status.${i.status}`)),
        h('div', { class: 'muted' }, `${i.gridName ?? i.grid ?? ''} · ${this.#i18n.relative(i.createdAt)}`),
      );
      li.addEventListener('click', () => this.#show(i));
      return li;
    });
    this.#list.replaceChildren(...(items.length ? items : [h('li', { class: 'muted empty' }, t('phone.empty'))]));
  }
}
