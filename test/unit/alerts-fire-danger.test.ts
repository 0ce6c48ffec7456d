/**
 * Fire danger: the indices against hand-worked values, and a dry spell rated day by day from
 * station readings (site time Asia/Shanghai), reset by rain, overridden by a duty officer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { angstromIndex, dewPointC, FireDangerService, nesterovLevel, nesterovStep } from '../../gateway/src/alerts/fire-danger.js';
import { Bus } from '../../gateway/src/bus.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { SqliteStore } from '../../gateway/src/store/sqlite.js';
import { failingStore } from '../helpers/failing-store.js';

const log = createLogger('silent');

describe('indices', () => {
  it('dew point by Magnus: 20 °C at 50 % is 9.3 °C; saturated air is its own dew point', () => {
    expect(dewPointC(20, 50)).toBeCloseTo(9.26, 1);
    expect(dewPointC(15, 100)).toBeCloseTo(15, 5);
  });

  it('Angström: RH/20 + (27 − T)/10', () => {
    expect(angstromIndex(20, 40)).toBeCloseTo(2.7, 5);
    expect(angstromIndex(27, 30)).toBeCloseTo(1.5, 5);
  });

  it('Nesterov accumulates T·(T − Td) over dry days, resets on rain above 3 mm, and maps to five levels', () => {
    const td = dewPointC(20, 40); // 6.0 °C
    const day1 = nesterovStep(null, 20, td, 0);
    expect(day1).toBeCloseTo(20 * (20 - td), 5);
    expect(nesterovStep(day1, 20, td, 2.9)).toBeCloseTo(2 * day1, 5);
    expect(nesterovStep(day1, 20, td, 3.1)).toBe(0);
    expect(nesterovStep(100, -2, -5, 0)).toBe(100);
    expect([0, 299, 300, 999, 1000, 3999, 4000, 9999, 10_000].map(nesterovLevel)).toEqual([1, 1, 2, 2, 3, 3, 4, 4, 5]);
  });
});

describe('the daily rating', () => {
  let dir: string;
  let store: SqliteStore;
  let now: number;
  let service: FireDangerService;
  const changes: Array<number | null> = [];
  /** 13:00 in Chongqing (UTC+8) on day n of December 2026. */
  const at = (day: number, hour: number, minute = 0) => Date.UTC(2026, 11, day, hour - 8, minute);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gs-danger-'));
    store = new SqliteStore(join(dir, 's.sqlite'));
    service = new FireDangerService({ bus: new Bus(log), store: store.incidents.fireDanger, log, timeZone: 'Asia/Shanghai', now: () => now, onChange: (s) => changes.push(s.level) });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function middayReadings(day: number, t: number, rh: number, rain = 0) {
    // Three stations; one reads a little off, the median ignores it.
    for (const [i, dt] of [0, 0.4, 6].entries()) service.record(`tank-00${i + 1}`, at(day, 12, 55 + i), t + dt, rh - dt, rain);
    service.record('tank-001', at(day, 9), t - 8, rh + 30, rain); // the morning is not midday
  }

  it('rates a dry spell day by day; rain resets it; the day is not rated before 13:30', () => {
    let expected = 0;
    for (let day = 1; day <= 12; day++) {
      const rain = day === 8 ? 12 : 0;
      middayReadings(day, 18, 38, rain);
      now = at(day, 13, 20);
      service.tick();
      if (day > 1) expect(service.status().source).toBe('previous_day');
      now = at(day, 13, 31);
      service.tick();
      const td = dewPointC(18.4, 37.6);
      expected = rain > 3 ? 0 : expected + 18.4 * (18.4 - td);
      const s = service.status();
      expect(s.source).toBe('computed');
      expect(s.today!.nesterov).toBe(Math.round(expected));
      expect(s.level).toBe(nesterovLevel(expected));
      expect(s.today!.stations).toBe(3);
      expect(s.today!.temperatureC).toBeCloseTo(18.4, 5);
    }
    // Eleven dry days at 18 °C and 38 %: level 3 on day 4-ish, and back to 1 after the rain.
    const history = store.incidents.fireDanger.days(30).reverse();
    expect(history.map((d) => d.computedLevel)).toEqual(history.map((d) => nesterovLevel(d.nesterov!)));
    expect(history[7]!.nesterov).toBe(0);
    expect(Math.max(...history.map((d) => d.computedLevel!))).toBeGreaterThanOrEqual(3);
  });

  it('a duty officer can set the level by hand; clearing it returns to the computed one', () => {
    middayReadings(3, 16, 60);
    now = at(3, 14);
    service.tick();
    const computed = service.status().level;
    expect(service.setManual(5, 'li', '区气象局发布五级火险').level).toBe(5);
    expect(service.status()).toMatchObject({ source: 'manual', name: { zh: '五级 极高火险' }, color: '#e03131' });
    expect(service.level()).toBe(5);
    expect(service.setManual(null, 'li', null).level).toBe(computed);
    expect(changes.at(-1)).toBe(computed);
  });

  it('with no weather stations there is no rating, not a made-up one', () => {
    now = at(5, 15);
    service.tick();
    expect(service.status()).toMatchObject({ level: null, source: 'none', current: null });
  });

  // The minute timer with the store failing as PostgreSQL's does while it is down (a stand-in
  // store that throws StoreUnavailableError; the real outage is in
  // test/integration/incidents-postgres-outage.test.ts and gateway-postgres.test.ts).
  it('the minute tick survives a store outage after 13:30 and rates the day once the store answers; level() keeps the last level', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const flaky = failingStore(store);
    const metrics = createMetrics();
    const ratings: Array<number | null> = [];
    const onTimer = new FireDangerService({ bus: new Bus(log), store: flaky.store.incidents.fireDanger, log, timeZone: 'Asia/Shanghai', now: () => now, metrics, onChange: (st) => ratings.push(st.level) });
    try {
      // Yesterday rated; today's midday weather is in, the store goes down before 13:30.
      now = at(9, 13, 31);
      for (const [i, dt] of [0, 0.4, 6].entries()) onTimer.record(`tank-00${i + 1}`, at(9, 12, 55 + i), 30 + dt, 20 - dt, 0);
      onTimer.tick();
      const yesterday = onTimer.level();
      expect(yesterday).not.toBeNull();
      for (const [i, dt] of [0, 0.4, 6].entries()) onTimer.record(`tank-00${i + 1}`, at(10, 12, 55 + i), 31 + dt, 18 - dt, 0);
      now = at(10, 13, 0);
      onTimer.start();
      flaky.down = true;
      for (let minute = 1; minute <= 5; minute++) {
        now = at(10, 13, 30 + minute);
        expect(() => vi.advanceTimersByTime(60_000)).not.toThrow();
      }
      expect(flaky.refused).toBeGreaterThanOrEqual(5);
      const errors = (await metrics.registry.getSingleMetricAsString('gs_store_errors_total')).split('\n').find((l) => l.includes('operation="fire_danger_rating"'));
      expect(errors).toMatch(/ 5$/);
      // A camera alarm asks for the level: the last one read, not an error.
      expect(onTimer.level()).toBe(yesterday);
      expect(store.incidents.fireDanger.getDay('2026-12-10')).toBeUndefined();

      flaky.down = false;
      now = at(10, 13, 36);
      vi.advanceTimersByTime(60_000);
      expect(store.incidents.fireDanger.getDay('2026-12-10')).toMatchObject({ computedLevel: expect.any(Number), stations: 3 });
      expect(ratings).toHaveLength(2); // day 9 and day 10, once each
      now = at(10, 13, 40);
      vi.advanceTimersByTime(4 * 60_000);
      expect(ratings).toHaveLength(2);
    } finally {
      onTimer.stop();
      vi.useRealTimers();
    }
  });
});
