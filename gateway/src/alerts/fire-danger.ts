/**
 * Today's fire danger level, from the weather sensors at tank stations (air temperature, relative
 * humidity, the rain gauge's daily counter).
 *
 * Once a day, after 13:30 site time, the site's 13:00 weather (median over the stations that
 * reported between 12:00 and 14:00) gives two classic indices:
 *
 * - **Nesterov** (Нестеров 1949): G = Σ T·(T − Td) over the days since the last rain above 3 mm,
 *   T the midday air temperature and Td the dew point (°C; days at or below 0 °C add nothing).
 *   < 300 none, 300–1000 low, 1000–4000 moderate, 4000–10000 high, > 10000 extreme. It rises with
 *   each dry day, which is how a Chongqing dry spell in winter builds up; it is the level.
 * - **Angström**: I = RH/20 + (27 − T)/10. < 2.0 fire very likely, 2.0–2.5 favourable, 2.5–4.0
 *   unfavourable, > 4.0 unlikely. It reads one day alone, and is shown beside the level.
 *
 * The five levels and colours follow QX/T 77-2007 (一级 低 green … 五级 极高 red). A duty officer
 * may set the day's level by hand (the weather bureau's forecast), which wins and is audited.
 * Dew point by the Magnus formula (Alduchov & Eskridge 1996 constants).
 *
 * While the store is unavailable the minute tick fails and is tried again the next minute (the
 * day is rated once the store answers), and `level()` keeps the last level it read.
 */
import type { Logger } from 'pino';
import type { Bus } from '../bus.js';
import type { FireDangerDay, FireDangerStatus } from '../../../protocol/incidents.js';
import type { Metrics } from '../metrics.js';
import { StoreErrorReporter } from '../store/errors.js';
import type { FireDangerStore } from '../store/incidents.js';

export type { FireDangerStatus };

export const FIRE_DANGER_LEVELS = [
  { level: 1, zh: '一级 低火险', en: 'Level 1 · low', color: '#2fa84f' },
  { level: 2, zh: '二级 较低火险', en: 'Level 2 · moderately low', color: '#2f7fd8' },
  { level: 3, zh: '三级 较高火险', en: 'Level 3 · moderately high', color: '#f2c230' },
  { level: 4, zh: '四级 高火险', en: 'Level 4 · high', color: '#f28c28' },
  { level: 5, zh: '五级 极高火险', en: 'Level 5 · extreme', color: '#e03131' },
] as const;

/** Nesterov bands → levels 1..5. */
export function nesterovLevel(g: number): number {
  if (g < 300) return 1;
  if (g < 1000) return 2;
  if (g < 4000) return 3;
  if (g < 10000) return 4;
  return 5;
}

export function angstromIndex(temperatureC: number, humidityPercent: number): number {
  return humidityPercent / 20 + (27 - temperatureC) / 10;
}

/** Dew point, °C, by the Magnus formula (a = 17.625, b = 243.04 °C), good to ±0.4 °C for −40..50 °C. */
export function dewPointC(temperatureC: number, humidityPercent: number): number {
  const a = 17.625;
  const b = 243.04;
  const gamma = Math.log(Math.max(humidityPercent, 0.1) / 100) + (a * temperatureC) / (b + temperatureC);
  return (b * gamma) / (a - gamma);
}

/** One day's Nesterov value from the previous day's and today's midday weather. */
export function nesterovStep(previous: number | null, temperatureC: number, dewPoint: number, rain24hMm: number | null): number {
  if (rain24hMm !== null && rain24hMm > 3) return 0;
  const add = temperatureC > 0 ? temperatureC * Math.max(0, temperatureC - dewPoint) : 0;
  return (previous ?? 0) + add;
}

interface StationReading {
  ts: number;
  temperatureC: number;
  humidityPercent: number;
}

interface StationDay {
  /** The reading nearest 13:00 within 12:00–14:00. */
  midday: StationReading | null;
  /** The rain counter's highest value of the day, and its value at the midday reading. */
  rainMax: number | null;
  rainAtMidday: number | null;
}

export interface FireDangerContext {
  bus: Bus;
  store: FireDangerStore;
  log: Logger;
  timeZone: string;
  onChange?: (status: FireDangerStatus) => void;
  /** Counts store errors of the minute tick (`gs_store_errors_total`). */
  metrics?: Pick<Metrics, 'storeErrors'>;
  now?: () => number;
}

const HOUR = 3_600_000;

