/**
 * When broadcasts run: daily windows in the site's time zone, one-off starts, expiry defaults and
 * the schedules the API refuses. The clock is faked, so "now" is exact.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../gateway/src/errors.js';
import { checkSchedule, checkTimeZone, nextDailyRun, nextRun, wallClock, zonedTimeToUtc } from '../../gateway/src/broadcast/schedule.js';

const TZ = 'Asia/Shanghai';
const EXPIRY = { routine: 30, warning: 60, emergency: 60 };
/** A local Shanghai time (UTC+8) as an instant. */
const sh = (iso: string) => Date.parse(`${iso}+08:00`);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const daily = (extra: Partial<{ start: string; end: string; from: number; until: number }> = {}) => ({
  type: 'daily' as const,
  start: '08:00',
  end: '09:00',
  until: sh('2025-04-30T00:00:00'),
  ...extra,
});

describe('time zones', () => {
  it('converts local wall-clock times both ways', () => {
    expect(zonedTimeToUtc(TZ, 2025, 4, 1, 8, 0)).toBe(Date.parse('2025-04-01T00:00:00Z'));
    expect(wallClock(TZ, Date.parse('2025-03-31T16:30:00Z'))).toEqual({ year: 2025, month: 4, day: 1, hour: 0, minute: 30, second: 0 });
    // Europe/Berlin goes from +1 to +2 h on 2025-03-30: 08:00 local is 07:00Z the day before, 06:00Z after.
    expect(zonedTimeToUtc('Europe/Berlin', 2025, 3, 29, 8, 0)).toBe(Date.parse('2025-03-29T07:00:00Z'));
    expect(zonedTimeToUtc('Europe/Berlin', 2025, 3, 31, 8, 0)).toBe(Date.parse('2025-03-31T06:00:00Z'));
  });

  it('refuses a time zone Intl does not know, naming the config key', () => {
    expect(() => checkTimeZone('Asia/Shanghai')).not.toThrow();
    expect(() => checkTimeZone('Mars/Olympus')).toThrow(/site\.timeZone: "Mars\/Olympus" is not an IANA time zone/);
  });
});

describe('daily windows', () => {
  it('created before today’s window: the first run is at its start, expiring at its end', () => {
    vi.setSystemTime(sh('2025-04-01T07:00:00'));
    expect(nextDailyRun(daily(), TZ, Date.now())).toEqual({ start: sh('2025-04-01T08:00:00'), expiresAt: sh('2025-04-01T09:00:00') });
  });

  it('created inside the window: runs now, still expiring at the window’s end', () => {
    vi.setSystemTime(sh('2025-04-01T08:30:00'));
    expect(nextDailyRun(daily(), TZ, Date.now())).toEqual({ start: Date.now(), expiresAt: sh('2025-04-01T09:00:00') });
  });

  it('created after the window: tomorrow; and after a run, the next day’s window', () => {
    vi.setSystemTime(sh('2025-04-01T09:30:00'));
    expect(nextDailyRun(daily(), TZ, Date.now())).toEqual({ start: sh('2025-04-02T08:00:00'), expiresAt: sh('2025-04-02T09:00:00') });
    // A run that ended early (every pole done at 08:02) does not run again the same day.
    vi.setSystemTime(sh('2025-04-02T08:02:00'));
    expect(nextRun(daily(), TZ, sh('2025-04-02T09:00:00'), Date.now())).toEqual({ start: sh('2025-04-03T08:00:00'), expiresAt: sh('2025-04-03T09:00:00') });
  });

  it('a window across midnight ends the next day', () => {
    vi.setSystemTime(sh('2025-04-01T23:00:00'));
    expect(nextDailyRun(daily({ start: '22:00', end: '02:00' }), TZ, Date.now())).toEqual({ start: Date.now(), expiresAt: sh('2025-04-02T02:00:00') });
    // 01:00 is inside the window that began the evening before.
    vi.setSystemTime(sh('2025-04-02T01:00:00'));
    expect(nextDailyRun(daily({ start: '22:00', end: '02:00' }), TZ, Date.now())).toEqual({ start: Date.now(), expiresAt: sh('2025-04-02T02:00:00') });
  });

  it('respects from and until', () => {
    vi.setSystemTime(sh('2025-04-01T07:00:00'));
    expect(nextDailyRun(daily({ from: sh('2025-04-05T00:00:00') }), TZ, Date.now())?.start).toBe(sh('2025-04-05T08:00:00'));
    expect(nextDailyRun(daily({ until: sh('2025-04-01T07:59:00') }), TZ, Date.now())).toBeNull();
    vi.setSystemTime(sh('2025-04-29T10:00:00'));
    expect(nextRun(daily(), TZ, sh('2025-04-29T09:00:00'), Date.now())).toBeNull(); // the 30th starts after until
  });

  it('a missed window is skipped, not played late', () => {
    // The gateway was down from 07:00 to 09:10: the next run is tomorrow's.
    vi.setSystemTime(sh('2025-04-01T09:10:00'));
    expect(nextRun(daily(), TZ, sh('2025-04-01T08:00:00'), Date.now())?.start).toBe(sh('2025-04-02T08:00:00'));
  });
});

