/**
 * Alert rules: turn what devices report into signals, in the ingest path (bus listeners, never a
 * database poll). Camera fire/smoke/temperature alarms; a tank below its low or critical level
 * (thresholds per tank from the ledger) or falling too fast; a device offline past its kind's
 * threshold. A condition that ends (a tank refilled, a camera back) produces a `clear` signal.
 *
 * A camera repeating the same alarm is damped here: the first alarm passes, repeats within
 * `repeatWindowSec` are counted and passed on once per window, so a flood of 1,000 alarms a
 * minute costs the incident store one write a minute.
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { AlertsConfig } from '../../../config/schema.js';
import type { Severity, SignalKind } from '../../../protocol/incidents.js';
import type { DeviceEvent, EventType } from '../../../protocol/payloads.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';

export interface Signal {
  kind: SignalKind;
  device: LedgerDevice;
  /** Device time of the observation. */
  ts: number;
  /** Gateway time it arrived. */
  receivedAt: number;
  severity: Severity;
  bearingDeg: number | null;
  confidence: number | null;
  /** Tank level %, drain rate %/h or temperature °C, by kind. */
  value: number | null;
  /** Alarms of this device and kind damped since the last signal passed on. */
  repeats: number;
  /** The condition ended: close what it opened (tanks refilled, device back online). */
  clear: boolean;
}

export interface RulesContext {
  config: AlertsConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  onSignal: (signal: Signal) => void;
  /**
   * Whether this instance raises device_offline (default: always). In a cluster only the leader
   * does; every instance keeps the clocks, so a new leader knows how long a device has been dark.
   */
  offlineChecks?: () => boolean;
  /** Today's fire danger level 1..5, if known: at 4 and 5 cameras alarm at a lower confidence. */
  fireDangerLevel?: () => number | null;
  now?: () => number;
}

const CAMERA_SIGNALS: Partial<Record<EventType, { kind: SignalKind; severity: Severity }>> = {
  fire: { kind: 'camera_fire', severity: 'critical' },
  smoke: { kind: 'camera_smoke', severity: 'critical' },
  temperature_alarm: { kind: 'camera_temperature', severity: 'warning' },
};

export type TankBand = 'ok' | 'low' | 'critical';

interface TankState {
  band: TankBand | null;
  falling: boolean;
  /** Samples covering the drain window. */
  history: LevelHistory;
}

/**
 * A tank's (device ts, level %) samples over the drain window, at least `spacingMs` apart, in two
 * fixed rings of numbers. Not an array of [ts, level] pairs: with 20,000 tanks that was a new
 * pair per tank every 15 s, each living for the whole window, so the old generation grew for
 * ten minutes and every full GC had more to mark (docs/BENCHMARKS.md, alert latency).
 */
export class LevelHistory {
  /** At most window / spacing + 1 samples in the window, plus the one before it: 16 + 2. */
  static readonly SLOTS = 18;
  readonly #ts = new Float64Array(LevelHistory.SLOTS);
  readonly #level = new Float64Array(LevelHistory.SLOTS);
  #start = 0;
  #count = 0;

  constructor(
    readonly windowMs: number,
    /** 15 s, or a sixteenth of the window when that is longer. */
    readonly spacingMs = Math.max(15_000, windowMs / 16),
  ) {}

  get size(): number {
    return this.#count;
  }

  #at(i: number): number {
    return (this.#start + i) % LevelHistory.SLOTS;
  }

  /**
   * Adds a reading (kept if `spacingMs` after the last kept one) and drops what the window no
   * longer needs (all but one sample older than the window).
   */
  add(ts: number, level: number): void {
    const SLOTS = LevelHistory.SLOTS;
    if (this.#count === 0 || ts - this.#ts[this.#at(this.#count - 1)]! >= this.spacingMs) {
      if (this.#count === SLOTS) {
        // Cannot happen with samples spaced as above; if it did, the oldest goes.
        this.#start = (this.#start + 1) % SLOTS;
        this.#count--;
      }
      const i = this.#at(this.#count);
      this.#ts[i] = ts;
      this.#level[i] = level;
      this.#count++;
    }
    while (this.#count > 2 && ts - this.#ts[this.#at(1)]! >= this.windowMs) {
      this.#start = (this.#start + 1) % SLOTS;
      this.#count--;
    }
  }

  /** The oldest kept sample's time (NaN while empty). */
  get firstTs(): number {
    return this.#count === 0 ? NaN : this.#ts[this.#start]!;
  }

  /** The oldest kept sample's level (NaN while empty). */
  get firstLevel(): number {
    return this.#count === 0 ? NaN : this.#level[this.#start]!;
  }
}

