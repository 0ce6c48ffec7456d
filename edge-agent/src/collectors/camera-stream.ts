/**
 * RTSP stream health for the camera collector: one `ffprobe` run per check, at most
 * `concurrency` at a time (a probe holds an RTSP session and takes 2–3 s of wall time, most of it
 * ffprobe's stream analysis). ffprobe is run as an external program (Debian's build is GPL);
 * nothing links it. Without ffprobe no check runs and nothing is reported.
 */
import { spawn } from 'node:child_process';

export interface StreamProbeResult {
  /** a video stream was found */
  ok: boolean;
  /** frames per second as the stream declares it (avg_frame_rate, else r_frame_rate) */
  fps?: number;
  codec?: string;
  width?: number;
  height?: number;
  /** why not ok */
  reason?: string;
  /** true when the check itself could not run (ffprobe missing, no processes left): says nothing about the camera */
  notRun?: boolean;
  elapsedMs: number;
}

export interface StreamProbeOptions {
  ffprobePath: string;
  /** whole run, process killed after it */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** The URL with any password hidden, for logs and reasons. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/@]*)@/i, (_m, scheme: string, userinfo: string) => `${scheme}${userinfo.split(':')[0] ?? ''}:***@`);
}

/** The URL with credentials added when it has none (real cameras want RTSP Digest). */
export function withCredentials(url: string, username: string | undefined, password: string | undefined): string {
  if (!username) return url;
  try {
    const u = new URL(url);
    if (u.username || u.password) return url;
    u.username = username;
    u.password = password ?? '';
    return u.toString();
  } catch {
    return url;
  }
}

function parseRate(rate: unknown): number | undefined {
  if (typeof rate !== 'string') return undefined;
  const m = /^(\d+)(?:\/(\d+))?$/.exec(rate);
  if (!m) return undefined;
  const den = m[2] === undefined ? 1 : Number(m[2]);
  if (den === 0) return undefined;
  const v = Number(m[1]) / den;
  return v > 0 && v <= 240 ? Math.round(v * 100) / 100 : undefined;
}

/** `ffprobe -rtsp_transport tcp -timeout … -v error -show_streams -of json <url>`; never rejects. */
export function probeStream(url: string, opts: StreamProbeOptions): Promise<StreamProbeResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const args = [
      '-rtsp_transport', 'tcp',
      // socket I/O timeout, µs: a camera that accepts the connection and then says nothing
      '-timeout', String(Math.max(1, Math.floor(opts.timeoutMs * 0.8)) * 1000),
      '-v', 'error',
      '-show_streams',
      '-of', 'json',
      url,
    ];
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(opts.ffprobePath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ ok: false, notRun: true, reason: `cannot run ffprobe: ${(err as Error).message}`, elapsedMs: 0 });
      return;
    }
    const out: Buffer[] = [];
    let outBytes = 0;
    let errText = '';
    let settled = false;
    let timedOut = false;
    const finish = (r: Omit<StreamProbeResult, 'elapsedMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ ...r, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    const onAbort = () => child.kill('SIGKILL');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout?.on('data', (c: Buffer) => {
      if (outBytes < 512 * 1024) {
        out.push(c);
        outBytes += c.length;
      }
    });
    child.stderr?.on('data', (c: Buffer) => {
      if (errText.length < 4096) errText += c.toString('utf8');
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      // ENOENT, EACCES, EAGAIN: the check could not run; that is ours to fix, not the camera's.
      finish({ ok: false, notRun: true, reason: `cannot run ${opts.ffprobePath}: ${err.code ?? err.message}` });
    });
    child.on('close', (code, signal) => {
      if (opts.signal?.aborted) return finish({ ok: false, notRun: true, reason: 'aborted' });
      if (timedOut) return finish({ ok: false, reason: `no answer within ${opts.timeoutMs} ms` });
      const lastLine = errText
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .at(-1);
      const why = lastLine ? redactUrl(lastLine).replace(url, redactUrl(url)).slice(0, 300) : undefined;
      if (code !== 0) return finish({ ok: false, reason: why ?? `ffprobe exited with ${code ?? signal}` });
      let parsed: { streams?: Array<Record<string, unknown>> };
      try {
        parsed = JSON.parse(Buffer.concat(out).toString('utf8')) as typeof parsed;
      } catch {
        return finish({ ok: false, reason: 'ffprobe printed no JSON' });
      }
      const video = (parsed.streams ?? []).find((s) => s.codec_type === 'video');
      if (!video) return finish({ ok: false, reason: 'no video stream in the RTSP session' });
      const fps = parseRate(video.avg_frame_rate) ?? parseRate(video.r_frame_rate);
      finish({
        ok: true,
        ...(fps !== undefined ? { fps } : {}),
        ...(typeof video.codec_name === 'string' ? { codec: video.codec_name } : {}),
        ...(typeof video.width === 'number' ? { width: video.width } : {}),
        ...(typeof video.height === 'number' ? { height: video.height } : {}),
      });
    });
  });
}

/** FIFO of jobs with at most `concurrency` running. */
export class JobQueue {
  readonly #concurrency: number;
  #running = 0;
  #waiting: Array<() => void> = [];

  constructor(concurrency: number) {
    this.#concurrency = Math.max(1, Math.floor(concurrency));
  }

  get running(): number {
    return this.#running;
  }
  get waiting(): number {
    return this.#waiting.length;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    // A finishing job hands its slot straight to the next waiter, so the cap is never exceeded.
    if (this.#running >= this.#concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await job();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
