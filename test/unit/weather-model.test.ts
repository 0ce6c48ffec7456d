/**
 * The simulated site weather (simulators/src/water-tank/weather.ts): the diurnal shape, humidity
 * against temperature, a plausible Yongchuan fire season, rain as a daily counter, determinism,
 * spatial smoothness, and the tank model reading it on its own clock.
 */
import { describe, expect, it } from 'vitest';
import { SiteWeather, WeatherStation } from '../../simulators/src/water-tank/weather.js';
import { WaterTankModel } from '../../simulators/src/water-tank/model.js';
import { destination } from '../../simulators/src/geo.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** 2025-12-01 00:00 China Standard Time: the start of winter, inside the fire season. */
const DEC_1 = Date.UTC(2025, 10, 30, 16);
/** Local midnight of the i-th winter day (Dec, Jan, Feb: 90 days). */
const winterDay = (i: number) => DEC_1 + i * DAY;
const PLACE = { lat: 29.43, lon: 105.88 };

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function correlation(xs: number[], ys: number[]): number {
  const mx = mean(xs);
  const my = mean(ys);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  xs.forEach((x, i) => {
    const y = ys[i]!;
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  });
  return sxy / Math.sqrt(sxx * syy);
}

describe('site weather: the day', () => {
  const site = new SiteWeather({ seed: 20250401 });
  const at = (day: number, hour: number) => site.at(winterDay(day) + hour * HOUR, PLACE);

  it('is coldest near dawn and warmest in the early afternoon', () => {
    const byHour = Array.from({ length: 24 }, (_, h) => mean(Array.from({ length: 90 }, (_, d) => at(d, h).airTemperatureC)));
    expect(mean(Array.from({ length: 90 }, (_, d) => at(d, 14).airTemperatureC - at(d, 5).airTemperatureC))).toBeGreaterThan(4);
    const warmest = byHour.indexOf(Math.max(...byHour));
    const coldest = byHour.indexOf(Math.min(...byHour));
    expect(warmest).toBeGreaterThanOrEqual(13);
    expect(warmest).toBeLessThanOrEqual(15);
    expect(coldest).toBeGreaterThanOrEqual(5);
    expect(coldest).toBeLessThanOrEqual(8);
    // On nearly every single day, not just on average.
    const warmerAt14 = Array.from({ length: 90 }, (_, d) => at(d, 14).airTemperatureC > at(d, 5).airTemperatureC).filter(Boolean).length;
    expect(warmerAt14).toBeGreaterThan(80);
  });

  it('has humidity falling as the air warms: lowest in the afternoon, highest at dawn', () => {
    expect(mean(Array.from({ length: 90 }, (_, d) => at(d, 5).humidityPercent - at(d, 14).humidityPercent))).toBeGreaterThan(15);
    // Within each day, hour by hour, temperature and humidity move against each other.
    const within: number[] = [];
    for (let d = 0; d < 90; d++) {
      const hours = Array.from({ length: 24 }, (_, h) => at(d, h));
      within.push(correlation(hours.map((w) => w.airTemperatureC), hours.map((w) => w.humidityPercent)));
    }
    expect(median(within)).toBeLessThan(-0.8);
  });

  it('is continuous: no jumps at midnight or from hour to hour', () => {
    let previous = site.at(winterDay(0), PLACE);
    for (let t = winterDay(0) + 10 * 60_000; t < winterDay(30); t += 10 * 60_000) {
      const w = site.at(t, PLACE);
      expect(Math.abs(w.airTemperatureC - previous.airTemperatureC)).toBeLessThan(1.5);
      previous = w;
    }
  });
});

