/**
 * The live video relay: camera streams opened on demand and shared. A viewer's WebSocket is
 * attached to the camera's stream in the asked format, which is started if it is not running
 * (within the caps of `video.maxStreams` / `video.maxTranscodes`, making room by closing a stream
 * that only lingers) and stopped `lingerMs` after its last viewer leaves.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { VideoConfig } from '../../../config/schema.js';
import { VIDEO_CLOSE_CODES, VIDEO_FORMATS, VIDEO_STATES, type VideoFormat, type VideoServerMessage, type VideoStreamInfo } from '../../../protocol/video.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { CameraOnvif } from './camera-onvif.js';
import { withCredentials } from './credentials.js';
import { Upstream } from './upstream.js';
import { Viewer } from './viewer.js';

export interface VideoRelayContext {
  config: VideoConfig;
  log: Logger;
  metrics: Metrics;
  registry: DeviceRegistry;
  onvif: CameraOnvif;
}

type VideoError = Extract<VideoServerMessage, { type: 'error' }>;

const PING_INTERVAL_MS = 15_000;

export class VideoRelay {
  readonly #ctx: VideoRelayContext;
  readonly #streams = new Map<string, Upstream>();
  readonly #stopping = new Set<Promise<void>>();
  #ping: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(ctx: VideoRelayContext) {
    this.#ctx = ctx;
  }

  start(): void {
    // A viewer whose connection died without a close (a laptop lid shut) is dropped at the next
    // ping it does not answer, so it does not keep a camera stream open.
    this.#ping = setInterval(() => {
      for (const up of this.#streams.values()) {
        for (const v of up.viewers) {
          if (!v.alive) {
            v.socket.terminate();
            continue;
          }
          v.alive = false;
          v.socket.ping();
        }
      }
    }, PING_INTERVAL_MS);
    this.#ping.unref();
  }

  limit(format: VideoFormat): number {
    return format === 'fmp4' ? this.#ctx.config.maxStreams : this.#ctx.config.maxTranscodes;
  }

  streams(): VideoStreamInfo[] {
    return [...this.#streams.values()].map((u) => u.info()).sort((a, b) => a.cameraId.localeCompare(b.cameraId) || a.format.localeCompare(b.format));
  }

  /** The ffmpeg process of a camera stream, while it runs (tests and the benchmark look at it). */
  pidOf(cameraId: string, format: VideoFormat = 'fmp4'): number | undefined {
    return this.#streams.get(`${cameraId}|${format}`)?.pid;
  }

  attach(socket: WebSocket, username: string, cameraId: string, format: VideoFormat): void {
    const { metrics, config } = this.#ctx;
    const viewer = new Viewer(socket, username, {
      maxBufferedBytes: config.viewerBufferBytes,
      onBytes: (n) => metrics.videoBytesOut.inc({ format }, n),
      onDrop: () => metrics.videoDropped.inc(),
    });
    const refuse = (reason: string, code: number, error: VideoError) => {
      metrics.videoRefused.inc({ reason });
      viewer.fail(code, error);
    };
    if (this.#stopped || !config.enabled) {
      return refuse('disabled', VIDEO_CLOSE_CODES.VIDEO_UNAVAILABLE, { type: 'error', code: 'VIDEO_UNAVAILABLE', message: 'live video is switched off' });
    }
    const device = this.#ctx.registry.get(cameraId);
    if (!device || device.kind !== 'camera') {
      return refuse('not_found', VIDEO_CLOSE_CODES.DEVICE_NOT_FOUND, { type: 'error', code: 'DEVICE_NOT_FOUND', message: `no camera "${cameraId}" in the ledger` });
    }
    if (!device.settings.rtspUrl && !device.settings.onvifUrl) {
      return refuse('no_stream', VIDEO_CLOSE_CODES.VIDEO_NO_STREAM, { type: 'error', code: 'VIDEO_NO_STREAM', message: `camera "${cameraId}" has no rtsp_url or onvif_url in the ledger` });
    }
    const key = `${cameraId}|${format}`;
    let up = this.#streams.get(key);
    if (!up) {
      if (!this.#makeRoom(format)) {
        const limit = this.limit(format);
        return refuse('stream_limit', VIDEO_CLOSE_CODES.VIDEO_STREAM_LIMIT, {
          type: 'error',
          code: 'VIDEO_STREAM_LIMIT',
          message:
            format === 'fmp4'
              ? `${limit} camera streams are open, the most this gateway allows (video.maxStreams); close a player or try again shortly`
              : `${limit} MPEG-1 transcodes are running, the most this gateway allows (video.maxTranscodes)`,
        });
      }
      up = this.#open(cameraId, format);
    }
    const stream = up;
    stream.add(viewer);
    this.#updateGauges();
    this.#ctx.log.debug({ camera: cameraId, format, user: username, viewers: stream.viewers.size }, 'video: viewer joined');
    socket.on('close', () => {
      stream.remove(viewer);
      this.#updateGauges();
    });
    socket.on('error', () => undefined);
  }

  /**
   * Opens a camera's stream with nobody watching yet, for `ms` (a fire alarm on it: someone is
   * about to look). Only into the lower half of `maxStreams`, never closing another stream; a
   * stream already open is kept open longer. False if it was not (cannot be) opened.
   */
  prewarm(cameraId: string, ms: number): boolean {
    if (this.#stopped || !this.#ctx.config.enabled || ms <= 0) return false;
    const device = this.#ctx.registry.get(cameraId);
    if (!device || device.kind !== 'camera' || (!device.settings.rtspUrl && !device.settings.onvifUrl)) return false;
    const existing = this.#streams.get(`${cameraId}|fmp4`);
    if (existing) {
      existing.keepWarm(ms);
      return true;
    }
    const open = [...this.#streams.values()].filter((u) => u.format === 'fmp4').length;
    if (open >= Math.floor(this.#ctx.config.maxStreams / 2)) return false;
    this.#open(cameraId, 'fmp4').keepWarm(ms);
    this.#updateGauges();
    this.#ctx.log.info({ camera: cameraId, forMs: ms }, 'video: stream opened ahead of viewers (alarm)');
    return true;
  }

  /** True if one more stream of this format fits, closing the longest-lingering one if needed. */
  #makeRoom(format: VideoFormat): boolean {
    const same = [...this.#streams.values()].filter((u) => u.format === format);
    if (same.length < this.limit(format)) return true;
    const idle = same.filter((u) => u.viewers.size === 0 && u.lingerSince !== null).sort((a, b) => a.lingerSince! - b.lingerSince!)[0];
    if (!idle) return false;
    this.#close(idle);
    return true;
  }

  #open(cameraId: string, format: VideoFormat): Upstream {
    const { config, log, metrics, registry, onvif } = this.#ctx;
    const up = new Upstream({
      cameraId,
      format,
      config,
      log,
      resolveSource: async () => {
        const device = onvif.camera(cameraId);
        const url = device.settings.rtspUrl ?? (await onvif.streamUri(cameraId));
        return { url: withCredentials(url, onvif.credentials(cameraId)), secrets: onvif.secrets(cameraId) };
      },
      cameraOffline: () => registry.view(cameraId)?.status === 'offline',
      onIdle: (u) => this.#close(u),
      onFatal: (u, error) => {
        metrics.videoRefused.inc({ reason: 'codec' });
        for (const v of u.viewers) v.fail(VIDEO_CLOSE_CODES.VIDEO_CODEC_UNSUPPORTED, error);
        this.#close(u);
      },
      onStateChange: () => this.#updateGauges(),
      onRestart: () => metrics.videoRestarts.inc({ format }),
    });
    this.#streams.set(`${cameraId}|${format}`, up);
    up.start();
    log.info({ camera: cameraId, format }, 'video: stream opened');
    return up;
  }

  #close(up: Upstream): void {
    const key = `${up.cameraId}|${up.format}`;
    if (this.#streams.get(key) !== up) return;
    this.#streams.delete(key);
    const stopped = up.stop().finally(() => this.#stopping.delete(stopped));
    this.#stopping.add(stopped);
    this.#updateGauges();
    this.#ctx.log.info({ camera: up.cameraId, format: up.format }, 'video: stream closed');
  }

  #updateGauges(): void {
    const { metrics } = this.#ctx;
    for (const format of VIDEO_FORMATS) {
      let viewers = 0;
      const byState = new Map<string, number>(VIDEO_STATES.map((s) => [s, 0]));
      for (const u of this.#streams.values()) {
        if (u.format !== format) continue;
        viewers += u.viewers.size;
        byState.set(u.state, (byState.get(u.state) ?? 0) + 1);
      }
      metrics.videoViewers.set({ format }, viewers);
      for (const [state, n] of byState) metrics.videoStreams.set({ format, state }, n);
    }
  }

  /** Closes every viewer (1001, going away) and stops every ffmpeg; resolves when all have exited. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#ping);
    for (const up of [...this.#streams.values()]) {
      for (const v of up.viewers) v.close(VIDEO_CLOSE_CODES.GOING_AWAY, 'gateway stopping');
      this.#close(up);
    }
    await Promise.all([...this.#stopping]);
  }
}
