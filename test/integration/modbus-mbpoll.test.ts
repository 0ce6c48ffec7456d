/**
 * The tank simulator's Modbus TCP server read and written by an independent client: Debian's
 * mbpoll (libmodbus). The expected numbers are the ones in docs/devices/water-tank-modbus.md.
 * mbpoll numbers references from 1 by default (`-r 1` = PDU address 0); `-0` switches to PDU
 * addresses. Simulated time is frozen (timeScale 0) so the values are exact. The first tank runs
 * firmware 1.2 (registers 1..10); the weather registers 11..13 of firmware 1.3 are read last.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTankSimulator, type TankSimulator } from '../../simulators/src/water-tank/simulator.js';
import { SiteWeather } from '../../simulators/src/water-tank/weather.js';

const MBPOLL = '/usr/bin/mbpoll';

interface MbpollResult {
  code: number;
  stdout: string;
  stderr: string;
  /** reference → value as uint16, from lines like "[3]: 	2500" or "[1]: 	65535 (-1)" */
  values: Map<number, number>;
  /** reference → the int16 reading mbpoll adds in parentheses for values ≥ 0x8000 */
  signed: Map<number, number>;
}

function mbpoll(port: number, args: string[], writeValues: string[] = []): Promise<MbpollResult> {
  return new Promise((resolve, reject) => {
    execFile(
      MBPOLL,
      ['-m', 'tcp', '-1', '-o', '0.5', '-p', String(port), ...args, '127.0.0.1', ...writeValues],
      { timeout: 5000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err); // could not run at all
        const values = new Map<number, number>();
        const signed = new Map<number, number>();
        for (const m of stdout.matchAll(/^\[(\d+)\]:\s+(-?\d+)(?:\s+\((-?\d+)\))?\s*$/gm)) {
          values.set(Number(m[1]), Number(m[2]));
          signed.set(Number(m[1]), Number(m[3] ?? m[2]));
        }
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr, values, signed });
      },
    );
  });
}

let sim: TankSimulator;

beforeAll(async () => {
  sim = await startTankSimulator({
    settings: { capacityM3: 55, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 },
    seed: 7,
    timeScale: 0,
    initialLevelPercent: 70,
  });
});
afterAll(async () => {
  await sim?.close();
});

