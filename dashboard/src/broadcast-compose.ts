/**
 * 新建广播 — the duty officer's form: which poles (picked on the map or from lists, previewed with
 * `POST /api/broadcasts/resolve-targets`), what they say (text, a stored clip or a template with
 * its variables), priority, repeat, volume, schedule and expiry; then a dry run that shows what
 * will happen (N poles, M offline, the priority and the text) and a confirmation that sends.
 *
 * The form checks what it can before asking the gateway (an emergency needs a reason, a text its
 * words, a template its values); the gateway checks everything again.
 */
import type { DeviceView } from '../../protocol/ws.js';
import type { Incident } from '../../protocol/incidents.js';
import {
  MAX_REPEAT,
  MAX_TEXT_CHARS,
  PRIORITIES,
  createBroadcast,
  describeSchedule,
  previewBroadcast,
  resolveTarget,
  type BroadcastCatalogue,
  type BroadcastJob,
  type BroadcastPriority,
  type BroadcastRequest,
  type BroadcastTemplateView,
  type ResolvedPole,
  type ResolvedTarget,
} from './broadcast-feed.js';
import type { BroadcastMapLayer, LatLon, MapTool, PickablePole } from './broadcast-map.js';
import { TARGET_KINDS, byId, draftShape, draftTarget, emptyTargetDraft, gridAt, type SiteAreas, type TargetDraft, type TargetKind } from './broadcast-targets.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';
import { incidentPoint } from './incident-feed.js';

type ContentKind = 'text' | 'clip' | 'template';
type ScheduleKind = 'now' | 'at' | 'daily';

interface ContentDraft {
  kind: ContentKind;
  text: string;
  clipId: string;
  templateId: string;
  /** Values typed per template and variable; blank means "the gateway's current value". */
  values: Map<string, Map<string, string>>;
  priority: BroadcastPriority;
  /** The officer chose the priority: a template no longer sets it. */
  priorityChosen: boolean;
  reason: string;
  repeat: string;
  volume: string;
  schedule: ScheduleKind;
  /** `<input type="datetime-local">` values, browser local time. */
  at: string;
  dailyStart: string;
  dailyEnd: string;
  /** `<input type="date">`: the last day a daily run may start. */
  dailyUntil: string;
  expiresAt: string;
  title: string;
  incident: { id: string; title: string } | null;
}

function emptyContent(): ContentDraft {
  return {
    kind: 'text',
    text: '',
    clipId: '',
    templateId: '',
    values: new Map(),
    priority: 'routine',
    priorityChosen: false,
    reason: '',
    repeat: '1',
    volume: '',
    schedule: 'now',
    at: '',
    dailyStart: '08:00',
    dailyEnd: '09:00',
    dailyUntil: '',
    expiresAt: '',
    title: '',
    incident: null,
  };
}

/** Which input a problem belongs to, so it is marked beside the message. */
type Field = 'target' | 'text' | 'clip' | 'template' | 'reason' | 'repeat' | 'volume' | 'at' | 'daily' | 'expiresAt';
interface Problem {
  field: Field;
  key: MessageKey;
  params?: Record<string, string | number>;
}

export interface ComposeOptions {
  i18n: I18n;
  layer: BroadcastMapLayer;
  poles: () => DeviceView[];
  areas: () => SiteAreas | null;
  catalogue: () => BroadcastCatalogue | null;
  /** The map is there to pick on (false: the hint says to open the map first). */
  mapReady: () => boolean;
  /** Sent: the console opens the job. */
  onSent: (job: BroadcastJob) => void;
  /** API failures in words (bc.error.* first). */
  describe: (err: unknown) => string;
}

const PREVIEW_DELAY_MS = 250;
/** More than this and the preview lists the first ones and says how many more. */
const PREVIEW_ROWS = 200;
/** TTS speaks about 4.5 syllables (characters) a second (docs/broadcast.md). */
const CHARS_PER_SECOND = 4.5;
const INCIDENT_RADIUS_M = 3000;

const MAP_TOOL: Partial<Record<TargetKind, MapTool>> = { poles: 'poles', grids: 'grids', radius: 'radius', polygon: 'polygon' };

const label = (key: MessageKey, ...controls: Array<Node | string>) => h('label', { class: 'bc-field' }, h('span', { class: 'bc-label', 'data-i18n': key }), ...controls);
/** An option with a catalogue label (filled by applyStatic) or a data label (set as text). */
const option = (value: string, key: MessageKey | null, text = '') => h('option', key ? { value, 'data-i18n': key } : { value }, text);

export class ComposeForm {
  readonly el = h('form', { class: 'bc-compose', 'data-testid': 'bc-compose', novalidate: '' });
  readonly #opts: ComposeOptions;
  #target: TargetDraft = emptyTargetDraft();
  #content: ContentDraft = emptyContent();
  #preview: ResolvedTarget | null = null;
  #previewError = '';
  #previewing = false;
  #previewTimer: ReturnType<typeof setTimeout> | null = null;
  #previewAbort: AbortController | null = null;
  #problems: Problem[] = [];
  #serverError = '';
  #confirm: { request: BroadcastRequest; job: BroadcastJob; poles: ResolvedPole[] } | null = null;
  #busy = false;
  #drawing = 0;
  #active = false;
  /** What was typed in the grid and community filters (the lists are rebuilt now and then). */
  readonly #listFilter = { grids: '', communities: '' };
  /** Where to look once the map is there (a prefill made while the console was hidden). */
  #fitOnActivate: { center: LatLon; radiusM: number } | null = null;

