/**
 * Camera collector: speaks ONVIF to each sensing camera with the unmodified `onvif` client and
 * turns what it hears into protocol readings (docs/devices/camera-agent.md).
 *
 * - Connect: `Cam.connect()` (GetSystemDateAndTime, GetServices or GetCapabilities, GetProfiles,
 *   GetVideoSources) through a gate of at most `maxConcurrentConnects` at once and
 *   `connectsPerSecond` starts, so 1657 cameras come up over ~35 s instead of in one burst.
 *   A failed camera is retried with jittered exponential back-off up to `maxBackoffMs`, on a
 *   fresh `Cam` each time (its clock offset and services are learnt again).
 * - Availability: the PTZ status poll (GetSystemDateAndTime for a camera without PTZ) is the
 *   heartbeat. `offlineAfterFailures` unanswered polls or connects in a row → one `offline`
 *   state with the reason; the next successful connect → one `online`.
 * - Alarms: the client's PullPoint loop (`cam.on('event')`), mapped by (vendor, topic) through
 *   camera-events.ts and rate-limited per camera and event type. The client's loop stops for
 *   good when creating a subscription fails with anything but a socket error; the collector
 *   notices and restarts it with back-off.
 * - PTZ: GetStatus every `ptzStatusIntervalMs` → `{ panDeg, tiltDeg, zoom }` when it changed, and
 *   unchanged every `heartbeatPolls`-th poll; `ptz.goto_preset` / `ptz.move` / `ptz.stop`.
 * - Stream: ffprobe every `streamCheckIntervalMs`, staggered, at most `maxConcurrentProbes` at
 *   once → `{ streamOk, fps }`; a stream that was OK and fails `streamFailuresBeforeLoss` checks
 *   in a row opens `video_loss`, the next good check closes it.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import onvif, { type Cam } from 'onvif';
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { AckStatus, CameraValues, DeviceCommand, EventType } from '../../../protocol/payloads.js';
import type { Collector, CollectorContext, Reading } from './collector.js';
import {
  AlarmLimiter,
  interpret,
  mergeEventMappings,
  readNotification,
  type LimitedEvent,
  type LimiterCounters,
  type VendorEventMapping,
} from './camera-events.js';
import { parseGotoPresetParams, parseMoveParams, parseStopParams, ptzValues, type GotoPresetParams, type MoveParams } from './camera-ptz.js';
import { JobQueue, probeStream, redactUrl, withCredentials, type StreamProbeResult } from './camera-stream.js';

export type CameraDevice = Extract<LedgerDevice, { kind: 'camera' }>;

export interface CameraOnvifEndpoint {
  hostname: string;
  port: number;
  /** device service path, e.g. /onvif/device_service */
  path: string;
  username?: string;
  password?: string;
  /** https */
  useSecure?: boolean;
}

export interface CameraTarget {
  device: CameraDevice;
  onvif: CameraOnvifEndpoint;
  /** the ledger's rtsp_url (or an override): used instead of the camera's GetStreamUri answer */
  rtspUrl?: string;
  /** event-mapping vendor; default the ledger's `vendor` */
  vendor?: string;
}

export interface CameraCollectorOptions {
  /** GetStatus (and heartbeat) interval */
  ptzStatusIntervalMs: number;
  /** ffprobe interval per camera */
  streamCheckIntervalMs: number;
  /** reconnect back-off ceiling */
  maxBackoffMs: number;
  /** per SOAP request (not the long polls, which the client gives 80 s); default 10 000 */
  requestTimeoutMs?: number;
  /** connects in progress at once; default 20 */
  maxConcurrentConnects?: number;
  /** connects started per second at most; default 50 */
  connectsPerSecond?: number;
  /** first reconnect delay, doubled per failure; default 1000 */
  initialBackoffMs?: number;
  /** failed connects or heartbeats in a row before `offline`; default 2 */
  offlineAfterFailures?: number;
  /** unchanged PTZ telemetry is re-sent on every Nth poll; default 6 (once a minute at 10 s) */
  heartbeatPolls?: number;
  /** at most one event per camera and event type per this long; default 1000 */
  minEventGapMs?: number;
  /** a deployment's vendor mappings, merged over CAMERA_EVENT_MAPPINGS */
  eventMappings?: Readonly<Record<string, Partial<VendorEventMapping>>>;
  /** PullMessages MessageLimit (the client's default is 10); default 64 */
  pullMessageLimit?: number;
  /** default /usr/bin/ffprobe */
  ffprobePath?: string;
  /** default 2 */
  maxConcurrentProbes?: number;
  /** one ffprobe run, killed after it; default 15 000 */
  streamProbeTimeoutMs?: number;
  /** failed checks in a row (after a good one) before `video_loss` starts; default 2 */
  streamFailuresBeforeLoss?: number;
  /** delay of the confirming check after a failure; default min(streamCheckIntervalMs, 30 000) */
  streamRecheckMs?: number;
  /** GetStatus interval while a preset move is watched; default 300 */
  ptzWatchIntervalMs?: number;
  /** a preset move still running after this is reported failed; default 30 000 */
  ptzMoveTimeoutMs?: number;
  /** clock for reading timestamps; default Date.now */
  now?: () => number;
}

export interface CameraCounters extends LimiterCounters {
  /** notifications received from the client */
  notifications: number;
  /** topics with no mapping for the camera's vendor (motion …) */
  unmapped: number;
  /** `Deleted` (a detection rule switched off) */
  deleted: number;
  /** mapped topic without a readable state item, or not a notification at all */
  invalid: number;
  /** times the client's event loop had died and was restarted */
  eventLoopRestarts: number;
  streamChecks: number;
  streamFailures: number;
}

export interface CameraCollectorStats {
  cameras: number;
  online: number;
  offline: number;
  /** not reported either way yet */
  unknown: number;
  connectsInProgress: number;
  probesRunning: number;
  probesWaiting: number;
  events: CameraCounters;
}

// ---- targets from the ledger --------------------------------------------------------------------

/** A target from a device service URL (credentials in it win over `defaults`). */
export function cameraTargetFromUrl(
  device: CameraDevice,
  onvifUrl: string,
  defaults: { username?: string | undefined; password?: string | undefined } = {},
  rtspUrl?: string,
): CameraTarget {
  const u = new URL(onvifUrl);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`${device.id}: onvif_url must be http(s), not ${u.protocol}`);
  const useSecure = u.protocol === 'https:';
  const username = u.username ? decodeURIComponent(u.username) : defaults.username;
  const password = u.username || u.password ? decodeURIComponent(u.password) : defaults.password;
  const target: CameraTarget = {
    device,
    onvif: {
      hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port ? Number(u.port) : useSecure ? 443 : 80,
      path: u.pathname && u.pathname !== '/' ? u.pathname : '/onvif/device_service',
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(useSecure ? { useSecure } : {}),
    },
  };
  const rtsp = rtspUrl ?? device.settings.rtspUrl;
  if (rtsp !== undefined) target.rtspUrl = rtsp;
  return target;
}

