/**
 * The device card's time-series chart (uPlot, bundled; no CDN): one numeric field of one device
 * from `GET /api/devices/:id/series`, over the last hour, day or week, extended live while the
 * card is open. Readable at a glance: the unit on the axis, a tank's low and critical thresholds
 * as labelled lines, the latest value in the legend.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { DeviceKind } from '../../protocol/payloads.js';
import type { StorageStatus } from '../../protocol/ws.js';
import { ApiError, fetchSeries } from './api.js';
import type { TankThresholds } from './devices.js';
import { h } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';

/** Unit and decimals per known telemetry field (protocol/payloads.ts); unknown fields show raw. */
export const FIELD_FORMAT: Record<string, { unit: string; digits: number }> = {
  levelMm: { unit: 'mm', digits: 0 },
  levelPercent: { unit: '%', digits: 1 },
  volumeM3: { unit: 'm³', digits: 1 },
  temperatureC: { unit: '°C', digits: 1 },
  panDeg: { unit: '°', digits: 1 },
  tiltDeg: { unit: '°', digits: 1 },
  zoom: { unit: '', digits: 1 },
  fps: { unit: 'fps', digits: 0 },
  volume: { unit: '', digits: 0 },
};

/** Fields worth a chart, per kind, most useful first (the series API accepts these). */
export const CHART_FIELDS: Record<DeviceKind, readonly string[]> = {
  water_tank: ['levelPercent', 'volumeM3', 'levelMm', 'temperatureC'],
  camera: ['panDeg', 'tiltDeg', 'zoom', 'fps'],
  voice_pole: ['volume'],
};

export const CHART_RANGES = [
  { key: '1h', ms: 3600_000 },
  { key: '24h', ms: 24 * 3600_000 },
  { key: '7d', ms: 7 * 24 * 3600_000 },
] as const;
export type ChartRange = (typeof CHART_RANGES)[number]['key'];

type ChartState = 'loading' | 'ready' | 'storageDown' | 'storageDisabled' | 'failed';

const WIDTH = 340;
const HEIGHT = 170;
const COLORS = { line: '#4ea8ff', fill: 'rgba(78, 168, 255, 0.14)', axis: '#8aa0b1', grid: 'rgba(138, 160, 177, 0.14)', low: '#ffb020', critical: '#ff4d4f' };

export interface DeviceChartOptions {
  i18n: I18n;
  deviceId: string;
  kind: DeviceKind;
  /** The tank's thresholds (lines on the level chart); read at each draw, they may arrive later. */
  thresholds: () => TankThresholds | null;
  /** The gateway's storage state, to explain a missing history correctly. */
  storage: () => StorageStatus['state'] | null;
}

export class DeviceChart {
  readonly el: HTMLElement;
  readonly #opts: DeviceChartOptions;
  readonly #fieldBar = h('div', { class: 'chart-fields', role: 'group' });
  readonly #rangeBar = h('div', { class: 'chart-ranges', role: 'group' });
  readonly #plotSlot = h('div', { class: 'chart-plot' });
  readonly #note = h('p', { class: 'muted chart-note' });
  readonly #title = h('h3', {});
  #field: string;
  #range: ChartRange = '24h';
  #points: Array<[number, number]> = [];
  #state: ChartState = 'loading';
  #error = '';
  #abort = new AbortController();
  #plot: uPlot | null = null;
  #disposed = false;