describe('site weather: a Yongchuan winter (the fire season)', () => {
  const site = new SiteWeather({ seed: 20250401 });
  const days = Array.from({ length: 90 }, (_, d) => {
    const hours = Array.from({ length: 24 }, (_, h) => site.at(winterDay(d) + h * HOUR, PLACE));
    return {
      maxC: Math.max(...hours.map((w) => w.airTemperatureC)),
      minC: Math.min(...hours.map((w) => w.airTemperatureC)),
      rh13: hours[13]!.humidityPercent,
      rh: hours.map((w) => w.humidityPercent),
      rainMm: site.at(winterDay(d + 1) - 1000, PLACE).rainTodayMm,
    };
  });

  it('has cool days (daytime 10–20 °C typically) and mild nights', () => {
    expect(median(days.map((d) => d.maxC))).toBeGreaterThan(10);
    expect(median(days.map((d) => d.maxC))).toBeLessThan(18);
    expect(Math.max(...days.map((d) => d.maxC))).toBeLessThan(25);
    expect(Math.min(...days.map((d) => d.minC))).toBeGreaterThan(-5);
  });

  it('is mostly humid, with dry sunny spells that take midday humidity down to 35–45 %', () => {
    const all = days.flatMap((d) => d.rh);
    expect(mean(all)).toBeGreaterThan(65);
    expect(mean(all)).toBeLessThan(90);
    expect(Math.max(...all)).toBeLessThanOrEqual(97);
    const dry = days.filter((d) => d.rh13 < 46);
    expect(dry.length).toBeGreaterThanOrEqual(5);
    expect(Math.min(...days.map((d) => d.rh13))).toBeGreaterThan(30);
    // Dry days come in spells: some run of at least two dry (≤ 55 %) middays in a row.
    expect(days.some((d, i) => i > 0 && d.rh13 <= 55 && days[i - 1]!.rh13 <= 55)).toBe(true);
  });

  it('rains on some days, mostly lightly, and some days with more than 3 mm (a Nesterov reset)', () => {
    const wet = days.filter((d) => d.rainMm > 0);
    expect(wet.length).toBeGreaterThan(8);
    expect(wet.length).toBeLessThan(45);
    expect(wet.some((d) => d.rainMm > 3)).toBe(true);
    expect(days.reduce((a, d) => a + d.rainMm, 0)).toBeLessThan(200); // winter: 15–30 mm a month in Yongchuan
    expect(mean(wet.map((d) => d.rh13))).toBeGreaterThan(mean(days.map((d) => d.rh13)));
  });
});

describe('weather station readings', () => {
  const site = new SiteWeather({ seed: 5 });

  it('count rain since local midnight: never falling during the day, back to 0 at midnight, in whole 0.2 mm tips', () => {
    const station = new WeatherStation({ site, ...PLACE, seed: 1 });
    let rainyDays = 0;
    for (let d = 0; d < 60; d++) {
      let last = 0;
      for (let m = 0; m < 24 * 60; m += 15) {
        const r = station.read(winterDay(d) + m * 60_000).rainTodayMm;
        expect(r).toBeGreaterThanOrEqual(last);
        expect(Math.abs(r * 5 - Math.round(r * 5))).toBeLessThan(1e-9);
        last = r;
      }
      if (last > 0) rainyDays++;
      expect(station.read(winterDay(d + 1)).rainTodayMm).toBe(0); // 00:00:00 the next day
    }
    expect(rainyDays).toBeGreaterThan(3);
  });

  it('are in range, at 0.1 resolution', () => {
    const station = new WeatherStation({ site, ...PLACE, seed: 2 });
    for (let t = winterDay(0); t < winterDay(20); t += 37 * 60_000) {
      const r = station.read(t);
      for (const v of [r.airTemperatureC, r.humidityPercent, r.rainTodayMm]) expect(Math.abs(v * 10 - Math.round(v * 10))).toBeLessThan(1e-9);
      expect(r.humidityPercent).toBeGreaterThanOrEqual(0);
      expect(r.humidityPercent).toBeLessThanOrEqual(100);
      expect(r.airTemperatureC).toBeGreaterThan(-50);
      expect(r.airTemperatureC).toBeLessThan(60);
    }
  });
});

