/**
 * Weather for the small sensors on the tanks' transmitter cabinets (air temperature, relative
 * humidity, a tipping-bucket rain gauge), tuned to Yongchuan, Chongqing (茶山竹海, 29.4 N
 * 105.9 E): humid subtropical, with cloudy, damp winters broken by dry sunny spells — the
 * forest-fire season — and most of the ~1000 mm of rain falling May to September.
 *
 * One site-wide weather, a pure function of (seed, time), so any instant can be asked for in any
 * order and every station of a site sees the same weather:
 * - each local day gets a wetness w (0 clear and dry … 1 rain) from a slow value noise (spells of
 *   several days) plus a daily draw; w sets the day's diurnal range, how far the dew point sits
 *   below the afternoon maximum, and whether and how much it rains;
 * - the daily mean follows the seasons plus a slow anomaly; temperature rises from the day's
 *   minimum at 07:00 to its maximum at 14:00 and falls to the next morning's minimum (cosines);
 * - relative humidity comes from that temperature and a dew point interpolated between days,
 *   so it is lowest when it is warmest; while it rains the air is near saturation.
 * Each place adds a smooth terrain-like temperature field (hills and valleys a few km across) and
 * a smooth rain factor, and each station a fixed siting offset and reading noise.
 */
import { prng } from '../fleet/geography.js';
import type { LatLon } from '../geo.js';

export interface Climate {
  /** hours from UTC to local time (China Standard Time: 8) */
  utcOffsetH: number;
  /** yearly mean of the daily mean temperature, °C */
  meanC: number;
  /** half the swing from the coldest to the warmest time of year, °C */
  seasonalC: number;
  /** day of the year (0 = 1 January) of the coldest daily mean */
  coldestDayOfYear: number;
  /** half-width of the slow day-to-day anomaly of the daily mean, °C */
  anomalyC: number;
  /** time scale of that anomaly, days */
  anomalyDays: number;
  /** time scale of wet and dry spells, days */
  spellDays: number;
  /** how far w spreads from 0.5 (1: as drawn; larger: more clear and more rainy days) */
  wetnessSpread: number;
  /** diurnal range on a clear day and on a day of rain, °C */
  rangeClearC: number;
  rangeRainC: number;
  /** how much cooler a wet day's mean is than a dry day's, °C */
  wetCoolingC: number;
  /** dew point below the afternoon maximum on a clear day and on a day of rain, °C */
  depressionClearC: number;
  depressionRainC: number;
  /** days with w above this have rain */
  rainThreshold: number;
  /** scale of a wet day's rain in the depth of winter and in midsummer, mm */
  rainWinterMm: number;
  rainSummerMm: number;
  /** local hours of the daily minimum and maximum temperature */
  minHour: number;
  maxHour: number;
  /** amplitude (°C) and wavelength (km) of the terrain-like temperature field over the site */
  terrainC: number;
  terrainKm: number;
  /** relative spread of rain from place to place (0.15: ±15 %) */
  rainSpread: number;
  /** per station: half-widths of the fixed siting offset (°C, %RH) and of the reading noise */
  sitingC: number;
  sitingRh: number;
  noiseC: number;
  noiseRh: number;
  /** the rain gauge's bucket, mm per tip */
  gaugeTipMm: number;
}

/** Yongchuan, Chongqing: January mean ≈ 7.6 °C, August ≈ 28 °C, RH around 80 %. */
export const YONGCHUAN_CLIMATE: Readonly<Climate> = {
  utcOffsetH: 8,
  meanC: 17.8,
  seasonalC: 10.2,
  coldestDayOfYear: 20,
  anomalyC: 3,
  anomalyDays: 5,
  spellDays: 4,
  wetnessSpread: 1.6,
  rangeClearC: 11,
  rangeRainC: 2.5,
  wetCoolingC: 2,
  depressionClearC: 14,
  depressionRainC: 1.2,
  rainThreshold: 0.68,
  rainWinterMm: 4,
  rainSummerMm: 40,
  minHour: 7,
  maxHour: 14,
  terrainC: 1,
  terrainKm: 6,
  rainSpread: 0.15,
  sitingC: 0.3,
  sitingRh: 2,
  noiseC: 0.15,
  noiseRh: 0.8,
  gaugeTipMm: 0.2,
};

export interface WeatherReading {
  airTemperatureC: number;
  humidityPercent: number;
  /** rain since local midnight, mm */
  rainTodayMm: number;
}

/** One local day of the site's weather. */
export interface WeatherDay {
  /** local days since 1970-01-01 */
  day: number;
  /** 0 clear and dry … 1 rain */
  wetness: number;
  minC: number;
  maxC: number;
  /** dew point at the afternoon maximum, °C */
  dewPointC: number;
  /** the day's rain at the site, mm (0 on a dry day) */
  rainMm: number;
  /** local hours the rain falls between (a steady rate) */
  rainFromH: number;
  rainToH: number;
}