const SWEEP_MS = 5000;

/**
 * A tank's band after a reading: entered at the threshold, left only `hyst` % above it, so a
 * level hovering at a threshold does not flap.
 */
export function nextBand(prev: TankBand | null, level: number, low: number, critical: number, hyst: number): TankBand {
  if (level <= critical) return 'critical';
  if (prev === 'critical' && level <= critical + hyst) return 'critical';
  if (level <= low) return 'low';
  if ((prev === 'low' || prev === 'critical') && level <= low + hyst) return 'low';
  return 'ok';
}

export class AlertRules {
  readonly #ctx: RulesContext;
  readonly #now: () => number;
  readonly #off: Array<() => void> = [];
  /** Last passed-on alarm per device+kind, and repeats since. */
  readonly #lastAlarm = new Map<string, { at: number; repeats: number }>();
  readonly #tanks = new Map<string, TankState>();
  /** Devices offline since (gateway ms), and whether their signal went out. */
  readonly #offline = new Map<string, { since: number; raised: boolean }>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(ctx: RulesContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
  }

  start(): void {
    const { bus } = this.#ctx;
    this.#off.push(
      bus.on('event', ({ device, message, receivedAt }) => this.#onEvent(device, message, receivedAt)),
      bus.on('telemetry', ({ device, message, receivedAt }) => {
        if (device.kind === 'water_tank') {
          const level = (message.values as { levelPercent?: number }).levelPercent;
          if (typeof level === 'number') this.#onTankLevel(device, message.ts, level, receivedAt);
        }
      }),
      bus.on('deviceUpdate', (update) => {
        if (update.status) this.#onStatus(update.id, update.status);
      }),
    );
    // Devices already offline when the rules start (a gateway restart) start their clock now.
    for (const view of this.#ctx.registry.views()) if (view.status === 'offline') this.#onStatus(view.id, 'offline');
    this.#sweep = setInterval(() => this.sweep(), SWEEP_MS);
    this.#sweep.unref();
  }

  stop(): void {
    clearInterval(this.#sweep);
    for (const off of this.#off.splice(0)) off();
  }

  /** Contained, as a bus listener is: the sweep runs on a timer, where a throw would end the process. */
  #emit(signal: Signal): void {
    try {
      this.#ctx.onSignal(signal);
    } catch (err) {
      this.#ctx.log.error({ err, kind: signal.kind, device: signal.device.id }, 'signal not handled');
    }
  }

  // ---- cameras ----------------------------------------------------------------------------------

  #onEvent(device: LedgerDevice, event: DeviceEvent, receivedAt: number): void {
    if (device.kind !== 'camera') return;
    const rule = CAMERA_SIGNALS[event.type];
    if (!rule || event.phase === 'end') return;
    const { config, metrics } = this.#ctx;
    const danger = this.#ctx.fireDangerLevel?.() ?? null;
    const minConfidence = danger !== null && danger >= 4 ? config.camera.minConfidenceHighDanger : config.camera.minConfidence;
    if (event.confidence !== undefined && event.confidence < minConfidence) {
      metrics.alertSignals.inc({ kind: rule.kind, outcome: 'ignored_low_confidence' });
      return;
    }
    const key = `${device.id}\u0000${rule.kind}`;
    const last = this.#lastAlarm.get(key);
    if (last && receivedAt - last.at < config.camera.repeatWindowSec * 1000) {
      last.repeats++;
      metrics.alertSignals.inc({ kind: rule.kind, outcome: 'repeat' });
      return;
    }
    const repeats = last?.repeats ?? 0;
    this.#lastAlarm.set(key, { at: receivedAt, repeats: 0 });
    if (this.#lastAlarm.size > 100_000) this.#pruneAlarms(receivedAt);
    this.#emit({
      kind: rule.kind,
      device,
      ts: event.ts,
      receivedAt,
      severity: rule.severity,
      bearingDeg: event.bearingDeg ?? null,
      confidence: event.confidence ?? null,
      value: event.temperatureC ?? null,
      repeats,
      clear: false,
    });
  }

  #pruneAlarms(now: number): void {
    const horizon = now - this.#ctx.config.camera.repeatWindowSec * 1000;
    for (const [key, v] of this.#lastAlarm) if (v.at < horizon) this.#lastAlarm.delete(key);
  }

  // ---- water tanks ------------------------------------------------------------------------------

  #onTankLevel(device: Extract<LedgerDevice, { kind: 'water_tank' }>, ts: number, level: number, receivedAt: number): void {
    const { config } = this.#ctx;
    const { lowPercent, criticalPercent } = device.settings;
    let state = this.#tanks.get(device.id);
    const windowMs = config.tank.fallWindowMin * 60_000;
    if (!state || state.history.windowMs !== windowMs) this.#tanks.set(device.id, (state = { band: state?.band ?? null, falling: state?.falling ?? false, history: new LevelHistory(windowMs) }));

    const wasAlarmed = state.band === null ? null : state.band !== 'ok' || state.falling;
    const prev = state.band;
    const band = nextBand(prev, level, lowPercent, criticalPercent, config.tank.hysteresisPercent);
    state.band = band;
    if (band === 'critical' && prev !== 'critical') this.#tankSignal(device, ts, receivedAt, 'tank_critical', 'critical', level);
    else if (band === 'low' && (prev === 'ok' || prev === null)) this.#tankSignal(device, ts, receivedAt, 'tank_low', 'warning', level);

    // Drain rate over the window: a leak, or water taken for something else.
    state.history.add(ts, level);
    const spanMs = ts - state.history.firstTs;
    if (spanMs >= windowMs) {
      const ratePerHour = ((state.history.firstLevel - level) / spanMs) * 3_600_000;
      if (!state.falling && ratePerHour >= config.tank.fallRatePercentPerHour) {
        state.falling = true;
        this.#tankSignal(device, ts, receivedAt, 'tank_falling', 'warning', Math.round(ratePerHour * 10) / 10);
      } else if (state.falling && ratePerHour < config.tank.fallRatePercentPerHour / 2) {
        state.falling = false;
      }
    }

    // Every condition gone (or the first reading after a restart is fine): the tank's open
    // incident, if any, closes itself.
    if (wasAlarmed !== false && band === 'ok' && !state.falling) this.#tankSignal(device, ts, receivedAt, 'tank_low', 'info', level, true);
  }

  /** (A method, not a closure per reading: #onTankLevel runs for every tank reading.) */
  #tankSignal(device: LedgerDevice, ts: number, receivedAt: number, kind: SignalKind, severity: Severity, value: number, clear = false): void {
    this.#emit({ kind, device, ts, receivedAt, severity, bearingDeg: null, confidence: null, value, repeats: 0, clear });
  }

  // ---- availability -------------------------------------------------------------------------------

  /**
   * A device's availability as another instance saw it (cluster fan-out: those changes do not
   * reach this instance's bus), so the offline clocks run on every instance.
   */
  observeStatus(deviceId: string, status: 'online' | 'offline' | 'unknown'): void {
    this.#onStatus(deviceId, status);
  }

  /** Devices whose device_offline a previous leader raised already (they are in an open incident): not again. */
  markOfflineRaised(deviceIds: Iterable<string>): void {
    for (const id of deviceIds) {
      const entry = this.#offline.get(id);
      if (entry) entry.raised = true;
      else if (this.#ctx.registry.view(id)?.status === 'offline') this.#offline.set(id, { since: this.#now(), raised: true });
    }
  }

  #onStatus(deviceId: string, status: 'online' | 'offline' | 'unknown'): void {
    if (status === 'offline') {
      if (!this.#offline.has(deviceId)) this.#offline.set(deviceId, { since: this.#now(), raised: false });
      return;
    }
    // Back online clears; unknown (its agent is down) is not evidence the device is dead, so the
    // clock stops without a signal either way.
    const entry = this.#offline.get(deviceId);
    this.#offline.delete(deviceId);
    if (status === 'online' && entry?.raised) {
      const device = this.#ctx.registry.get(deviceId);
      if (device) {
        const now = this.#now();
        this.#emit({ kind: 'device_offline', device, ts: now, receivedAt: now, severity: 'info', bearingDeg: null, confidence: null, value: null, repeats: 0, clear: true });
      }
    }
  }

  /** Raises device_offline for devices offline past their kind's threshold. Runs every 5 s. */
  sweep(): void {
    if (this.#ctx.offlineChecks && !this.#ctx.offlineChecks()) return;
    const now = this.#now();
    const limits = this.#ctx.config.offline;
    for (const [deviceId, entry] of this.#offline) {
      if (entry.raised) continue;
      const device = this.#ctx.registry.get(deviceId);
      if (!device) continue;
      const offlineMs = now - entry.since;
      if (offlineMs < limits[device.kind] * 1000) continue;
      entry.raised = true;
      this.#emit({
        kind: 'device_offline',
        device,
        ts: now,
        receivedAt: now,
        severity: device.kind === 'camera' ? 'warning' : 'info',
        bearingDeg: null,
        confidence: null,
        value: Math.round(offlineMs / 1000),
        repeats: 0,
        clear: false,
      });
    }
  }
}
