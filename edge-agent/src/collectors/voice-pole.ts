/**
 * Voice-broadcast pole collector: speaks each pole's vendor HTTP/JSON API
 * (docs/devices/voice-pole-api.md), reports status telemetry and online/offline states, and
 * executes `broadcast.play` / `broadcast.stop` with acks.
 *
 * - Status is polled every `pollIntervalMs`, staggered over the interval. Telemetry
 *   `{ playback, volume, currentCommandId }` is sent when it changed and, unchanged, on every
 *   `heartbeatPolls`-th poll (default 12: once a minute at the default 5 s, well inside the
 *   gateway's 300 s silence timeout for poles).
 * - A pole that stops answering is reported offline once, with the reason, after
 *   `offlineAfterFailures` failed polls in a row, retried with exponential backoff, and reported
 *   online once when it answers (as the water-tank collector does).
 * - A play is sent with jobId = command id, so the pole's own idempotency makes a retry safe: a
 *   lost answer is retried once, and a command re-sent after an agent restart is not played
 *   twice. The job is then watched on its own endpoint every `activePollMs` until it ends, and
 *   each change becomes an ack: accepted → playing → done | preempted | failed.
 * - `failed` means "not carried out now, a retry may work" (pole offline, busy with a higher
 *   priority, amplifier fault); `rejected` means "will not work as sent" (bad params, unknown
 *   clip, a reused command id).
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { AckStatus, DeviceCommand, VoicePoleValues } from '../../../protocol/payloads.js';
import { isValidId } from '../../../protocol/topics.js';
import type { Collector, CollectorContext, Reading } from './collector.js';

export type VoicePoleDevice = Extract<LedgerDevice, { kind: 'voice_pole' }>;

export interface VoicePoleTarget {
  device: VoicePoleDevice;
  /** the pole's API base URL; user:password in it become HTTP Basic credentials */
  url: string;
}

export interface VoicePoleCollectorOptions {
  pollIntervalMs: number;
  /** per HTTP request, connect included */
  timeoutMs: number;
  /** how often an active job is checked; default min(500, pollIntervalMs) */
  activePollMs?: number;
  /** unchanged telemetry is re-sent on every Nth status poll; default 12 */
  heartbeatPolls?: number;
  /** failed polls in a row before a pole is reported offline; default 2 */
  offlineAfterFailures?: number;
  /** ceiling of the status retry backoff; default max(pollIntervalMs, 60 s) */
  maxBackoffMs?: number;
  /** an active job whose pole has not answered for this long is reported failed; default 10 min */
  jobWatchGiveUpMs?: number;
  /** clock for reading timestamps; default Date.now */
  now?: () => number;
}

// ---- the command contract (docs/devices/voice-pole-api.md) --------------------------------------

export const BROADCAST_PRIORITIES = ['routine', 'warning', 'emergency'] as const;
export type BroadcastPriority = (typeof BROADCAST_PRIORITIES)[number];

export interface BroadcastPlay {
  type: 'tts' | 'clip';
  text?: string;
  clipId?: string;
  priority: BroadcastPriority;
  volume?: number;
  repeat: number;
}

export const MAX_TEXT_CHARS = 500;
export const MAX_REPEAT = 10;

/** `broadcast.play` params → a play request, or the reason they are not acceptable. */
export function parsePlayParams(params: DeviceCommand['params']): BroadcastPlay | string {
  const known = new Set(['text', 'clipId', 'priority', 'volume', 'repeat']);
  for (const k of Object.keys(params)) if (!known.has(k)) return `unknown param "${k}" (known: ${[...known].join(', ')})`;
  const { text, clipId, priority, volume, repeat } = params;
  const hasText = text !== undefined && text !== null;
  const hasClip = clipId !== undefined && clipId !== null;
  if (hasText === hasClip) return 'give exactly one of text and clipId';
  const play: BroadcastPlay = { type: hasText ? 'tts' : 'clip', priority: 'routine', repeat: 1 };
  if (hasText) {
    if (typeof text !== 'string' || text.trim() === '') return 'text must be a non-empty string';
    if ([...text].length > MAX_TEXT_CHARS) return `text is longer than ${MAX_TEXT_CHARS} characters`;
    play.text = text;
  } else {
    if (typeof clipId !== 'string' || !isValidId(clipId)) return 'clipId must be a clip id such as "evacuation-01"';
    play.clipId = clipId;
  }
  if (priority !== undefined && priority !== null) {
    if (!(BROADCAST_PRIORITIES as readonly unknown[]).includes(priority)) return `priority must be one of ${BROADCAST_PRIORITIES.join(', ')}`;
    play.priority = priority as BroadcastPriority;
  }
  if (volume !== undefined && volume !== null) {
    if (typeof volume !== 'number' || !Number.isInteger(volume) || volume < 0 || volume > 100) return 'volume must be an integer 0–100';
    play.volume = volume;
  }
  if (repeat !== undefined && repeat !== null) {
    if (typeof repeat !== 'number' || !Number.isInteger(repeat) || repeat < 1 || repeat > MAX_REPEAT) return `repeat must be an integer 1–${MAX_REPEAT}`;
    play.repeat = repeat;
  }
  return play;
}

