/**
 * Snapshot JPEGs, rendered by ffmpeg (`testsrc2` + the camera id, UTC time and pan bearing drawn
 * on it, a red box while a fire alarm is up) at most once per camera per `maxAgeMs`, a few at a
 * time, and cached (bounded). One frame costs ffmpeg ≈0.25 s CPU, ≈0.5 s and ≈60 MB while it runs,
 * so a fleet of 1657 idles at zero and a burst of requests queues rather than forks 1657 processes. Without ffmpeg (or when it
 * fails) the answer is a small pre-rendered JPEG. ffmpeg is an external tool used only by the
 * simulator, never linked; Debian's build is GPL, which is why it stays optional.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface SnapshotOptions {
  /** 'ffmpeg' (default) renders frames; 'static' always serves the pre-rendered JPEG */
  mode?: 'ffmpeg' | 'static';
  /** default `ffmpeg` on PATH */
  ffmpegPath?: string;
  /** a camera's frame is reused for this long; default 10 s */
  maxAgeMs?: number;
  /** ffmpeg processes at once; default 2 (one per core here) */
  concurrency?: number;
  /** frames kept; default 256 (≈20 KB each) */
  cacheEntries?: number;
  /** an ffmpeg run longer than this is killed and the fallback served; default 5 s */
  timeoutMs?: number;
  /** TrueType font for the overlay; default DejaVu Sans Mono if installed, else no text */
  fontFile?: string;
}

/** What the frame shows. */
export interface SnapshotScene {
  cameraId: string;
  utcMs: number;
  bearingDeg: number;
  /** e.g. 'FIRE' while an alarm is up */
  alarm?: string;
}

export interface SnapshotStats {
  renders: number;
  cacheHits: number;
  fallbacks: number;
}

const DEFAULT_FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf';

/** 640×360 dark green JPEG (ffmpeg mjpeg, q 31): what a snapshot is when ffmpeg cannot run. */
const FALLBACK_JPEG_BASE64 =
  '/9j/4AAQSkZJRgABAgAAAQABAAD//gAQTGF2YzU5LjM3LjEwMAD/2wBDAAg+Pkk+SVVVVVVVVWRdZGhoaGRkZGRoaGhwcHCDg4Nw' +
  'cHBoaHBwfHyDg4+Tj4eHg4eTk5ubm7q6srLZ2eD/////xABMAAEBAAAAAAAAAAAAAAAAAAAABgEBAQAAAAAAAAAAAAAAAAAAAAQQ' +
  'AQAAAAAAAAAAAAAAAAAAAAARAQAAAAAAAAAAAAAAAAAAAAD/wAARCAFoAoADASIAAhEAAxEA/9oADAMBAAIRAxEAPwCAASoQAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' +
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH//2Q==';
export const FALLBACK_JPEG: Buffer = Buffer.from(FALLBACK_JPEG_BASE64, 'base64');

/** Keeps overlay text to characters drawtext takes literally; `:` is escaped for the filter. */
function overlayText(text: string): string {
  return text.replace(/[^A-Za-z0-9 ._/+:-]/g, '_').replace(/:/g, '\\:');
}

export class SnapshotRenderer {
  readonly stats: SnapshotStats = { renders: 0, cacheHits: 0, fallbacks: 0 };
  readonly #opts: Required<Omit<SnapshotOptions, 'fontFile'>> & { fontFile: string | undefined };
  readonly #cache = new Map<string, { jpeg: Buffer; at: number }>();
  readonly #inFlight = new Map<string, Promise<Buffer>>();
  readonly #queue: Array<() => void> = [];
  readonly #children = new Set<ChildProcess>();
  #running = 0;
  #ffmpegMissing = false;
  #closed = false;