export class FireDangerService {
  readonly #ctx: FireDangerContext;
  readonly #now: () => number;
  readonly #latest = new Map<string, StationReading>();
  /** day → station → what that day looked like. */
  readonly #days = new Map<string, Map<string, StationDay>>();
  readonly #fmt: Intl.DateTimeFormat;
  #off: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #cached: { at: number; level: number | null } | undefined;
  /** The last level read from the store, for when it cannot be read. */
  #lastLevel: number | null = null;
  readonly #storeErrors: StoreErrorReporter;

  constructor(ctx: FireDangerContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
    const { metrics } = ctx;
    this.#storeErrors = new StoreErrorReporter({ log: ctx.log, count: metrics ? (operation) => metrics.storeErrors.inc({ operation }) : undefined, now: this.#now });
    this.#fmt = new Intl.DateTimeFormat('en-CA', { timeZone: ctx.timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  start(): void {
    this.#off = this.#ctx.bus.on('telemetry', ({ device, message }) => {
      if (device.kind !== 'water_tank') return;
      const v = message.values as Record<string, unknown>;
      if (typeof v.airTemperatureC === 'number' && typeof v.humidityPercent === 'number') {
        this.record(device.id, message.ts, v.airTemperatureC, v.humidityPercent, typeof v.rainTodayMm === 'number' ? v.rainTodayMm : null);
      }
    });
    this.#timer = setInterval(() => this.#onTick(), 60_000);
    this.#timer.unref();
    this.#onTick();
  }

  /** The minute timer: never throws; a rating the store refused is tried again next minute. */
  #onTick(): void {
    this.#storeErrors.attempt('fire_danger_rating', () => this.tick(), 'retried every minute');
  }

  stop(): void {
    this.#off?.();
    clearInterval(this.#timer);
  }

  /** Site-local date and minutes after midnight of a time. */
  #local(ts: number): { day: string; minutes: number } {
    const parts = Object.fromEntries(this.#fmt.formatToParts(ts).map((p) => [p.type, p.value]));
    return { day: `${parts.year}-${parts.month}-${parts.day}`, minutes: Number(parts.hour) * 60 + Number(parts.minute) };
  }

  /** One weather reading from a station (device time). */
  record(stationId: string, ts: number, temperatureC: number, humidityPercent: number, rainTodayMm: number | null): void {
    const reading = { ts, temperatureC, humidityPercent };
    const prev = this.#latest.get(stationId);
    if (!prev || ts >= prev.ts) this.#latest.set(stationId, reading);
    const { day, minutes } = this.#local(ts);
    let stations = this.#days.get(day);
    if (!stations) {
      this.#days.set(day, (stations = new Map()));
      // Keep a week of days: enough for "yesterday's rain after 13:00".
      for (const d of this.#days.keys()) if (this.#days.size > 7 && d < day) this.#days.delete(d);
    }
    let sd = stations.get(stationId);
    if (!sd) stations.set(stationId, (sd = { midday: null, rainMax: null, rainAtMidday: null }));
    if (rainTodayMm !== null) sd.rainMax = Math.max(sd.rainMax ?? 0, rainTodayMm);
    const off = Math.abs(minutes - 13 * 60);
    if (off <= 60 && (!sd.midday || off < Math.abs(this.#local(sd.midday.ts).minutes - 13 * 60))) {
      sd.midday = reading;
      sd.rainAtMidday = rainTodayMm;
    }
  }

  /** Rates today once 13:30 has passed and middays readings exist. Runs every minute. */
  tick(): void {
    const now = this.#now();
    const { day, minutes } = this.#local(now);
    if (minutes < 13 * 60 + 30) return;
    const existing = this.#ctx.store.getDay(day);
    if (existing?.computedLevel != null) return;
    const stations = this.#days.get(day);
    const middays = stations ? Array.from(stations.values()).filter((s) => s.midday) : [];
    if (middays.length === 0) return;
    const t = median(middays.map((s) => s.midday!.temperatureC));
    const rh = median(middays.map((s) => s.midday!.humidityPercent));
    const td = dewPointC(t, rh);
    const rain = this.#rain24h(day, middays);
    const yesterday = this.#ctx.store.getDay(this.#local(now - 24 * HOUR).day);
    const nesterov = nesterovStep(yesterday?.nesterov ?? null, t, td, rain);
    const row: FireDangerDay = {
      day,
      temperatureC: round1(t),
      humidityPercent: round1(rh),
      dewPointC: round1(td),
      rain24hMm: rain === null ? null : round1(rain),
      stations: middays.length,
      angstrom: round2(angstromIndex(t, rh)),
      nesterov: Math.round(nesterov),
      computedLevel: nesterovLevel(nesterov),
      manualLevel: existing?.manualLevel ?? null,
      manualBy: existing?.manualBy ?? null,
      manualNote: existing?.manualNote ?? null,
      updatedAt: now,
    };
    this.#ctx.store.saveDay(row);
    this.#cached = undefined;
    this.#ctx.log.info({ day, level: row.computedLevel, nesterov: row.nesterov, angstrom: row.angstrom, stations: row.stations }, 'fire danger rated');
    this.#announce();
  }

  /** Tells listeners the status; the rating is stored already, so a failure to read it back is only logged. */
  #announce(): void {
    if (!this.#ctx.onChange) return;
    let status: FireDangerStatus;
    try {
      status = this.status();
    } catch (err) {
      this.#ctx.log.warn({ err: (err as Error).message }, 'fire danger rated; the new status could not be read back to announce it');
      return;
    }
    this.#ctx.onChange(status);
  }

  /** Rain in the 24 h before today's midday: yesterday after its midday, plus today to midday. */
  #rain24h(day: string, today: StationDay[]): number | null {
    const todayRain = today.map((s) => s.rainAtMidday).filter((r): r is number => r !== null);
    if (todayRain.length === 0) return null;
    const prevDay = Array.from(this.#days.keys()).filter((d) => d < day).sort().at(-1);
    let afternoon = 0;
    if (prevDay) {
      const y = Array.from(this.#days.get(prevDay)!.values()).filter((s) => s.rainMax !== null && s.rainAtMidday !== null);
      if (y.length > 0) afternoon = median(y.map((s) => s.rainMax! - s.rainAtMidday!));
    }
    return median(todayRain) + afternoon;
  }

  /** A duty officer sets (or with null clears) today's level. */
  setManual(level: number | null, who: string, note: string | null): FireDangerStatus {
    const now = this.#now();
    const { day } = this.#local(now);
    const existing = this.#ctx.store.getDay(day);
    const row: FireDangerDay = existing ?? {
      day,
      temperatureC: null,
      humidityPercent: null,
      dewPointC: null,
      rain24hMm: null,
      stations: 0,
      angstrom: null,
      nesterov: null,
      computedLevel: null,
      manualLevel: null,
      manualBy: null,
      manualNote: null,
      updatedAt: now,
    };
    row.manualLevel = level;
    row.manualBy = level === null ? null : who;
    row.manualNote = level === null ? null : note;
    row.updatedAt = now;
    this.#ctx.store.saveDay(row);
    this.#cached = undefined;
    const status = this.status();
    this.#ctx.onChange?.(status);
    return status;
  }

  /**
   * The level in force now (1..5), or null. Cheap: the alert rules ask on every camera alarm.
   * While the store cannot be read, the last level read (a camera alarm must not fail on it).
   */
  level(): number | null {
    const now = this.#now();
    if (!this.#cached || now - this.#cached.at > 60_000) {
      try {
        this.#lastLevel = this.status().level;
        this.#storeErrors.succeeded('fire_danger_level');
      } catch (err) {
        this.#storeErrors.failed('fire_danger_level', err, 'the last level read stands');
      }
      this.#cached = { at: now, level: this.#lastLevel };
    }
    return this.#cached.level;
  }

  status(): FireDangerStatus {
    const now = this.#now();
    const { day } = this.#local(now);
    const history = this.#ctx.store.days(30);
    const today = history.find((d) => d.day === day) ?? null;
    let level: number | null = null;
    let source: FireDangerStatus['source'] = 'none';
    if (today?.manualLevel != null) (level = today.manualLevel), (source = 'manual');
    else if (today?.computedLevel != null) (level = today.computedLevel), (source = 'computed');
    else {
      // Before 13:30 the day is not rated yet: yesterday's rating stands.
      const previous = history.find((d) => d.day < day && (d.manualLevel ?? d.computedLevel) != null);
      if (previous && previous.day === this.#local(now - 24 * HOUR).day) (level = previous.manualLevel ?? previous.computedLevel), (source = 'previous_day');
    }
    const fresh = Array.from(this.#latest.values()).filter((r) => now - r.ts <= 2 * HOUR);
    const current =
      fresh.length > 0
        ? (() => {
            const t = median(fresh.map((r) => r.temperatureC));
            const rh = median(fresh.map((r) => r.humidityPercent));
            return { temperatureC: round1(t), humidityPercent: round1(rh), angstrom: round2(angstromIndex(t, rh)), stations: fresh.length };
          })()
        : null;
    const info = level !== null ? FIRE_DANGER_LEVELS[level - 1]! : null;
    return { day, level, source, name: info ? { zh: info.zh, en: info.en } : null, color: info?.color ?? null, today, current, history };
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;