describe('tank simulator read by mbpoll', () => {
  it('holding registers 1..10 (PDU 0..9) carry the documented values', async () => {
    const r = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '10', '-t', '4']);
    expect(r.code, r.stderr).toBe(0);
    const level = r.values.get(1)!;
    expect(Math.abs(level - 1750)).toBeLessThanOrEqual(2); // 70 % of 2500 mm, ±2 mm
    expect(level).toBe(sim.model.registers()[0]);
    expect(r.values.get(2)).toBe(550); // 55.0 m³ in 0.1 m³
    expect(r.values.get(3)).toBe(2500); // tank height, mm
    const temp = r.values.get(4)!; // int16, 0.1 °C
    expect(temp).toBeGreaterThan(0);
    expect(temp).toBeLessThan(350);
    expect(r.values.get(5)).toBe(0); // status: all clear
    expect(r.values.get(6)).toBe(0x0102); // firmware 1.2
    expect(r.values.get(7)).toBe(750); // low alarm at 30 % of 2500 mm
    expect(r.values.get(8)).toBe(Math.round(400 + (1600 * level) / 2500)); // 4–20 mA in 0.01 mA
    expect(r.values.get(9)).toBe(0);
    expect(r.values.get(10)).toBe(0);
  });

  it('input registers (FC 04) hold the same map', async () => {
    const holding = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '10', '-t', '4']);
    const input = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '10', '-t', '3']);
    expect(input.code, input.stderr).toBe(0);
    expect([...input.values]).toEqual([...holding.values]);
  });

  it('PDU addressing with -0: address 2 is the tank height', async () => {
    const r = await mbpoll(sim.port, ['-a', '1', '-0', '-r', '2', '-c', '1', '-t', '4']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.values.get(2)).toBe(2500);
  });

  it('uptime is a 32-bit value, high word first (mbpoll -B)', async () => {
    sim.model.advance(100_000 * 1000);
    const r = await mbpoll(sim.port, ['-a', '1', '-r', '9', '-c', '1', '-t', '4:int', '-B']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.values.get(9)).toBe(100_000);
  });

  it('a negative temperature is int16 (two\'s complement, 0.1 °C)', async () => {
    const cold = await startTankSimulator({
      settings: { capacityM3: 40, heightMm: 2000, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 },
      seed: 1,
      timeScale: 0,
      physics: { temperatureMeanC: -12.3, temperatureSeasonalC: 0, temperatureDailyC: 0 },
    });
    try {
      const r = await mbpoll(cold.port, ['-a', '1', '-r', '4', '-c', '1', '-t', '4']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.values.get(4)).toBeGreaterThanOrEqual(0x8000);
      expect(r.signed.get(4)).toBe(Math.round(cold.model.measure().temperatureC * 10));
      expect(Math.abs(r.signed.get(4)! - -123)).toBeLessThanOrEqual(11); // −12.3 °C, ±1 °C per-tank offset, ±0.1 noise
      expect(r.values.get(4)! - 0x10000).toBe(r.signed.get(4));
    } finally {
      await cold.close();
    }
  });

  it('the low-alarm threshold is writable (FC 06), other registers are not, values above the tank are refused', async () => {
    const w = await mbpoll(sim.port, ['-a', '1', '-r', '7', '-t', '4'], ['900']);
    expect(w.code, w.stderr).toBe(0);
    expect(sim.model.lowAlarmMm).toBe(900);
    expect((await mbpoll(sim.port, ['-a', '1', '-r', '7', '-c', '1', '-t', '4'])).values.get(7)).toBe(900);

    const readOnly = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-t', '4'], ['5']);
    expect(readOnly.code).not.toBe(0);
    expect(readOnly.stderr).toMatch(/Illegal data address/);

    const multi = await mbpoll(sim.port, ['-a', '1', '-r', '6', '-t', '4'], ['1', '2']); // FC 16 over firmware + threshold
    expect(multi.stderr).toMatch(/Illegal data address/);
    expect(sim.model.lowAlarmMm).toBe(900);

    const tooHigh = await mbpoll(sim.port, ['-a', '1', '-r', '7', '-t', '4'], ['3000']);
    expect(tooHigh.stderr).toMatch(/Illegal data value/);
    expect(sim.model.lowAlarmMm).toBe(900);
  });

  it('reading past register 10 is exception 02', async () => {
    const r = await mbpoll(sim.port, ['-a', '1', '-r', '10', '-c', '2', '-t', '4']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Illegal data address/);
  });

  it('answers unit ids 1, 0 and 255, and not another unit', async () => {
    for (const unit of ['1', '0', '255']) {
      const r = await mbpoll(sim.port, ['-a', unit, '-r', '3', '-c', '1', '-t', '4']);
      expect(r.values.get(3), `unit ${unit}`).toBe(2500);
    }
    const other = await mbpoll(sim.port, ['-a', '2', '-r', '3', '-c', '1', '-t', '4', '-o', '0.2']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/timed out/i);
  });

  it('serves many clients at once', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '10', '-t', '4'])));
    for (const r of results) expect(r.values.get(3)).toBe(2500);
  });

  it('faults show up on the wire: out_of_range, disconnected, and recovery', async () => {
    sim.setFault('out_of_range');
    const oor = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '5', '-t', '4']);
    expect(oor.values.get(1)).toBe(65535);
    expect(oor.values.get(5)).toBe(0b10);

    sim.setFault('disconnected');
    const gone = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '1', '-t', '4']);
    expect(gone.code).not.toBe(0);
    expect(gone.values.size).toBe(0);

    sim.setFault('none');
    const back = await mbpoll(sim.port, ['-a', '1', '-r', '1', '-c', '5', '-t', '4']);
    expect(back.code, back.stderr).toBe(0);
    expect(Math.abs(back.values.get(1)! - sim.model.trueLevelMm)).toBeLessThanOrEqual(2);
    expect(back.values.get(5)).toBe(0);
  });
});