  constructor(
    opts: SnapshotOptions,
    private readonly now: () => number,
  ) {
    const font = opts.fontFile ?? DEFAULT_FONT;
    this.#opts = {
      mode: opts.mode ?? 'ffmpeg',
      ffmpegPath: opts.ffmpegPath ?? 'ffmpeg',
      maxAgeMs: opts.maxAgeMs ?? 10_000,
      concurrency: Math.max(1, opts.concurrency ?? 2),
      cacheEntries: Math.max(1, opts.cacheEntries ?? 256),
      timeoutMs: opts.timeoutMs ?? 5000,
      fontFile: existsSync(font) ? font : undefined,
    };
  }

  /** A JPEG for the scene: cached if fresh, else rendered (or the fallback). Never rejects. */
  get(scene: SnapshotScene): Promise<Buffer> {
    if (this.#opts.mode === 'static' || this.#ffmpegMissing || this.#closed) {
      this.stats.fallbacks++;
      return Promise.resolve(FALLBACK_JPEG);
    }
    const hit = this.#cache.get(scene.cameraId);
    if (hit && this.now() - hit.at < this.#opts.maxAgeMs) {
      this.stats.cacheHits++;
      return Promise.resolve(hit.jpeg);
    }
    const pending = this.#inFlight.get(scene.cameraId);
    if (pending) return pending;
    const job = this.#limited(() => this.#render(scene)).then((jpeg) => {
      this.#inFlight.delete(scene.cameraId);
      this.#cache.delete(scene.cameraId);
      this.#cache.set(scene.cameraId, { jpeg, at: this.now() });
      if (this.#cache.size > this.#opts.cacheEntries) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      return jpeg;
    });
    this.#inFlight.set(scene.cameraId, job);
    return job;
  }

  #limited<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve) => {
      const run = () => {
        this.#running++;
        void task()
          .then(resolve)
          .finally(() => {
            this.#running--;
            this.#queue.shift()?.();
          });
      };
      if (this.#running < this.#opts.concurrency) run();
      else this.#queue.push(run);
    });
  }

  #filter(scene: SnapshotScene): string {
    const font = this.#opts.fontFile;
    if (!font) return scene.alarm ? 'drawbox=x=iw/2-60:y=ih/2-40:w=120:h=80:color=red@0.9:t=6' : 'null';
    const time = new Date(scene.utcMs).toISOString().slice(0, 19).replace('T', ' ') + 'Z';
    const text = (s: string, x: string, y: string, size: number, color: string) =>
      `drawtext=fontfile=${font}:text='${overlayText(s)}':x=${x}:y=${y}:fontsize=${size}:fontcolor=${color}:box=1:boxcolor=black@0.55:boxborderw=4`;
    const parts = [
      text(`${scene.cameraId}  ${time}`, '10', '10', 18, 'white'),
      text(`PAN ${scene.bearingDeg.toFixed(1)} deg`, '10', 'h-34', 18, 'white'),
    ];
    if (scene.alarm) {
      parts.push('drawbox=x=iw/2-60:y=ih/2-40:w=120:h=80:color=red@0.9:t=6');
      parts.push(text(scene.alarm, '(w-tw)/2', 'h/2+48', 22, 'red'));
    }
    return parts.join(',');
  }

  #render(scene: SnapshotScene): Promise<Buffer> {
    const args = [
      '-hide_banner', '-loglevel', 'error', '-nostdin',
      '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=1',
      '-vf', this.#filter(scene),
      '-frames:v', '1', '-f', 'mjpeg', '-q:v', '6', 'pipe:1',
    ];
    return new Promise<Buffer>((resolve) => {
      const fallback = () => {
        this.stats.fallbacks++;
        resolve(FALLBACK_JPEG);
      };
      if (this.#closed) return fallback();
      const proc = spawn(this.#opts.ffmpegPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      this.#children.add(proc);
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => proc.kill('SIGKILL'), this.#opts.timeoutMs);
      proc.stdout.on('data', (c: Buffer) => chunks.push(c));
      proc.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') this.#ffmpegMissing = true;
      });
      proc.on('close', (code) => {
        clearTimeout(timer);
        this.#children.delete(proc);
        const jpeg = Buffer.concat(chunks);
        if (code === 0 && jpeg.length > 4 && jpeg[0] === 0xff && jpeg[1] === 0xd8) {
          this.stats.renders++;
          resolve(jpeg);
        } else fallback();
      });
    });
  }

  close(): void {
    this.#closed = true;
    for (const proc of this.#children) proc.kill('SIGKILL');
  }
}