/** `broadcast.stop` params → the command id of the play to stop (undefined: whatever plays), or a reason. */
export function parseStopParams(params: DeviceCommand['params']): { cmdId: string | undefined } | string {
  for (const k of Object.keys(params)) if (k !== 'cmdId') return `unknown param "${k}" (known: cmdId)`;
  const { cmdId } = params;
  if (cmdId === undefined || cmdId === null) return { cmdId: undefined };
  if (typeof cmdId !== 'string' || !isValidId(cmdId)) return 'cmdId must be the id of a broadcast.play command';
  return { cmdId };
}

// ---- the vendor API, as far as the collector reads it -------------------------------------------

interface PoleJobView {
  jobId: string;
  state: string;
  priority?: string;
  startedAt: number | null;
  preemptedBy?: string;
  preemptedByPriority?: string;
  stoppedBy?: string;
  error?: { code?: string; message?: string };
}

interface PoleStatusView {
  state: string;
  jobId: string | null;
  volume: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function asJob(v: unknown): PoleJobView | undefined {
  if (!isObject(v) || typeof v.jobId !== 'string' || typeof v.state !== 'string') return undefined;
  if (v.startedAt !== null && typeof v.startedAt !== 'number') return undefined;
  return v as unknown as PoleJobView;
}

function asStatus(v: unknown): PoleStatusView | undefined {
  if (!isObject(v) || typeof v.state !== 'string' || typeof v.volume !== 'number') return undefined;
  if (v.jobId !== null && v.jobId !== undefined && typeof v.jobId !== 'string') return undefined;
  return { state: v.state, jobId: (v.jobId as string | null | undefined) ?? null, volume: v.volume };
}

type HttpResult =
  | { ok: true; status: number; body: unknown }
  | { ok: false; reason: string };

/** The vendor's `{code, message}` error body, in words. */
function vendorError(r: { status: number; body: unknown }): string {
  const b = isObject(r.body) ? r.body : {};
  const code = typeof b.code === 'string' ? b.code : `HTTP ${r.status}`;
  const message = typeof b.message === 'string' ? b.message : '';
  return `${code}${message ? `: ${message}` : ''}`.slice(0, 300);
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code) return `${code}${e.cause?.message ? ` (${e.cause.message})` : ''}`;
  return (e?.cause?.message ?? e?.message ?? String(err)).slice(0, 300);
}

/** Targets for the voice poles in a ledger that have an api_url; the rest are listed as missing. */
export function poleTargetsFromLedger(devices: readonly LedgerDevice[], opts: { agent?: string } = {}): { targets: VoicePoleTarget[]; missing: string[] } {
  const targets: VoicePoleTarget[] = [];
  const missing: string[] = [];
  for (const device of devices) {
    if (device.kind !== 'voice_pole' || (opts.agent !== undefined && device.agent !== opts.agent)) continue;
    if (device.settings.apiUrl === undefined) missing.push(device.id);
    else targets.push({ device, url: device.settings.apiUrl });
  }
  return { targets, missing };
}

// ---- the collector ------------------------------------------------------------------------------

interface JobWatch {
  cmdId: string;
  /** the last job state acked; 'sending' until the pole has answered the play */
  reported: 'sending' | 'accepted' | 'playing';
  timer: NodeJS.Timeout | undefined;
  inFlight: Promise<void> | undefined;
  failures: number;
  lastContact: number;
}

