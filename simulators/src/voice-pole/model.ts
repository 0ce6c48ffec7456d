/**
 * The behaviour of one broadcast terminal ("大喇叭"): jobs, priorities, pre-emption, durations and
 * the amplifier fault, on an injected clock and without I/O, so it can be tested on a fake clock.
 * The HTTP face (simulator.ts) and the vendor API contract (docs/devices/voice-pole-api.md) sit
 * on top of it.
 *
 * Rules, as real terminals behave:
 * - One job plays at a time. A job of the same or a higher priority pre-empts the active one at
 *   once (the later decision wins); a lower-priority job is refused with BUSY.
 * - A pre-empted job does not resume: after "evacuate now" a half-finished routine message would
 *   confuse listeners and may be stale. It ends as `preempted`; whoever sent it decides whether
 *   to send it again.
 * - A job id is played at most once: the same id again returns the existing job (any state),
 *   whether it is still playing or long done; the same id with other content is a conflict.
 * - State changes are computed from the clock whenever the model is read, so no timers run.
 */

export const PRIORITIES = ['routine', 'warning', 'emergency'] as const;
export type PolePriority = (typeof PRIORITIES)[number];
const RANK: Record<PolePriority, number> = { routine: 0, warning: 1, emergency: 2 };

export type JobType = 'tts' | 'clip';
/** accepted: taken, TTS being synthesised / amplifier warming up; the rest as named. */
export type JobState = 'accepted' | 'playing' | 'done' | 'stopped' | 'preempted' | 'failed';
export const ACTIVE_STATES: readonly JobState[] = ['accepted', 'playing'];

export interface Clip {
  id: string;
  title: string;
  /** what the recording says (for the record; clips are pre-recorded audio, not TTS) */
  text: string;
  durationMs: number;
}

/** The terminal's built-in recordings. 12119 is the national forest-fire reporting number. */
export const BUILT_IN_CLIPS: readonly Clip[] = [
  {
    id: 'fire-warning-01',
    title: '防火宣传',
    text: '森林防火，人人有责。进山不带火种，野外不要用火，不要乱扔烟头。发现火情请立即拨打12119。',
    durationMs: 38_000,
  },
  {
    id: 'fire-ban-01',
    title: '高火险禁火令',
    text: '当前森林火险等级高，全面禁止野外用火，禁止祭祀烧纸、燃放烟花爆竹。违者依法追究责任。',
    durationMs: 30_000,
  },
  {
    id: 'evacuation-01',
    title: '紧急疏散',
    text: '紧急通知：附近发生山火，请立即按疏散路线撤离，听从现场人员指挥，不要围观，不要返回取物。',
    durationMs: 25_000,
  },
  { id: 'test-tone-01', title: '设备测试音', text: '（1 kHz 测试音）', durationMs: 5_000 },
];

/** TTS speaking rate: Chinese broadcast speech runs at about 4–5 syllables a second. */
export const SYLLABLES_PER_SECOND = 4.5;
/** The attention chime ("叮咚") a terminal plays before every broadcast. */
export const CHIME_MS = 1500;
/** Silence between repeats. */
export const REPEAT_GAP_MS = 2000;
/** From accepting a job to sound: TTS synthesis and amplifier power-up. */
export const START_DELAY_MS = 800;

/**
 * How long a TTS engine takes to speak `text`, in ms: one syllable per Han character and per
 * digit (12119 is read digit by digit), two per Latin word, plus pauses at punctuation.
 */
export function speechDurationMs(text: string): number {
  const han = text.match(/\p{Script=Han}/gu)?.length ?? 0;
  const digits = text.match(/[0-9０-９]/g)?.length ?? 0;
  const words = text.match(/[A-Za-z]+/g)?.length ?? 0;
  const shortPauses = text.match(/[，、；：,;:]/g)?.length ?? 0;
  const longPauses = text.match(/[。！？!?.\n]/g)?.length ?? 0;
  const syllables = han + digits + 2 * words;
  return Math.round((syllables / SYLLABLES_PER_SECOND) * 1000 + shortPauses * 250 + longPauses * 500);
}

/** Nominal (real-world) duration of a job: chime, then `repeat` times the body with gaps. */
export function nominalDurationMs(bodyMs: number, repeat: number): number {
  return CHIME_MS + repeat * bodyMs + (repeat - 1) * REPEAT_GAP_MS;
}

export interface PlayRequest {
  jobId: string;
  type: JobType;
  text?: string;
  clipId?: string;
  priority: PolePriority;
  /** 0–100; default: the terminal's volume setting */
  volume?: number;
  repeat: number;
}