  // Parts rebuilt on their own.
  readonly #kindBar = h('div', { class: 'bc-seg', role: 'group', 'data-testid': 'bc-target-kinds' });
  readonly #targetBody = h('div', { class: 'bc-target-body' });
  readonly #previewEl = h('div', { class: 'bc-preview', 'data-testid': 'bc-preview', 'aria-live': 'polite' });
  readonly #contentBar = h('div', { class: 'bc-seg', role: 'group' });
  readonly #contentBody = h('div', { class: 'bc-content-body' });
  readonly #scheduleBar = h('div', { class: 'bc-seg', role: 'group' });
  readonly #scheduleBody = h('div', { class: 'bc-schedule-body' });
  readonly #incidentEl = h('div', { class: 'bc-incident', 'data-testid': 'bc-incident' });
  readonly #errorEl = h('div', { class: 'bc-error', role: 'alert', 'data-testid': 'bc-form-error' });
  readonly #confirmEl = h('div', { class: 'bc-confirm', 'data-testid': 'bc-confirm' });
  readonly #submit = h('button', { type: 'submit', class: 'bc-primary', 'data-testid': 'bc-preview-send', 'data-i18n': 'bc.send.preview' });
  readonly #priority = h('select', { 'data-testid': 'bc-priority' }, ...PRIORITIES.map((p) => option(p, `bc.priority.${p}`)));
  readonly #reason = h('input', { type: 'text', maxlength: '500', 'data-testid': 'bc-reason', 'data-i18n-placeholder': 'bc.reason.placeholder' });
  readonly #reasonLabel = h('span', { class: 'bc-label', 'data-i18n': 'bc.reason' });
  readonly #repeat = h('input', { type: 'number', min: '1', max: String(MAX_REPEAT), step: '1', 'data-testid': 'bc-repeat' });
  readonly #volume = h('input', { type: 'number', min: '0', max: '100', step: '1', 'data-testid': 'bc-volume', 'data-i18n-placeholder': 'bc.volume.default' });
  readonly #expires = h('input', { type: 'datetime-local', 'data-testid': 'bc-expires' });
  readonly #title = h('input', { type: 'text', maxlength: '100', 'data-testid': 'bc-title', 'data-i18n-placeholder': 'bc.jobTitle.placeholder' });

