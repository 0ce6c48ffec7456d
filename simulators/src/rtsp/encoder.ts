/**
 * One simulated camera's picture: an ffmpeg child (run as an external program, so its GPL build
 * is not part of what ships) that draws a test pattern with the camera id and the time, encodes
 * it with libx264 and sends RTP to two UDP sockets on 127.0.0.1 owned by this process.
 *
 * The encoder's UDP sockets are connected (`connect=1`): when this process goes away, even by
 * SIGKILL, ffmpeg's next send fails with "connection refused" and it exits, so no encoder outlives
 * the server that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EncoderSettings {
  ffmpegPath: string;
  width: number;
  height: number;
  fps: number;
  /** target bitrate; the encoder may peak at 1.25 × this */
  bitrateKbps: number;
  /** TrueType font for the overlay; null draws no text */
  fontFile: string | null;
}

/** Fonts tried in order for the overlay (Debian's fonts-dejavu-core, fonts-liberation). */
export const FONT_CANDIDATES = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf',
  '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf',
  '/usr/share/fonts/TTF/DejaVuSans.ttf',
];

export function findFont(candidates: readonly string[] = FONT_CANDIDATES): string | null {
  return candidates.find((f) => existsSync(f)) ?? null;
}

/** Escapes a value for a filter option inside single quotes in an ffmpeg filter graph. */
function filterQuote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "'\\''").replace(/:/g, '\\:')}'`;
}

/**
 * The overlay: the camera id, and below it the date and the time with milliseconds. The time is
 * the encoder's start (local time of this host) plus the frame's timestamp; with `-re` that is
 * the moment the frame is due, so it advances with the wall clock and shows how far a player
 * lags behind the "camera".
 */
export function overlayFilter(cameraId: string, fontFile: string, height: number, startMs: number): string {
  const size = Math.max(12, Math.round(height / 15));
  const start = new Date(startMs);
  const midnight = new Date(start.getFullYear(), start.getMonth(), start.getDate()).getTime();
  const sinceMidnight = ((startMs - midnight) / 1000).toFixed(3);
  const epoch = (startMs / 1000).toFixed(3);
  const style = `fontfile=${filterQuote(fontFile)}:fontsize=${size}:fontcolor=white:box=1:boxcolor=black:boxborderw=4:x=12`;
  // %{pts:localtime:EPOCH:FMT} gives the date; %{pts:hms:OFFSET:24HH} the time of day with ms.
  const clock = `%{pts\\:localtime\\:${epoch}\\:%Y-%m-%d}  %{pts\\:hms\\:${sinceMidnight}\\:24HH}`;
  return [
    `drawtext=${style}:y=h-${2 * size + 24}:text=${filterQuote(cameraId)}`,
    `drawtext=${style}:y=h-${size + 12}:text='${clock}'`,
  ].join(',');
}

export interface EncoderArgsOptions {
  cameraId: string;
  startMs: number;
  rtpPort: number;
  rtcpPort: number;
  sdpFile: string;
  /** pace the input at its frame rate (a live camera); false for the one-frame probe */
  realtime: boolean;
  /** stop after this many frames */
  frames?: number;
}

export function encoderArgs(s: EncoderSettings, o: EncoderArgsOptions): string[] {
  let source = `testsrc2=size=${s.width}x${s.height}:rate=${s.fps}`;
  if (s.fontFile) source += `,${overlayFilter(o.cameraId, s.fontFile, s.height, o.startMs)}`;
  const gop = String(Math.max(1, Math.round(s.fps))); // a key frame every second
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
    ...(o.realtime ? ['-re'] : []),
    '-f', 'lavfi', '-i', source,
    ...(o.frames !== undefined ? ['-frames:v', String(o.frames)] : []),
    '-an',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline',
    '-pix_fmt', 'yuv420p', '-threads', '1',
    '-g', gop, '-keyint_min', gop, '-sc_threshold', '0', '-bf', '0',
    '-b:v', `${s.bitrateKbps}k`, '-maxrate', `${Math.round(s.bitrateKbps * 1.25)}k`, '-bufsize', `${s.bitrateKbps}k`,
    // SPS/PPS go into the SDP (global header) and in front of every key frame (dump_extra), so a
    // viewer can start at any key frame whether or not its player read sprop-parameter-sets.
    '-flags', '+global_header', '-bsf:v', 'dump_extra=freq=keyframe',
    '-f', 'rtp', '-payload_type', '96', '-sdp_file', o.sdpFile,
    `rtp://127.0.0.1:${o.rtpPort}?rtcpport=${o.rtcpPort}&connect=1&pkt_size=1400`,
  ];
}

/** The H.264 format parameters of an encoder's SDP. */
export interface H264Fmtp {
  spropParameterSets: string | undefined;
  profileLevelId: string | undefined;
}

export function parseH264Fmtp(sdp: string): H264Fmtp | undefined {
  const line = sdp.split(/\r?\n/).find((l) => /^a=fmtp:\d+ /.test(l));
  if (!line) return undefined;
  const params = new Map<string, string>();
  for (const p of line.replace(/^a=fmtp:\d+ /, '').split(';')) {
    const eq = p.indexOf('=');
    if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim());
  }
  return { spropParameterSets: params.get('sprop-parameter-sets'), profileLevelId: params.get('profile-level-id') };
}

let sdpCounter = 0;
function sdpPath(cameraId: string): string {
  return join(tmpdir(), `greenshield-rtsp-${process.pid}-${++sdpCounter}-${cameraId}.sdp`);
}

function bindUdp(): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