export interface PoleJob {
  jobId: string;
  type: JobType;
  text?: string;
  clipId?: string;
  /** the clip's title, for a clip job */
  title?: string;
  priority: PolePriority;
  volume: number;
  repeat: number;
  state: JobState;
  /** all times are the terminal's clock, ms since the epoch */
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  /** how long it lasts at real speed */
  nominalDurationMs: number;
  /** how long it lasts on this terminal (nominal / time scale) */
  durationMs: number;
  /** the job that pre-empted this one, and its priority */
  preemptedBy?: string;
  preemptedByPriority?: PolePriority;
  /** set when state is 'stopped': who stopped it */
  stoppedBy?: 'api' | 'local';
  error?: { code: string; message: string };
}

export type PoleErrorCode = 'BUSY' | 'JOB_ID_CONFLICT' | 'UNKNOWN_CLIP' | 'JOB_NOT_FOUND';

export class PoleError extends Error {
  readonly code: PoleErrorCode;
  readonly detail: Record<string, unknown>;
  constructor(code: PoleErrorCode, message: string, detail: Record<string, unknown> = {}) {
    super(message);
    this.name = 'PoleError';
    this.code = code;
    this.detail = detail;
  }
}

export interface PoleStatus {
  state: 'idle' | 'playing' | 'fault';
  /** the active job (accepted or playing), else null */
  jobId: string | null;
  jobState: JobState | null;
  priority: PolePriority | null;
  /** the active job's volume while one is active, else the terminal's volume setting */
  volume: number;
  startedAt: number | null;
  /** until the active job ends, ms on this terminal's clock; null when idle */
  remainingMs: number | null;
  fault: { code: string; message: string } | null;
  /** the newest jobs first */
  lastJobs: PoleJob[];
}

export interface PoleModelOptions {
  /** playback runs this many times faster than real time (tests); default 1 */
  timeScale?: number;
  /** the terminal's volume setting, used when a job gives none; default 70 */
  defaultVolume?: number;
  now?: () => number;
  /** jobs remembered for idempotency and lookup; default 200 */
  jobMemory?: number;
}

const AMPLIFIER_FAULT = { code: 'AMPLIFIER_FAULT', message: 'power amplifier reports an output fault (no load current)' };

interface Schedule {
  startAt: number;
  endAt: number;
}

export class PoleModel {
  readonly timeScale: number;
  readonly defaultVolume: number;
  readonly #now: () => number;
  readonly #memory: number;
  readonly #jobs = new Map<string, PoleJob>();
  readonly #schedule = new WeakMap<PoleJob, Schedule>();
  #active: PoleJob | undefined;
  #amplifierFault = false;
  /** how many jobs have started to sound (a test's evidence that nothing played twice) */
  #starts = 0;

  constructor(opts: PoleModelOptions = {}) {
    this.timeScale = opts.timeScale ?? 1;
    if (!(this.timeScale > 0)) throw new RangeError(`timeScale ${this.timeScale} must be positive`);
    this.defaultVolume = opts.defaultVolume ?? 70;
    this.#now = opts.now ?? Date.now;
    this.#memory = Math.max(1, opts.jobMemory ?? 200);
  }

  get starts(): number {
    this.#settle();
    return this.#starts;
  }

  get amplifierFault(): boolean {
    return this.#amplifierFault;
  }

  /** Amplifier fault on: the active job fails now, and every job accepted meanwhile fails when it would start. */
  setAmplifierFault(on: boolean): void {
    this.#settle();
    this.#amplifierFault = on;
    const job = this.#active;
    if (on && job) this.#end(job, 'failed', this.#now(), { error: { ...AMPLIFIER_FAULT } });
  }

  /** Takes a job; returns it and whether it is new. Throws PoleError BUSY / JOB_ID_CONFLICT / UNKNOWN_CLIP. */
  play(req: PlayRequest): { job: PoleJob; created: boolean } {
    this.#settle();
    const existing = this.#jobs.get(req.jobId);
    if (existing) {
      if (!sameContent(existing, req, this.defaultVolume)) {
        throw new PoleError('JOB_ID_CONFLICT', `job ${req.jobId} exists with other content`, { job: existing.jobId });
      }
      return { job: existing, created: false };
    }
    let bodyMs: number;
    let title: string | undefined;
    if (req.type === 'clip') {
      const clip = BUILT_IN_CLIPS.find((c) => c.id === req.clipId);
      if (!clip) throw new PoleError('UNKNOWN_CLIP', `no clip "${String(req.clipId)}" on this terminal`, { clips: BUILT_IN_CLIPS.map((c) => c.id) });
      bodyMs = clip.durationMs;
      title = clip.title;
    } else {
      bodyMs = speechDurationMs(req.text ?? '');
    }
    const active = this.#active;
    if (active && RANK[req.priority] < RANK[active.priority]) {
      throw new PoleError('BUSY', `a ${active.priority} broadcast is playing (job ${active.jobId})`, {
        currentJob: { jobId: active.jobId, priority: active.priority },
      });
    }
    const now = this.#now();
    const nominal = nominalDurationMs(bodyMs, req.repeat);
    const job: PoleJob = {
      jobId: req.jobId,
      type: req.type,
      ...(req.type === 'tts' ? { text: req.text ?? '' } : { clipId: req.clipId ?? '', ...(title !== undefined ? { title } : {}) }),
      priority: req.priority,
      volume: req.volume ?? this.defaultVolume,
      repeat: req.repeat,
      state: 'accepted',
      createdAt: now,
      startedAt: null,
      endedAt: null,
      nominalDurationMs: nominal,
      durationMs: Math.round(nominal / this.timeScale),
    };
    if (active) this.#end(active, 'preempted', now, { preemptedBy: job.jobId, preemptedByPriority: job.priority });
    const startAt = now + START_DELAY_MS / this.timeScale;
    this.#schedule.set(job, { startAt, endAt: startAt + job.durationMs });
    this.#remember(job);
    this.#active = job;
    return { job, created: true };
  }

