/**
 * 实时视频 — one camera's live picture, for the device card, the incident card and the video wall.
 * A `<video>` fed through Media Source Extensions from the gateway's live socket
 * (`/api/video/{cameraId}/live`, docs/video.md §2): every `codec` message starts a new
 * MediaSource, binary frames are appended one at a time, the playhead is kept near the live edge
 * and what was played long ago is removed, so a wall screen can run for days.
 *
 * The gateway re-opens a dropped camera itself and says so (`state`); this player re-opens only its
 * own socket when that closes unexpectedly, with back-off. A refusal (close 4xxx: no such camera,
 * the stream cap, …) is shown with a Retry button and not retried on its own.
 *
 *   const player = new VideoPlayer({ cameraId, i18n, role, ptz: true });
 *   container.append(player.el); player.start();      card opened
 *   player.stop();                                     card closed / another device / signed out
 *
 * Duty officers and admins get PTZ controls when `ptz` is set (video-ptz.ts).
 */
import './video.css';
import type { VideoServerMessage, VideoState } from '../../protocol/video.js';
import { ApiError, requestJson } from './api.js';
import { h } from './dom.js';
import type { I18n, MessageKey } from './i18n.js';
import { can, type Role } from './roles.js';
import { PtzControls } from './video-ptz.js';
import { isObject } from './json.js';

export { SnapshotStrip } from './video-snapshots.js';

export interface VideoPlayerOptions {
  cameraId: string;
  i18n: I18n;
  role: () => Role | null;
  /** Offer PTZ controls (still only to duty officers and above). */
  ptz?: boolean;
  /** Smaller type and controls, for wall tiles and narrow cards. */
  compact?: boolean;
  /** A caption over the picture (the wall shows the camera's name). */
  label?: string;
}

/**
 * What the player shows: the gateway's stream states, plus what only the page knows — a refusal
 * (`limit`, `error`), a codec this browser cannot decode, a session that ended.
 */
export type PlayerState = 'idle' | VideoState | 'limit' | 'error' | 'unsupported' | 'signed_out';

const STATE_KEYS: Record<PlayerState, MessageKey> = {
  idle: 'video.state.idle',
  connecting: 'video.state.connecting',
  live: 'video.state.live',
  reconnecting: 'video.state.reconnecting',
  offline: 'video.state.offline',
  limit: 'video.state.limit',
  error: 'video.state.error',
  unsupported: 'video.state.unsupported',
  signed_out: 'video.state.signedOut',
};

const REFUSALS: Record<string, MessageKey> = {
  DEVICE_NOT_FOUND: 'video.error.DEVICE_NOT_FOUND',
  VIDEO_NO_STREAM: 'video.error.VIDEO_NO_STREAM',
  VIDEO_CODEC_UNSUPPORTED: 'video.error.VIDEO_CODEC_UNSUPPORTED',
  VIDEO_UNAVAILABLE: 'video.error.VIDEO_UNAVAILABLE',
  VIDEO_STREAM_LIMIT: 'video.error.VIDEO_STREAM_LIMIT',
};
/** Close codes of docs/video.md §2.4, for a close whose `error` message did not arrive. */
const CLOSE_CODE_ERRORS: Record<number, string> = {
  4404: 'DEVICE_NOT_FOUND',
  4409: 'VIDEO_NO_STREAM',
  4415: 'VIDEO_CODEC_UNSUPPORTED',
  4500: 'VIDEO_UNAVAILABLE',
  4503: 'VIDEO_STREAM_LIMIT',
};

/** Socket re-open back-off (our socket only; the gateway backs off on the camera itself). */
const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 15_000;
/** A socket that stayed live this long starts the back-off over. */
const STABLE_MS = 5000;
/** Further behind the newest media than this (seconds): jump to the live edge. */
const MAX_LATENCY_S = 2;
/** Where a jump lands, before the newest media (seconds), so playback does not stall at once. */
const EDGE_MARGIN_S = 0.3;
/** Played media older than TRIM_AFTER_S is removed, down to KEEP_BEHIND_S behind the playhead. */
const TRIM_AFTER_S = 30;
const KEEP_BEHIND_S = 10;
/** Media waiting for the SourceBuffer beyond this means it is stuck: start over from a key frame. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** One stream epoch (docs/video.md §2.1 `codec`): its own MediaSource, SourceBuffer and queue. */
interface Epoch {
  mediaSource: MediaSource;
  /** The object URL until the MediaSource has opened (then revoked). */
  url: string | null;
  mimeType: string;
  sourceBuffer: SourceBuffer | null;
  queue: ArrayBuffer[];
  queuedBytes: number;
}