/**
 * Targets for the cameras in a ledger that have a usable onvif_url; the rest are listed as
 * missing (no URL) or invalid (not http/https), so one bad row does not stop the agent.
 */
export function cameraTargetsFromLedger(
  devices: readonly LedgerDevice[],
  opts: { agent?: string; username?: string | undefined; password?: string | undefined } = {},
): { targets: CameraTarget[]; missing: string[]; invalid: Array<{ id: string; reason: string }> } {
  const targets: CameraTarget[] = [];
  const missing: string[] = [];
  const invalid: Array<{ id: string; reason: string }> = [];
  for (const device of devices) {
    if (device.kind !== 'camera' || (opts.agent !== undefined && device.agent !== opts.agent)) continue;
    if (device.settings.onvifUrl === undefined) {
      missing.push(device.id);
      continue;
    }
    try {
      targets.push(cameraTargetFromUrl(device, device.settings.onvifUrl, opts));
    } catch (err) {
      invalid.push({ id: device.id, reason: (err as Error).message });
    }
  }
  return { targets, missing, invalid };
}

// ---- the onvif client, promised -----------------------------------------------------------------

type OnvifCallback<T> = (err: Error | null, data?: T, xml?: string) => void;
interface OnvifError extends Error {
  code?: string;
  xml?: string;
}

/**
 * One client call as a promise that settles once: the client may call back twice (xml2js
 * re-invokes a callback that threw) or never (its connect swallows an exception), so the
 * promise also gives up after `timeoutMs`.
 */