  /**
   * Stops `jobId`, or whatever is active when no id is given. Returns the job (null if nothing
   * was active) and whether this call ended it. Stopping a finished job is not an error.
   */
  stop(jobId?: string, by: 'api' | 'local' = 'api'): { job: PoleJob | null; stopped: boolean } {
    this.#settle();
    const job = jobId === undefined ? this.#active : this.#jobs.get(jobId);
    if (jobId !== undefined && !job) throw new PoleError('JOB_NOT_FOUND', `no job ${jobId}`);
    if (!job) return { job: null, stopped: false };
    if (job !== this.#active) return { job, stopped: false };
    this.#end(job, 'stopped', this.#now(), { stoppedBy: by });
    return { job, stopped: true };
  }

  job(jobId: string): PoleJob | undefined {
    this.#settle();
    return this.#jobs.get(jobId);
  }

  /** Every remembered job, oldest first. */
  jobs(): PoleJob[] {
    this.#settle();
    return [...this.#jobs.values()];
  }

  /** When the active job will end, ms from now; null if idle. */
  remainingMs(): number | null {
    this.#settle();
    const job = this.#active;
    if (!job) return null;
    const s = this.#schedule.get(job);
    return s ? Math.max(0, Math.round(s.endAt - this.#now())) : null;
  }

  status(lastJobs = 10): PoleStatus {
    this.#settle();
    const job = this.#active;
    const remainingMs = this.remainingMs();
    return {
      state: this.#amplifierFault ? 'fault' : job ? 'playing' : 'idle',
      jobId: job?.jobId ?? null,
      jobState: job?.state ?? null,
      priority: job?.priority ?? null,
      volume: job?.volume ?? this.defaultVolume,
      startedAt: job?.startedAt ?? null,
      remainingMs,
      fault: this.#amplifierFault ? { ...AMPLIFIER_FAULT } : null,
      lastJobs: [...this.#jobs.values()].reverse().slice(0, lastJobs),
    };
  }

  /** Brings the active job up to the clock: accepted → playing (or failed on a faulty amplifier) → done. */
  #settle(): void {
    const job = this.#active;
    if (!job) return;
    const s = this.#schedule.get(job);
    if (!s) return;
    const now = this.#now();
    if (job.state === 'accepted' && now >= s.startAt) {
      if (this.#amplifierFault) {
        this.#end(job, 'failed', s.startAt, { error: { ...AMPLIFIER_FAULT } });
        return;
      }
      job.state = 'playing';
      job.startedAt = Math.round(s.startAt);
      this.#starts++;
    }
    if (job.state === 'playing' && now >= s.endAt) this.#end(job, 'done', s.endAt);
  }

  #end(job: PoleJob, state: Exclude<JobState, 'accepted' | 'playing'>, at: number, extra: Partial<PoleJob> = {}): void {
    Object.assign(job, extra);
    job.state = state;
    job.endedAt = Math.round(at);
    if (this.#active === job) this.#active = undefined;
  }

  #remember(job: PoleJob): void {
    this.#jobs.set(job.jobId, job);
    if (this.#jobs.size <= this.#memory) return;
    for (const [id, old] of this.#jobs) {
      if (this.#jobs.size <= this.#memory) break;
      if (old !== this.#active) this.#jobs.delete(id);
    }
  }
}

function sameContent(job: PoleJob, req: PlayRequest, defaultVolume: number): boolean {
  return (
    job.type === req.type &&
    (job.type === 'tts' ? job.text === req.text : job.clipId === req.clipId) &&
    job.priority === req.priority &&
    job.volume === (req.volume ?? defaultVolume) &&
    job.repeat === req.repeat
  );
}
