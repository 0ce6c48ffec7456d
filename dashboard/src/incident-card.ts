/**
 * The incident card: what happened, where, who was told, what was done, and the decisions the
 * signed-in role may take. Used by the command center's inbox and by the grid worker's phone
 * view (compact layout). Everything from the gateway is set as text, never as HTML.
 */
import type { Incident, IncidentDetail, TimelineEntry } from '../../protocol/incidents.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';
import { actOnIncident, fetchIncident, isOpenIncident, photoUrl, uploadIncidentPhoto, type IncidentActionPath } from './incident-feed.js';
import { can, type Role } from './roles.js';
import { SnapshotStrip, VideoPlayer } from './video-player.js';

export interface IncidentCardOptions {
  i18n: I18n;
  role: () => Role | null;
  compact?: boolean;
  onShowOnMap?: (incident: Incident) => void;
  onWarnPoles?: (incident: Incident) => void;
  onClose?: () => void;
}

const fmt = (x: number, d = 5) => x.toFixed(d);

export class IncidentCard {
  readonly el = h('section', { class: 'incident-card', 'data-testid': 'incident-card' });
  readonly #opts: IncidentCardOptions;
  #detail: IncidentDetail | null = null;
  #message = '';
  #messageKind: 'error' | 'ok' | '' = '';
  #busy = false;
  #timer: ReturnType<typeof setInterval> | null = null;
  #abort: AbortController | null = null;
  /** The cameras' picture and the alarm snapshots: kept across redraws so the stream never restarts. */
  readonly #media = h('div', { class: 'incident-media', 'data-testid': 'incident-media' });
  #player: VideoPlayer | null = null;
  #strip: SnapshotStrip | null = null;
  #lastSignals = 0;

  constructor(opts: IncidentCardOptions) {
    this.#opts = opts;
    opts.i18n.onChange(() => this.#render());
  }

  get incidentId(): string | null {
    return this.#detail?.id ?? null;
  }

  /** Shows an incident (loads its timeline); `incident` is drawn at once while that loads. */
  async open(incident: Incident): Promise<void> {
    if (this.#detail?.id !== incident.id) this.#dropMedia();
    this.#detail = { ...incident, timeline: this.#detail?.id === incident.id ? this.#detail.timeline : [], dispatches: this.#detail?.id === incident.id ? this.#detail.dispatches : [] };
    this.#message = '';
    if (incident.category === 'fire' && incident.cameras.length > 0 && !this.#strip) {
      this.#strip = new SnapshotStrip({ incidentId: incident.id, i18n: this.#opts.i18n });
      void this.#strip.refresh();
      const first = incident.cameras.find((c) => c.bearingDeg !== null) ?? incident.cameras[0]!;
      this.#watch(first.id);
    }
    this.#lastSignals = incident.signalCount;
    this.#render();
    this.#timer ??= setInterval(() => this.#renderCountdown(), 1000);
    await this.refresh();
  }

  /** The live feed changed this incident: redraw with the new state and reload the timeline. */
  update(incident: Incident): void {
    if (this.#detail?.id !== incident.id) return;
    this.#detail = { ...this.#detail, ...incident };
    // A camera joined or alarmed again: its snapshot may be new.
    if (this.#strip && incident.signalCount !== this.#lastSignals) void this.#strip.refresh();
    this.#lastSignals = incident.signalCount;
    this.#render();
    void this.refresh();
  }

  async refresh(): Promise<void> {
    const id = this.#detail?.id;
    if (!id) return;
    this.#abort?.abort();
    const abort = new AbortController();
    this.#abort = abort;
    try {
      const detail = await fetchIncident(id, abort.signal);
      if (this.#detail?.id === id) {
        this.#detail = detail;
        this.#render();
      }
    } catch (err) {
      if (!abort.signal.aborted) this.#say(this.#opts.i18n.t('inc.act.failed', { message: describeError(this.#opts.i18n, err) }), 'error');
    }
  }

  /** Shows one camera's live picture (one stream at a time: video costs nothing until watched). */
  #watch(cameraId: string): void {
    if (this.#player?.cameraId === cameraId) return;
    this.#player?.stop();
    this.#player = new VideoPlayer({ cameraId, i18n: this.#opts.i18n, role: this.#opts.role, ptz: can(this.#opts.role(), 'duty_officer'), compact: true });
    this.#player.start();
    this.#render();
  }

  #dropMedia(): void {
    this.#player?.stop();
    this.#player = null;
    this.#strip?.dispose();
    this.#strip = null;
    this.#media.replaceChildren();
  }

  close(): void {
    this.#abort?.abort();
    this.#dropMedia();
    this.#detail = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.el.replaceChildren();
  }

  #say(message: string, kind: 'error' | 'ok' | ''): void {
    this.#message = message;
    this.#messageKind = kind;
    this.#render();
  }

  async #act(action: IncidentActionPath, body: { note?: string; reason?: string }): Promise<void> {
    const d = this.#detail;
    if (!d || this.#busy) return;
    this.#busy = true;
    this.#render();
    try {
      this.#detail = await actOnIncident(d.id, action, body);
      this.#say(this.#opts.i18n.t('inc.act.done'), 'ok');
    } catch (err) {
      this.#say(this.#opts.i18n.t('inc.act.failed', { message: describeError(this.#opts.i18n, err) }), 'error');
    } finally {
      this.#busy = false;
      this.#render();
    }
  }

  async #photo(file: File, note: string): Promise<void> {
    const d = this.#detail;
    if (!d) return;
    this.#busy = true;
    this.#render();
    try {
      this.#detail = await uploadIncidentPhoto(d.id, file, note);
      this.#say(this.#opts.i18n.t('inc.act.done'), 'ok');
    } catch (err) {
      this.#say(this.#opts.i18n.t('inc.act.failed', { message: err instanceof Error ? err.message : String(err) }), 'error');
    } finally {
      this.#busy = false;
      this.#render();
    }
  }

  #countdownText(d: Incident): string {
    const { i18n } = this.#opts;
    if (d.escalateAt === null || !isOpenIncident(d)) return i18n.t('inc.card.escalationStopped');
    const levels = ['grid', 'community', 'street', 'district'] as const;
    const next = levels[levels.indexOf(d.level) + 1];
    const secs = Math.max(0, Math.round((d.escalateAt - Date.now()) / 1000));
    const time = secs >= 60 ? `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}` : `${secs}s`;
    return next ? i18n.t('inc.card.escalatesIn', { time, level: i18n.t(`inc.level.${next}`) }) : '';
  }

