/**
 * One camera stream in one format: a single ffmpeg reading the camera's RTSP (over TCP) and
 * writing fragmented MP4 (`-c:v copy`, no re-encoding) or MPEG-TS/MPEG-1 (transcoded, the jsmpeg
 * fallback) to a pipe, shared by every viewer of that camera and format.
 *
 * - The byte stream is cut into the init segment and media segments; the init segment and the
 *   segments since the latest key frame are kept, so a viewer who joins gets a picture at once.
 * - When ffmpeg exits or goes quiet (`stallTimeoutMs`), viewers are told `reconnecting` (or
 *   `offline`) and the stream is re-opened with exponential back-off; each re-open is a new
 *   epoch (a new `codec` message and init segment).
 * - With no viewer left it lingers for `lingerMs`, then the relay stops it.
 *
 * ffmpeg writes to a pipe we read: if the gateway dies, even by SIGKILL, its next write fails
 * and it exits, so no relay process outlives the gateway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { VideoConfig } from '../../../config/schema.js';
import type { VideoFormat, VideoServerMessage, VideoState, VideoStreamInfo } from '../../../protocol/video.js';
import { BoxSplitter, parseFragment, parseInit } from './fmp4.js';
import { scrub } from './credentials.js';
import { TsSplitter } from './mpegts.js';
import type { MediaSegment, Viewer } from './viewer.js';

export interface UpstreamContext {
  cameraId: string;
  format: VideoFormat;
  config: VideoConfig;
  log: Logger;
  /** The camera's RTSP URL (with credentials), and the secrets to mask in anything said about it. */
  resolveSource(): Promise<{ url: string; secrets: string[] }>;
  /** The registry holds the camera offline (its agent says so). */
  cameraOffline(): boolean;
  /** The last viewer left and the linger ran out, or the stream cannot be played at all. */
  onIdle(upstream: Upstream): void;
  onFatal(upstream: Upstream, message: Extract<VideoServerMessage, { type: 'error' }>): void;
  onStateChange(): void;
  onRestart(): void;
}

/** ffmpeg gave up before it knew the stream's parameters: probe longer next time. */
const NEEDS_LONGER_PROBE = /could not find codec parameters|dimensions not set|unspecified (size|pixel format)/i;
const LONG_PROBE_MS = 2000;

/** A run that stayed live this long resets the back-off. */
const STABLE_MS = 5000;
const STOP_GRACE_MS = 2000;

/** ffmpeg's arguments for a camera stream: RTSP over TCP in, `outputArgs` out. */
export function ffmpegArgs(format: VideoFormat, url: string, config: VideoConfig, probeMs = config.probeMs): string[] {
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
    '-rtsp_transport', 'tcp',
    // RTSP socket I/O timeout (µs); our own watchdog covers the rest.
    '-timeout', String(config.stallTimeoutMs * 1000),
    // Start as soon as the stream's parameters are known: no frame-rate probing.
    '-fpsprobesize', '0', '-analyzeduration', String(probeMs * 1000), '-probesize', '500000',
    '-i', url,
    ...outputArgs(format, config),
  ];
}

/** What ffmpeg writes to its stdout for a format (the first video stream only; no audio). */
export function outputArgs(format: VideoFormat, config: Pick<VideoConfig, 'fragmentMs' | 'mpeg1'>): string[] {
  const video = ['-map', '0:v:0', '-an', '-sn', '-dn'];
  if (format === 'fmp4') {
    return [
      ...video,
      '-c:v', 'copy',
      '-f', 'mp4', '-movflags', 'frag_keyframe+empty_moov+default_base_moof',
      '-frag_duration', String(config.fragmentMs * 1000),
      '-flush_packets', '1',
      'pipe:1',
    ];
  }
  const { fps, bitrateKbps, width } = config.mpeg1;
  return [
    ...video,
    ...(width !== null ? ['-vf', `scale=${width}:-2`] : []),
    // MPEG-1 allows only a few frame rates: 15 fps cameras are declared at `fps` (frames are not
    // duplicated, mpegts keeps their timing). A key frame every second whatever the input rate.
    '-c:v', 'mpeg1video', '-b:v', `${bitrateKbps}k`, '-r', String(fps), '-g', '600', '-force_key_frames', 'expr:gte(t,n_forced*1)', '-bf', '0', '-threads', '1',
    '-f', 'mpegts', '-muxdelay', '0.001', '-flush_packets', '1',
    'pipe:1',
  ];
}