const TWO_PI = 2 * Math.PI;
const YEAR_DAYS = 365.2425;
const clamp01 = (x: number) => Math.max(0, Math.min(1, x));
const lerp = (a: number, b: number, u: number) => a + (b - a) * u;
/** Cosine ease from 0 to 1 over s in 0..1: smooth at both ends. */
const ease = (s: number) => (1 - Math.cos(Math.PI * s)) / 2;
/** Saturation vapour pressure over water, hPa (Magnus, WMO-No. 8 coefficients). */
const saturationHpa = (c: number) => 6.112 * Math.exp((17.62 * c) / (243.12 + c));

/** A uniform draw in [0, 1) that depends only on its arguments (murmur3's finaliser). */
function hash01(seed: number, a: number, salt: number): number {
  let h = (seed ^ Math.imul(a | 0, 0x9e3779b1) ^ Math.imul(salt + 1, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Value noise in [0, 1) over days: a fresh draw every `period` days, eased in between. */
function slowNoise(seed: number, salt: number, day: number, period: number): number {
  const x = day / period;
  const i = Math.floor(x);
  return lerp(hash01(seed, i, salt), hash01(seed, i + 1, salt), ease(x - i));
}

const Salt = { WET: 1, WET_DAY: 2, ANOMALY: 3, MEAN_DAY: 4, RAIN: 5, RAIN_LENGTH: 6, RAIN_START: 7, FIELD: 8 } as const;

/** Where the site's fields are measured from: the middle of the Chashan Zhuhai box. */
const ORIGIN: LatLon = { lat: 29.43, lon: 105.885 };

export class SiteWeather {
  readonly seed: number;
  readonly climate: Readonly<Climate>;
  /** phases of the spatial fields, radians */
  readonly #phase: number[];
  #days = new Map<number, WeatherDay>();

  constructor(opts: { seed: number; climate?: Partial<Climate> }) {
    this.seed = opts.seed >>> 0;
    this.climate = { ...YONGCHUAN_CLIMATE, ...opts.climate };
    const rand = prng(this.seed ^ 0x5eed);
    this.#phase = Array.from({ length: 6 }, () => TWO_PI * rand());
  }

  /** The local day number of a time. */
  localDay(timeMs: number): number {
    return Math.floor(this.#localHours(timeMs) / 24);
  }

  day(day: number): WeatherDay {
    let d = this.#days.get(day);
    if (!d) {
      if (this.#days.size > 64) this.#days.clear(); // a few days either side are all that is asked for
      d = this.#computeDay(day);
      this.#days.set(day, d);
    }
    return d;
  }

  /** Temperature added at a place: hills and valleys a few km across, ±terrainC (about). */
  placeOffsetC(place: LatLon): number {
    const [x, y] = kmFromOrigin(place);
    const k = TWO_PI / this.climate.terrainKm;
    const p = this.#phase;
    const field = 0.7 * Math.sin(k * x + p[0]!) * Math.sin(k * y + p[1]!) + 0.3 * Math.sin(0.6 * k * (0.6 * x + 0.8 * y) + p[2]!);
    return this.climate.terrainC * field;
  }

  /** The share of the site's rain that falls at a place, 1 ± rainSpread, varying over kilometres. */
  placeRainFactor(place: LatLon): number {
    const [x, y] = kmFromOrigin(place);
    const k = TWO_PI / (2 * this.climate.terrainKm);
    return 1 + this.climate.rainSpread * Math.sin(k * x + this.#phase[3]!) * Math.cos(k * y + this.#phase[4]!);
  }

  /**
   * The weather at a time and place, without sensor error (rain not yet in whole tips).
   * `extraC` warms or cools the air locally (a station's siting) before humidity is worked out.
   */
  at(timeMs: number, place: LatLon = ORIGIN, extraC = 0): WeatherReading {
    const hours = this.#localHours(timeMs);
    const today = this.day(Math.floor(hours / 24));
    const hour = hours - 24 * today.day;
    const rainShare = today.rainMm > 0 ? clamp01((hour - today.rainFromH) / (today.rainToH - today.rainFromH)) : 0;
    const raining = rainShare > 0 && rainShare < 1;
    const t = this.#siteTemperatureC(hours) + this.placeOffsetC(place) + extraC;
    // Dew forms before the air saturates (RH stays ≤ ~94 %); while it rains, the air is near 96 %.
    const td = raining ? t - 0.6 : Math.min(this.#dewPointC(hours), t - 0.9);
    return {
      airTemperatureC: t,
      humidityPercent: (100 * saturationHpa(td)) / saturationHpa(t),
      rainTodayMm: today.rainMm * rainShare * this.placeRainFactor(place),
    };
  }

  #localHours(timeMs: number): number {
    return timeMs / 3_600_000 + this.climate.utcOffsetH;
  }

  #computeDay(day: number): WeatherDay {
    const c = this.climate;
    const s = this.seed;
    const dayOfYear = day - YEAR_DAYS * Math.floor(day / YEAR_DAYS);
    const season = -Math.cos((TWO_PI * (dayOfYear - c.coldestDayOfYear)) / YEAR_DAYS); // −1 winter … +1 summer
    const drawn = 0.65 * slowNoise(s, Salt.WET, day, c.spellDays) + 0.35 * hash01(s, day, Salt.WET_DAY);
    const wetness = clamp01(0.5 + c.wetnessSpread * (drawn - 0.5));
    const meanC =
      c.meanC +
      c.seasonalC * season +
      c.anomalyC * (2 * slowNoise(s, Salt.ANOMALY, day, c.anomalyDays) - 1) +
      0.8 * (2 * hash01(s, day, Salt.MEAN_DAY) - 1) -
      c.wetCoolingC * (wetness - 0.5);
    const range = lerp(c.rangeClearC, c.rangeRainC, wetness);
    const maxC = meanC + range / 2;
    const depression = c.depressionRainC + (c.depressionClearC - c.depressionRainC) * (1 - wetness) ** 1.5;

    let rainMm = 0;
    let rainFromH = 0;
    let rainToH = 0;
    const x = (wetness - c.rainThreshold) / (1 - c.rainThreshold);
    if (x > 0) {
      const scale = lerp(c.rainWinterMm, c.rainSummerMm, (season + 1) / 2);
      rainMm = 0.4 + scale * x * x * (0.5 + hash01(s, day, Salt.RAIN));
      const hours = 2 + 10 * hash01(s, day, Salt.RAIN_LENGTH);
      rainFromH = hash01(s, day, Salt.RAIN_START) * (24 - hours);
      rainToH = rainFromH + hours;
    }
    return { day, wetness, minC: meanC - range / 2, maxC, dewPointC: maxC - depression, rainMm, rainFromH, rainToH };
  }

  /** Site temperature: minimum at minHour, maximum at maxHour, eased between consecutive days. */
  #siteTemperatureC(hours: number): number {
    const { minHour, maxHour } = this.climate;
    const day = Math.floor(hours / 24);
    const hour = hours - 24 * day;
    const night = 24 - maxHour + minHour;
    if (hour < minHour) {
      const from = this.day(day - 1).maxC;
      return lerp(from, this.day(day).minC, ease((hour + 24 - maxHour) / night));
    }
    const today = this.day(day);
    if (hour < maxHour) return lerp(today.minC, today.maxC, ease((hour - minHour) / (maxHour - minHour)));
    return lerp(today.maxC, this.day(day + 1).minC, ease((hour - maxHour) / night));
  }

  /** Dew point, linear between each day's value at maxHour. */
  #dewPointC(hours: number): number {
    const x = (hours - this.climate.maxHour) / 24;
    const i = Math.floor(x);
    return lerp(this.day(i).dewPointC, this.day(i + 1).dewPointC, x - i);
  }
}

function kmFromOrigin(place: LatLon): [number, number] {
  const x = (place.lon - ORIGIN.lon) * 111.32 * Math.cos((ORIGIN.lat * Math.PI) / 180);
  const y = (place.lat - ORIGIN.lat) * 110.57;
  return [x, y];
}

export interface WeatherStationOptions {
  site: SiteWeather;
  lat: number;
  lon: number;
  /** this station's siting offset and noise */
  seed: number;
}

/** One cabinet's weather sensor: the site's weather at its place, as the sensor reads it. */
export class WeatherStation {
  readonly site: SiteWeather;
  readonly place: LatLon;
  readonly seed: number;
  /** fixed siting offsets: shade or sun on the cabinet, the sensor's calibration */
  readonly #sitingC: number;
  readonly #sitingRh: number;

  constructor(opts: WeatherStationOptions) {
    this.site = opts.site;
    this.place = { lat: opts.lat, lon: opts.lon };
    this.seed = opts.seed >>> 0;
    const c = this.site.climate;
    const rand = prng(this.seed ^ 0x77ea7e);
    this.#sitingC = c.sitingC * (2 * rand() - 1);
    this.#sitingRh = c.sitingRh * (2 * rand() - 1);
  }

  /**
   * What the sensor reads at `timeMs`: 0.1 °C and 0.1 %RH resolution, the rain gauge in whole
   * tips. The noise is a function of (seed, second), so reading twice gives the same answer.
   */
  read(timeMs: number): WeatherReading {
    const c = this.site.climate;
    const truth = this.site.at(timeMs, this.place, this.#sitingC);
    const second = Math.floor(timeMs / 1000);
    const noise = (salt: number, half: number) => (hash01(this.seed, second, salt) + hash01(this.seed, second, salt + 100) - 1) * half;
    const tips = Math.floor(truth.rainTodayMm / c.gaugeTipMm + 1e-9);
    return {
      airTemperatureC: round1(truth.airTemperatureC + noise(Salt.FIELD + 1, c.noiseC)),
      humidityPercent: round1(Math.max(0, Math.min(100, truth.humidityPercent + this.#sitingRh + noise(Salt.FIELD + 2, c.noiseRh)))),
      rainTodayMm: round1(tips * c.gaugeTipMm),
    };
  }
}

const round1 = (v: number) => Math.round(v * 10) / 10;
