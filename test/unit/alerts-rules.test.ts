/**
 * The alert rules on their own: bus facts in, signals out. Tank bands with hysteresis, the drain
 * rate, the offline clock (fake timers), camera confidence and repeat damping.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { AlertRules, LevelHistory, nextBand, type Signal } from '../../gateway/src/alerts/rules.js';
import { Bus } from '../../gateway/src/bus.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import { CONFIG_DIR } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const { config } = resolveConfig({}, { source: 'test', baseDir: CONFIG_DIR });
const gw = config.gateway!;
const log = createLogger('silent');
const tank = ledger.find((d): d is Extract<LedgerDevice, { kind: 'water_tank' }> => d.kind === 'water_tank')!;
const camera = ledger.find((d) => d.kind === 'camera')!;
const T0 = Date.parse('2026-11-26T02:00:00Z');

let bus: Bus;
let signals: Signal[];
let rules: AlertRules;
let danger: number | null;
let seq = 0;

beforeEach(() => {
  vi.useFakeTimers({ now: T0, toFake: ['Date', 'setInterval', 'clearInterval'] });
  bus = new Bus(log);
  signals = [];
  danger = null;
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: gw, log, bus, metrics, ledger });
  rules = new AlertRules({ config: gw.alerts, log, bus, metrics, registry, onSignal: (s) => signals.push(s), fireDangerLevel: () => danger });
  rules.start();
});
afterEach(() => {
  rules.stop();
  vi.useRealTimers();
});

const level = (levelPercent: number, ts: number) =>
  bus.emit('telemetry', { device: tank, message: { ts, seq: ++seq, values: { levelPercent, levelMm: 0, volumeM3: 0 } }, receivedAt: ts });
const kinds = () => signals.map((s) => `${s.kind}${s.clear ? ':clear' : ''}`);

describe('tank levels', () => {
  it('bands are entered at the threshold and left only above it plus the hysteresis', () => {
    expect(nextBand('ok', 30, 30, 15, 5)).toBe('low');
    expect(nextBand('low', 34, 30, 15, 5)).toBe('low');
    expect(nextBand('low', 35.1, 30, 15, 5)).toBe('ok');
    expect(nextBand('critical', 19, 30, 15, 5)).toBe('critical');
    expect(nextBand('critical', 21, 30, 15, 5)).toBe('low');
    expect(nextBand(null, 50, 30, 15, 5)).toBe('ok');
  });

  it('low, then critical, hovering at the threshold signals once each; refilled clears once', () => {
    const { lowPercent: low, criticalPercent: crit } = tank.settings;
    const series = [80, low - 1, low + 1, low - 0.5, crit - 1, crit + 1, crit - 1, crit + 2, 90, 91];
    series.forEach((v, i) => level(v, T0 + i * 1000));
    expect(kinds()).toEqual(['tank_low:clear', 'tank_low', 'tank_critical', 'tank_low:clear']);
  });

  it('a level falling faster than the limit over the window raises "draining" once', () => {
    // 60 % → 40 % in 20 minutes: 60 %/h, well above the 15 %/h default; still above low.
    for (let m = 0; m <= 20; m++) level(60 - m, T0 + m * 60_000);
    expect(kinds().filter((k) => k === 'tank_falling')).toHaveLength(1);
    const falling = signals.find((s) => s.kind === 'tank_falling')!;
    expect(falling.value).toBeGreaterThan(50);
    // Steady again: no more signals, and the all-clear once the rate has settled.
    for (let m = 21; m <= 45; m++) level(40, T0 + m * 60_000);
    expect(kinds().at(-1)).toBe('tank_low:clear');
  });
});

describe('the drain-rate history', () => {
  it('stays within its fixed slots over hours of readings, and always reaches back one window', () => {
    const windowMs = 10 * 60_000;
    const h = new LevelHistory(windowMs);
    expect(h.spacingMs).toBe(37_500);
    let maxSize = 0;
    // A reading every 2 s for 3 hours (as the benchmarks' tanks send them).
    for (let t = 0; t <= 3 * 3600_000; t += 2000) {
      h.add(T0 + t, 50);
      maxSize = Math.max(maxSize, h.size);
      if (t >= windowMs + h.spacingMs) {
        const back = T0 + t - h.firstTs;
        expect(back).toBeGreaterThanOrEqual(windowMs);
        expect(back).toBeLessThan(windowMs + h.spacingMs + 2000);
      }
    }
    expect(maxSize).toBeLessThanOrEqual(LevelHistory.SLOTS);
  });

  it('keeps 15-s samples for short windows, and the oldest level for the rate', () => {
    const h = new LevelHistory(2 * 60_000);
    expect(h.spacingMs).toBe(15_000);
    expect(Number.isNaN(h.firstTs)).toBe(true);
    for (let s = 0; s <= 200; s++) h.add(T0 + s * 1000, 100 - s / 10);
    // 200 s of readings, 120 s window: the oldest kept sample is 120–135 s back.
    expect(T0 + 200_000 - h.firstTs).toBeGreaterThanOrEqual(120_000);
    expect(T0 + 200_000 - h.firstTs).toBeLessThan(135_000);
    expect(h.firstLevel).toBeCloseTo(100 - (h.firstTs - T0) / 10_000, 6);
    expect(h.size).toBeLessThanOrEqual(LevelHistory.SLOTS);
  });
});

describe('availability', () => {
  it('a camera offline past 30 minutes raises one signal; back online clears it; unknown never raises', async () => {
    bus.emit('deviceUpdate', { id: camera.id, status: 'offline' });
    await vi.advanceTimersByTimeAsync(29 * 60_000);
    expect(signals).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(kinds()).toEqual(['device_offline']);
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    expect(signals).toHaveLength(1);
    bus.emit('deviceUpdate', { id: camera.id, status: 'online' });
    expect(kinds()).toEqual(['device_offline', 'device_offline:clear']);
    // Its agent goes away: unknown is not offline.
    bus.emit('deviceUpdate', { id: camera.id, status: 'unknown' });
    await vi.advanceTimersByTimeAsync(120 * 60_000);
    expect(signals).toHaveLength(2);
  });
});

describe('camera alarms', () => {
  const event = (type: 'fire' | 'smoke' | 'motion', confidence: number, phase: 'start' | 'end' = 'start') =>
    bus.emit('event', { device: camera, message: { ts: Date.now(), seq: ++seq, type, phase, confidence, bearingDeg: 10 }, receivedAt: Date.now() });

  it('ignores low confidence, lower at high fire danger; ignores motion and ends', () => {
    event('smoke', 0.4);
    event('motion', 0.99);
    event('smoke', 0.99, 'end');
    expect(signals).toHaveLength(0);
    danger = 4;
    event('smoke', 0.4);
    expect(kinds()).toEqual(['camera_smoke']);
  });

  it('damps repeats within the window and reports how many it held back', async () => {
    for (let i = 0; i < 50; i++) {
      event('fire', 0.9);
      await vi.advanceTimersByTimeAsync(1000);
    }
    // 50 s of alarms: the first passed, 49 held back.
    expect(signals).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(15_000);
    event('fire', 0.9);
    expect(signals).toHaveLength(2);
    expect(signals[1]!.repeats).toBe(49);
  });
});
