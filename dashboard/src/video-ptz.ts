/**
 * 云台控制 — PTZ under a live picture, for duty officers and admins (the gateway answers 403 to
 * anyone else; the player does not build this for them). Presets come from
 * `GET /api/cameras/{id}/presets`; "go" and the nudge buttons are `POST /api/cameras/{id}/ptz`
 * (docs/video.md §5), answered when the camera's edge agent acks.
 *
 * A nudge is a `move` with `durationMs`: the agent stops the head itself when the time is up, so a
 * closed tab or a lost connection never leaves a camera turning.
 */
import type { CameraPreset, PtzRequest, PtzResponse } from '../../protocol/video.js';
import { ApiError, requestJson } from './api.js';
import { h } from './dom.js';
import { describeError } from './errors.js';
import type { I18n, MessageKey } from './i18n.js';
import { isObject } from './json.js';

export interface PtzControlsOptions {
  cameraId: string;
  i18n: I18n;
  compact?: boolean;
}

/** Velocity of a nudge (−1..1) and how long it lasts; the agent stops the head after that. */
const NUDGE_SPEED = 0.5;
const NUDGE_MS = 500;

interface Nudge {
  key: MessageKey;
  glyph: string;
  pan: number;
  tilt: number;
  zoom: number;
  testid: string;
}

const NUDGES: Nudge[] = [
  { key: 'video.ptz.left', glyph: '←', pan: -NUDGE_SPEED, tilt: 0, zoom: 0, testid: 'ptz-left' },
  { key: 'video.ptz.up', glyph: '↑', pan: 0, tilt: NUDGE_SPEED, zoom: 0, testid: 'ptz-up' },
  { key: 'video.ptz.down', glyph: '↓', pan: 0, tilt: -NUDGE_SPEED, zoom: 0, testid: 'ptz-down' },
  { key: 'video.ptz.right', glyph: '→', pan: NUDGE_SPEED, tilt: 0, zoom: 0, testid: 'ptz-right' },
  { key: 'video.ptz.zoomIn', glyph: '+', pan: 0, tilt: 0, zoom: NUDGE_SPEED, testid: 'ptz-zoom-in' },
  { key: 'video.ptz.zoomOut', glyph: '−', pan: 0, tilt: 0, zoom: -NUDGE_SPEED, testid: 'ptz-zoom-out' },
];


function isPreset(v: unknown): v is CameraPreset {
  return isObject(v) && typeof v.token === 'string' && typeof v.name === 'string' && (v.panDeg === null || typeof v.panDeg === 'number');
}

function isPtzResponse(v: unknown): v is PtzResponse {
  return isObject(v) && typeof v.commandId === 'string' && typeof v.status === 'string';
}

/** What the last request came to, in words; `ok` / `error` / `pending` for styling and tests. */
type Outcome = { result: 'pending' } | { result: 'ok'; key: MessageKey; params: Record<string, string | number> } | { result: 'error'; err: unknown };

export class PtzControls {
  readonly el: HTMLElement;
  readonly #opts: PtzControlsOptions;
  readonly #title = h('span', { class: 'vp-ptz-title' });
  readonly #presetLabel = h('span', {});
  readonly #presets = h('select', { class: 'vp-ptz-presets', 'data-testid': 'ptz-presets' });
  readonly #go = h('button', { type: 'button', class: 'vp-ptz-go', 'data-testid': 'ptz-go' });
  readonly #nudges: Array<{ nudge: Nudge; button: HTMLButtonElement }>;
  readonly #status = h('div', { class: 'vp-ptz-status', 'data-testid': 'ptz-status', role: 'status', 'aria-live': 'polite' });
  /** null: loading; an error: the presets could not be read. */
  #presetList: CameraPreset[] | null = null;
  #presetsError: unknown = null;
  #outcome: Outcome | null = null;
  readonly #abort = new AbortController();
  /** Only the latest request's answer is shown. */
  #request = 0;

