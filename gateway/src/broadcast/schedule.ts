/**
 * When a broadcast runs. A job runs once (now, or at a time) or daily inside a window of local
 * time at the site ("08:00–09:00", Asia/Shanghai by default); each run has an expiry after which
 * no pole may start it. Pure functions of an explicit `now`, so they are tested without waiting.
 *
 * Daily windows are wall-clock times in the site's IANA time zone, computed with Intl (no DST in
 * China, but a site elsewhere gets its DST right). A window whose end is not after its start
 * ends the next day (22:00–02:00). A window missed while the gateway was down is skipped, not
 * played late.
 */
import type { BroadcastPriority, BroadcastSchedule } from '../../../protocol/broadcasts.js';
import { ApiError } from '../errors.js';

export interface RunWindow {
  /** When the run starts (for a daily window entered late: now). */
  start: number;
  /** No pole starts the run after this. */
  expiresAt: number;
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** How far ahead a job may be scheduled, and how long a daily job may run. */
export const MAX_AHEAD_MS = 366 * DAY;
/** The longest a single run may stay deliverable. */
export const MAX_RUN_MS = DAY;
/** A start this little in the past is clock skew between console and gateway, not an error. */
const PAST_SLACK_MS = 60_000;

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws a readable error for a time zone Intl does not know. */
export function checkTimeZone(timeZone: string): void {
  try {
    formatter(timeZone);
  } catch {
    throw new Error(`site.timeZone: "${timeZone}" is not an IANA time zone (e.g. Asia/Shanghai)`);
  }
}

export interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The local date and time of an instant in a time zone. */
export function wallClock(timeZone: string, ms: number): WallClock {
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return { year: parts.year!, month: parts.month!, day: parts.day!, hour: parts.hour! % 24, minute: parts.minute!, second: parts.second! };
}

/** Local time minus UTC at an instant, ms (+8 h for Asia/Shanghai). */
function offsetMs(timeZone: string, ms: number): number {
  const w = wallClock(timeZone, ms);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The instant a local wall-clock time happens (a time skipped by a DST change maps just past the gap). */
export function zonedTimeToUtc(timeZone: string, year: number, month: number, day: number, hour: number, minute: number): number {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute);
  const first = asUtc - offsetMs(timeZone, asUtc);
  return asUtc - offsetMs(timeZone, first);
}

function parseHhMm(s: string): { hour: number; minute: number } {
  const m = /^([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(s);
  if (!m) throw new ApiError('BROADCAST_BAD_SCHEDULE', `"${s}" is not a time of day HH:MM`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

type Daily = Extract<BroadcastSchedule, { type: 'daily' }>;

/** The window of a daily schedule on a local date. */
function windowOn(s: Daily, timeZone: string, year: number, month: number, day: number): { start: number; end: number } {
  const a = parseHhMm(s.start);
  const b = parseHhMm(s.end);
  const start = zonedTimeToUtc(timeZone, year, month, day, a.hour, a.minute);
  const endsNextDay = b.hour * 60 + b.minute <= a.hour * 60 + a.minute;
  const next = new Date(Date.UTC(year, month - 1, day + (endsNextDay ? 1 : 0)));
  const end = zonedTimeToUtc(timeZone, next.getUTCFullYear(), next.getUTCMonth() + 1, next.getUTCDate(), b.hour, b.minute);
  return { start, end };
}

/**
 * The first run of a daily schedule that can still happen at or after `now`: the window that
 * holds `now` (started late, at `now`), else the next one. null when no window starts before
 * `until`.
 */
export function nextDailyRun(s: Daily, timeZone: string, now: number): RunWindow | null {
  const earliest = Math.max(now, s.from ?? now);
  // Start a day early: yesterday's window may cross midnight into today.
  const w = wallClock(timeZone, earliest - DAY);
  for (let i = 0; i < 4; i++) {
    const d = new Date(Date.UTC(w.year, w.month - 1, w.day + i));
    const win = windowOn(s, timeZone, d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate());
    if (win.end <= earliest) continue;
    const start = Math.max(win.start, earliest);
    if (start > s.until) return null;
    return { start, expiresAt: win.end };
  }
  return null;
}

/** The first run of a schedule that starts at `now` or later, with its expiry. */
export function firstRun(
  schedule: BroadcastSchedule,
  opts: { timeZone: string; now: number; priority: BroadcastPriority; expiresAt?: number | undefined; expiryMin: Record<BroadcastPriority, number> },
): RunWindow | null {
  const { now } = opts;
  if (schedule.type === 'daily') return nextDailyRun(schedule, opts.timeZone, now);
  const start = schedule.type === 'at' ? Math.max(now, schedule.at) : now;
  return { start, expiresAt: opts.expiresAt ?? start + opts.expiryMin[opts.priority] * MINUTE };
}

/**
 * Checks a schedule and expiry as requested at `now`; throws BROADCAST_BAD_SCHEDULE with the
 * reason. Returns the first run.
 */
export function checkSchedule(
  schedule: BroadcastSchedule,
  opts: { timeZone: string; now: number; priority: BroadcastPriority; expiresAt?: number | undefined; expiryMin: Record<BroadcastPriority, number> },
): RunWindow {
  const { now, expiresAt } = opts;
  const bad = (message: string): never => {
    throw new ApiError('BROADCAST_BAD_SCHEDULE', message);
  };
  if (schedule.type === 'at') {
    if (schedule.at < now - PAST_SLACK_MS) bad(`the start ${new Date(schedule.at).toISOString()} is in the past`);
    if (schedule.at > now + MAX_AHEAD_MS) bad('a broadcast can be scheduled at most 366 days ahead');
  }
  if (schedule.type === 'daily') {
    if (expiresAt !== undefined) bad('a daily broadcast expires at the end of its window each day; do not give expiresAt');
    if (schedule.start === schedule.end) bad('the daily window must not be empty (start equals end)');
    const from = schedule.from ?? now;
    if (schedule.until <= Math.max(from, now)) bad('until must be after from and after now');
    if (schedule.until - from > MAX_AHEAD_MS) bad('a daily broadcast can run for at most 366 days (until − from)');
    if (from > now + MAX_AHEAD_MS) bad('a broadcast can be scheduled at most 366 days ahead');
  }
  const run = firstRun(schedule, opts);
  if (!run) return bad('no daily window starts between from and until');
  if (expiresAt !== undefined) {
    if (expiresAt <= run.start) bad(`expiresAt must be after the start (${new Date(run.start).toISOString()})`);
    if (expiresAt - run.start > MAX_RUN_MS) bad('expiresAt may be at most 24 hours after the start');
  }
  return run;
}

/** The run after one that expired at `afterExpiry`; only a daily schedule has one. */
export function nextRun(schedule: BroadcastSchedule, timeZone: string, afterExpiry: number, now: number): RunWindow | null {
  if (schedule.type !== 'daily') return null;
  return nextDailyRun(schedule, timeZone, Math.max(afterExpiry, now));
}