  constructor(opts: ComposeOptions) {
    this.#opts = opts;
    const targetSet = h('fieldset', { class: 'bc-fieldset' }, h('legend', { 'data-i18n': 'bc.target.legend' }), this.#kindBar, this.#targetBody, this.#previewEl);
    const contentSet = h('fieldset', { class: 'bc-fieldset' }, h('legend', { 'data-i18n': 'bc.content.legend' }), this.#contentBar, this.#contentBody);
    const optionsSet = h(
      'fieldset',
      { class: 'bc-fieldset' },
      h('legend', { 'data-i18n': 'bc.options.legend' }),
      h('div', { class: 'bc-row' }, label('bc.priority', this.#priority), label('bc.repeat', this.#repeat), label('bc.volume', this.#volume)),
      h('label', { class: 'bc-field bc-reason' }, this.#reasonLabel, this.#reason),
      h('div', { class: 'bc-field' }, h('span', { class: 'bc-label', 'data-i18n': 'bc.schedule' }), this.#scheduleBar, this.#scheduleBody),
      label('bc.expires', this.#expires, h('span', { class: 'bc-hint', 'data-i18n': 'bc.expires.hint' })),
      label('bc.jobTitle', this.#title),
    );
    this.el.append(targetSet, contentSet, optionsSet, this.#incidentEl, this.#errorEl, h('div', { class: 'bc-actions' }, this.#submit), this.#confirmEl);
    this.el.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#dryRun();
    });
    this.#bindOptions();
    this.render();
  }

  // ---- the console's calls ----------------------------------------------------------------------

  /** The view became visible: map tool on (if the target kind uses one), preview refreshed. */
  activate(): void {
    this.#active = true;
    this.#applyTool();
    this.redrawMap();
    if (this.#fitOnActivate && this.#opts.layer.map) {
      this.#opts.layer.fitCircle(this.#fitOnActivate.center, this.#fitOnActivate.radiusM);
      this.#fitOnActivate = null;
    }
  }

  /** The view went away, or a job is shown instead: no map tool, no drawing. */
  deactivate(): void {
    this.#active = false;
    this.#opts.layer.setTool(null);
  }

  /** Draws the selection on the map again (after the map appeared or changed). */
  redrawMap(): void {
    if (!this.#active) return;
    const layer = this.#opts.layer;
    layer.showDeliveries(null);
    layer.showSelection(draftShape(this.#target, this.#opts.areas()), this.#preview?.poles ?? []);
    this.#refreshPickable();
  }

  /** The map appeared, or the poles changed: the `poles` tool offers the current set. */
  refreshMap(): void {
    if (!this.#active) return;
    this.#applyTool();
    this.redrawMap();
  }

  /** Forgets everything (signed out). */
  reset(): void {
    this.#previewAbort?.abort();
    if (this.#previewTimer !== null) clearTimeout(this.#previewTimer);
    this.#previewTimer = null;
    this.#target = emptyTargetDraft();
    this.#content = emptyContent();
    this.#listFilter.grids = '';
    this.#listFilter.communities = '';
    this.#fitOnActivate = null;
    this.#preview = null;
    this.#previewError = '';
    this.#problems = [];
    this.#serverError = '';
    this.#confirm = null;
    this.#busy = false;
    this.#opts.layer.showSelection({ kind: 'none' }, []);
    this.render();
  }

  /**
   * "Warn nearby poles" from an incident: the poles within 3 km of where it is (its nearest poles,
   * or its grid, when it has no position), the evacuation template with the area filled from its
   * grid, priority warning, its title as the reason, and the incident linked.
   */
  prefillFromIncident(incident: Incident): void {
    const at = incidentPoint(incident);
    const t = this.#target;
    if (at) {
      t.kind = 'radius';
      t.center = at;
      t.radiusM = INCIDENT_RADIUS_M;
    } else if (incident.nearestPoles.length > 0) {
      t.kind = 'poles';
      t.poles = incident.nearestPoles.map((p) => p.id);
    } else if (incident.grid) {
      t.kind = 'grids';
      t.grids = new Set([incident.grid]);
    }
    const c = this.#content;
    const catalogue = this.#opts.catalogue();
    const template = catalogue?.templates.find((x) => x.id === 'evacuation-order') ?? catalogue?.templates.find((x) => x.id === 'fire-danger-warning');
    c.kind = 'template';
    c.templateId = template?.id ?? 'evacuation-order';
    const values = this.#valuesOf(c.templateId);
    if (incident.gridName && (!template || template.variables.some((v) => v.name === 'area'))) values.set('area', incident.gridName);
    c.priority = 'warning';
    c.priorityChosen = true;
    c.reason = incident.title;
    c.incident = { id: incident.id, title: incident.title };
    this.#confirm = null;
    this.#problems = [];
    this.#serverError = '';
    this.render();
    this.#targetChanged();
    this.#fitOnActivate = at ? { center: at, radiusM: INCIDENT_RADIUS_M } : null;
    if (this.#active) this.activate();
  }

  /** The catalogue arrived (templates, clips, groups): selects and values can be filled. */
  catalogueChanged(): void {
    const c = this.#content;
    const catalogue = this.#opts.catalogue();
    if (catalogue && !c.templateId && catalogue.templates[0]) c.templateId = catalogue.templates[0].id;
    if (catalogue && !c.clipId && catalogue.clips[0]) c.clipId = catalogue.clips[0].id;
    this.render();
  }

  /** Site outlines arrived: grid names in the lists, clicks on grids. */
  areasChanged(): void {
    this.#renderTargetBody();
    this.redrawMap();
  }

  /** A pole was clicked on the map (tool `poles`). */
  togglePole(id: string): void {
    const t = this.#target;
    t.poles = t.poles.includes(id) ? t.poles.filter((p) => p !== id) : [...t.poles, id];
    this.#targetChanged();
  }

  /** The map was clicked with the grid or radius tool. */
  pickPoint(tool: 'grids' | 'radius', at: LatLon): void {
    const t = this.#target;
    if (tool === 'radius') {
      t.center = at;
    } else {
      const areas = this.#opts.areas();
      const grid = areas ? gridAt(areas, at) : null;
      if (!grid) return;
      if (t.grids.has(grid.id)) t.grids.delete(grid.id);
      else t.grids.add(grid.id);
    }
    this.#targetChanged();
  }

  /** A polygon was drawn (null: drawing was cancelled, the last polygon stays). */
  polygonDrawn(ring: Array<[number, number]> | null): void {
    if (ring) {
      this.#target.ring = ring;
      this.#targetChanged();
    } else {
      this.redrawMap();
    }
  }

  drawingChanged(vertices: number): void {
    this.#drawing = vertices;
    if (this.#target.kind === 'polygon') this.#renderTargetBody();
  }

  // ---- rendering ----------------------------------------------------------------------------------

  render(): void {
    const { i18n } = this.#opts;
    const c = this.#content;
    this.#kindBar.replaceChildren(
      ...TARGET_KINDS.map((kind) =>
        this.#segButton(`bc.target.${kind}`, `bc-target-${kind}`, this.#target.kind === kind, () => {
          if (this.#target.kind === kind) return;
          this.#target.kind = kind;
          this.#applyTool();
          this.render();
          this.#targetChanged(false);
        }),
      ),
    );
    this.#contentBar.replaceChildren(
      ...(['text', 'clip', 'template'] as const).map((kind) =>
        this.#segButton(`bc.content.${kind}`, `bc-content-${kind}`, c.kind === kind, () => {
          c.kind = kind;
          this.#followTemplatePriority();
          this.#contentChanged();
          this.render();
        }),
      ),
    );
    this.#scheduleBar.replaceChildren(
      ...(['now', 'at', 'daily'] as const).map((kind) =>
        this.#segButton(`bc.schedule.${kind}`, `bc-schedule-${kind}`, c.schedule === kind, () => {
          c.schedule = kind;
          this.#contentChanged();
          this.render();
        }),
      ),
    );
    this.#renderTargetBody();
    this.#renderPreview();
    this.#renderContentBody();
    this.#renderSchedule();
    this.#priority.value = c.priority;
    this.#reason.value = c.reason;
    this.#reason.required = c.priority === 'emergency';
    this.#reasonLabel.dataset.i18n = c.priority === 'emergency' ? 'bc.reason.required' : 'bc.reason';
    this.#repeat.value = c.repeat;
    this.#volume.value = c.volume;
    this.#expires.value = c.expiresAt;
    this.#expires.disabled = c.schedule === 'daily';
    this.#title.value = c.title;
    this.el.dataset.priority = c.priority;
    this.#incidentEl.hidden = c.incident === null;
    if (c.incident) {
      const clear = h('button', { type: 'button', class: 'icon', 'data-testid': 'bc-incident-clear', 'aria-label': i18n.t('bc.incident.unlink') }, '×');
      clear.addEventListener('click', () => {
        c.incident = null;
        this.#contentChanged();
        this.render();
      });
      this.#incidentEl.replaceChildren(h('span', {}, i18n.t('bc.incident.linked', { id: c.incident.id, title: c.incident.title })), clear);
    }
    this.#renderErrors();
    this.#renderConfirm();
    this.#submit.disabled = this.#busy;
    i18n.applyStatic(this.el);
  }

  #segButton(key: MessageKey, testid: string, pressed: boolean, onClick: () => void): HTMLButtonElement {
    const b = h('button', { type: 'button', 'data-testid': testid, 'aria-pressed': String(pressed), 'data-i18n': key });
    b.addEventListener('click', onClick);
    return b;
  }

  #renderTargetBody(): void {
    const { i18n } = this.#opts;
    const t = this.#target;
    const hint = (key: MessageKey, params?: Record<string, string | number>) => h('p', { class: 'bc-hint' }, i18n.t(key, params));
    const mapHint = () => (this.#opts.mapReady() ? [] : [h('p', { class: 'bc-hint bc-warn', 'data-testid': 'bc-no-map' }, i18n.t('bc.target.noMap'))]);
    const parts: Node[] = [];
    switch (t.kind) {
      case 'poles':
        parts.push(hint('bc.target.poles.hint'), ...mapHint(), this.#poleSearch(), this.#pickedPoles());
        break;
      case 'grids':
        parts.push(hint('bc.target.grids.hint'), ...mapHint(), this.#checkList('grids'));
        break;
      case 'communities':
        parts.push(this.#checkList('communities'));
        break;
      case 'group': {
        const groups = this.#opts.catalogue()?.groups ?? [];
        if (groups.length === 0) {
          parts.push(hint('bc.target.group.none'));
          break;
        }
        const select = h('select', { 'data-testid': 'bc-group' }, option('', null, i18n.t('bc.target.group.choose')), ...groups.map((g) => option(g.name, null, i18n.t('bc.target.group.option', { name: g.name, count: g.poles }))));
        select.value = t.group;
        select.addEventListener('change', () => {
          t.group = select.value;
          this.#targetChanged();
        });
        parts.push(label('bc.target.group', select));
        break;
      }
      case 'radius': {
        const radius = h('input', { type: 'number', min: '50', max: '100000', step: '50', 'data-testid': 'bc-radius' });
        radius.value = String(t.radiusM);
        radius.addEventListener('input', () => {
          const v = Number(radius.value);
          if (Number.isFinite(v) && v > 0) {
            t.radiusM = v;
            this.#targetChanged(false);
          }
        });
        const center = t.center
          ? h('span', { 'data-testid': 'bc-center' }, i18n.t('bc.target.radius.center', { lat: t.center.lat.toFixed(5), lon: t.center.lon.toFixed(5) }))
          : h('span', { class: 'bc-warn', 'data-testid': 'bc-center' }, i18n.t('bc.target.radius.noCenter'));
        parts.push(hint('bc.target.radius.hint'), ...mapHint(), h('div', { class: 'bc-row' }, label('bc.target.radius.m', radius), h('div', { class: 'bc-field' }, center)));
        break;
      }
      case 'polygon': {
        const finish = h('button', { type: 'button', 'data-testid': 'bc-polygon-finish' }, i18n.t('bc.target.polygon.finish'));
        finish.disabled = this.#drawing < 3;
        finish.addEventListener('click', () => this.#opts.layer.finishDrawing());
        const clear = h('button', { type: 'button', 'data-testid': 'bc-polygon-clear' }, i18n.t('bc.target.polygon.clear'));
        clear.disabled = this.#drawing === 0 && t.ring === null;
        clear.addEventListener('click', () => {
          this.#opts.layer.cancelDrawing(false);
          t.ring = null;
          this.#targetChanged();
        });
        const state =
          this.#drawing > 0
            ? i18n.t('bc.target.polygon.drawing', { n: this.#drawing })
            : t.ring
              ? i18n.t('bc.target.polygon.done', { n: t.ring.length })
              : i18n.t('bc.target.polygon.none');
        parts.push(hint('bc.target.polygon.hint'), ...mapHint(), h('div', { class: 'bc-row bc-center-row' }, h('span', { 'data-testid': 'bc-polygon-state' }, state), finish, clear));
        break;
      }
      case 'all':
        parts.push(hint('bc.target.all.hint', { count: this.#opts.poles().length || '—' }));
        break;
    }
    this.#targetBody.replaceChildren(...parts);
    i18n.applyStatic(this.#targetBody);
  }

  /** Grid or community checkboxes with pole counts, filterable by typing. */
  #checkList(kind: 'grids' | 'communities'): HTMLElement {
    const { i18n } = this.#opts;
    const chosen = kind === 'grids' ? this.#target.grids : this.#target.communities;
    const counts = new Map<string, number>();
    for (const p of this.#opts.poles()) {
      const key = kind === 'grids' ? p.grid : p.community;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const areas = this.#opts.areas();
    const names = new Map<string, string>();
    for (const a of (kind === 'grids' ? areas?.grids : areas?.communities)?.values() ?? []) names.set(kind === 'grids' ? a.id : a.name, kind === 'grids' ? a.name : '');
    // Poles decide what can be chosen; the site map adds names (and areas without poles when no poles are known).
    const keys = counts.size > 0 ? [...counts.keys()] : [...names.keys()];
    for (const k of chosen) if (!keys.includes(k)) keys.push(k);
    keys.sort(kind === 'grids' ? byId : (a, b) => a.localeCompare(b, 'zh-CN'));
    const filter = h('input', { type: 'search', class: 'bc-filter', 'data-testid': `bc-${kind}-filter`, placeholder: i18n.t('bc.target.filter') });
    filter.value = this.#listFilter[kind];
    const list = h('ul', { class: 'bc-checklist', 'data-testid': `bc-${kind}-list` });
    const rows = keys.map((key) => {
      const box = h('input', { type: 'checkbox', value: key });
      box.checked = chosen.has(key);
      box.addEventListener('change', () => {
        if (box.checked) chosen.add(key);
        else chosen.delete(key);
        // The box shows it already: the list (its filter, its scroll) stays as it is.
        this.#targetChanged(false);
      });
      const name = names.get(key);
      const count = counts.get(key);
      const li = h(
        'li',
        { 'data-testid': kind === 'grids' ? 'bc-grid-option' : 'bc-community-option', [kind === 'grids' ? 'data-grid' : 'data-community']: key },
        h('label', {}, box, h('span', { class: 'bc-key' }, key), name ? h('span', { class: 'bc-muted' }, name) : '', h('span', { class: 'bc-count' }, count === undefined ? '' : i18n.t('bc.target.poleCount', { count }))),
      );
      return { li, text: `${key} ${name ?? ''}`.toLowerCase() };
    });
    list.append(...rows.map((r) => r.li));
    if (rows.length === 0) list.append(h('li', { class: 'bc-muted' }, i18n.t('bc.target.noneKnown')));
    const apply = () => {
      const q = filter.value.trim().toLowerCase();
      for (const r of rows) r.li.hidden = q !== '' && !r.text.includes(q);
    };
    apply();
    filter.addEventListener('input', () => {
      this.#listFilter[kind] = filter.value;
      apply();
    });
    return h('div', { class: 'bc-listbox' }, filter, list);
  }

  /** Adds poles by id or name (the map is not the only way, nor always open). */
  #poleSearch(): HTMLElement {
    const { i18n } = this.#opts;
    const input = h('input', { type: 'search', class: 'bc-filter', 'data-testid': 'bc-pole-search', placeholder: i18n.t('bc.target.poles.search') });
    const results = h('ul', { class: 'bc-results' });
    input.addEventListener('input', () => {
      const q = input.value.trim().toLowerCase();
      const picked = new Set(this.#target.poles);
      const found = q === '' ? [] : this.#opts.poles().filter((p) => !picked.has(p.id) && (p.id.toLowerCase().includes(q) || p.name.toLowerCase().includes(q))).slice(0, 8);
      results.replaceChildren(
        ...found.map((p) => {
          const b = h('button', { type: 'button', 'data-testid': 'bc-pole-result', 'data-pole': p.id }, `${p.name} (${p.id})`);
          b.addEventListener('click', () => {
            input.value = '';
            results.replaceChildren();
            this.togglePole(p.id);
          });
          return h('li', {}, b);
        }),
      );
    });
    return h('div', { class: 'bc-listbox' }, input, results);
  }

  #pickedPoles(): HTMLElement {
    const { i18n } = this.#opts;
    const byPole = new Map(this.#opts.poles().map((p) => [p.id, p]));
    const list = h('ul', { class: 'bc-chips', 'data-testid': 'bc-picked' });
    for (const id of this.#target.poles) {
      const remove = h('button', { type: 'button', class: 'icon', 'aria-label': i18n.t('bc.target.poles.remove') }, '×');
      remove.addEventListener('click', () => this.togglePole(id));
      list.append(h('li', { 'data-pole': id }, byPole.get(id)?.name ?? id, remove));
    }
    if (this.#target.poles.length === 0) list.append(h('li', { class: 'bc-muted' }, i18n.t('bc.target.poles.none')));
    return list;
  }

  #renderPreview(): void {
    const { i18n } = this.#opts;
    const p = this.#preview;
    const el = this.#previewEl;
    el.dataset.state = this.#previewing ? 'loading' : this.#previewError ? 'error' : p ? 'ready' : 'empty';
    if (this.#previewError) {
      el.replaceChildren(h('p', { class: 'bc-warn' }, this.#previewError));
      return;
    }
    if (!p) {
      el.replaceChildren(h('p', { class: 'bc-hint' }, i18n.t(this.#previewing ? 'bc.preview.loading' : 'bc.preview.empty')));
      return;
    }
    const summary = h(
      'p',
      { class: 'bc-summary' },
      h('strong', { 'data-testid': 'bc-preview-count', 'data-count': String(p.count) }, i18n.t('bc.preview.count', { count: p.count })),
      ' ',
      p.byStatus.offline > 0 ? h('span', { class: 'bc-offline', 'data-testid': 'bc-preview-offline' }, i18n.t('bc.preview.offline', { count: p.byStatus.offline })) : '',
      ' ',
      p.byStatus.unknown > 0 ? h('span', { class: 'bc-muted' }, i18n.t('bc.preview.unknown', { count: p.byStatus.unknown })) : '',
      ' ',
      h('span', { class: 'bc-muted' }, p.label),
    );
    const rows = p.poles.slice(0, PREVIEW_ROWS).map((pole) =>
      h(
        'li',
        { 'data-testid': 'bc-preview-pole', 'data-pole': pole.id, 'data-status': pole.status },
        h('span', { class: 'bc-name' }, pole.name),
        h('span', { class: 'bc-muted' }, `${pole.id} · ${pole.grid}`),
        h('span', { class: `bc-avail bc-avail-${pole.status}` }, i18n.t(`status.${pole.status}`)),
      ),
    );
    const more = p.poles.length > PREVIEW_ROWS ? [h('li', { class: 'bc-muted' }, i18n.t('bc.preview.more', { count: p.poles.length - PREVIEW_ROWS }))] : [];
    const details = h('details', { class: 'bc-preview-list' }, h('summary', {}, i18n.t('bc.preview.list')), h('ol', {}, ...rows, ...more));
    if (p.count <= 12) details.open = true;
    el.replaceChildren(summary, details);
  }

  #renderContentBody(): void {
    const { i18n } = this.#opts;
    const c = this.#content;
    const catalogue = this.#opts.catalogue();
    const parts: Node[] = [];
    if (c.kind === 'text') {
      const text = h('textarea', { rows: '3', maxlength: String(MAX_TEXT_CHARS), 'data-testid': 'bc-text', 'data-i18n-placeholder': 'bc.text.placeholder' });
      text.value = c.text;
      const counter = h('span', { class: 'bc-hint', 'data-testid': 'bc-text-count' });
      const count = () => {
        const n = [...text.value].length;
        counter.textContent = i18n.t('bc.text.count', { n, max: MAX_TEXT_CHARS, seconds: Math.ceil(n / CHARS_PER_SECOND) });
      };
      count();
      text.addEventListener('input', () => {
        c.text = text.value;
        count();
        this.#contentChanged();
      });
      parts.push(label('bc.text', text, counter));
    } else if (c.kind === 'clip') {
      const clips = catalogue?.clips ?? [];
      const select = h('select', { 'data-testid': 'bc-clip' }, ...clips.map((x) => option(x.id, null, `${x.title} (${x.id})`)));
      select.value = c.clipId;
      select.addEventListener('change', () => {
        c.clipId = select.value;
        this.#contentChanged();
      });
      parts.push(label('bc.clip', select));
    } else {
      const templates = catalogue?.templates ?? [];
      const select = h('select', { 'data-testid': 'bc-template' }, ...templates.map((x) => option(x.id, null, x.title)));
      select.value = c.templateId;
      select.addEventListener('change', () => {
        c.templateId = select.value;
        this.#followTemplatePriority();
        this.#contentChanged();
        this.render();
      });
      parts.push(label('bc.template', select));
      const template = templates.find((x) => x.id === c.templateId);
      if (template) parts.push(...this.#templateFields(template));
    }
    this.#contentBody.replaceChildren(...parts);
  }

  #templateFields(template: BroadcastTemplateView): Node[] {
    const { i18n } = this.#opts;
    const current = this.#opts.catalogue()?.values ?? {};
    const values = this.#valuesOf(template.id);
    const preview = h('p', { class: 'bc-template-text', 'data-testid': 'bc-template-text' });
    const fill = () => {
      preview.textContent = template.text.replace(/\{([A-Za-z][A-Za-z0-9_]*)\}/g, (whole, name: string) => {
        const v = values.get(name)?.trim() || (current[name] !== undefined ? String(current[name]) : '');
        return v || whole;
      });
    };
    fill();
    const inputs = template.variables.map((v) => {
      const input = h('input', { type: 'text', maxlength: '100', 'data-testid': 'bc-template-value', 'data-var': v.name });
      input.value = values.get(v.name) ?? '';
      const now = current[v.name];
      // A value the gateway knows (today's fire danger) is filled in by it when left blank.
      input.placeholder = now !== undefined ? i18n.t('bc.template.current', { value: String(now) }) : i18n.t('bc.template.required');
      input.addEventListener('input', () => {
        values.set(v.name, input.value);
        fill();
        this.#contentChanged();
      });
      return h('label', { class: 'bc-field' }, h('span', { class: 'bc-label' }, v.description ? `${v.description}（${v.name}）` : v.name), input);
    });
    return [preview, ...inputs];
  }

  #valuesOf(templateId: string): Map<string, string> {
    let values = this.#content.values.get(templateId);
    if (!values) {
      values = new Map();
      this.#content.values.set(templateId, values);
    }
    return values;
  }

  #renderSchedule(): void {
    const c = this.#content;
    const parts: Node[] = [];
    if (c.schedule === 'at') {
      const at = h('input', { type: 'datetime-local', 'data-testid': 'bc-at' });
      at.value = c.at;
      at.addEventListener('input', () => {
        c.at = at.value;
        this.#contentChanged();
      });
      parts.push(label('bc.schedule.at.time', at));
    } else if (c.schedule === 'daily') {
      const start = h('input', { type: 'time', 'data-testid': 'bc-daily-start' });
      const end = h('input', { type: 'time', 'data-testid': 'bc-daily-end' });
      const until = h('input', { type: 'date', 'data-testid': 'bc-daily-until' });
      start.value = c.dailyStart;
      end.value = c.dailyEnd;
      until.value = c.dailyUntil;
      start.addEventListener('input', () => {
        c.dailyStart = start.value;
        this.#contentChanged();
      });
      end.addEventListener('input', () => {
        c.dailyEnd = end.value;
        this.#contentChanged();
      });
      until.addEventListener('input', () => {
        c.dailyUntil = until.value;
        this.#contentChanged();
      });
      parts.push(h('div', { class: 'bc-row' }, label('bc.schedule.daily.start', start), label('bc.schedule.daily.end', end), label('bc.schedule.daily.until', until)), h('p', { class: 'bc-hint', 'data-i18n': 'bc.schedule.daily.hint' }));
    }
    this.#scheduleBody.replaceChildren(...parts);
  }

  #renderErrors(): void {
    const { i18n } = this.#opts;
    const messages = this.#problems.map((p) => i18n.t(p.key, p.params));
    if (this.#serverError) messages.push(this.#serverError);
    this.#errorEl.hidden = messages.length === 0;
    this.#errorEl.replaceChildren(...messages.map((m) => h('div', {}, m)));
    const bad = new Set(this.#problems.map((p) => p.field));
    const mark = (el: HTMLElement, field: Field) => {
      if (bad.has(field)) el.setAttribute('aria-invalid', 'true');
      else el.removeAttribute('aria-invalid');
    };
    mark(this.#reason, 'reason');
    mark(this.#repeat, 'repeat');
    mark(this.#volume, 'volume');
    mark(this.#expires, 'expiresAt');
    for (const [field, selector] of [
      ['text', '[data-testid="bc-text"]'],
      ['clip', '[data-testid="bc-clip"]'],
      ['template', '[data-testid="bc-template-value"]'],
      ['at', '[data-testid="bc-at"]'],
      ['daily', '[data-testid="bc-daily-until"]'],
    ] as const) {
      for (const el of this.el.querySelectorAll<HTMLElement>(selector)) mark(el, field);
    }
    this.#previewEl.classList.toggle('bc-invalid', bad.has('target'));
  }

  #renderConfirm(): void {
    const { i18n } = this.#opts;
    const k = this.#confirm;
    this.#confirmEl.hidden = k === null;
    if (!k) {
      this.#confirmEl.replaceChildren();
      return;
    }
    const job = k.job;
    const offline = k.poles.filter((p) => p.status === 'offline').length;
    const unknown = k.poles.filter((p) => p.status === 'unknown').length;
    const send = h('button', { type: 'button', class: `bc-primary bc-priority-${job.priority}`, 'data-testid': 'bc-confirm-send' }, i18n.t('bc.send.confirm'));
    send.disabled = this.#busy;
    send.addEventListener('click', () => void this.#send());
    const back = h('button', { type: 'button', 'data-testid': 'bc-confirm-back' }, i18n.t('bc.send.back'));
    back.addEventListener('click', () => {
      this.#confirm = null;
      this.render();
    });
    const lines: Node[] = [
      h('p', { class: 'bc-confirm-head', 'data-testid': 'bc-confirm-summary', 'data-poles': String(k.poles.length), 'data-offline': String(offline) }, i18n.t('bc.confirm.summary', { count: k.poles.length, offline })),
      ...(unknown > 0 ? [h('p', { class: 'bc-muted' }, i18n.t('bc.confirm.unknown', { count: unknown }))] : []),
      h(
        'dl',
        { class: 'bc-facts' },
        h('dt', {}, i18n.t('bc.priority')),
        h('dd', {}, h('span', { class: `bc-badge bc-priority-${job.priority}`, 'data-testid': 'bc-confirm-priority' }, i18n.t(`bc.priority.${job.priority}`))),
        h('dt', {}, i18n.t('bc.detail.target')),
        h('dd', {}, job.targetLabel),
        h('dt', {}, i18n.t('bc.detail.content')),
        h('dd', { class: 'bc-spoken' }, job.text ?? job.clipId ?? ''),
        ...(job.reason ? [h('dt', {}, i18n.t('bc.reason')), h('dd', {}, job.reason)] : []),
        ...(job.incidentId ? [h('dt', {}, i18n.t('bc.detail.incident')), h('dd', { 'data-testid': 'bc-confirm-incident' }, job.incidentId)] : []),
        h('dt', {}, i18n.t('bc.schedule')),
        h('dd', {}, describeSchedule(i18n, job)),
        ...(job.runExpiresAt ? [h('dt', {}, i18n.t('bc.expires')), h('dd', {}, i18n.dateTime(job.runExpiresAt))] : []),
      ),
      h('div', { class: 'bc-actions' }, send, back),
    ];
    this.#confirmEl.replaceChildren(...lines);
    this.#confirmEl.dataset.priority = job.priority;
  }

  // ---- changes --------------------------------------------------------------------------------------

  #bindOptions(): void {
    const c = () => this.#content;
    this.#priority.addEventListener('change', () => {
      c().priority = this.#priority.value as BroadcastPriority;
      c().priorityChosen = true;
      this.#contentChanged();
      this.render();
    });
    this.#reason.addEventListener('input', () => {
      c().reason = this.#reason.value;
      this.#contentChanged();
    });
    this.#repeat.addEventListener('input', () => {
      c().repeat = this.#repeat.value;
      this.#contentChanged();
    });
    this.#volume.addEventListener('input', () => {
      c().volume = this.#volume.value;
      this.#contentChanged();
    });
    this.#expires.addEventListener('input', () => {
      c().expiresAt = this.#expires.value;
      this.#contentChanged();
    });
    this.#title.addEventListener('input', () => {
      c().title = this.#title.value;
      this.#contentChanged();
    });
  }

  /** A template brings its priority, unless the officer chose one. */
  #followTemplatePriority(): void {
    const c = this.#content;
    if (c.priorityChosen) return;
    const template = this.#opts.catalogue()?.templates.find((x) => x.id === c.templateId);
    c.priority = c.kind === 'template' && template ? template.priority : 'routine';
  }

  /** Anything in the content changed: an earlier confirmation is stale; problems are re-checked once shown. */
  #contentChanged(): void {
    const hadConfirm = this.#confirm !== null;
    this.#confirm = null;
    this.#serverError = '';
    if (this.#problems.length > 0) this.#problems = this.#check().problems;
    this.#renderErrors();
    if (hadConfirm) this.#renderConfirm();
  }

  #targetChanged(rerenderBody = true): void {
    this.#contentChanged();
    if (rerenderBody) this.#renderTargetBody();
    this.#refreshPickable();
    this.#opts.layer.showSelection(draftShape(this.#target, this.#opts.areas()), this.#preview?.poles ?? []);
    this.#schedulePreview();
  }

  #applyTool(): void {
    if (!this.#active) return;
    this.#opts.layer.setTool(MAP_TOOL[this.#target.kind] ?? null);
    this.#refreshPickable();
  }

  #refreshPickable(): void {
    if (this.#opts.layer.tool !== 'poles') return;
    const poles: PickablePole[] = this.#opts.poles().filter((p) => p.kind === 'voice_pole');
    this.#opts.layer.setPickable(poles, new Set(this.#target.poles));
  }

  #schedulePreview(): void {
    if (this.#previewTimer !== null) clearTimeout(this.#previewTimer);
    this.#previewAbort?.abort();
    const target = draftTarget(this.#target);
    if (!target) {
      this.#preview = null;
      this.#previewError = '';
      this.#previewing = false;
      this.#renderPreview();
      this.#opts.layer.showSelection(draftShape(this.#target, this.#opts.areas()), []);
      return;
    }
    this.#previewing = true;
    this.#renderPreview();
    this.#previewTimer = setTimeout(() => {
      this.#previewTimer = null;
      const abort = new AbortController();
      this.#previewAbort = abort;
      resolveTarget(target, abort.signal).then(
        (resolved) => {
          if (abort.signal.aborted) return;
          this.#preview = resolved;
          this.#previewError = '';
          this.#previewing = false;
          this.#renderPreview();
          if (this.#active) this.#opts.layer.showSelection(draftShape(this.#target, this.#opts.areas()), resolved.poles);
        },
        (err: unknown) => {
          if (abort.signal.aborted) return;
          this.#preview = null;
          this.#previewError = this.#opts.describe(err);
          this.#previewing = false;
          this.#renderPreview();
          if (this.#active) this.#opts.layer.showSelection(draftShape(this.#target, this.#opts.areas()), []);
        },
      );
    }, PREVIEW_DELAY_MS);
  }

  // ---- the request --------------------------------------------------------------------------------

  /** The request the form describes, and what is wrong with it (checked here before the gateway). */
  #check(): { request: BroadcastRequest | null; problems: Problem[] } {
    const c = this.#content;
    const problems: Problem[] = [];
    const target = draftTarget(this.#target);
    if (!target) problems.push({ field: 'target', key: 'bc.check.target' });
    let content: BroadcastRequest['content'] | null = null;
    if (c.kind === 'text') {
      const text = c.text.trim();
      if (!text) problems.push({ field: 'text', key: 'bc.check.text' });
      else if ([...text].length > MAX_TEXT_CHARS) problems.push({ field: 'text', key: 'bc.check.textLong', params: { max: MAX_TEXT_CHARS } });
      else content = { type: 'text', text };
    } else if (c.kind === 'clip') {
      if (!c.clipId) problems.push({ field: 'clip', key: 'bc.check.clip' });
      else content = { type: 'clip', clipId: c.clipId };
    } else {
      const template = this.#opts.catalogue()?.templates.find((x) => x.id === c.templateId);
      if (!template) problems.push({ field: 'template', key: 'bc.check.template' });
      else {
        const current = this.#opts.catalogue()?.values ?? {};
        const typed = this.#valuesOf(template.id);
        const values: Record<string, string | number> = {};
        const missing: string[] = [];
        for (const v of template.variables) {
          const value = typed.get(v.name)?.trim() ?? '';
          if (value) values[v.name] = value;
          else if (current[v.name] === undefined) missing.push(v.name);
        }
        if (missing.length) problems.push({ field: 'template', key: 'bc.check.templateValues', params: { names: missing.join(', ') } });
        else content = { type: 'template', template: template.id, ...(Object.keys(values).length ? { values } : {}) };
      }
    }
    const reason = c.reason.trim();
    if (c.priority === 'emergency' && !reason) problems.push({ field: 'reason', key: 'bc.check.reason' });
    const repeat = Number(c.repeat);
    if (c.repeat.trim() !== '' && !(Number.isInteger(repeat) && repeat >= 1 && repeat <= MAX_REPEAT)) problems.push({ field: 'repeat', key: 'bc.check.repeat', params: { max: MAX_REPEAT } });
    const volume = Number(c.volume);
    if (c.volume.trim() !== '' && !(Number.isInteger(volume) && volume >= 0 && volume <= 100)) problems.push({ field: 'volume', key: 'bc.check.volume' });
    let schedule: BroadcastRequest['schedule'] = { type: 'now' };
    const now = Date.now();
    if (c.schedule === 'at') {
      const at = localTime(c.at);
      if (at === null) problems.push({ field: 'at', key: 'bc.check.at' });
      else if (at < now - 60_000) problems.push({ field: 'at', key: 'bc.check.atPast' });
      else schedule = { type: 'at', at };
    } else if (c.schedule === 'daily') {
      const until = c.dailyUntil ? localTime(`${c.dailyUntil}T23:59`) : null;
      if (!/^\d\d:\d\d$/.test(c.dailyStart) || !/^\d\d:\d\d$/.test(c.dailyEnd) || c.dailyStart === c.dailyEnd) problems.push({ field: 'daily', key: 'bc.check.window' });
      else if (until === null || until <= now) problems.push({ field: 'daily', key: 'bc.check.until' });
      else schedule = { type: 'daily', start: c.dailyStart, end: c.dailyEnd, until };
    }
    let expiresAt: number | null = null;
    if (c.schedule !== 'daily' && c.expiresAt) {
      expiresAt = localTime(c.expiresAt);
      const start = schedule.type === 'at' ? schedule.at : now;
      if (expiresAt === null || expiresAt <= start) problems.push({ field: 'expiresAt', key: 'bc.check.expires' });
    }
    if (problems.length > 0 || !target || !content) return { request: null, problems };
    const request: BroadcastRequest = {
      target,
      content,
      priority: c.priority,
      ...(reason ? { reason } : {}),
      ...(c.repeat.trim() !== '' && repeat !== 1 ? { repeat } : {}),
      ...(c.volume.trim() !== '' ? { volume } : {}),
      ...(schedule.type !== 'now' ? { schedule } : {}),
      ...(expiresAt !== null ? { expiresAt } : {}),
      ...(c.title.trim() ? { title: c.title.trim() } : {}),
      ...(c.incident ? { incidentId: c.incident.id } : {}),
    };
    return { request, problems };
  }

  async #dryRun(): Promise<void> {
    if (this.#busy) return;
    const { request, problems } = this.#check();
    this.#problems = problems;
    this.#serverError = '';
    this.#confirm = null;
    if (!request) {
      this.render();
      this.#errorEl.scrollIntoView({ block: 'nearest' });
      return;
    }
    this.#busy = true;
    this.render();
    try {
      const { broadcast, poles } = await previewBroadcast(request);
      this.#confirm = { request, job: broadcast, poles };
    } catch (err) {
      this.#serverError = this.#opts.describe(err);
    } finally {
      this.#busy = false;
    }
    this.render();
    (this.#confirm ? this.#confirmEl : this.#errorEl).scrollIntoView({ block: 'nearest' });
  }

  async #send(): Promise<void> {
    const k = this.#confirm;
    if (!k || this.#busy) return;
    this.#busy = true;
    this.render();
    try {
      const job = await createBroadcast(k.request);
      this.#confirm = null;
      this.#busy = false;
      this.render();
      this.#opts.onSent(job);
    } catch (err) {
      this.#busy = false;
      this.#confirm = null;
      this.#serverError = this.#opts.describe(err);
      this.render();
      this.#errorEl.scrollIntoView({ block: 'nearest' });
    }
  }
}

/** `YYYY-MM-DDTHH:MM` in the browser's time zone → ms, or null. */
function localTime(value: string): number | null {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : null;
}