type CodecMessage = Extract<VideoServerMessage, { type: 'codec' }>;


/** One text frame of the live socket, or null for anything this player does not know. */
export function parseVideoMessage(text: string): VideoServerMessage | null {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(m)) return null;
  if (m.type === 'state' && typeof m.state === 'string' && ['connecting', 'live', 'reconnecting', 'offline'].includes(m.state)) {
    return {
      type: 'state',
      cameraId: String(m.cameraId),
      format: m.format === 'mpeg1' ? 'mpeg1' : 'fmp4',
      state: m.state as VideoState,
      ...(typeof m.reason === 'string' ? { reason: m.reason } : {}),
      ...(typeof m.retryInMs === 'number' ? { retryInMs: m.retryInMs } : {}),
    };
  }
  if (m.type === 'codec' && typeof m.mimeType === 'string' && typeof m.codec === 'string' && typeof m.epoch === 'number') {
    return {
      type: 'codec',
      format: m.format === 'mpeg1' ? 'mpeg1' : 'fmp4',
      epoch: m.epoch,
      mimeType: m.mimeType,
      codec: m.codec,
      width: typeof m.width === 'number' ? m.width : null,
      height: typeof m.height === 'number' ? m.height : null,
    };
  }
  if (m.type === 'error' && typeof m.code === 'string') {
    return { type: 'error', code: m.code as Extract<VideoServerMessage, { type: 'error' }>['code'], message: typeof m.message === 'string' ? m.message : '' };
  }
  return null;
}