  constructor(opts: DeviceChartOptions) {
    this.#opts = opts;
    this.#field = CHART_FIELDS[opts.kind][0] ?? 'levelPercent';
    this.el = h('section', { class: 'device-chart', 'data-testid': 'device-chart' }, this.#title, this.#fieldBar, this.#rangeBar, this.#plotSlot, this.#note);
    this.#load();
  }

  get field(): string {
    return this.#field;
  }

  dispose(): void {
    this.#disposed = true;
    this.#abort.abort();
    this.#plot?.destroy();
    this.#plot = null;
  }

  setField(field: string): void {
    if (field === this.#field || !CHART_FIELDS[this.#opts.kind].includes(field)) return;
    this.#field = field;
    this.#load();
  }

  setRange(range: ChartRange): void {
    if (range === this.#range) return;
    this.#range = range;
    this.#load();
  }

  /** A live reading of the charted field; ignored unless newer than what the chart has. */
  append(ts: number, values: Record<string, unknown>): void {
    const v = values[this.#field];
    if (typeof v !== 'number' || !Number.isFinite(v)) return;
    const last = this.#points.at(-1);
    if (last && ts <= last[0]) return;
    this.#points.push([ts, v]);
    if (this.#state === 'ready' || this.#state === 'storageDisabled') this.render();
  }

  #load(): void {
    this.#abort.abort();
    this.#abort = new AbortController();
    this.#points = [];
    this.#error = '';
    if (this.#opts.storage() === 'disabled') {
      // Nothing is stored, so there is nothing to ask for; live readings still draw the chart.
      this.#state = 'storageDisabled';
      this.render();
      return;
    }
    this.#state = 'loading';
    this.render();
    void this.#fetch(this.#abort.signal);
  }

  async #fetch(signal: AbortSignal): Promise<void> {
    const to = Date.now();
    const span = CHART_RANGES.find((r) => r.key === this.#range)!.ms;
    try {
      const series = await fetchSeries(this.#opts.deviceId, this.#field, to - span, to, { signal, maxPoints: WIDTH });
      if (signal.aborted) return;
      // Live points that arrived while loading are newer than the stored ones; keep them after.
      const lastStored = series.points.at(-1)?.[0] ?? -Infinity;
      this.#points = [...series.points, ...this.#points.filter(([ts]) => ts > lastStored)];
      this.#state = 'ready';
    } catch (err) {
      if (signal.aborted) return;
      const unavailable = err instanceof ApiError && err.status === 503;
      this.#state = !unavailable ? 'failed' : this.#opts.storage() === 'disabled' ? 'storageDisabled' : 'storageDown';
      this.#error = err instanceof Error ? err.message : String(err);
    }
    this.render();
  }

  #label(field: string): string {
    const key = `field.${field}`;
    return this.#opts.i18n.has(key) ? this.#opts.i18n.t(key) : field;
  }

  /** Redraws everything (language change, new data). */
  render(): void {
    if (this.#disposed) return;
    const { i18n } = this.#opts;
    const t = i18n.t.bind(i18n);
    this.#title.textContent = t('chart.title');
    this.el.dataset.state = this.#state;
    this.el.dataset.field = this.#field;
    this.el.dataset.range = this.#range;
    this.#fieldBar.setAttribute('aria-label', t('chart.field'));
    this.#rangeBar.setAttribute('aria-label', t('chart.range'));
    const fields = CHART_FIELDS[this.#opts.kind];
    this.#fieldBar.hidden = fields.length < 2;
    this.#fieldBar.replaceChildren(
      ...fields.map((f) => {
        const b = h('button', { type: 'button', 'data-field': f, 'aria-pressed': String(f === this.#field) }, this.#label(f));
        b.addEventListener('click', () => this.setField(f));
        return b;
      }),
    );
    this.#rangeBar.replaceChildren(
      ...CHART_RANGES.map((r) => {
        const b = h('button', { type: 'button', 'data-range': r.key, 'aria-pressed': String(r.key === this.#range) }, t(`chart.range.${r.key}` as MessageKey));
        b.addEventListener('click', () => this.setRange(r.key));
        return b;
      }),
    );

    const span = CHART_RANGES.find((r) => r.key === this.#range)!.ms;
    const now = Date.now();
    const shown = this.#points.filter(([ts]) => ts >= now - span);
    this.el.dataset.points = String(shown.length);
    const thresholds = this.#field === 'levelPercent' ? this.#opts.thresholds() : null;
    if (thresholds) this.el.dataset.thresholds = `${thresholds.lowPercent},${thresholds.criticalPercent}`;
    else delete this.el.dataset.thresholds;
    const drawable = (this.#state === 'ready' || this.#state === 'storageDisabled') && shown.length >= 1;
    const note =
      this.#state === 'loading'
        ? t('series.loading')
        : this.#state === 'storageDown'
          ? t('series.storageDown')
          : this.#state === 'storageDisabled'
            ? t('series.storageDisabled')
            : this.#state === 'failed'
              ? t('series.failed', { message: this.#error })
              : shown.length === 0
                ? t('series.empty')
                : '';
    this.#note.textContent = note;
    this.#note.hidden = note === '';
    if (!drawable) {
      this.#plot?.destroy();
      this.#plot = null;
      this.#plotSlot.replaceChildren();
      return;
    }
    const data: uPlot.AlignedData = [shown.map(([ts]) => ts), shown.map(([, v]) => v)];
    // A new plot per render: field, range, language and thresholds all shape the options, and
    // uPlot builds one in well under a millisecond for a few hundred points.
    this.#plot?.destroy();
    this.#plot = new uPlot(this.#options(now - span, now, shown.length), data, this.#plotSlot);
  }

  #options(from: number, to: number, count: number): uPlot.Options {
    const { i18n } = this.#opts;
    const field = this.#field;
    const format = FIELD_FORMAT[field];
    const unit = format?.unit ?? '';
    const digits = format?.digits ?? 2;
    const label = unit ? `${this.#label(field)} (${unit})` : this.#label(field);
    const thresholds = field === 'levelPercent' ? this.#opts.thresholds() : null;
    const span = to - from;
    const timeFormat = new Intl.DateTimeFormat(i18n.lang, span <= 36 * 3600_000 ? { hour: '2-digit', minute: '2-digit', hour12: false } : { month: '2-digit', day: '2-digit' });
    const fullFormat = new Intl.DateTimeFormat(i18n.lang, { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false });
    const axis = { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 }, font: '11px system-ui, sans-serif', labelFont: '12px system-ui, sans-serif' };
    return {
      width: WIDTH,
      height: HEIGHT,
      ms: 1,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: [from, to] },
        // A level is a share of the tank: always 0..100, so the eye reads it without the axis.
        y: field === 'levelPercent' ? { range: [0, 100] } : { range: (_u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]) },
      },
      axes: [
        { ...axis, values: (_u, splits) => splits.map((v) => timeFormat.format(v)) },
        { ...axis, label, size: 52, values: (_u, splits) => splits.map((v) => i18n.number(v, Math.min(digits, 1))) },
      ],
      series: [
        { value: (_u, v) => (v === null ? '—' : fullFormat.format(v)), label: i18n.t('chart.time') },
        {
          label,
          stroke: COLORS.line,
          width: 2,
          fill: COLORS.fill,
          // Few points (a sparse history, or a fresh device): show them as dots too.
          points: { show: count <= 60, size: 5 },
          value: (_u, v) => (v === null ? '—' : `${i18n.number(v, digits)}${unit ? ` ${unit}` : ''}`),
        },
      ],
      hooks: {
        // Not hovering, the legend shows the latest reading rather than "—".
        ready: [(u) => u.setLegend({ idx: count - 1 })],
        setCursor: [
          (u) => {
            if (u.cursor.idx == null) u.setLegend({ idx: count - 1 });
          },
        ],
        draw: thresholds ? [(u) => drawThresholds(u, thresholds, i18n)] : [],
      },
    };
  }
}

/** A tank's low and critical levels as dashed, labelled lines across the plot. */
function drawThresholds(u: uPlot, thresholds: TankThresholds, i18n: I18n): void {
  const lines: Array<[number, string, string]> = [
    [thresholds.lowPercent, COLORS.low, i18n.t('chart.thresholdLow', { value: thresholds.lowPercent })],
    [thresholds.criticalPercent, COLORS.critical, i18n.t('chart.thresholdCritical', { value: thresholds.criticalPercent })],
  ];
  const { ctx, bbox } = u;
  const dpr = window.devicePixelRatio || 1;
  ctx.save();
  for (const [value, color, text] of lines) {
    const y = Math.round(u.valToPos(value, 'y', true));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.beginPath();
    ctx.moveTo(bbox.left, y);
    ctx.lineTo(bbox.left + bbox.width, y);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = 'left';
    ctx.fillText(text, bbox.left + 4 * dpr, y - 4 * dpr);
  }
  ctx.restore();
}