describe('weather registers (firmware 1.3) read by mbpoll', () => {
  const settings = { capacityM3: 55, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 };
  const place = { lat: 29.43, lon: 105.88 };
  const started: TankSimulator[] = [];
  const start = async (opts: Omit<Parameters<typeof startTankSimulator>[0], 'settings' | 'seed' | 'timeScale'>) => {
    const s = await startTankSimulator({ settings, seed: 7, timeScale: 0, initialLevelPercent: 70, ...opts });
    started.push(s);
    return s;
  };
  afterAll(async () => {
    await Promise.all(started.map((s) => s.close()));
  });

  it('registers 11..13 (PDU 10..12): air temperature 0.1 °C, humidity 0.1 %RH, rain today 0.1 mm', async () => {
    const s = await start({ weather: place, startTimeMs: Date.UTC(2026, 0, 15, 5) }); // 13:00 CST
    const w = s.model.measure().weather!;
    const all = await mbpoll(s.port, ['-a', '1', '-r', '1', '-c', '13', '-t', '4']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.values.get(6)).toBe(0x0103); // firmware 1.3
    expect(all.signed.get(11)).toBe(Math.round(w.airTemperatureC * 10));
    expect(all.values.get(12)).toBe(Math.round(w.humidityPercent * 10));
    expect(all.values.get(13)).toBe(Math.round(w.rainTodayMm * 10));
    expect(all.values.get(12)).toBeGreaterThan(0);
    expect(all.values.get(12)).toBeLessThanOrEqual(1000);
    const weather = await mbpoll(s.port, ['-a', '1', '-r', '11', '-c', '3', '-t', '3']); // input registers too
    expect([...weather.values.values()]).toEqual([11, 12, 13].map((r) => all.values.get(r)));
  });

  it('a negative air temperature is int16', async () => {
    const site = new SiteWeather({ seed: 1, climate: { meanC: -25, seasonalC: 0, anomalyC: 0 } });
    const s = await start({ weather: { ...place, site } });
    const r = await mbpoll(s.port, ['-a', '1', '-r', '11', '-c', '1', '-t', '4']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.values.get(11)).toBeGreaterThanOrEqual(0x8001);
    expect(r.signed.get(11)).toBe(Math.round(s.model.measure().weather!.airTemperatureC * 10));
    expect(r.signed.get(11)).toBeLessThan(-100);
  });

  it('without a weather sensor the three read 0x8000, shown as 32768 (-32768)', async () => {
    const s = await start({ firmware: '1.3' });
    const r = await mbpoll(s.port, ['-a', '1', '-r', '11', '-c', '3', '-t', '4']);
    expect(r.code, r.stderr).toBe(0);
    for (const ref of [11, 12, 13]) {
      expect(r.values.get(ref)).toBe(32768);
      expect(r.signed.get(ref)).toBe(-32768);
    }
    expect(r.stdout).toMatch(/\[11\]:\s+32768 \(-32768\)/);
  });

  it('reading past register 13 is exception 02; firmware 1.2 has no registers past 10', async () => {
    const s = await start({ weather: place });
    const past = await mbpoll(s.port, ['-a', '1', '-r', '13', '-c', '2', '-t', '4']);
    expect(past.stderr).toMatch(/Illegal data address/);
    const old = await mbpoll(sim.port, ['-a', '1', '-r', '11', '-c', '3', '-t', '4']); // the firmware 1.2 tank above
    expect(old.code).not.toBe(0);
    expect(old.stderr).toMatch(/Illegal data address/);
  });
});