/** The live socket's URL on this page's origin (the session cookie goes with the upgrade). */
export function liveUrl(cameraId: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/video/${encodeURIComponent(cameraId)}/live`;
}

/** Whether this browser can play `mimeType` through MSE at all. */
function canPlay(mimeType: string): boolean {
  return typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(mimeType);
}

export class VideoPlayer {
  readonly el: HTMLElement;
  readonly #opts: VideoPlayerOptions;
  readonly #video = h('video', { class: 'vp-video', 'data-testid': 'video-element' });
  readonly #overlay = h('div', { class: 'vp-overlay', 'data-testid': 'video-overlay' });
  readonly #overlayText = h('div', { class: 'vp-overlay-text', 'data-testid': 'video-state', role: 'status', 'aria-live': 'polite' });
  readonly #overlayDetail = h('div', { class: 'vp-overlay-detail' });
  readonly #retryButton = h('button', { type: 'button', class: 'vp-retry', 'data-testid': 'video-retry' });
  readonly #badge = h('span', { class: 'vp-badge', 'data-testid': 'video-badge' });
  readonly #ptzSlot = h('div', { class: 'vp-ptz-slot' });
  #ptz: PtzControls | null = null;

  #state: PlayerState = 'idle';
  /** The words under the state line: a refusal's text, the gateway's retry time, the codec. */
  #detail: { key: MessageKey; params?: Record<string, string | number> } | null = null;
  /** Untranslated detail from the gateway (its reason or refusal message), as the tooltip. */
  #gatewayText = '';
  #running = false;
  #ws: WebSocket | null = null;
  /** The `error` message the gateway sent before closing, if any. */
  #refusal: { code: string; message: string } | null = null;
  #epoch: Epoch | null = null;
  #attempt = 0;
  #liveSince: number | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Bumped by stop(): late callbacks (a session check, a timer) of an earlier run do nothing. */
  #run = 0;
  #offI18n: (() => void) | null = null;

  constructor(opts: VideoPlayerOptions) {
    this.#opts = opts;
    const v = this.#video;
    // Muted autoplay is allowed without a gesture; inline on phones, no controls (live has no timeline).
    v.muted = true;
    v.autoplay = true;
    v.playsInline = true;
    v.disablePictureInPicture = true;
    // A decoder error while media is attached: start over from the next key frame.
    v.addEventListener('error', () => {
      if (this.#epoch && v.error) this.#resync();
    });
    this.#retryButton.addEventListener('click', () => this.#retry());
    this.#overlay.append(this.#overlayText, this.#overlayDetail, this.#retryButton);
    const screen = h('div', { class: 'vp-screen' }, v, this.#overlay, this.#badge);
    this.el = h('div', { class: `vp${opts.compact ? ' vp-compact' : ''}`, 'data-testid': 'video-player', 'data-camera': opts.cameraId }, screen);
    // Below the picture, not on it: cameras draw their own clock and name in the corners.
    if (opts.label) this.el.append(h('div', { class: 'vp-label', 'data-testid': 'video-label', title: opts.label }, opts.label));
    this.el.append(this.#ptzSlot);
    this.#render();
  }

  get cameraId(): string {
    return this.#opts.cameraId;
  }

  get state(): PlayerState {
    return this.#state;
  }

  /** Opens the live socket (again after stop()); PTZ controls if the role allows. No-op while running. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    this.#offI18n = this.#opts.i18n.onChange(() => this.#render());
    this.#mountPtz();
    this.#setState('connecting');
    this.#connect();
  }

  /** Closes the socket, releases the MediaSource and its object URL, cancels retries and PTZ requests. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#run++;
    this.#clearRetry();
    this.#closeSocket();
    this.#dropEpoch();
    this.#clearVideo();
    this.#ptz?.dispose();
    this.#ptz = null;
    this.#ptzSlot.replaceChildren();
    this.#offI18n?.();
    this.#offI18n = null;
    this.#detail = null;
    this.#gatewayText = '';
    this.#setState('idle');
  }

  // ---- the socket --------------------------------------------------------------------------------

  #connect(): void {
    this.#clearRetry();
    this.#refusal = null;
    this.#liveSince = null;
    let opened = false;
    const ws = new WebSocket(liveUrl(this.#opts.cameraId));
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (e: MessageEvent<string | ArrayBuffer>) => {
      if (this.#ws !== ws) return;
      if (typeof e.data === 'string') this.#onText(e.data);
      else this.#onMedia(e.data);
    };
    ws.onclose = (e) => {
      if (this.#ws !== ws) return; // closed by us (stop, resync): nothing to do
      this.#ws = null;
      this.#onClose(e.code, opened);
    };
  }

  #closeSocket(): void {
    const ws = this.#ws;
    this.#ws = null;
    if (ws && ws.readyState !== WebSocket.CLOSED && ws.readyState !== WebSocket.CLOSING) ws.close(1000);
  }

  #onText(text: string): void {
    const m = parseVideoMessage(text);
    if (!m) return;
    switch (m.type) {
      case 'state': {
        this.#gatewayText = m.reason ?? '';
        if (m.state === 'live') {
          this.#liveSince = Date.now();
          this.#detail = null;
        } else if (m.state === 'offline') {
          this.#detail = { key: 'video.detail.offline' };
        } else if (m.retryInMs !== undefined && m.retryInMs > 0) {
          this.#detail = { key: 'video.retryIn', params: { seconds: Math.max(1, Math.round(m.retryInMs / 1000)) } };
        } else {
          this.#detail = null;
        }
        // Our own socket re-opening: the camera is still being re-joined, whatever the gateway calls it.
        this.#setState(m.state === 'connecting' && this.#state === 'reconnecting' ? 'reconnecting' : m.state);
        return;
      }
      case 'codec':
        this.#onCodec(m);
        return;
      case 'error':
        this.#refusal = { code: m.code, message: m.message };
        return;
    }
  }

  #onClose(code: number, opened: boolean): void {
    if (!this.#running) return;
    if (code >= 4000 && code < 5000) {
      // Refused (docs/video.md §2.4): show why and offer Retry; re-asking on our own would only be refused again.
      const errorCode = this.#refusal?.code ?? CLOSE_CODE_ERRORS[code] ?? '';
      const key = REFUSALS[errorCode];
      this.#detail = key ? { key } : { key: 'video.error.closed', params: { code } };
      this.#gatewayText = this.#refusal?.message ?? '';
      this.#dropEpoch();
      this.#clearVideo();
      this.#setState(errorCode === 'VIDEO_STREAM_LIMIT' ? 'limit' : errorCode === 'VIDEO_CODEC_UNSUPPORTED' ? 'unsupported' : 'error');
      return;
    }
    if (this.#liveSince !== null && Date.now() - this.#liveSince >= STABLE_MS) this.#attempt = 0;
    // An upgrade refused before it opened (1006) is most often a session that ended: ask before retrying.
    if (!opened && code === 1006) {
      void this.#checkSessionThenRetry();
      return;
    }
    this.#scheduleReconnect();
  }

  async #checkSessionThenRetry(): Promise<void> {
    const run = this.#run;
    this.#setState('reconnecting');
    try {
      await requestJson('/api/auth/me');
    } catch (err) {
      if (run !== this.#run) return;
      if (err instanceof ApiError && err.status === 401) {
        this.#dropEpoch();
        this.#clearVideo();
        this.#detail = null;
        this.#setState('signed_out');
        return;
      }
      // Anything else (the gateway is restarting, the network): retry as for any drop.
    }
    if (run !== this.#run) return;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    this.#clearRetry();
    const base = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** this.#attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: a wall of 9 does not retry in step
    this.#attempt++;
    this.#detail = { key: 'video.retryIn', params: { seconds: Math.max(1, Math.round(delay / 1000)) } };
    this.#gatewayText = '';
    this.#setState('reconnecting');
    const run = this.#run;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (run === this.#run && this.#running) this.#connect();
    }, delay);
  }

  #clearRetry(): void {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #retry(): void {
    if (!this.#running) {
      this.start();
      return;
    }
    this.#attempt = 0;
    this.#closeSocket();
    this.#detail = null;
    this.#gatewayText = '';
    this.#setState('connecting');
    this.#connect();
  }

  /** Starts over from the gateway's latest key frame: a decoder error, a stuck SourceBuffer. */
  #resync(): void {
    if (!this.#running || !this.#epoch) return;
    this.#closeSocket();
    this.#dropEpoch();
    this.#scheduleReconnect();
  }

  // ---- media ---------------------------------------------------------------------------------------

  #onCodec(m: CodecMessage): void {
    if (m.format !== 'fmp4' || !canPlay(m.mimeType)) {
      // jsmpeg (the MPEG-1 fallback, `?format=mpeg1`) is not bundled: say so rather than show black.
      this.#closeSocket();
      this.#dropEpoch();
      this.#clearVideo();
      this.#detail = { key: 'video.detail.unsupported', params: { codec: m.codec } };
      this.#gatewayText = m.mimeType;
      this.#setState('unsupported');
      return;
    }
    this.#dropEpoch();
    const mediaSource = new MediaSource();
    const epoch: Epoch = { mediaSource, url: URL.createObjectURL(mediaSource), mimeType: m.mimeType, sourceBuffer: null, queue: [], queuedBytes: 0 };
    this.#epoch = epoch;
    mediaSource.addEventListener(
      'sourceopen',
      () => {
        if (epoch.url) URL.revokeObjectURL(epoch.url);
        epoch.url = null;
        if (this.#epoch !== epoch) return;
        try {
          const sb = mediaSource.addSourceBuffer(epoch.mimeType);
          // Fragments carry their own decode times (tfdt), which do not start at 0.
          sb.mode = 'segments';
          sb.addEventListener('updateend', () => this.#afterUpdate(epoch));
          sb.addEventListener('error', () => this.#resync());
          epoch.sourceBuffer = sb;
        } catch {
          this.#resync();
          return;
        }
        this.#pump(epoch);
      },
      { once: true },
    );
    this.#video.src = epoch.url!;
  }

  #onMedia(data: ArrayBuffer): void {
    const epoch = this.#epoch;
    if (!epoch) return; // media always follows a codec message; a stray frame has nothing to go to
    epoch.queue.push(data);
    epoch.queuedBytes += data.byteLength;
    if (epoch.queuedBytes > MAX_QUEUED_BYTES) {
      this.#resync();
      return;
    }
    this.#pump(epoch);
  }

  #pump(epoch: Epoch): void {
    const sb = epoch.sourceBuffer;
    if (this.#epoch !== epoch || !sb || sb.updating || epoch.mediaSource.readyState !== 'open') return;
    const next = epoch.queue.shift();
    if (!next) return;
    epoch.queuedBytes -= next.byteLength;
    try {
      sb.appendBuffer(next);
    } catch (err) {
      // Full: give back what was played and try this one again after the removal.
      if (err instanceof DOMException && err.name === 'QuotaExceededError' && this.#trim(sb, 1)) {
        epoch.queue.unshift(next);
        epoch.queuedBytes += next.byteLength;
        return;
      }
      this.#resync();
    }
  }

  #afterUpdate(epoch: Epoch): void {
    if (this.#epoch !== epoch || !epoch.sourceBuffer) return;
    const sb = epoch.sourceBuffer;
    this.#keepLive(sb);
    // A removal started here ends in another updateend, which appends the next fragment.
    if (this.#trim(sb, KEEP_BEHIND_S, TRIM_AFTER_S)) return;
    this.#pump(epoch);
  }

  /** Stays within MAX_LATENCY_S of the newest media; starts where the media starts. */
  #keepLive(sb: SourceBuffer): void {
    const v = this.#video;
    let ranges: TimeRanges;
    try {
      ranges = sb.buffered;
    } catch {
      return; // the SourceBuffer was removed from its MediaSource
    }
    if (ranges.length === 0) return;
    const end = ranges.end(ranges.length - 1);
    const t = v.currentTime;
    let inRange = false;
    for (let i = 0; i < ranges.length; i++) if (t >= ranges.start(i) && t <= ranges.end(i)) inRange = true;
    if (!inRange || end - t > MAX_LATENCY_S) v.currentTime = Math.max(ranges.start(ranges.length - 1), end - EDGE_MARGIN_S);
    if (v.paused) v.play().catch(() => undefined);
  }

  /**
   * Removes media older than `keepS` behind the playhead once there is more than `afterS` of it.
   * True if a removal started.
   */
  #trim(sb: SourceBuffer, keepS: number, afterS = keepS): boolean {
    if (sb.updating) return false;
    let start: number;
    try {
      if (sb.buffered.length === 0) return false;
      start = sb.buffered.start(0);
    } catch {
      return false;
    }
    const t = this.#video.currentTime;
    if (t - start <= afterS || t - keepS <= start) return false;
    try {
      sb.remove(start, t - keepS);
      return true;
    } catch {
      return false;
    }
  }

  #dropEpoch(): void {
    const epoch = this.#epoch;
    this.#epoch = null;
    if (!epoch) return;
    epoch.queue = [];
    epoch.queuedBytes = 0;
    if (epoch.url) URL.revokeObjectURL(epoch.url);
    epoch.url = null;
  }

  /** Detaches the MediaSource from the element (and with it the decoder and its memory). */
  #clearVideo(): void {
    const v = this.#video;
    if (!v.hasAttribute('src')) return;
    v.pause();
    v.removeAttribute('src');
    v.load();
  }

  // ---- view -------------------------------------------------------------------------------------------

  #mountPtz(): void {
    this.#ptz?.dispose();
    this.#ptz = null;
    this.#ptzSlot.replaceChildren();
    if (!this.#opts.ptz || !can(this.#opts.role(), 'duty_officer')) return;
    this.#ptz = new PtzControls({ cameraId: this.#opts.cameraId, i18n: this.#opts.i18n, compact: this.#opts.compact === true });
    this.#ptzSlot.append(this.#ptz.el);
    this.#ptz.load();
  }

  #setState(state: PlayerState): void {
    this.#state = state;
    this.#render();
  }

  #render(): void {
    const { i18n } = this.#opts;
    const state = this.#state;
    this.el.dataset.state = state;
    this.#video.setAttribute('aria-label', i18n.t('video.player', { camera: this.#opts.label ?? this.#opts.cameraId }));
    this.#overlay.hidden = state === 'live';
    this.#overlayText.textContent = i18n.t(STATE_KEYS[state]);
    const detail = this.#detail;
    this.#overlayDetail.textContent = detail ? i18n.t(detail.key, detail.params) : '';
    this.#overlayDetail.hidden = !detail;
    this.#overlay.title = this.#gatewayText;
    this.#retryButton.textContent = i18n.t('video.retry');
    this.#retryButton.hidden = !(state === 'limit' || state === 'error' || state === 'signed_out');
    this.#badge.textContent = i18n.t(STATE_KEYS[state]);
    this.#badge.hidden = state !== 'live';
    this.#ptz?.render();
  }
}