describe('checkSchedule', () => {
  const check = (schedule: Parameters<typeof checkSchedule>[0], extra: { expiresAt?: number; priority?: 'routine' | 'warning' | 'emergency' } = {}) =>
    checkSchedule(schedule, { timeZone: TZ, now: Date.now(), priority: extra.priority ?? 'routine', expiresAt: extra.expiresAt, expiryMin: EXPIRY });
  const refusal = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).code).toBe('BROADCAST_BAD_SCHEDULE');
      return (err as ApiError).message;
    }
    throw new Error('expected BROADCAST_BAD_SCHEDULE');
  };

  it('now: the default expiry per priority', () => {
    vi.setSystemTime(sh('2025-04-01T10:00:00'));
    expect(check({ type: 'now' })).toEqual({ start: Date.now(), expiresAt: Date.now() + 30 * 60_000 });
    expect(check({ type: 'now' }, { priority: 'emergency' })).toEqual({ start: Date.now(), expiresAt: Date.now() + 60 * 60_000 });
    expect(check({ type: 'now' }, { expiresAt: Date.now() + 5000 }).expiresAt).toBe(Date.now() + 5000);
  });

  it('at: starts then, expiry counted from the start; a few seconds of clock skew is "now"', () => {
    vi.setSystemTime(sh('2025-04-01T10:00:00'));
    const at = sh('2025-04-01T18:00:00');
    expect(check({ type: 'at', at })).toEqual({ start: at, expiresAt: at + 30 * 60_000 });
    expect(check({ type: 'at', at: Date.now() - 5000 }).start).toBe(Date.now());
  });

  it('refuses what cannot work, saying why', () => {
    vi.setSystemTime(sh('2025-04-01T10:00:00'));
    expect(refusal(() => check({ type: 'at', at: Date.now() - 3600_000 }))).toMatch(/in the past/);
    expect(refusal(() => check({ type: 'at', at: Date.now() + 400 * 86_400_000 }))).toMatch(/366 days ahead/);
    expect(refusal(() => check({ type: 'now' }, { expiresAt: Date.now() - 1 }))).toMatch(/expiresAt must be after the start/);
    expect(refusal(() => check({ type: 'now' }, { expiresAt: Date.now() + 25 * 3600_000 }))).toMatch(/at most 24 hours/);
    expect(refusal(() => check(daily(), { expiresAt: Date.now() + 60_000 }))).toMatch(/expires at the end of its window/);
    expect(refusal(() => check(daily({ start: '08:00', end: '08:00' })))).toMatch(/must not be empty/);
    expect(refusal(() => check(daily({ until: Date.now() - 1 })))).toMatch(/until must be after/);
    expect(refusal(() => check(daily({ until: Date.now() + 400 * 86_400_000 })))).toMatch(/at most 366 days/);
    expect(refusal(() => check(daily({ until: sh('2025-04-01T23:00:00') })))).toMatch(/no daily window/);
  });
});
