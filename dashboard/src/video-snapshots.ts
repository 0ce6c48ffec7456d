/**
 * 报警截图 — the still frames an incident's cameras were alarming on (docs/video.md §4), oldest
 * first, as thumbnails with the camera, the time and the alarm's bearing; a click shows one large.
 * The images are `/api/snapshots/{name}`, fetched by the browser with the session cookie.
 *
 *   const strip = new SnapshotStrip({ incidentId, i18n });
 *   card.append(strip.el); void strip.refresh();          (again when the incident changes)
 *   strip.dispose();                                     when the card is dropped
 */
import type { IncidentSnapshot } from '../../protocol/video.js';
import { ApiError, requestJson } from './api.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n } from './i18n.js';
import { isObject } from './json.js';

export interface SnapshotStripOptions {
  incidentId: string;
  i18n: I18n;
}


function isSnapshot(v: unknown): v is IncidentSnapshot {
  return (
    isObject(v) &&
    typeof v.name === 'string' &&
    typeof v.url === 'string' &&
    // Only the gateway's own snapshot route: a URL from a response never points the page elsewhere.
    v.url.startsWith('/api/snapshots/') &&
    typeof v.cameraId === 'string' &&
    typeof v.cameraName === 'string' &&
    typeof v.ts === 'number' &&
    (v.bearingDeg === null || typeof v.bearingDeg === 'number')
  );
}

export class SnapshotStrip {
  readonly el = h('section', { class: 'vs-strip', 'data-testid': 'snapshot-strip' });
  readonly #opts: SnapshotStripOptions;
  readonly #heading = h('h3', { class: 'vs-heading' });
  readonly #status = h('div', { class: 'vs-status muted', 'data-testid': 'snapshot-status' });
  readonly #list = h('ol', { class: 'vs-list', 'data-testid': 'snapshot-list' });
  readonly #dialog = h('dialog', { class: 'vs-dialog', 'data-testid': 'snapshot-dialog' });
  #snapshots: IncidentSnapshot[] = [];
  #loading = false;
  #error: unknown = null;
  /** The snapshot shown large, if any. */
  #open: IncidentSnapshot | null = null;
  #abort: AbortController | null = null;
  readonly #offI18n: () => void;

  constructor(opts: SnapshotStripOptions) {
    this.#opts = opts;
    this.el.append(this.#heading, this.#status, this.#list, this.#dialog);
    // A click on the backdrop (the dialog itself, not its content) closes it, as Esc does.
    this.#dialog.addEventListener('click', (e) => {
      if (e.target === this.#dialog) this.#dialog.close();
    });
    this.#dialog.addEventListener('close', () => {
      this.#open = null;
    });
    this.#offI18n = opts.i18n.onChange(() => this.#render());
    this.#render();
  }

  /** Loads the incident's snapshots; resolves when they are shown (or the error is). */
  async refresh(): Promise<void> {
    this.#abort?.abort();
    const abort = new AbortController();
    this.#abort = abort;
    this.#loading = true;
    this.#render();
    const path = `/api/incidents/${encodeURIComponent(this.#opts.incidentId)}/snapshots`;
    try {
      const body = await requestJson(path, { signal: abort.signal });
      if (!isObject(body) || !Array.isArray(body.snapshots)) throw new ApiError(0, 'BAD_RESPONSE', `unexpected response shape from ${path}`);
      this.#snapshots = body.snapshots.filter(isSnapshot);
      this.#error = null;
    } catch (err) {
      if (abort.signal.aborted) return;
      this.#error = err;
    }
    this.#loading = false;
    this.#abort = null;
    this.#render();
  }

  /** Stops listening for language changes and drops a request still on its way. */
  dispose(): void {
    this.#abort?.abort();
    this.#offI18n();
    if (this.#dialog.open) this.#dialog.close();
  }

  #show(s: IncidentSnapshot): void {
    this.#open = s;
    this.#renderDialog();
    if (!this.#dialog.open) this.#dialog.showModal();
  }

  #caption(s: IncidentSnapshot): HTMLElement {
    const { i18n } = this.#opts;
    return h(
      'div',
      { class: 'vs-caption' },
      h('span', { class: 'vs-camera' }, s.cameraName || s.cameraId),
      h('span', { class: 'vs-meta' }, i18n.dateTime(s.ts), ' · ', s.bearingDeg === null ? i18n.t('video.snap.noBearing') : i18n.t('video.snap.bearing', { bearing: i18n.number(s.bearingDeg, 1) })),
    );
  }

  #image(s: IncidentSnapshot, cls: string, lazy: boolean): HTMLImageElement {
    const { i18n } = this.#opts;
    const img = h('img', { class: cls, src: s.url, alt: i18n.t('video.snap.alt', { camera: s.cameraName || s.cameraId, time: i18n.dateTime(s.ts) }), decoding: 'async', ...(lazy ? { loading: 'lazy' } : {}) });
    img.addEventListener('error', () => {
      img.replaceWith(h('div', { class: `${cls} vs-broken` }, i18n.t('video.snap.broken')));
    });
    return img;
  }

  #render(): void {
    const { i18n } = this.#opts;
    this.#heading.textContent = i18n.t('video.snap.title');
    this.el.dataset.count = String(this.#snapshots.length);
    this.el.dataset.loading = String(this.#loading);
    if (this.#error !== null) this.#status.textContent = i18n.t('video.snap.failed', { message: describeError(i18n, this.#error) });
    else if (this.#loading && this.#snapshots.length === 0) this.#status.textContent = i18n.t('video.snap.loading');
    else if (this.#snapshots.length === 0) this.#status.textContent = i18n.t('video.snap.none');
    else this.#status.textContent = '';
    this.#status.hidden = this.#status.textContent === '';
    this.#list.replaceChildren(
      ...this.#snapshots.map((s) => {
        const button = h('button', { type: 'button', class: 'vs-thumb', title: i18n.t('video.snap.enlarge'), 'data-testid': 'snapshot', 'data-name': s.name, 'data-camera': s.cameraId }, this.#image(s, 'vs-img', true), this.#caption(s));
        button.addEventListener('click', () => this.#show(s));
        return h('li', {}, button);
      }),
    );
    if (this.#open) this.#renderDialog();
  }

  #renderDialog(): void {
    const s = this.#open;
    if (!s) return;
    const close = h('button', { type: 'button', class: 'vs-close', 'data-testid': 'snapshot-close', 'aria-label': this.#opts.i18n.t('video.snap.close') }, '×');
    close.addEventListener('click', () => this.#dialog.close());
    this.#dialog.replaceChildren(h('figure', { class: 'vs-figure' }, this.#image(s, 'vs-large', false), h('figcaption', {}, this.#caption(s)), close));
  }
}