  constructor(opts: PtzControlsOptions) {
    this.#opts = opts;
    this.#nudges = NUDGES.map((nudge) => {
      const button = h('button', { type: 'button', class: 'vp-ptz-nudge', 'data-testid': nudge.testid }, nudge.glyph);
      button.addEventListener('click', () => void this.#send({ action: 'move', pan: nudge.pan, tilt: nudge.tilt, zoom: nudge.zoom, durationMs: NUDGE_MS }));
      return { nudge, button };
    });
    this.#go.addEventListener('click', () => {
      const preset = this.#presets.value;
      if (preset) void this.#send({ action: 'goto_preset', preset });
    });
    const byKey = (testid: string) => this.#nudges.find((n) => n.nudge.testid === testid)!.button;
    const pad = h(
      'div',
      { class: 'vp-ptz-pad' },
      h('span', {}),
      byKey('ptz-up'),
      h('span', {}),
      byKey('ptz-left'),
      h('span', {}),
      byKey('ptz-right'),
      h('span', {}),
      byKey('ptz-down'),
      h('span', {}),
    );
    const zoom = h('div', { class: 'vp-ptz-zoom' }, byKey('ptz-zoom-in'), byKey('ptz-zoom-out'));
    this.el = h(
      'div',
      { class: `vp-ptz${opts.compact ? ' compact' : ''}`, 'data-testid': 'ptz-controls' },
      this.#title,
      h('label', { class: 'vp-ptz-preset' }, this.#presetLabel, this.#presets, this.#go),
      h('div', { class: 'vp-ptz-moves' }, pad, zoom),
      this.#status,
    );
    this.render();
  }

  /** Reads the camera's presets (the gateway asks the camera over ONVIF, cached a minute). */
  load(): void {
    this.#presetList = null;
    this.#presetsError = null;
    this.render();
    const path = `/api/cameras/${encodeURIComponent(this.#opts.cameraId)}/presets`;
    requestJson(path, { signal: this.#abort.signal }).then(
      (body) => {
        if (!isObject(body) || !Array.isArray(body.presets)) throw new ApiError(0, 'BAD_RESPONSE', `unexpected response shape from ${path}`);
        this.#presetList = body.presets.filter(isPreset);
        this.render();
      },
      (err: unknown) => {
        if (this.#abort.signal.aborted) return;
        this.#presetList = [];
        this.#presetsError = err;
        this.render();
      },
    );
  }

  /** Forgets answers still on their way (the player stopped). */
  dispose(): void {
    this.#abort.abort();
  }

  async #send(body: PtzRequest): Promise<void> {
    const id = ++this.#request;
    this.#outcome = { result: 'pending' };
    this.render();
    try {
      const answer = await requestJson(`/api/cameras/${encodeURIComponent(this.#opts.cameraId)}/ptz`, { method: 'POST', body, signal: this.#abort.signal });
      if (!isPtzResponse(answer)) throw new ApiError(0, 'BAD_RESPONSE', 'unexpected response shape from the PTZ request');
      if (id !== this.#request) return;
      this.#outcome =
        body.action === 'goto_preset'
          ? { result: 'ok', key: 'video.ptz.okPreset', params: { preset: this.#presetName(String(body.preset)) } }
          : { result: 'ok', key: 'video.ptz.okMove', params: { ms: body.action === 'move' ? (body.durationMs ?? NUDGE_MS) : 0 } };
    } catch (err) {
      if (this.#abort.signal.aborted || id !== this.#request) return;
      this.#outcome = { result: 'error', err };
    }
    this.render();
  }

  #presetName(token: string): string {
    return this.#presetList?.find((p) => p.token === token)?.name || token;
  }

  #describe(err: unknown): string {
    const { i18n } = this.#opts;
    if (err instanceof ApiError) {
      // The agent's own reason (which preset exists, why it failed) is worth reading as is.
      const key: MessageKey | null = err.code === 'PTZ_TIMEOUT' ? 'video.ptz.timeout' : err.code === 'PTZ_REJECTED' ? 'video.ptz.rejected' : err.code === 'PTZ_FAILED' ? 'video.ptz.failed' : null;
      if (key) return i18n.t('error.withCode', { text: i18n.t(key, { message: err.message }), code: err.code });
    }
    return describeError(i18n, err);
  }

  /** Writes every text in the current language. */
  render(): void {
    const { i18n } = this.#opts;
    this.#title.textContent = i18n.t('video.ptz.title');
    this.#presetLabel.textContent = i18n.t('video.ptz.preset');
    this.#go.textContent = i18n.t('video.ptz.go');
    for (const { nudge, button } of this.#nudges) {
      button.title = i18n.t(nudge.key);
      button.setAttribute('aria-label', i18n.t(nudge.key));
    }
    const chosen = this.#presets.value;
    const list = this.#presetList;
    if (list === null) {
      this.#presets.replaceChildren(h('option', { value: '' }, i18n.t('video.ptz.presetsLoading')));
    } else if (list.length === 0) {
      this.#presets.replaceChildren(h('option', { value: '' }, i18n.t('video.ptz.noPresets')));
    } else {
      this.#presets.replaceChildren(
        ...list.map((p) =>
          h('option', { value: p.token }, p.panDeg === null ? p.name || p.token : i18n.t('video.ptz.presetOption', { name: p.name || p.token, bearing: Math.round(p.panDeg) })),
        ),
      );
      if (list.some((p) => p.token === chosen)) this.#presets.value = chosen;
    }
    this.#presets.disabled = !list || list.length === 0;
    this.#go.disabled = this.#presets.disabled;
    this.el.dataset.presets = list === null ? 'loading' : String(list.length);

    const outcome = this.#outcome;
    if (outcome) {
      this.#status.dataset.result = outcome.result;
      this.#status.textContent =
        outcome.result === 'pending' ? i18n.t('video.ptz.sending') : outcome.result === 'ok' ? i18n.t(outcome.key, outcome.params) : this.#describe(outcome.err);
    } else if (this.#presetsError !== null) {
      this.#status.dataset.result = 'error';
      this.#status.textContent = i18n.t('video.ptz.presetsFailed', { message: describeError(i18n, this.#presetsError) });
    } else {
      delete this.#status.dataset.result;
      this.#status.textContent = '';
    }
  }
}
