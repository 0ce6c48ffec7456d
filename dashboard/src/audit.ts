/**
 * 审计日志 (duty officer and above): the newest entries of the gateway's audit log. Actions the
 * catalogue knows are translated (`audit.action.<action>`), others shown as the gateway wrote
 * them; actors, subjects and details are user data and set with textContent only.
 */
import { fetchAudit, type AuditEntry } from './api.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';

export const AUDIT_LIMIT = 200;

function detailText(detail: Record<string, unknown>): string {
  return Object.entries(detail)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}

export class AuditView {
  readonly #root: HTMLElement;
  readonly #i18n: I18n;
  #entries: AuditEntry[] = [];
  #state: 'idle' | 'loading' | 'ready' | 'failed' = 'idle';
  #error: unknown = null;
  #abort: AbortController | null = null;
  readonly #note = h('span', { class: 'muted', 'data-testid': 'audit-note' });
  readonly #table = h('table', { class: 'data-table audit-table', 'data-testid': 'audit-table' });
  readonly #status = h('p', { class: 'form-message', 'data-testid': 'audit-status', role: 'status' });

  constructor(options: { root: HTMLElement; i18n: I18n }) {
    this.#root = options.root;
    this.#i18n = options.i18n;
    const refresh = h('button', { type: 'button', 'data-i18n': 'audit.refresh', 'data-testid': 'audit-refresh' });
    refresh.addEventListener('click', () => void this.#load());
    this.#root.replaceChildren(
      h(
        'div',
        { class: 'admin-main' },
        h('header', { class: 'view-header' }, h('h1', { 'data-i18n': 'audit.title' }), this.#note, h('span', { class: 'spacer' }), refresh),
        this.#status,
        h('div', { class: 'table-wrap' }, this.#table),
      ),
    );
    this.#i18n.onChange(() => this.#render());
    this.#render();
  }

  show(): void {
    void this.#load();
  }

  reset(): void {
    this.#abort?.abort();
    this.#entries = [];
    this.#state = 'idle';
    this.#render();
  }

  async #load(): Promise<void> {
    this.#abort?.abort();
    const abort = new AbortController();
    this.#abort = abort;
    this.#state = 'loading';
    this.#render();
    try {
      this.#entries = await fetchAudit(AUDIT_LIMIT, abort.signal);
      this.#state = 'ready';
    } catch (err) {
      if (abort.signal.aborted) return;
      this.#state = 'failed';
      this.#error = err;
    }
    this.#render();
  }

  #actionText(action: string): string {
    const key = `audit.action.${action}`;
    return this.#i18n.has(key) ? this.#i18n.t(key) : action;
  }

  #render(): void {
    const t = this.#i18n.t.bind(this.#i18n);
    this.#i18n.applyStatic(this.#root);
    this.#root.dataset.state = this.#state;
    this.#note.textContent = t('audit.latest', { count: AUDIT_LIMIT });
    const statusText =
      this.#state === 'loading' && this.#entries.length === 0
        ? t('audit.loading')
        : this.#state === 'failed'
          ? t('audit.loadFailed', { message: describeError(this.#i18n, this.#error) })
          : this.#state === 'ready' && this.#entries.length === 0
            ? t('audit.empty')
            : '';
    this.#status.textContent = statusText;
    this.#status.hidden = statusText === '';
    this.#status.dataset.kind = this.#state === 'failed' ? 'error' : '';
    const cols: MessageKey[] = ['audit.col.time', 'audit.col.actor', 'audit.col.action', 'audit.col.subject', 'audit.col.detail'];
    const rows = this.#entries.map((e) =>
      h(
        'tr',
        { 'data-testid': 'audit-row', 'data-action': e.action },
        h('td', { class: 'num nowrap' }, h('time', { datetime: new Date(e.ts).toISOString() }, this.#i18n.dateTime(e.ts))),
        h('td', { class: 'mono' }, e.actor),
        h('td', { class: `audit-action${this.#i18n.has(`audit.action.${e.action}`) ? '' : ' mono'}`, title: e.action }, this.#actionText(e.action)),
        h('td', { class: 'mono' }, e.subject ?? '—'),
        h('td', { class: 'detail' }, detailText(e.detail)),
      ),
    );
    this.#table.replaceChildren(h('thead', {}, h('tr', {}, ...cols.map((k) => h('th', { scope: 'col' }, t(k))))), h('tbody', {}, ...rows));
  }
}