function call<T>(fn: (cb: OnvifCallback<T>) => void, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(new Error('Network timeout'));
    }, timeoutMs);
    const cb: OnvifCallback<T> = (err, data, xml) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(Object.assign(err instanceof Error ? err : new Error(String(err)), xml !== undefined ? { xml } : {}));
      else resolve(data as T);
    };
    try {
      fn(cb);
    } catch (err) {
      cb(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Socket errors after which the client's own event loop retries by itself. */
const CLIENT_RETRY_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENETUNREACH']);

/** The camera answered (with a fault or something unreadable): it is reachable. */
function cameraAnswered(err: unknown): boolean {
  const m = err instanceof Error ? err.message : '';
  return m.startsWith('ONVIF SOAP Fault') || m === 'Wrong ONVIF SOAP response' || m.startsWith('Digest authentication');
}
function isAuthFailure(err: unknown): boolean {
  const e = err as OnvifError;
  const m = e?.message ?? '';
  return /not ?authori[sz]ed|Digest authentication failed/i.test(m) || /NotAuthorized/.test(e?.xml ?? '');
}
/** A SOAP fault whose code is Sender: the request was wrong, not the camera. */
function isSenderFault(err: unknown): boolean {
  return /<(?:\w+:)?Value>\s*(?:\w+:)?Sender\s*</.test((err as OnvifError)?.xml ?? '');
}

/** Why a call failed, in words for an offline `reason` or an ack. */
function describeError(err: unknown, timeoutMs: number): string {
  const e = err as OnvifError;
  const code = e?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable';
  if (code === 'ETIMEDOUT') return 'connect timed out';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `host name not resolved (${code})`;
  const m = e instanceof Error ? e.message : String(err);
  if (m === 'Network timeout') return `no answer within ${timeoutMs} ms`;
  if (m.startsWith('ONVIF SOAP Fault: ')) return `camera fault: ${m.slice('ONVIF SOAP Fault: '.length)}`.slice(0, 300);
  return (code ? `${code}: ${m}` : m).slice(0, 300);
}

// ---- per-camera state ---------------------------------------------------------------------------

interface PresetInfo {
  token: string;
  name: string;
  x?: number;
  y?: number;
  zoom?: number;
}

/** One connected `Cam`; replaced on every reconnect. */
interface CamLink {
  readonly cam: Cam;
  hasPtz: boolean;
  presets: PresetInfo[] | undefined;
  onEvent: ((m: unknown) => void) | undefined;
  onEventsError: ((err: unknown) => void) | undefined;
  eventRetryTimer: NodeJS.Timeout | undefined;
  eventRestarts: number;
}

interface MotionJob {
  readonly cmdId: string;
  readonly link: CamLink;
  /** set when a later command took over (already acked preempted) */
  cancelled: boolean;
  /** ends the job's waits when it is cancelled */
  readonly abort: AbortController;
}

interface CameraWatch {
  readonly target: CameraTarget;
  readonly id: string;
  readonly log: Logger;
  readonly mapping: VendorEventMapping | undefined;
  readonly limiter: AlarmLimiter;
  readonly counters: Omit<CameraCounters, keyof LimiterCounters>;
  link: CamLink | undefined;
  timer: NodeJS.Timeout | undefined;
  /** failed connects / heartbeats in a row */
  failures: number;
  /** failed connects since the last success, for the back-off */
  attempts: number;
  state: 'unknown' | 'online' | 'offline';
  lastTs: number;
  ptzKey: string | undefined;
  ptzPolls: number;
  /** heartbeats since this camera last sent anything */
  quietPolls: number;
  streamTimer: NodeJS.Timeout | undefined;
  streamUri: string | undefined;
  streamEverOk: boolean;
  streamFailures: number;
  lossOpen: boolean;
  motion: MotionJob | undefined;
  /** set by stop(): late callbacks of this watch do nothing, even if the collector is started again */
  retired: boolean;
  /** things logged once per camera */
  readonly logged: Set<string>;
}

const ALARM_LABEL: Partial<Record<EventType, string>> = {
  fire: 'fire (火情)',
  smoke: 'smoke (烟雾)',
  temperature_alarm: 'temperature alarm (高温告警)',
  motion: 'motion (移动侦测)',
  tamper: 'tamper (遮挡/破坏)',
};
const defaultSeverity = (t: EventType): 'warning' | 'critical' => (t === 'fire' || t === 'smoke' ? 'critical' : 'warning');

class ConnectGate {
  readonly #max: number;
  readonly #spacingMs: number;
  #active = 0;
  #waiting: Array<() => void> = [];
  #nextStart = 0;

  constructor(max: number, perSecond: number) {
    this.#max = Math.max(1, Math.floor(max));
    this.#spacingMs = perSecond > 0 ? 1000 / perSecond : 0;
  }
  get active(): number {
    return this.#active;
  }
  /** Resolves with a slot; rejects if `signal` aborts first. */
  async acquire(signal: AbortSignal): Promise<void> {
    if (this.#active < this.#max) this.#active++;
    else {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          this.#waiting = this.#waiting.filter((w) => w !== go);
          reject(signal.reason);
        };
        const go = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        if (signal.aborted) return reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        this.#waiting.push(go);
      });
    }
    const now = Date.now();
    const at = Math.max(now, this.#nextStart);
    this.#nextStart = at + this.#spacingMs;
    if (at > now) {
      try {
        await sleep(at - now, undefined, { signal });
      } catch (err) {
        this.release();
        throw err;
      }
    }
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }
}

// ---- the collector ------------------------------------------------------------------------------

export class CameraCollector implements Collector {
  readonly name = 'camera';
  readonly commandDevices: readonly string[];
  readonly #targets: readonly CameraTarget[];
  readonly #opts: Required<Omit<CameraCollectorOptions, 'eventMappings'>>;
  readonly #mappings: Record<string, VendorEventMapping>;
  #watches = new Map<string, CameraWatch>();
  #ctx: CollectorContext | undefined;
  #log: Logger | undefined;
  #running = false;
  #emitFailed = false;
  #abort = new AbortController();
  #gate: ConnectGate;
  #probes: JobQueue;
  /** work that stop() waits for (commands, stream probes, connects at the gate) */
  #work = new Set<Promise<unknown>>();
  #loggedTopics = new Set<string>();
  #probeNotRunLogged = false;

  constructor(targets: readonly CameraTarget[], opts: CameraCollectorOptions) {
    for (const t of targets) {
      if (t.device.kind !== 'camera') throw new TypeError(`${String((t.device as LedgerDevice).id)} is not a camera`);
      if (!t.onvif.hostname || !(t.onvif.port > 0 && t.onvif.port < 65536)) throw new TypeError(`${t.device.id}: bad ONVIF endpoint`);
    }
    const ids = targets.map((t) => t.device.id);
    if (new Set(ids).size !== ids.length) throw new Error('a camera is listed twice');
    for (const k of ['ptzStatusIntervalMs', 'streamCheckIntervalMs', 'maxBackoffMs'] as const) {
      if (!(opts[k] > 0)) throw new RangeError(`${k} must be positive`);
    }
    this.#targets = targets;
    this.commandDevices = ids;
    this.#mappings = mergeEventMappings(opts.eventMappings);
    this.#opts = {
      ptzStatusIntervalMs: opts.ptzStatusIntervalMs,
      streamCheckIntervalMs: opts.streamCheckIntervalMs,
      maxBackoffMs: opts.maxBackoffMs,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      maxConcurrentConnects: opts.maxConcurrentConnects ?? 20,
      connectsPerSecond: opts.connectsPerSecond ?? 50,
      initialBackoffMs: Math.min(opts.initialBackoffMs ?? 1000, opts.maxBackoffMs),
      offlineAfterFailures: Math.max(1, opts.offlineAfterFailures ?? 2),
      heartbeatPolls: Math.max(1, opts.heartbeatPolls ?? 6),
      minEventGapMs: opts.minEventGapMs ?? 1000,
      pullMessageLimit: Math.max(1, opts.pullMessageLimit ?? 64),
      ffprobePath: opts.ffprobePath ?? '/usr/bin/ffprobe',
      maxConcurrentProbes: Math.max(1, opts.maxConcurrentProbes ?? 2),
      streamProbeTimeoutMs: opts.streamProbeTimeoutMs ?? 15_000,
      streamFailuresBeforeLoss: Math.max(1, opts.streamFailuresBeforeLoss ?? 2),
      streamRecheckMs: opts.streamRecheckMs ?? Math.min(opts.streamCheckIntervalMs, 30_000),
      ptzWatchIntervalMs: opts.ptzWatchIntervalMs ?? 300,
      ptzMoveTimeoutMs: opts.ptzMoveTimeoutMs ?? 30_000,
      now: opts.now ?? Date.now,
    };
    this.#gate = new ConnectGate(this.#opts.maxConcurrentConnects, this.#opts.connectsPerSecond);
    this.#probes = new JobQueue(this.#opts.maxConcurrentProbes);
  }

  async start(ctx: CollectorContext): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    // Every camera waiting at the connect gate, and every probe, listens for the stop.
    setMaxListeners(0, this.#abort.signal);
    this.#gate = new ConnectGate(this.#opts.maxConcurrentConnects, this.#opts.connectsPerSecond);
    this.#ctx = ctx;
    this.#log = ctx.log.child({ module: 'camera' });
    const n = this.#targets.length;
    const interval = this.#opts.streamCheckIntervalMs;
    this.#targets.forEach((target, i) => {
      const vendor = target.vendor ?? target.device.settings.vendor;
      const log = this.#log!.child({ deviceId: target.device.id, host: `${target.onvif.hostname}:${target.onvif.port}` });
      const w: CameraWatch = {
        target,
        id: target.device.id,
        log,
        mapping: this.#mappings[vendor],
        limiter: new AlarmLimiter({
          minGapMs: this.#opts.minEventGapMs,
          now: this.#opts.now,
          emit: (e) => this.#emitAlarm(w, e),
        }),
        counters: { notifications: 0, unmapped: 0, deleted: 0, invalid: 0, eventLoopRestarts: 0, streamChecks: 0, streamFailures: 0 },
        link: undefined,
        timer: undefined,
        failures: 0,
        attempts: 0,
        state: 'unknown',
        lastTs: 0,
        ptzKey: undefined,
        ptzPolls: 0,
        quietPolls: 0,
        streamTimer: undefined,
        streamUri: undefined,
        streamEverOk: false,
        streamFailures: 0,
        lossOpen: false,
        motion: undefined,
        retired: false,
        logged: new Set(),
      };
      if (!w.mapping) log.warn({ vendor }, 'no event mapping for this vendor: its alarms are not forwarded (see docs/devices/camera-agent.md)');
      if (target.device.settings.headingDeg === undefined) log.warn('no heading_deg in the ledger: the pan position cannot be reported as a bearing');
      this.#watches.set(w.id, w);
      // The gate spaces the connects; the stream checks are spread over one interval.
      this.#track(this.#connect(w));
      this.#scheduleStream(w, Math.floor(((i + 1) * interval) / Math.max(1, n)));
    });
    this.#log.info(
      {
        cameras: n,
        ptzStatusIntervalMs: this.#opts.ptzStatusIntervalMs,
        streamCheckIntervalMs: interval,
        maxConcurrentConnects: this.#opts.maxConcurrentConnects,
      },
      'watching cameras',
    );
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    // Alarm changes still held back by the rate limit go out now rather than never.
    for (const w of this.#watches.values()) w.limiter.flushAll();
    this.#running = false;
    this.#abort.abort(new Error('collector stopping'));
    const unsubscribes: Array<Promise<unknown>> = [];
    for (const w of this.#watches.values()) {
      w.retired = true;
      clearTimeout(w.timer);
      clearTimeout(w.streamTimer);
      w.limiter.close();
      if (w.motion) {
        w.motion.cancelled = true;
        w.motion.abort.abort();
      }
      const link = w.link;
      w.link = undefined;
      if (link) unsubscribes.push(this.#retire(link, true));
    }
    // Give the cameras back their pull-point slots and let commands and probes (killed by the
    // abort) finish; a camera that does not answer is not waited for: whatever it answers later
    // finds the collector stopped and is dropped.
    await Promise.race([Promise.allSettled([...unsubscribes, ...this.#work]), sleep(3000, undefined, { ref: false })]);
    this.#watches.clear();
  }

  /** Counters over all cameras. */
  stats(): CameraCollectorStats {
    const events: CameraCounters = {
      notifications: 0,
      unmapped: 0,
      deleted: 0,
      invalid: 0,
      eventLoopRestarts: 0,
      streamChecks: 0,
      streamFailures: 0,
      received: 0,
      forwarded: 0,
      rateLimited: 0,
      unchanged: 0,
    };
    let online = 0;
    let offline = 0;
    for (const w of this.#watches.values()) {
      if (w.state === 'online') online++;
      else if (w.state === 'offline') offline++;
      for (const [k, v] of Object.entries({ ...w.counters, ...w.limiter.counters })) events[k as keyof CameraCounters] += v;
    }
    return {
      cameras: this.#watches.size,
      online,
      offline,
      unknown: this.#watches.size - online - offline,
      connectsInProgress: this.#gate.active,
      probesRunning: this.#probes.running,
      probesWaiting: this.#probes.waiting,
      events,
    };
  }

  /** One camera's counters, or undefined if it is not watched. */
  cameraStats(deviceId: string): (CameraCounters & { state: 'unknown' | 'online' | 'offline' }) | undefined {
    const w = this.#watches.get(deviceId);
    return w ? { state: w.state, ...w.counters, ...w.limiter.counters } : undefined;
  }

  // ---- connecting -------------------------------------------------------------------------------

  async #connect(w: CameraWatch): Promise<void> {
    try {
      await this.#gate.acquire(this.#abort.signal);
    } catch {
      return; // stopping
    }
    const { onvif: ep } = w.target;
    const timeout = this.#opts.requestTimeoutMs;
    let cam: Cam | undefined;
    let error: unknown;
    try {
      if (!this.#alive(w)) return;
      cam = new onvif.Cam({
        hostname: ep.hostname,
        port: ep.port,
        path: ep.path,
        ...(ep.username !== undefined ? { username: ep.username } : {}),
        ...(ep.password !== undefined ? { password: ep.password } : {}),
        ...(ep.useSecure ? { useSecure: true } : {}),
        timeout,
        autoconnect: false,
      });
      const c = cam;
      // connect() is up to five requests in a row; the guard covers a callback that never comes.
      await call<unknown>((cb) => c.connect(cb), timeout * 6);
    } catch (err) {
      error = err;
    } finally {
      this.#gate.release();
    }
    if (!this.#alive(w) || !cam) return;
    if (error !== undefined) {
      this.#onFailure(w, describeError(error, timeout), error);
      this.#scheduleReconnect(w);
      return;
    }
    this.#onConnected(w, cam);
  }

  #scheduleReconnect(w: CameraWatch): void {
    if (!this.#alive(w)) return;
    w.attempts++;
    const base = Math.min(this.#opts.initialBackoffMs * 2 ** Math.min(30, w.attempts - 1), this.#opts.maxBackoffMs);
    // ±20 % so cameras that failed together do not come back in step
    const delay = Math.min(this.#opts.maxBackoffMs, Math.round(base * (0.8 + 0.4 * Math.random())));
    clearTimeout(w.timer);
    w.timer = setTimeout(() => {
      w.timer = undefined;
      this.#track(this.#connect(w));
    }, delay);
  }

  #onConnected(w: CameraWatch, cam: Cam): void {
    const link: CamLink = {
      cam,
      // Every PTZ call names the active profile; without one the client would throw.
      hasPtz: Boolean(cam.uri?.ptz && cam.activeSource?.profileToken),
      presets: undefined,
      onEvent: undefined,
      onEventsError: undefined,
      eventRetryTimer: undefined,
      eventRestarts: 0,
    };
    w.link = link;
    w.failures = 0;
    w.attempts = 0;
    cam.on('warning', (warning: unknown) => this.#logOnce(w, `warning:${String(warning)}`, 'warn', { warning: String(warning) }, 'camera client warning'));
    this.#markOnline(w);
    if (!link.hasPtz) this.#logOnce(w, 'no-ptz', 'info', {}, 'camera has no PTZ service: GetSystemDateAndTime is its heartbeat');
    this.#attachEvents(w, link);
    if (w.target.rtspUrl === undefined && cam.activeSource) this.#track(this.#fetchStreamUri(w, link));
    this.#scheduleStatus(w, link, 0);
  }

  async #fetchStreamUri(w: CameraWatch, link: CamLink): Promise<void> {
    try {
      const r = await call<{ uri?: unknown }>((cb) => link.cam.getStreamUri({ protocol: 'RTSP' }, cb), this.#opts.requestTimeoutMs);
      const uri = typeof r?.uri === 'string' ? r.uri.trim() : '';
      if (/^rtsps?:\/\//i.test(uri)) w.streamUri = uri;
      else this.#logOnce(w, 'stream-uri-odd', 'warn', { uri: redactUrl(uri) }, 'GetStreamUri gave no rtsp:// URL; the stream is not checked');
    } catch (err) {
      this.#logOnce(w, 'stream-uri-failed', 'warn', { reason: describeError(err, this.#opts.requestTimeoutMs) }, 'GetStreamUri failed; the stream is checked once it answers');
      // Asked again at the next reconnect; the stream check skips the camera meanwhile.
    }
  }

  /** Stops using a link: the client's loop ends after its current poll (unsubscribing if asked). */
  #retire(link: CamLink, unsubscribe: boolean): Promise<void> {
    clearTimeout(link.eventRetryTimer);
    if (link.onEvent) link.cam.removeListener('event', link.onEvent);
    if (!unsubscribe || !link.cam.events?.subscription) return Promise.resolve();
    // unsubscribe() forgets the subscription at once, so the pending long poll ends the loop.
    return call((cb) => link.cam.unsubscribe(cb), this.#opts.requestTimeoutMs).then(
      () => undefined,
      () => undefined,
    );
  }

  #markOnline(w: CameraWatch): void {
    if (w.state === 'online') return;
    if (w.state === 'offline') w.log.info('camera back online');
    else w.log.debug('camera online');
    w.state = 'online';
    this.#emit({ channel: 'state', deviceId: w.id, ts: this.#stamp(w), status: 'online' });
  }

  /** A failed connect or heartbeat; offline once the failures in a row reach the threshold. */
  #onFailure(w: CameraWatch, reason: string, err?: unknown): void {
    w.failures++;
    if (w.state === 'offline' || w.failures < this.#opts.offlineAfterFailures) {
      w.log.debug({ reason, failures: w.failures }, 'camera did not answer');
      return;
    }
    w.state = 'offline';
    w.ptzKey = undefined;
    if (err !== undefined && !(err instanceof Error)) w.log.error({ err, failures: w.failures }, 'camera failed unexpectedly');
    else w.log.warn({ reason, failures: w.failures }, 'camera offline');
    this.#emit({ channel: 'state', deviceId: w.id, ts: this.#stamp(w), status: 'offline', reason: reason.slice(0, 500) });
  }

  // ---- heartbeat and PTZ position ---------------------------------------------------------------

  #scheduleStatus(w: CameraWatch, link: CamLink, delayMs: number): void {
    if (!this.#running || w.link !== link) return;
    clearTimeout(w.timer);
    w.timer = setTimeout(() => {
      w.timer = undefined;
      void this.#pollStatus(w, link);
    }, delayMs);
  }

  async #pollStatus(w: CameraWatch, link: CamLink): Promise<void> {
    const timeout = this.#opts.requestTimeoutMs;
    const started = Date.now();
    try {
      if (link.hasPtz) {
        const status = await call<{ position?: Record<string, unknown> }>((cb) => link.cam.getStatus({}, cb), timeout);
        if (!this.#running || w.link !== link) return;
        w.quietPolls++;
        this.#onPtzPosition(w, status?.position, false);
      } else {
        await call<unknown>((cb) => link.cam.getSystemDateAndTime(cb), timeout);
        w.quietPolls++;
      }
      if (!this.#running || w.link !== link) return;
      w.failures = 0;
      // A camera with nothing to report (no PTZ, no position) still shows it is alive, well
      // inside the gateway's silence timeout: its online state again.
      if (w.quietPolls >= this.#opts.heartbeatPolls) this.#emit({ channel: 'state', deviceId: w.id, ts: this.#stamp(w), status: 'online' });
      this.#scheduleStatus(w, link, Math.max(0, this.#opts.ptzStatusIntervalMs - (Date.now() - started)));
    } catch (err) {
      if (!this.#running || w.link !== link) return;
      if (cameraAnswered(err) && !isAuthFailure(err)) {
        // It answers but will not give a PTZ status: keep it alive on GetSystemDateAndTime.
        if (link.hasPtz) {
          link.hasPtz = false;
          this.#logOnce(w, 'status-fault', 'warn', { reason: describeError(err, timeout) }, 'GetStatus refused: no pan reports from this camera');
        }
        w.failures = 0;
        if (++w.quietPolls >= this.#opts.heartbeatPolls) this.#emit({ channel: 'state', deviceId: w.id, ts: this.#stamp(w), status: 'online' });
        this.#scheduleStatus(w, link, this.#opts.ptzStatusIntervalMs);
        return;
      }
      const reason = describeError(err, timeout);
      this.#onFailure(w, reason);
      if (w.state === 'offline') {
        w.link = undefined;
        void this.#retire(link, false);
        this.#abandonMotion(w, `camera offline: ${reason}`);
        this.#scheduleReconnect(w);
      } else {
        // Confirm soon rather than a whole interval later.
        this.#scheduleStatus(w, link, Math.min(this.#opts.ptzStatusIntervalMs, 2000));
      }
    }
  }

  #onPtzPosition(w: CameraWatch, position: Record<string, unknown> | undefined, force: boolean): void {
    const values = position ? ptzValues(position, w.target.device.settings.headingDeg) : undefined;
    if (!values) return;
    const key = JSON.stringify(values);
    w.ptzPolls++;
    if (!force && key === w.ptzKey && w.ptzPolls < this.#opts.heartbeatPolls) return;
    w.ptzKey = key;
    w.ptzPolls = 0;
    this.#emit({ channel: 'telemetry', kind: 'camera', deviceId: w.id, ts: this.#stamp(w), values });
  }

  /** A GetStatus now, reported even if unchanged (after a command). */
  async #reportPosition(w: CameraWatch, link: CamLink): Promise<{ moving: boolean; position: Record<string, unknown> | undefined } | undefined> {
    try {
      const s = await call<{ position?: Record<string, unknown>; moveStatus?: unknown }>((cb) => link.cam.getStatus({}, cb), this.#opts.requestTimeoutMs);
      if (!this.#running || w.link !== link) return undefined;
      return { moving: isMoving(s?.moveStatus), position: s?.position };
    } catch {
      return undefined;
    }
  }

  // ---- alarms -----------------------------------------------------------------------------------

  #attachEvents(w: CameraWatch, link: CamLink): void {
    if (!w.mapping) return;
    // A documented property of the client (Cam#events.messageLimit); a flood drains in fewer polls.
    link.cam.events.messageLimit = this.#opts.pullMessageLimit;
    link.onEventsError = (err) => this.#onEventsError(w, link, err);
    link.onEvent = (m) => this.#onNotification(w, link, m);
    link.cam.on('eventsError', link.onEventsError);
    link.cam.on('event', link.onEvent); // the first listener starts the client's pull loop
  }

  #onEventsError(w: CameraWatch, link: CamLink, err: unknown): void {
    if (!this.#running || w.link !== link) return;
    const reason = describeError(err, this.#opts.requestTimeoutMs);
    // After a failed CreatePullPointSubscription (no subscription held) the client retries only
    // on socket errors; anything else (a fault, a timeout) ends its loop for good.
    const code = (err as OnvifError)?.code;
    const dead = !link.cam.events?.subscription && !(code !== undefined && CLIENT_RETRY_CODES.has(code));
    this.#logOnce(w, `events-error:${reason}`, dead ? 'warn' : 'debug', { reason, loopStopped: dead }, 'camera event subscription error');
    if (!dead || link.eventRetryTimer) return;
    link.eventRestarts++;
    w.counters.eventLoopRestarts++;
    const delay = Math.min(this.#opts.initialBackoffMs * 2 ** Math.min(30, link.eventRestarts - 1), this.#opts.maxBackoffMs);
    link.eventRetryTimer = setTimeout(() => {
      link.eventRetryTimer = undefined;
      if (!this.#running || w.link !== link || !link.onEvent) return;
      // The client starts a loop when the first 'event' listener is added.
      link.cam.removeListener('event', link.onEvent);
      link.cam.on('event', link.onEvent);
    }, delay);
  }

  #onNotification(w: CameraWatch, link: CamLink, raw: unknown): void {
    if (!this.#running || w.link !== link || !w.mapping) return;
    w.counters.notifications++;
    link.eventRestarts = 0;
    const n = readNotification(raw);
    if (!n) {
      w.counters.invalid++;
      this.#logOnce(w, 'unreadable-notification', 'warn', {}, 'a notification without a topic was ignored');
      return;
    }
    const it = interpret(w.mapping, n);
    switch (it.kind) {
      case 'unmapped':
        w.counters.unmapped++;
        if (!this.#loggedTopics.has(it.topic)) {
          this.#loggedTopics.add(it.topic);
          w.log.info({ topic: it.topic }, 'unmapped ONVIF topic: dropped and counted (further cameras logged at debug)');
        }
        this.#logOnce(w, `unmapped:${it.topic}`, 'debug', { topic: it.topic }, 'unmapped ONVIF topic dropped');
        return;
      case 'deleted':
        w.counters.deleted++;
        // The rule was switched off at the camera. An open alarm stays open: "off" is not
        // "extinguished"; the Initialized message when it is switched on again settles it.
        this.#logOnce(w, `deleted:${it.topic}`, 'info', { topic: it.topic, type: it.mapping.type }, 'detection rule switched off at the camera (Deleted); ignored');
        return;
      case 'invalid':
        w.counters.invalid++;
        this.#logOnce(w, `invalid:${it.topic}`, 'warn', { topic: it.topic, reason: it.reason }, 'alarm notification not understood; ignored');
        return;
      case 'alarm':
        w.limiter.input({
          type: it.mapping.type,
          kind: it.mapping.kind ?? 'state',
          active: it.active,
          details: it.details,
          source: it.topic,
          severity: it.mapping.severity ?? defaultSeverity(it.mapping.type),
          initialized: it.operation === 'Initialized',
          ts: this.#opts.now(),
        });
    }
  }

  #emitAlarm(w: CameraWatch, e: LimitedEvent): void {
    const label = ALARM_LABEL[e.type] ?? e.type;
    const at = e.details.bearingDeg !== undefined ? ` at ${e.details.bearingDeg}°` : '';
    const text =
      e.phase === 'start' ? `${label} detected${at}` : e.phase === 'end' ? `${label} cleared` : e.note ? `${label}: ${e.note}${at ? `,${at}` : ''}` : `${label}${at}`;
    const message = e.phase !== 'pulse' && e.note ? `${text} (${e.note})` : text;
    if (e.phase !== 'end' && (e.type === 'fire' || e.type === 'smoke')) w.log.warn({ type: e.type, phase: e.phase, ...e.details }, message);
    else w.log.info({ type: e.type, phase: e.phase }, message);
    this.#emit({
      channel: 'event',
      deviceId: w.id,
      ts: this.#stamp(w, e.ts),
      event: {
        type: e.type,
        phase: e.phase,
        severity: e.severity,
        ...e.details,
        message: message.slice(0, 500),
        source: e.source.slice(0, 200),
      },
    });
  }

  // ---- stream health ----------------------------------------------------------------------------

  #scheduleStream(w: CameraWatch, delayMs: number): void {
    if (!this.#alive(w)) return;
    clearTimeout(w.streamTimer);
    w.streamTimer = setTimeout(() => {
      w.streamTimer = undefined;
      this.#track(
        this.#checkStream(w).then(
          (next) => this.#scheduleStream(w, next),
          (err: unknown) => {
            w.log.error({ err }, 'stream check failed unexpectedly');
            this.#scheduleStream(w, this.#opts.streamCheckIntervalMs);
          },
        ),
      );
    }, delayMs);
  }

  /** One check; resolves with the delay to the next. */
  async #checkStream(w: CameraWatch): Promise<number> {
    const interval = this.#opts.streamCheckIntervalMs;
    const url = w.target.rtspUrl ?? w.streamUri;
    // Unknown URL or an unreachable camera: nothing useful to learn; look again soon.
    if (url === undefined || w.state !== 'online') return this.#opts.streamRecheckMs;
    const { username, password } = w.target.onvif;
    // With many cameras the queue is long: the camera may have gone offline while it waited.
    const result: StreamProbeResult | undefined = await this.#probes.run(async () =>
      this.#alive(w) && w.state === 'online'
        ? probeStream(withCredentials(url, username, password), {
            ffprobePath: this.#opts.ffprobePath,
            timeoutMs: this.#opts.streamProbeTimeoutMs,
            signal: this.#abort.signal,
          })
        : undefined,
    );
    if (!this.#alive(w)) return interval;
    if (!result) return this.#opts.streamRecheckMs;
    if (result.notRun) {
      if (!this.#probeNotRunLogged) {
        this.#probeNotRunLogged = true;
        this.#log?.error({ reason: result.reason, ffprobe: this.#opts.ffprobePath }, 'stream checks cannot run; streams are not reported');
      }
      return interval;
    }
    w.counters.streamChecks++;
    if (result.ok) {
      const values: CameraValues = { streamOk: true, ...(result.fps !== undefined ? { fps: result.fps } : {}) };
      this.#emit({ channel: 'telemetry', kind: 'camera', deviceId: w.id, ts: this.#stamp(w), values });
      if (w.lossOpen) {
        w.lossOpen = false;
        w.log.info('video stream back');
        this.#emitStreamEvent(w, 'end', 'info', 'video stream back (视频恢复)');
      }
      w.streamEverOk = true;
      w.streamFailures = 0;
      return interval;
    }
    w.counters.streamFailures++;
    w.streamFailures++;
    const reason = result.reason ?? 'stream check failed';
    this.#emit({ channel: 'telemetry', kind: 'camera', deviceId: w.id, ts: this.#stamp(w), values: { streamOk: false } });
    if (w.streamEverOk && !w.lossOpen && w.streamFailures >= this.#opts.streamFailuresBeforeLoss) {
      w.lossOpen = true;
      w.log.warn({ reason, failures: w.streamFailures }, 'video stream lost');
      this.#emitStreamEvent(w, 'start', 'warning', `video lost (视频丢失): ${reason}`);
    } else {
      w.log.debug({ reason, failures: w.streamFailures }, 'stream check failed');
    }
    const confirming = w.streamEverOk && !w.lossOpen;
    return confirming ? Math.min(this.#opts.streamRecheckMs, interval) : interval;
  }

  #emitStreamEvent(w: CameraWatch, phase: 'start' | 'end', severity: 'info' | 'warning', message: string): void {
    this.#emit({
      channel: 'event',
      deviceId: w.id,
      ts: this.#stamp(w),
      event: { type: 'video_loss', phase, severity, message: message.slice(0, 500), source: 'rtsp' },
    });
  }

  // ---- commands ---------------------------------------------------------------------------------

  handleCommand(deviceId: string, command: DeviceCommand): void {
    const w = this.#watches.get(deviceId);
    if (!this.#running || !w) throw new Error('the camera collector is not running for this camera');
    switch (command.name) {
      case 'ptz.goto_preset': {
        const p = parseGotoPresetParams(command.params);
        if (typeof p === 'string') return this.#ack(w, command.id, 'rejected', p);
        return this.#startMotion(w, command.id, (job) => this.#gotoPreset(w, job, p));
      }
      case 'ptz.move': {
        const p = parseMoveParams(command.params);
        if (typeof p === 'string') return this.#ack(w, command.id, 'rejected', p);
        return this.#startMotion(w, command.id, (job) => this.#move(w, job, p));
      }
      case 'ptz.stop': {
        const p = parseStopParams(command.params);
        if (typeof p === 'string') return this.#ack(w, command.id, 'rejected', p);
        return this.#startMotion(w, command.id, (job) => this.#stopPtz(w, job));
      }
      case 'snapshot.capture':
        return this.#ack(w, command.id, 'rejected', 'snapshot.capture is not carried out by the camera collector (not implemented)');
      default:
        return this.#ack(w, command.id, 'rejected', `${command.name} is not a camera command`);
    }
  }

  #startMotion(w: CameraWatch, cmdId: string, run: (job: MotionJob) => Promise<void>): void {
    const link = w.link;
    if (!link) {
      return this.#ack(w, cmdId, 'failed', w.state === 'offline' ? 'camera offline' : 'camera not connected yet');
    }
    if (!link.hasPtz) return this.#ack(w, cmdId, 'rejected', 'this camera has no PTZ service');
    const prev = w.motion;
    if (prev && !prev.cancelled) {
      prev.cancelled = true;
      prev.abort.abort();
      this.#ack(w, prev.cmdId, 'preempted', `superseded by ${cmdId}`);
    }
    const job: MotionJob = { cmdId, link, cancelled: false, abort: new AbortController() };
    w.motion = job;
    this.#track(
      run(job)
        .catch((err: unknown) => {
          w.log.error({ err, cmd: cmdId }, 'PTZ command failed unexpectedly');
          if (!job.cancelled) this.#ack(w, cmdId, 'failed', `internal: ${err instanceof Error ? err.message : String(err)}`);
        })
        .finally(() => {
          if (w.motion === job) w.motion = undefined;
        }),
    );
  }

  /** The job's link went away (camera offline): its command failed. */
  #abandonMotion(w: CameraWatch, reason: string, job: MotionJob | undefined = w.motion): void {
    if (!job || job.cancelled) return;
    job.cancelled = true;
    job.abort.abort();
    if (w.motion === job) w.motion = undefined;
    this.#ack(w, job.cmdId, 'failed', reason);
  }

  /** Whether a job should go on; acks failed if its camera went away under it. */
  #stillOn(w: CameraWatch, job: MotionJob): boolean {
    if (job.cancelled || !this.#running) return false;
    if (w.link !== job.link) {
      this.#abandonMotion(w, 'camera connection lost during the command', job);
      return false;
    }
    return true;
  }

  #commandError(w: CameraWatch, cmdId: string, what: string, err: unknown): void {
    const reason = describeError(err, this.#opts.requestTimeoutMs);
    if (isAuthFailure(err)) this.#ack(w, cmdId, 'failed', `${what}: the camera refused the agent's credentials`);
    else if (cameraAnswered(err) && isSenderFault(err)) this.#ack(w, cmdId, 'rejected', `${what}: ${reason}`);
    else if (cameraAnswered(err)) this.#ack(w, cmdId, 'failed', `${what}: ${reason}`);
    else this.#ack(w, cmdId, 'failed', `${what}: camera unreachable (${reason})`);
  }

  /** Sleeps, or less if the job is cancelled or the collector stops. */
  async #wait(job: MotionJob, ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: AbortSignal.any([job.abort.signal, this.#abort.signal]) });
    } catch {
      // cancelled: the caller checks why
    }
  }

  async #loadPresets(link: CamLink): Promise<PresetInfo[]> {
    await call<unknown>((cb) => link.cam.getPresets({}, cb), this.#opts.requestTimeoutMs);
    const raw = (link.cam.presets ?? {}) as Record<string, unknown>;
    const list: PresetInfo[] = [];
    for (const [token, p] of Object.entries(raw)) {
      const preset = (typeof p === 'object' && p !== null ? p : {}) as Record<string, any>;
      const pt = preset.PTZPosition?.panTilt?.$;
      const z = preset.PTZPosition?.zoom?.$;
      list.push({
        token,
        name: preset.name === undefined ? '' : String(preset.name),
        ...(typeof pt?.x === 'number' ? { x: pt.x } : {}),
        ...(typeof pt?.y === 'number' ? { y: pt.y } : {}),
        ...(typeof z?.x === 'number' ? { zoom: z.x } : {}),
      });
    }
    link.presets = list;
    return list;
  }

  async #gotoPreset(w: CameraWatch, job: MotionJob, p: GotoPresetParams): Promise<void> {
    const { cmdId, link } = job;
    const find = (list: PresetInfo[] | undefined) =>
      list?.find((x) => x.token === p.preset) ?? list?.find((x) => x.name === p.preset) ?? list?.find((x) => x.name.toLowerCase() === p.preset.toLowerCase());
    let preset = find(link.presets);
    if (!preset) {
      // Presets are read once per connection and again when a name is not found (someone may have added one).
      try {
        preset = find(await this.#loadPresets(link));
      } catch (err) {
        if (this.#stillOn(w, job)) this.#commandError(w, cmdId, 'could not read the presets', err);
        return;
      }
      if (!this.#stillOn(w, job)) return;
      if (!preset) {
        const known = (link.presets ?? []).slice(0, 20).map((x) => (x.name ? `${x.token} ${x.name}` : x.token));
        return this.#ack(w, cmdId, 'rejected', `no preset "${p.preset}" on this camera (presets: ${known.join(', ') || 'none'})`);
      }
    }
    const speed = p.speed;
    try {
      await call<unknown>(
        (cb) => link.cam.gotoPreset({ preset: preset.token, ...(speed !== undefined ? { speed: { x: speed, y: speed, zoom: speed } } : {}) }, cb),
        this.#opts.requestTimeoutMs,
      );
    } catch (err) {
      if (this.#stillOn(w, job)) this.#commandError(w, cmdId, 'GotoPreset', err);
      return;
    }
    if (!this.#stillOn(w, job)) return;
    const heading = w.target.device.settings.headingDeg;
    const presetBearing = preset.x !== undefined && heading !== undefined ? ptzValues({ x: preset.x }, heading)?.panDeg : undefined;
    this.#ack(w, cmdId, 'accepted', `preset ${preset.token}${preset.name ? ` (${preset.name})` : ''}${presetBearing !== undefined ? ` at ${presetBearing}°` : ''}`);
    // Watch the move: done once the head is idle at the preset (or idle three times in a row elsewhere).
    const deadline = Date.now() + this.#opts.ptzMoveTimeoutMs;
    let idleElsewhere = 0;
    for (;;) {
      await this.#wait(job, this.#opts.ptzWatchIntervalMs);
      if (!this.#stillOn(w, job)) return;
      const s = await this.#reportPosition(w, link);
      if (!this.#stillOn(w, job)) return;
      if (s && !s.moving) {
        const near = isNear(s.position, preset);
        if (near || ++idleElsewhere >= 3) {
          this.#onPtzPosition(w, s.position, true);
          const at = ptzValues(s.position ?? {}, heading)?.panDeg;
          return this.#ack(w, cmdId, 'done', near ? undefined : `the camera stopped${at !== undefined ? ` at ${at}°` : ''}, not at the preset`);
        }
      }
      if (Date.now() > deadline) {
        if (s) this.#onPtzPosition(w, s.position, true);
        return this.#ack(w, cmdId, 'failed', `the camera did not reach the preset within ${Math.round(this.#opts.ptzMoveTimeoutMs / 1000)} s`);
      }
    }
  }

  async #move(w: CameraWatch, job: MotionJob, p: MoveParams): Promise<void> {
    const { cmdId, link } = job;
    // The camera's own timeout (whole seconds, a little longer) stops it even if our Stop is lost.
    const cameraTimeoutMs = (Math.ceil(p.durationMs / 1000) + 1) * 1000;
    try {
      await call<unknown>((cb) => link.cam.continuousMove({ x: p.pan, y: p.tilt, zoom: p.zoom, timeout: cameraTimeoutMs }, cb), this.#opts.requestTimeoutMs);
    } catch (err) {
      if (this.#stillOn(w, job)) this.#commandError(w, cmdId, 'ContinuousMove', err);
      return;
    }
    if (!this.#stillOn(w, job)) return;
    this.#ack(w, cmdId, 'accepted', `moving for ${p.durationMs} ms`);
    await this.#wait(job, p.durationMs);
    // Superseded: the newer command drives the head now; a Stop here would cut it short.
    if (!this.#stillOn(w, job)) return;
    try {
      await call<unknown>((cb) => link.cam.stop({ panTilt: true, zoom: true }, cb), this.#opts.requestTimeoutMs);
    } catch (err) {
      if (!this.#stillOn(w, job)) return;
      return this.#ack(w, cmdId, 'failed', `Stop failed (${describeError(err, this.#opts.requestTimeoutMs)}); the camera stops by itself within ${cameraTimeoutMs / 1000} s`);
    }
    if (!this.#stillOn(w, job)) return;
    const s = await this.#reportPosition(w, link);
    if (s) this.#onPtzPosition(w, s.position, true);
    if (!this.#stillOn(w, job)) return;
    this.#ack(w, cmdId, 'done');
  }

  async #stopPtz(w: CameraWatch, job: MotionJob): Promise<void> {
    const { cmdId, link } = job;
    try {
      await call<unknown>((cb) => link.cam.stop({ panTilt: true, zoom: true }, cb), this.#opts.requestTimeoutMs);
    } catch (err) {
      if (this.#stillOn(w, job)) this.#commandError(w, cmdId, 'Stop', err);
      return;
    }
    if (!this.#stillOn(w, job)) return;
    this.#ack(w, cmdId, 'accepted');
    const s = await this.#reportPosition(w, link);
    if (s) this.#onPtzPosition(w, s.position, true);
    if (!this.#stillOn(w, job)) return;
    this.#ack(w, cmdId, 'done');
  }

  // ---- plumbing ---------------------------------------------------------------------------------

  #ack(w: CameraWatch, cmdId: string, status: AckStatus, reason?: string): void {
    if (status === 'failed' || status === 'rejected') w.log.warn({ cmd: cmdId, status, reason }, 'PTZ command not carried out');
    else w.log.debug({ cmd: cmdId, status, reason }, 'PTZ command progress');
    this.#emit({ channel: 'ack', deviceId: w.id, ts: this.#stamp(w), cmdId, status, ...(reason ? { reason: reason.slice(0, 500) } : {}) });
  }

  /** Timestamps strictly increase per camera, so no two readings share (device, ts). */
  #stamp(w: CameraWatch, ts?: number): number {
    const t = Math.max(Math.floor(ts ?? this.#opts.now()), w.lastTs + 1);
    w.lastTs = t;
    w.quietPolls = 0;
    return t;
  }

  #logOnce(w: CameraWatch, key: string, level: 'debug' | 'info' | 'warn', fields: Record<string, unknown>, msg: string): void {
    if (w.logged.has(key)) return;
    if (w.logged.size < 200) w.logged.add(key);
    w.log[level](fields, msg);
  }

  #alive(w: CameraWatch): boolean {
    return this.#running && !w.retired;
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.catch((err: unknown) => this.#log?.error({ err }, 'camera collector task failed'));
    this.#work.add(tracked);
    void tracked.finally(() => this.#work.delete(tracked));
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

function isMoving(moveStatus: unknown): boolean {
  if (typeof moveStatus === 'string') return moveStatus.toUpperCase() === 'MOVING';
  if (typeof moveStatus !== 'object' || moveStatus === null) return false;
  const m = moveStatus as Record<string, unknown>;
  return [m.panTilt, m.zoom].some((v) => typeof v === 'string' && v.toUpperCase() === 'MOVING');
}

/** Within ~2° pan/tilt and 2 % zoom of a preset (pan wraps at ±1); true when the preset position is unknown. */
function isNear(position: Record<string, unknown> | undefined, preset: PresetInfo): boolean {
  if (preset.x === undefined) return true;
  const x = position?.x;
  if (typeof x !== 'number') return false;
  let dx = Math.abs(x - preset.x) % 2;
  if (dx > 1) dx = 2 - dx;
  const y = position?.y;
  const z = position?.zoom;
  return (
    dx <= 0.012 &&
    (preset.y === undefined || typeof y !== 'number' || Math.abs(y - preset.y) <= 0.025) &&
    (preset.zoom === undefined || typeof z !== 'number' || Math.abs(z - preset.zoom) <= 0.02)
  );
}