function closeUdp(socket: UdpSocket): void {
  try {
    socket.close();
  } catch {
    /* already closed */
  }
}

/**
 * Runs the encoder once for one frame, without pacing, and returns the SDP's sprop-parameter-sets:
 * x264's SPS/PPS depend only on the encoding settings, so one probe at start serves every
 * camera's DESCRIBE without starting a camera's encoder before its first PLAY.
 */
export async function probeH264Fmtp(s: EncoderSettings, timeoutMs = 10_000): Promise<H264Fmtp> {
  const rtp = await bindUdp();
  const rtcp = await bindUdp();
  const sdpFile = sdpPath('probe');
  try {
    const args = encoderArgs(
      { ...s, fontFile: null },
      { cameraId: 'probe', startMs: Date.now(), rtpPort: rtp.address().port, rtcpPort: rtcp.address().port, sdpFile, realtime: false, frames: 1 },
    );
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(s.ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stderr: err });
      });
    });
    if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${stderr.trim()}`);
    const fmtp = parseH264Fmtp(await readFile(sdpFile, 'utf8'));
    if (!fmtp?.spropParameterSets) throw new Error('ffmpeg wrote no sprop-parameter-sets');
    return fmtp;
  } finally {
    closeUdp(rtp);
    closeUdp(rtcp);
    await rm(sdpFile, { force: true });
  }
}

export interface EncoderExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stop() was called: an idle stop or fault injection, not a crash */
  requested: boolean;
  /** the last lines ffmpeg wrote to stderr */
  stderr: string;
}

export interface EncoderHandlers {
  onRtp(packet: Buffer): void;
  onRtcp(packet: Buffer): void;
  /** the encoder's SDP, once ffmpeg has written it */
  onSdp?(fmtp: H264Fmtp): void;
  /** once, when the process has gone (or could not be started) and the sockets are closed */
  onExit(exit: EncoderExit): void;
}

/** One camera's running encoder. Starts at construction; `stop()` ends it. */
export class CameraEncoder {
  readonly cameraId: string;
  /** resolves when the process has exited and the sockets are closed */
  readonly exited: Promise<EncoderExit>;
  #child: ChildProcess | undefined;
  #stopRequested: NodeJS.Signals | undefined;
  #killTimer: NodeJS.Timeout | undefined;
  #startedAt = 0;

  constructor(cameraId: string, settings: EncoderSettings, handlers: EncoderHandlers) {
    this.cameraId = cameraId;
    this.exited = this.#run(settings, handlers);
  }

  /** the ffmpeg process id, once spawned and until it has exited */
  get pid(): number | undefined {
    return this.#child?.exitCode === null && this.#child.signalCode === null ? this.#child.pid : undefined;
  }

  get startedAt(): number {
    return this.#startedAt;
  }

  /**
   * Ends the encoder: SIGTERM (ffmpeg finishes cleanly, SIGKILL after 2 s), or SIGKILL at once to
   * simulate a stream that dies. Resolves when the process is gone.
   */
  stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<EncoderExit> {
    if (this.#stopRequested !== 'SIGKILL') {
      this.#stopRequested = signal;
      this.#child?.kill(signal);
      if (signal === 'SIGTERM' && this.#child && !this.#killTimer) {
        this.#killTimer = setTimeout(() => this.#child?.kill('SIGKILL'), 2000);
        this.#killTimer.unref();
      }
    }
    return this.exited;
  }

  async #run(settings: EncoderSettings, handlers: EncoderHandlers): Promise<EncoderExit> {
    let rtp: UdpSocket | undefined;
    let rtcp: UdpSocket | undefined;
    const sdpFile = sdpPath(this.cameraId);
    let exit: EncoderExit;
    try {
      rtp = await bindUdp();
      rtcp = await bindUdp();
      if (this.#stopRequested) {
        exit = { code: null, signal: null, requested: true, stderr: '' };
      } else {
        let sdpRead = false;
        rtp.on('message', (packet) => {
          if (!sdpRead) {
            sdpRead = true; // ffmpeg writes the SDP file before its first packet
            readFile(sdpFile, 'utf8').then(
              (text) => {
                const fmtp = parseH264Fmtp(text);
                if (fmtp) handlers.onSdp?.(fmtp);
              },
              () => undefined,
            );
          }
          handlers.onRtp(packet);
        });
        rtcp.on('message', (packet) => handlers.onRtcp(packet));
        this.#startedAt = Date.now();
        const args = encoderArgs(settings, {
          cameraId: this.cameraId,
          startMs: this.#startedAt,
          rtpPort: rtp.address().port,
          rtcpPort: rtcp.address().port,
          sdpFile,
          realtime: true,
        });
        exit = await new Promise<EncoderExit>((resolve) => {
          const child = spawn(settings.ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
          this.#child = child;
          let stderr = '';
          child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
          let spawnError: Error | undefined;
          child.once('error', (e) => {
            spawnError = e; // ENOENT etc.; 'close' still follows
          });
          child.once('close', (code, signal) => {
            resolve({
              code,
              signal,
              requested: this.#stopRequested !== undefined,
              stderr: spawnError ? String(spawnError.message) : stderr.trim(),
            });
          });
        });
      }
    } catch (err) {
      exit = { code: null, signal: null, requested: this.#stopRequested !== undefined, stderr: String(err) };
    } finally {
      if (this.#killTimer) clearTimeout(this.#killTimer);
      if (rtp) closeUdp(rtp);
      if (rtcp) closeUdp(rtcp);
      await rm(sdpFile, { force: true }).catch(() => undefined);
    }
    handlers.onExit(exit);
    return exit;
  }
}