  #renderCountdown(): void {
    const el = this.el.querySelector<HTMLElement>('[data-testid="incident-countdown"]');
    if (el && this.#detail) el.textContent = this.#countdownText(this.#detail);
  }

  #whereText(d: Incident): string {
    const { i18n } = this.#opts;
    const l = d.location;
    if (!l) return '—';
    if (l.method === 'triangulated') return i18n.t('inc.card.triangulated', { lat: fmt(l.lat), lon: fmt(l.lon), cameras: l.cameras.length, uncertainty: Math.round(l.uncertaintyM) });
    if (l.method === 'bearing_line') return i18n.t('inc.card.bearingLine', { camera: l.cameraId, bearing: l.bearingDeg.toFixed(1) });
    return i18n.t('inc.card.devicePos', { lat: fmt(l.lat), lon: fmt(l.lon) });
  }

  #timelineText(e: TimelineEntry): string {
    const { i18n } = this.#opts;
    const d = e.detail;
    const bits: string[] = [];
    if (typeof d.level === 'string' && i18n.has(`inc.level.${d.level}`)) bits.push(i18n.t(`inc.level.${d.level}` as MessageKey));
    if (typeof d.device === 'string') bits.push(d.device);
    if (typeof d.kind === 'string' && i18n.has(`inc.kind.${d.kind}`)) bits.push(i18n.t(`inc.kind.${d.kind}` as MessageKey));
    if (typeof d.bearingDeg === 'number') bits.push(i18n.t('inc.card.bearing', { bearing: d.bearingDeg.toFixed(1) }));
    if (Array.isArray(d.recipients) && d.recipients.length > 0) bits.push(`→ ${d.recipients.join(', ')}`);
    for (const k of ['reason', 'note', 'text']) if (typeof d[k] === 'string') bits.push(d[k]);
    return bits.join(' · ');
  }

  #render(): void {
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    const d = this.#detail;
    if (!d) {
      this.el.replaceChildren();
      return;
    }
    const role = this.#opts.role();
    const open = isOpenIncident(d);
    const mayAct = can(role, 'grid_worker');
    const isDuty = can(role, 'duty_officer');
    const text = h('textarea', { class: 'incident-text', rows: '2', 'data-testid': 'incident-text', placeholder: t('inc.act.notePrompt') });
    const button = (key: MessageKey, testid: string, run: () => void, enabled = true, kind = '') => {
      const b = h('button', { type: 'button', 'data-testid': testid, class: kind }, t(key));
      b.disabled = this.#busy || !enabled;
      b.addEventListener('click', run);
      return b;
    };
    const val = () => text.value.trim();
    const actions: HTMLElement[] = [];
    if (mayAct) {
      if (d.status === 'new' || d.status === 'dispatched') actions.push(button('inc.act.acknowledge', 'act-acknowledge', () => void this.#act('acknowledge', val() ? { note: val() } : {}), true, 'primary'));
      if (open && d.status !== 'on_site') actions.push(button('inc.act.on_site', 'act-on-site', () => void this.#act('on-site', val() ? { note: val() } : {})));
      if (open) {
        actions.push(button('inc.act.resolve', 'act-resolve', () => void this.#act('resolve', val() ? { note: val() } : {})));
        actions.push(
          button('inc.act.false_alarm', 'act-false-alarm', () => {
            if (!val()) {
              text.placeholder = t('inc.act.reasonPrompt');
              text.focus();
              this.#say(t('inc.act.reasonPrompt'), 'error');
              return;
            }
            void this.#act('false-alarm', { reason: val() });
          }),
        );
      }
      actions.push(button('inc.act.note', 'act-note', () => val() && void this.#act('notes', { note: val() })));
      const file = h('input', { type: 'file', accept: 'image/jpeg,image/png,image/webp', capture: 'environment', 'data-testid': 'act-photo-file', hidden: '' });
      file.addEventListener('change', () => {
        const f = file.files?.[0];
        if (f) void this.#photo(f, val());
      });
      actions.push(button('inc.act.photo', 'act-photo', () => file.click()), file);
    }
    if (isDuty && open && d.level !== 'district') actions.push(button('inc.act.escalate', 'act-escalate', () => void this.#act('escalate', val() ? { reason: val() } : {})));
    if (d.location && d.location.method !== 'device') {
      const point = d.location.method === 'triangulated' ? d.location : { lat: (d.location.from.lat + d.location.to.lat) / 2, lon: (d.location.from.lon + d.location.to.lon) / 2 };
      // Phones open their map app; the link says WGS-84 so Gaode converts it.
      actions.push(
        h(
          'a',
          { class: 'button', target: '_blank', rel: 'noopener', 'data-testid': 'act-navigate', href: `https://uri.amap.com/marker?position=${fmt(point.lon, 6)},${fmt(point.lat, 6)}&coordinate=wgs84&callnative=1&name=${encodeURIComponent(d.title)}` },
          t('inc.act.navigate'),
        ),
      );
    }
    if (this.#opts.onShowOnMap) actions.push(button('inc.card.showOnMap', 'act-show-on-map', () => this.#opts.onShowOnMap?.(d)));
    if (isDuty && open && d.nearestPoles.length > 0 && this.#opts.onWarnPoles) actions.push(button('inc.card.warnPoles', 'act-warn-poles', () => this.#opts.onWarnPoles?.(d)));

    const close = h('button', { type: 'button', class: 'icon', 'data-testid': 'incident-card-close', 'aria-label': t('inc.card.close') }, '×');
    close.addEventListener('click', () => this.#opts.onClose?.());

    const nearby = (key: MessageKey, list: Incident['nearestTanks']) =>
      list.length === 0
        ? []
        : [
            h('h3', {}, t(key)),
            h(
              'ul',
              { class: 'nearby' },
              ...list.map((n) =>
                h(
                  'li',
                  { 'data-status': n.status },
                  h('span', { class: 'name' }, n.name),
                  ' ',
                  h('span', { class: 'muted' }, t('inc.card.distance', { distance: n.distanceM })),
                  n.levelPercent !== undefined && n.levelPercent !== null ? h('span', { class: 'level' }, ` · ${t('inc.card.tankLevel', { level: Math.round(n.levelPercent) })}`) : '',
                ),
              ),
            ),
          ];

    if (this.#player || this.#strip) {
      const pick = d.cameras.slice(0, 8).map((c) => {
        const b = h('button', { type: 'button', class: `small${this.#player?.cameraId === c.id ? ' selected' : ''}`, 'data-testid': 'incident-watch', 'data-camera': c.id }, c.name);
        b.addEventListener('click', () => this.#watch(c.id));
        return b;
      });
      this.#media.replaceChildren(...(pick.length > 1 ? [h('div', { class: 'buttons' }, ...pick)] : []), ...(this.#player ? [this.#player.el] : []), ...(this.#strip ? [this.#strip.el] : []));
    }
    const photos = d.timeline.filter((e) => e.action === 'photo' && typeof e.detail.photo === 'string');
    this.el.dataset.status = d.status;
    this.el.dataset.severity = d.severity;
    this.el.dataset.incident = d.id;
    this.el.classList.toggle('compact', this.#opts.compact === true);
    this.el.replaceChildren(
      h(
        'header',
        {},
        h('span', { class: `badge severity-${d.severity}` }, t(`inc.severity.${d.severity}`)),
        h('span', { class: `badge status-${d.status}`, 'data-testid': 'incident-status' }, t(`inc.status.${d.status}`)),
        h('h2', { 'data-testid': 'incident-title' }, d.title),
        this.#opts.onClose ? close : '',
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'ID'),
        h('dd', { class: 'mono' }, d.id),
        h('dt', {}, t('inc.card.where')),
        h('dd', { 'data-testid': 'incident-where' }, this.#whereText(d)),
        h('dt', {}, t('inc.card.grid')),
        h('dd', {}, [d.gridName ?? d.grid ?? '—', d.community ?? ''].filter(Boolean).join(' · ')),
        h('dt', {}, t('inc.card.level')),
        h('dd', {}, t(`inc.level.${d.level}`), ' · ', h('span', { 'data-testid': 'incident-countdown' }, this.#countdownText(d))),
        h('dt', {}, t('inc.card.signals', { count: d.signalCount })),
        h('dd', {}, i18n.dateTime(d.createdAt), ' – ', i18n.relative(d.lastSignalAt)),
      ),
      d.acknowledgedBy ? h('p', { class: 'muted' }, t('inc.card.acknowledgedBy', { user: d.acknowledgedBy, time: i18n.dateTime(d.acknowledgedAt ?? 0) })) : '',
      d.closedBy ? h('p', { class: 'muted' }, t('inc.card.closedBy', { user: d.closedBy, time: i18n.dateTime(d.closedAt ?? 0), reason: d.closeReason ?? '' })) : '',
      mayAct || isDuty ? h('div', { class: 'incident-actions' }, text, h('div', { class: 'buttons' }, ...actions)) : h('div', { class: 'incident-actions buttons' }, ...actions),
      h('p', { class: 'form-message', role: 'status', 'data-kind': this.#messageKind, 'data-testid': 'incident-message' }, this.#message),
      this.#player || this.#strip ? this.#media : '',
      d.cameras.length > 0
        ? h(
            'div',
            {},
            h('h3', {}, t('inc.card.cameras')),
            h(
              'ul',
              { class: 'cameras' },
              ...d.cameras.map((c) => h('li', {}, h('span', { class: 'name' }, c.name), ' ', h('span', { class: 'muted' }, c.bearingDeg === null ? t('inc.card.noBearing') : t('inc.card.bearing', { bearing: c.bearingDeg.toFixed(1) })))),
            ),
          )
        : '',
      ...nearby('inc.card.tanks', d.nearestTanks),
      ...nearby('inc.card.poles', d.nearestPoles),
      photos.length > 0
        ? h('div', { class: 'photos' }, ...photos.map((p) => h('img', { src: photoUrl(d.id, String(p.detail.photo)), alt: t('inc.card.photo'), loading: 'lazy' })))
        : '',
      h('h3', {}, t('inc.card.timeline')),
      h(
        'ol',
        { class: 'timeline', 'data-testid': 'incident-timeline' },
        ...d.timeline.map((e) =>
          h(
            'li',
            { 'data-action': e.action },
            h('time', { datetime: new Date(e.ts).toISOString() }, i18n.dateTime(e.ts)),
            ' ',
            h('strong', {}, i18n.has(`inc.tl.${e.action}`) ? t(`inc.tl.${e.action}` as MessageKey) : e.action),
            ' ',
            h('span', { class: 'mono' }, e.actor),
            ' ',
            h('span', {}, this.#timelineText(e)),
          ),
        ),
      ),
      d.dispatches.length > 0
        ? h(
            'details',
            {},
            h('summary', {}, t('inc.card.dispatches')),
            h(
              'ul',
              { class: 'dispatches' },
              ...d.dispatches.map((x) =>
                h('li', { 'data-status': x.status }, `${i18n.dateTime(x.ts)} · ${t(`inc.level.${x.level}`)} · ${x.recipient} · ${x.channel} · ${t(`inc.dispatch.${x.status}`)}${x.detail ? ` (${x.detail})` : ''}`),
              ),
            ),
          )
        : '',
    );
  }
}