interface PolePoller {
  readonly target: VoicePoleTarget;
  readonly base: URL;
  readonly authorization: string | undefined;
  readonly log: Logger;
  timer: NodeJS.Timeout | undefined;
  inFlight: Promise<void> | undefined;
  /** a status poll is wanted as soon as the one in flight ends */
  pollAgain: boolean;
  failures: number;
  state: 'unknown' | 'online' | 'offline';
  lastValues: string | undefined;
  pollsSinceTelemetry: number;
  readonly watches: Map<string, JobWatch>;
  /** acks' ts per command strictly increase, so order survives any sorting by time */
  readonly lastAckTs: Map<string, number>;
}

export class VoicePoleCollector implements Collector {
  readonly name = 'voice-pole';
  readonly commandDevices: readonly string[];
  readonly #targets: readonly VoicePoleTarget[];
  readonly #opts: Required<VoicePoleCollectorOptions>;
  #pollers = new Map<string, PolePoller>();
  #ctx: CollectorContext | undefined;
  #log: Logger | undefined;
  #running = false;
  #emitFailed = false;
  #abort = new AbortController();
  /** commands being sent, so stop() can wait for them */
  #commands = new Set<Promise<void>>();

  constructor(targets: readonly VoicePoleTarget[], opts: VoicePoleCollectorOptions) {
    for (const t of targets) {
      if (t.device.kind !== 'voice_pole') throw new TypeError(`${String((t.device as LedgerDevice).id)} is not a voice pole`);
      const u = new URL(t.url); // throws on a bad URL, at build time rather than at the first poll
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`${t.device.id}: api_url must be http(s), not ${u.protocol}`);
    }
    const ids = targets.map((t) => t.device.id);
    if (new Set(ids).size !== ids.length) throw new Error('a voice pole is listed twice');
    if (!(opts.pollIntervalMs > 0) || !(opts.timeoutMs > 0)) throw new RangeError('pollIntervalMs and timeoutMs must be positive');
    this.#targets = targets;
    this.commandDevices = ids;
    this.#opts = {
      pollIntervalMs: opts.pollIntervalMs,
      timeoutMs: opts.timeoutMs,
      activePollMs: opts.activePollMs ?? Math.min(500, opts.pollIntervalMs),
      heartbeatPolls: Math.max(1, opts.heartbeatPolls ?? 12),
      offlineAfterFailures: Math.max(1, opts.offlineAfterFailures ?? 2),
      maxBackoffMs: opts.maxBackoffMs ?? Math.max(opts.pollIntervalMs, 60_000),
      jobWatchGiveUpMs: opts.jobWatchGiveUpMs ?? 10 * 60_000,
      now: opts.now ?? Date.now,
    };
  }

  async start(ctx: CollectorContext): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#ctx = ctx;
    this.#log = ctx.log.child({ module: 'voice-pole' });
    const n = this.#targets.length;
    this.#targets.forEach((target, i) => {
      const u = new URL(target.url);
      const authorization =
        u.username || u.password
          ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`
          : undefined;
      u.username = '';
      u.password = '';
      if (!u.pathname.endsWith('/')) u.pathname += '/';
      const poller: PolePoller = {
        target,
        base: u,
        authorization,
        // The host only: the URL may carry credentials.
        log: this.#log!.child({ deviceId: target.device.id, host: u.host }),
        timer: undefined,
        inFlight: undefined,
        pollAgain: false,
        failures: 0,
        state: 'unknown',
        lastValues: undefined,
        pollsSinceTelemetry: 0,
        watches: new Map(),
        lastAckTs: new Map(),
      };
      this.#pollers.set(target.device.id, poller);
      this.#schedule(poller, Math.floor((i * this.#opts.pollIntervalMs) / Math.max(1, n)));
    });
    this.#log.info({ poles: n, pollIntervalMs: this.#opts.pollIntervalMs }, 'polling voice poles');
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#abort.abort(new Error('collector stopping'));
    const waits: Array<Promise<void> | undefined> = [...this.#commands];
    for (const p of this.#pollers.values()) {
      clearTimeout(p.timer);
      waits.push(p.inFlight);
      for (const w of p.watches.values()) {
        clearTimeout(w.timer);
        waits.push(w.inFlight);
      }
    }
    await Promise.allSettled(waits);
    this.#pollers.clear();
  }

  handleCommand(deviceId: string, command: DeviceCommand): void {
    const p = this.#pollers.get(deviceId);
    if (!this.#running || !p) throw new Error('the voice-pole collector is not running for this pole');
    if (command.name === 'broadcast.play') {
      if (p.watches.has(command.id)) {
        p.log.debug({ cmd: command.id }, 'play already under way; ignored');
        return;
      }
      const play = parsePlayParams(command.params);
      if (typeof play === 'string') return this.#ack(p, command.id, 'rejected', play);
      // Reserved from now, so the same id arriving before the pole answers is not sent again.
      const watch: JobWatch = { cmdId: command.id, reported: 'sending', timer: undefined, inFlight: undefined, failures: 0, lastContact: Date.now() };
      p.watches.set(command.id, watch);
      this.#track(this.#play(p, watch, play), p, command.id);
    } else if (command.name === 'broadcast.stop') {
      const stop = parseStopParams(command.params);
      if (typeof stop === 'string') return this.#ack(p, command.id, 'rejected', stop);
      this.#track(this.#stop(p, command.id, stop.cmdId), p, command.id);
    } else {
      this.#ack(p, command.id, 'rejected', `${command.name} is not a voice-pole command`);
    }
  }

  #track(work: Promise<void>, p: PolePoller, cmdId: string): void {
    const tracked = work.catch((err: unknown) => {
      p.log.error({ err, cmd: cmdId }, 'voice-pole command failed unexpectedly');
      p.watches.delete(cmdId);
      this.#ack(p, cmdId, 'failed', `internal: ${err instanceof Error ? err.message : String(err)}`);
    });
    this.#commands.add(tracked);
    void tracked.finally(() => this.#commands.delete(tracked));
  }

  // ---- commands ---------------------------------------------------------------------------------

  async #play(p: PolePoller, watch: JobWatch, play: BroadcastPlay): Promise<void> {
    const { cmdId } = watch;
    const body = { jobId: cmdId, ...play };
    // The pole keys jobs by id, so sending again after a lost answer cannot play twice.
    let r = await this.#request(p, 'POST', 'api/v1/play', body);
    if (!r.ok && this.#running) r = await this.#request(p, 'POST', 'api/v1/play', body);
    if (!this.#running) return;
    const answer = r.ok && (r.status === 200 || r.status === 201) && isObject(r.body) ? r.body : undefined;
    const job = answer ? asJob(answer.job) : undefined;
    if (job?.jobId === cmdId) {
      const duplicate = answer?.duplicate === true;
      watch.reported = 'accepted';
      watch.lastContact = Date.now();
      this.#ack(p, cmdId, 'accepted', duplicate ? `the pole already had this job (${job.state})` : undefined);
      this.#applyJob(p, watch, job);
      this.#pollSoon(p);
      return;
    }
    p.watches.delete(cmdId);
    if (!r.ok) {
      this.#ack(p, cmdId, 'failed', `pole offline: ${r.reason}`);
      this.#pollSoon(p);
      return;
    }
    if (r.status === 200 || r.status === 201) {
      this.#ack(p, cmdId, 'failed', 'pole answered the play with something that is not its job');
      return;
    }
    const code = isObject(r.body) && typeof r.body.code === 'string' ? r.body.code : '';
    if (code === 'BUSY') this.#ack(p, cmdId, 'failed', `pole busy: ${vendorError(r)}`);
    else if (r.status === 400 || r.status === 404 || r.status === 409 || r.status === 422) this.#ack(p, cmdId, 'rejected', `pole refused: ${vendorError(r)}`);
    else if (r.status === 401 || r.status === 403) this.#ack(p, cmdId, 'failed', `pole refused the agent's credentials: ${vendorError(r)}`);
    else this.#ack(p, cmdId, 'failed', `pole error: ${vendorError(r)}`);
  }

  async #stop(p: PolePoller, cmdId: string, target: string | undefined): Promise<void> {
    const r = await this.#request(p, 'POST', 'api/v1/stop', target === undefined ? {} : { jobId: target });
    if (!this.#running) return;
    if (!r.ok) {
      this.#ack(p, cmdId, 'failed', `pole offline: ${r.reason}`);
      this.#pollSoon(p);
      return;
    }
    if (r.status === 404 && target !== undefined) {
      this.#ack(p, cmdId, 'accepted');
      this.#ack(p, cmdId, 'done', `the pole has no job ${target}; nothing stopped`);
      return;
    }
    if (r.status !== 200) {
      this.#ack(p, cmdId, r.status >= 400 && r.status < 500 && r.status !== 401 && r.status !== 403 ? 'rejected' : 'failed', `pole refused the stop: ${vendorError(r)}`);
      return;
    }
    const b = isObject(r.body) ? r.body : {};
    const job = asJob(b.job);
    this.#ack(p, cmdId, 'accepted');
    if (b.stopped === true && job) {
      this.#ack(p, cmdId, 'done', `stopped ${job.jobId}`);
      // Let the stopped play report its end now rather than at its next check.
      const watch = p.watches.get(job.jobId);
      if (watch && watch.reported !== 'sending') this.#applyJob(p, watch, job);
    } else {
      this.#ack(p, cmdId, 'done', job ? `${job.jobId} had already ended (${job.state}); nothing stopped` : 'nothing was playing');
    }
    this.#pollSoon(p);
  }

  /** Acks what changed in a watched job; keeps watching while it is active. */
  #applyJob(p: PolePoller, watch: JobWatch, job: PoleJobView): void {
    if (!this.#running || p.watches.get(watch.cmdId) !== watch) return;
    const { cmdId } = watch;
    if (job.startedAt !== null && watch.reported === 'accepted') {
      watch.reported = 'playing';
      this.#ack(p, cmdId, 'playing');
      this.#pollSoon(p);
    }
    if (job.state === 'accepted' || job.state === 'playing') {
      this.#watchLater(p, watch, this.#opts.activePollMs);
      return;
    }
    p.watches.delete(cmdId);
    clearTimeout(watch.timer);
    switch (job.state) {
      case 'done':
        this.#ack(p, cmdId, 'done');
        break;
      case 'stopped':
        this.#ack(p, cmdId, 'done', `stopped before the end${job.stoppedBy === 'local' ? ' at the pole' : ''}`);
        break;
      case 'preempted':
        this.#ack(p, cmdId, 'preempted', `pre-empted by ${job.preemptedByPriority ?? 'another'} broadcast ${job.preemptedBy ?? ''}`.trim());
        break;
      case 'failed':
        this.#ack(p, cmdId, 'failed', `pole: ${job.error?.code ?? 'FAILED'}${job.error?.message ? `: ${job.error.message}` : ''}`.slice(0, 300));
        break;
      default:
        this.#ack(p, cmdId, 'failed', `pole reports an unknown job state "${job.state.slice(0, 40)}"`);
    }
    this.#pollSoon(p);
  }

  #watchLater(p: PolePoller, watch: JobWatch, delayMs: number): void {
    if (!this.#running || watch.timer || watch.inFlight) return;
    watch.timer = setTimeout(() => {
      watch.timer = undefined;
      watch.inFlight = this.#request(p, 'GET', `api/v1/jobs/${encodeURIComponent(watch.cmdId)}`).then((r) => {
        watch.inFlight = undefined;
        this.#onJobAnswer(p, watch, r);
      });
    }, delayMs);
  }

  #onJobAnswer(p: PolePoller, watch: JobWatch, r: HttpResult): void {
    if (!this.#running || p.watches.get(watch.cmdId) !== watch) return;
    const job = r.ok && r.status === 200 && isObject(r.body) ? asJob(r.body.job) : undefined;
    if (job) {
      watch.failures = 0;
      watch.lastContact = Date.now();
      this.#applyJob(p, watch, job);
      return;
    }
    if (r.ok && r.status === 404) {
      p.watches.delete(watch.cmdId);
      this.#ack(p, watch.cmdId, 'failed', 'the pole no longer knows the job (restarted?)');
      return;
    }
    watch.failures++;
    if (Date.now() - watch.lastContact > this.#opts.jobWatchGiveUpMs) {
      p.watches.delete(watch.cmdId);
      this.#ack(p, watch.cmdId, 'failed', `lost contact with the pole while the job was ${watch.reported} (${r.ok ? vendorError(r) : r.reason})`);
      return;
    }
    // An unreachable pole is asked less often, up to once per status interval.
    this.#watchLater(p, watch, Math.min(this.#opts.activePollMs * 2 ** watch.failures, this.#opts.pollIntervalMs));
  }

  // ---- status polling ---------------------------------------------------------------------------

  #schedule(p: PolePoller, delayMs: number): void {
    if (!this.#running) return;
    p.timer = setTimeout(() => {
      p.timer = undefined;
      const started = Date.now();
      p.pollAgain = false;
      p.inFlight = this.#poll(p).then((ok) => {
        p.inFlight = undefined;
        const delay = p.pollAgain
          ? 0
          : ok
            ? Math.max(0, this.#opts.pollIntervalMs - (Date.now() - started))
            : Math.min(this.#opts.pollIntervalMs * 2 ** Math.max(0, p.failures - 1), this.#opts.maxBackoffMs);
        this.#schedule(p, delay);
      });
    }, delayMs);
  }

  /** A status poll now (after the one in flight, if any): telemetry follows a job's changes promptly. */
  #pollSoon(p: PolePoller): void {
    if (!this.#running) return;
    if (p.inFlight) {
      p.pollAgain = true;
      return;
    }
    clearTimeout(p.timer);
    this.#schedule(p, 0);
  }

  /** One status poll; never rejects. Resolves true if the pole answered sensibly. */
  async #poll(p: PolePoller): Promise<boolean> {
    const r = await this.#request(p, 'GET', 'api/v1/status');
    if (!this.#running) return true;
    const status = r.ok && r.status === 200 ? asStatus(r.body) : undefined;
    if (!status) {
      this.#onFailure(p, !r.ok ? r.reason : r.status !== 200 ? `status answered ${vendorError(r)}` : 'status answer is not a pole status');
      return false;
    }
    this.#onStatus(p, status, this.#opts.now());
    return true;
  }

  #onFailure(p: PolePoller, reason: string): void {
    p.failures++;
    if (p.state === 'offline' || p.failures < this.#opts.offlineAfterFailures) return;
    p.state = 'offline';
    p.lastValues = undefined;
    p.log.warn({ reason, failures: p.failures }, 'voice pole offline');
    this.#emit({ channel: 'state', deviceId: p.target.device.id, ts: this.#opts.now(), status: 'offline', reason: reason.slice(0, 500) });
  }

  #onStatus(p: PolePoller, s: PoleStatusView, ts: number): void {
    const deviceId = p.target.device.id;
    p.failures = 0;
    if (p.state !== 'online') {
      if (p.state === 'offline') p.log.info('voice pole back online');
      p.state = 'online';
      this.#emit({ channel: 'state', deviceId, ts, status: 'online' });
    }
    // Vendors add states (e.g. 'offline' for an audio module that dropped off); all of them mean no sound.
    const playback: VoicePoleValues['playback'] = s.state === 'idle' ? 'idle' : s.state === 'playing' ? 'playing' : 'fault';
    const values: VoicePoleValues = { playback, volume: Math.min(100, Math.max(0, Math.round(s.volume))) };
    if (playback === 'playing' && s.jobId !== null && isValidId(s.jobId)) values.currentCommandId = s.jobId;
    const key = JSON.stringify(values);
    p.pollsSinceTelemetry++;
    if (key === p.lastValues && p.pollsSinceTelemetry < this.#opts.heartbeatPolls) return;
    p.lastValues = key;
    p.pollsSinceTelemetry = 0;
    this.#emit({ channel: 'telemetry', kind: 'voice_pole', deviceId, ts, values });
  }

  // ---- plumbing ---------------------------------------------------------------------------------

  async #request(p: PolePoller, method: 'GET' | 'POST', path: string, body?: unknown): Promise<HttpResult> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (p.authorization) headers.authorization = p.authorization;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await fetch(new URL(path, p.base), {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.any([AbortSignal.timeout(this.#opts.timeoutMs), this.#abort.signal]),
      });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
      } catch {
        parsed = undefined;
      }
      return { ok: true, status: res.status, body: parsed };
    } catch (err) {
      return { ok: false, reason: describeNetworkError(err, this.#opts.timeoutMs) };
    }
  }

  #ack(p: PolePoller, cmdId: string, status: AckStatus, reason?: string): void {
    const last = p.lastAckTs.get(cmdId) ?? 0;
    const ts = Math.max(this.#opts.now(), last + 1);
    if (status === 'accepted' || status === 'playing') p.lastAckTs.set(cmdId, ts);
    else p.lastAckTs.delete(cmdId);
    if (status === 'failed' || status === 'rejected') p.log.warn({ cmd: cmdId, status, reason }, 'broadcast command not carried out');
    else p.log.debug({ cmd: cmdId, status, reason }, 'broadcast command progress');
    this.#emit({ channel: 'ack', deviceId: p.target.device.id, ts, cmdId, status, ...(reason ? { reason: reason.slice(0, 500) } : {}) });
  }

  #emit(reading: Reading): void {
    if (!this.#running || !this.#ctx) return;
    try {
      this.#ctx.emit(reading);
    } catch (err) {
      if (!this.#emitFailed) this.#log?.error({ err }, 'emit failed; readings are being lost');
      this.#emitFailed = true;
    }
  }
}