describe('determinism', () => {
  const series = (seed: number) => {
    const station = new WeatherStation({ site: new SiteWeather({ seed }), ...PLACE, seed: 99 });
    return Array.from({ length: 500 }, (_, i) => station.read(winterDay(0) + i * 47 * 60_000));
  };

  it('the same seed gives the same readings; another seed other weather', () => {
    expect(series(7)).toEqual(series(7));
    const a = series(7);
    const b = series(8);
    expect(a.filter((r, i) => r.airTemperatureC !== b[i]!.airTemperatureC).length).toBeGreaterThan(400);
  });

  it('a reading depends only on the time, not on what was asked before', () => {
    const fresh = new SiteWeather({ seed: 3 });
    const used = new SiteWeather({ seed: 3 });
    for (let i = 0; i < 200; i++) used.at(winterDay(0) + ((i * 7919) % 400) * DAY);
    for (let t = winterDay(40); t < winterDay(42); t += HOUR) expect(used.at(t, PLACE)).toEqual(fresh.at(t, PLACE));
    const s1 = new WeatherStation({ site: fresh, ...PLACE, seed: 4 });
    const s2 = new WeatherStation({ site: used, ...PLACE, seed: 4 });
    expect(s1.read(winterDay(41) + 123_456)).toEqual(s2.read(winterDay(41) + 123_456));
    expect(s1.read(winterDay(41) + 123_456)).toEqual(s1.read(winterDay(41) + 123_456));
  });
});

describe('spatial smoothness', () => {
  const site = new SiteWeather({ seed: 11 });
  const HOURS = Array.from({ length: 14 * 24 }, (_, h) => winterDay(10) + h * HOUR);

  it('the site field changes little over short distances', () => {
    for (let i = 0; i < 200; i++) {
      const a = { lat: 29.38 + 0.1 * ((i * 0.618) % 1), lon: 105.82 + 0.13 * ((i * 0.414) % 1) };
      const b = destination(a, (i * 37) % 360, 200);
      expect(Math.abs(site.placeOffsetC(a) - site.placeOffsetC(b))).toBeLessThan(0.4);
      expect(Math.abs(site.placeRainFactor(a) - site.placeRainFactor(b))).toBeLessThan(0.05);
    }
    // …but it is there: the site is not one uniform point.
    const spread = Array.from({ length: 100 }, (_, i) => site.placeOffsetC({ lat: 29.38 + 0.001 * i, lon: 105.82 + 0.0013 * i }));
    expect(Math.max(...spread) - Math.min(...spread)).toBeGreaterThan(0.5);
  });

  it('neighbouring stations read nearly the same; far ones differ more', () => {
    const here = new WeatherStation({ site, ...PLACE, seed: 1 });
    const near = new WeatherStation({ site, ...destination(PLACE, 60, 300), seed: 2 });
    const far = new WeatherStation({ site, lat: 29.385, lon: 105.94, seed: 3 });
    const temp = (s: WeatherStation) => HOURS.map((t) => s.read(t).airTemperatureC);
    const rh = (s: WeatherStation) => HOURS.map((t) => s.read(t).humidityPercent);
    const [a, b, c] = [temp(here), temp(near), temp(far)];
    const meanAbsDiff = (x: number[], y: number[]) => mean(x.map((v, i) => Math.abs(v - y[i]!)));
    expect(meanAbsDiff(a, b)).toBeLessThan(0.8);
    expect(correlation(a, b)).toBeGreaterThan(0.98);
    expect(correlation(rh(here), rh(near))).toBeGreaterThan(0.97);
    expect(correlation(a, c)).toBeGreaterThan(0.95); // one site, one weather
    // Daily rain totals agree within the place-to-place spread.
    for (let d = 10; d < 24; d++) {
      const ra = here.read(winterDay(d + 1) - 1000).rainTodayMm;
      const rb = near.read(winterDay(d + 1) - 1000).rainTodayMm;
      expect(Math.abs(ra - rb)).toBeLessThanOrEqual(0.1 * Math.max(ra, rb) + 0.2);
    }
  });
});

describe('the tank model reads the weather on its own clock', () => {
  it('follows simulated time, and reading does not change it', () => {
    const site = new SiteWeather({ seed: 1 });
    const station = new WeatherStation({ site, ...PLACE, seed: 9 });
    const m = new WaterTankModel({ heightMm: 2500, capacityM3: 55, lowPercent: 30, seed: 9, startTimeMs: winterDay(3) + 5 * HOUR, weather: station });
    expect(m.firmware).toBe('1.3');
    const dawn = m.measure().weather!;
    expect(m.measure().weather).toEqual(dawn);
    expect(dawn).toEqual(station.read(m.simTimeMs));
    m.advance(9 * HOUR); // 14:00
    const afternoon = m.measure().weather!;
    expect(afternoon).toEqual(station.read(winterDay(3) + 14 * HOUR));
    expect(afternoon.airTemperatureC).toBeGreaterThan(dawn.airTemperatureC);
  });
});