export class Upstream {
  readonly cameraId: string;
  readonly format: VideoFormat;
  readonly viewers = new Set<Viewer>();
  readonly since = Date.now();
  state: VideoState = 'connecting';
  epoch = 0;
  restarts = 0;
  #ctx: UpstreamContext;
  #proc: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stopped = false;
  #secrets: string[] = [];
  #probeMs: number;
  // stream
  #codec: Extract<VideoServerMessage, { type: 'codec' }> | undefined;
  #init: Buffer | null = null;
  #defaultSampleFlags = 0;
  #gop: MediaSegment[] = [];
  #gopBytes = 0;
  #gopValid = false;
  // health
  #attempt = 0;
  #failingSince: number | null = null;
  #liveSince: number | null = null;
  #lastDataAt = 0;
  #stderrTail: string[] = [];
  #stallReason: string | undefined;
  #reason: string | undefined;
  #retryAt: number | null = null;
  // timers
  #watchdog: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #lingerTimer: NodeJS.Timeout | undefined;
  /** since when nobody watches (null while watched): the relay closes the longest-idle first */
  lingerSince: number | null = null;
  #lingerUntil = 0;

  constructor(ctx: UpstreamContext) {
    this.#ctx = ctx;
    this.cameraId = ctx.cameraId;
    this.format = ctx.format;
    this.#probeMs = ctx.config.probeMs;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  info(): VideoStreamInfo {
    return {
      cameraId: this.cameraId,
      format: this.format,
      state: this.state,
      viewers: this.viewers.size,
      since: this.since,
      restarts: this.restarts,
      closesInMs: this.lingerSince === null ? null : Math.max(0, this.#lingerUntil - Date.now()),
    };
  }

  start(): void {
    void this.#open();
  }

  add(viewer: Viewer): void {
    clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    this.lingerSince = null;
    this.#lingerUntil = 0;
    this.viewers.add(viewer);
    viewer.send(this.#stateMessage());
    if (this.#codec && this.state === 'live') {
      viewer.startEpoch(this.#codec, this.#init);
      if (this.#gopValid) for (const seg of this.#gop) viewer.media(seg);
    }
  }

  remove(viewer: Viewer): void {
    if (!this.viewers.delete(viewer) || this.viewers.size > 0 || this.#stopped) return;
    this.lingerSince = Date.now();
    // Not connected and nobody watching: nothing to keep warm (unless kept warm for an alarm).
    if ((this.state !== 'live' || this.#ctx.config.lingerMs === 0) && this.#lingerUntil <= Date.now()) {
      this.#ctx.onIdle(this);
      return;
    }
    this.#linger(this.#ctx.config.lingerMs);
  }

  /**
   * Keeps the stream open without viewers for at least `ms` (an alarm: someone will look), so
   * the first viewer starts from the cached key frame instead of waiting for the camera.
   */
  keepWarm(ms: number): void {
    if (this.viewers.size > 0 || this.#stopped) return;
    this.lingerSince ??= Date.now();
    this.#linger(ms);
  }

  #linger(ms: number): void {
    this.#lingerUntil = Math.max(this.#lingerUntil, Date.now() + ms);
    clearTimeout(this.#lingerTimer);
    this.#lingerTimer = setTimeout(() => this.#ctx.onIdle(this), this.#lingerUntil - Date.now());
  }

  // ---- ffmpeg -----------------------------------------------------------------------------------

  async #open(): Promise<void> {
    if (this.#stopped) return;
    this.#retryAt = null;
    let source: { url: string; secrets: string[] };
    try {
      source = await this.#ctx.resolveSource();
    } catch (err) {
      this.#failed(`the stream address could not be found: ${(err as Error).message}`);
      return;
    }
    if (this.#stopped) return;
    this.#secrets = source.secrets;
    const args = ffmpegArgs(this.format, source.url, this.#ctx.config, this.#probeMs);
    const proc = spawn(this.#ctx.config.ffmpegPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#proc = proc;
    this.#stderrTail = [];
    this.#stallReason = undefined;
    this.#lastDataAt = Date.now();
    this.#ctx.log.debug({ pid: proc.pid, camera: this.cameraId, format: this.format, epoch: this.epoch }, 'video: stream opening');
    const parse = this.format === 'fmp4' ? this.#fmp4Parser() : this.#tsParser();
    proc.stdout.on('data', (chunk: Buffer) => {
      this.#lastDataAt = Date.now();
      try {
        parse(chunk);
      } catch (err) {
        this.#stallReason = `unreadable stream: ${(err as Error).message}`;
        proc.kill('SIGKILL');
      }
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (text: string) => {
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        this.#stderrTail.push(line.slice(0, 300));
        if (this.#stderrTail.length > 5) this.#stderrTail.shift();
      }
    });
    let spawnError: string | undefined;
    proc.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code === 'ENOENT' ? `ffmpeg not found at "${this.#ctx.config.ffmpegPath}" (video.ffmpegPath)` : err.message;
    });
    this.#exited = new Promise<void>((resolve) => {
      proc.once('close', (code, signal) => {
        resolve();
        this.#onExit(proc, spawnError ?? this.#stallReason ?? this.#exitReason(code, signal));
      });
    });
    clearInterval(this.#watchdog);
    const stallMs = this.#ctx.config.stallTimeoutMs;
    this.#watchdog = setInterval(() => {
      // Connecting may take the probe time on top.
      const limit = this.state === 'live' ? stallMs : stallMs + this.#ctx.config.probeMs;
      if (Date.now() - this.#lastDataAt > limit && this.#proc === proc) {
        this.#stallReason = `no video from the camera for ${Math.round(limit / 1000)} s`;
        proc.kill('SIGKILL');
      }
    }, Math.min(1000, stallMs / 4));
    this.#watchdog.unref();
  }

  #exitReason(code: number | null, signal: NodeJS.Signals | null): string {
    const said = this.#stderrTail.at(-1);
    // Viewers get the gist, not the camera's address (nor, of course, its credentials).
    if (said) return scrub(said, this.#secrets).replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, 'the camera');
    if (signal) return `ffmpeg ended by ${signal}`;
    return code === 0 ? 'the camera closed the stream' : `ffmpeg exited with code ${code}`;
  }

  #onExit(proc: ChildProcess, reason: string): void {
    if (this.#proc !== proc) return;
    this.#proc = undefined;
    clearInterval(this.#watchdog);
    if (this.#stopped) return;
    this.#failed(reason);
  }

  #failed(reason: string): void {
    const now = Date.now();
    if (!this.#codec && this.#stderrTail.some((l) => NEEDS_LONGER_PROBE.test(l)) && this.#probeMs < LONG_PROBE_MS) {
      this.#probeMs = LONG_PROBE_MS;
      this.#ctx.log.info({ camera: this.cameraId, probeMs: LONG_PROBE_MS }, 'video: the stream needs a longer probe (no SPS/PPS in its SDP?)');
    }
    if (this.#liveSince !== null && now - this.#liveSince >= STABLE_MS) this.#attempt = 0;
    this.#liveSince = null;
    this.#failingSince ??= now;
    this.#codec = undefined;
    this.#init = null;
    this.#clearGop();
    this.#reason = reason;
    if (this.viewers.size === 0) {
      // Nobody to reconnect for (it was lingering): let it go.
      this.#ctx.onIdle(this);
      return;
    }
    const delay = Math.min(this.#ctx.config.retryMaxMs, this.#ctx.config.retryInitialMs * 2 ** this.#attempt);
    this.#attempt++;
    this.#retryAt = now + delay;
    const offline = this.#ctx.cameraOffline() || now - this.#failingSince >= this.#ctx.config.offlineAfterMs;
    this.#ctx.log.info({ camera: this.cameraId, format: this.format, reason, retryInMs: delay }, 'video: camera stream dropped');
    this.#setState(offline ? 'offline' : 'reconnecting');
    this.#retryTimer = setTimeout(() => {
      this.restarts++;
      this.#ctx.onRestart();
      void this.#open();
    }, delay);
  }

  #stateMessage(): Extract<VideoServerMessage, { type: 'state' }> {
    return {
      type: 'state',
      cameraId: this.cameraId,
      format: this.format,
      state: this.state,
      ...(this.state !== 'live' && this.#reason ? { reason: this.#reason } : {}),
      ...(this.#retryAt !== null ? { retryInMs: Math.max(0, this.#retryAt - Date.now()) } : {}),
    };
  }

  #setState(state: VideoState): void {
    const changed = state !== this.state;
    this.state = state;
    // reconnecting → reconnecting again still tells the new retry time
    if (changed || state !== 'live') for (const v of this.viewers) v.send(this.#stateMessage());
    if (changed) this.#ctx.onStateChange();
  }

  // ---- parsing ----------------------------------------------------------------------------------

  #fmp4Parser(): (chunk: Buffer) => void {
    const splitter = new BoxSplitter();
    let ftyp: Buffer | undefined;
    let moof: Buffer | undefined;
    return (chunk) => {
      for (const box of splitter.push(chunk)) {
        if (box.type === 'ftyp') ftyp = box.data;
        else if (box.type === 'moov') this.#onInit(ftyp ? Buffer.concat([ftyp, box.data]) : Buffer.from(box.data));
        else if (box.type === 'moof') moof = box.data;
        else if (box.type === 'mdat' && moof) {
          const data = Buffer.concat([moof, box.data]);
          moof = undefined;
          const fragment = parseFragment(data, this.#defaultSampleFlags);
          this.#onMedia(fragment ? { data, keyframe: fragment.keyframe, fragment } : { data, keyframe: false });
        }
      }
    };
  }

  #onInit(init: Buffer): void {
    const info = parseInit(init);
    if (!info.codec) {
      this.#ctx.onFatal(this, {
        type: 'error',
        code: 'VIDEO_CODEC_UNSUPPORTED',
        message: `the camera sends ${info.sampleEntry ?? 'a codec'} that cannot be remuxed for the browser; open it with ?format=mpeg1`,
      });
      return;
    }
    this.#defaultSampleFlags = info.defaultSampleFlags;
    this.#startEpoch(init, { codec: info.codec, mimeType: `video/mp4; codecs="${info.codec}"`, width: info.width, height: info.height });
  }

  #tsParser(): (chunk: Buffer) => void {
    const splitter = new TsSplitter();
    return (chunk) => {
      for (const seg of splitter.push(chunk)) {
        if (!this.#codec) {
          if (!seg.keyframe) continue;
          this.#startEpoch(null, { codec: 'mpeg1video', mimeType: 'video/mp2t', width: splitter.width, height: splitter.height });
        }
        this.#onMedia(seg);
      }
    };
  }

  #startEpoch(init: Buffer | null, what: { codec: string; mimeType: string; width: number | null; height: number | null }): void {
    this.epoch++;
    this.#init = init;
    this.#clearGop();
    this.#codec = { type: 'codec', format: this.format, epoch: this.epoch, ...what };
    for (const v of this.viewers) v.startEpoch(this.#codec, init);
  }

  #onMedia(seg: MediaSegment): void {
    if (!this.#codec) return;
    if (this.state !== 'live') {
      this.#liveSince = Date.now();
      this.#failingSince = null;
      this.#retryAt = null;
      this.#reason = undefined;
      this.#setState('live');
      this.#ctx.log.debug({ camera: this.cameraId, format: this.format, epoch: this.epoch }, 'video: stream live');
    }
    // The group of pictures since the latest key frame, for viewers who join.
    if (seg.keyframe) {
      this.#clearGop();
      this.#gopValid = true;
    }
    if (this.#gopValid) {
      this.#gopBytes += seg.data.length;
      if (this.#gopBytes > this.#ctx.config.gopCacheBytes) this.#clearGop();
      else this.#gop.push(seg);
    }
    for (const v of this.viewers) v.media(seg);
  }

  #clearGop(): void {
    this.#gop = [];
    this.#gopBytes = 0;
    this.#gopValid = false;
  }

  // ---- stopping ---------------------------------------------------------------------------------

  /** Stops ffmpeg (SIGTERM, then SIGKILL) and every timer; resolves once the process is gone. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#lingerTimer);
    clearInterval(this.#watchdog);
    const proc = this.#proc;
    if (!proc) return;
    proc.kill('SIGTERM');
    const kill = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(kill);
    this.#proc = undefined;
  }
}
