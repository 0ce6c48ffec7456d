import { describe, expect, it } from 'vitest';
import { WaterTankModel, type TankModelOptions } from '../../simulators/src/water-tank/model.js';
import { ExceptionCode, ModbusException } from '../../edge-agent/src/modbus/mbap.js';
import {
  decodeTankRegisters,
  encodeTankRegisters,
  LEVEL_INVALID,
  TankRegister,
  TankStatus,
} from '../../edge-agent/src/modbus/tank-registers.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const QUIET = { drawsPerDay: 0 }; // no random draws: drain is evaporation + seepage only

function tank(opts: Partial<TankModelOptions> = {}): WaterTankModel {
  return new WaterTankModel({ heightMm: 2500, capacityM3: 55, lowPercent: 30, seed: 42, ...opts });
}

function exceptionOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ModbusException) return err.exceptionCode;
    throw err;
  }
  return undefined;
}

describe('water tank model: physics', () => {
  it('drains by evaporation and seepage at the configured rates when nothing else happens', () => {
    const m = tank({ initialLevelPercent: 90, physics: QUIET });
    const before = m.trueLevelMm;
    m.advance(DAY);
    const drop = before - m.trueLevelMm;
    // 4 mm/day evaporation + 0.1 %/day of 2250 mm seepage = 6.25 mm
    expect(drop).toBeGreaterThan(6.0);
    expect(drop).toBeLessThan(6.5);
    expect(m.activity).toBe('idle');
  });

  it('a draw for other uses lowers the level by the volume drawn', () => {
    const m = tank({ initialLevelPercent: 90, physics: { ...QUIET, evaporationMmPerDay: 0, seepagePercentPerDay: 0 } });
    const before = m.trueLevelMm;
    m.startDraw(6, 30); // 3 m³ from a 22 m² tank
    expect(m.activity).toBe('draw');
    m.advance(HOUR);
    expect(m.activity).toBe('idle');
    expect(before - m.trueLevelMm).toBeCloseTo((3 * 2500) / 55, 0);
  });

  it('random draws happen at roughly the configured rate', () => {
    const m = tank({ initialLevelPercent: 95, physics: { drawsPerDay: 4, drawMinutes: [10, 10], drawFlowM3PerHour: [1, 1] } });
    let draws = 0;
    let last = m.activity;
    for (let i = 0; i < 10 * 24 * 60; i++) {
      m.advance(60_000);
      if (m.activity === 'draw' && last !== 'draw') draws++;
      last = m.activity;
    }
    expect(draws).toBeGreaterThan(20); // Poisson mean 40 over 10 days
    expect(draws).toBeLessThan(65);
  });

  it('below the low mark a refill is arranged hours later and raises the level over tens of minutes', () => {
    const m = tank({ initialLevelPercent: 25, physics: QUIET });
    m.advance(1000);
    const due = m.refillDueAtMs;
    expect(due).toBeDefined();
    expect(due! - m.simTimeMs).toBeGreaterThanOrEqual(2 * HOUR - 2000);
    expect(due! - m.simTimeMs).toBeLessThanOrEqual(12 * HOUR);
    m.advanceTo(due! + 2000);
    expect(m.activity).toBe('refill');
    const startedAt = m.simTimeMs;
    const low = m.trueLevelMm;
    while (m.activity === 'refill' && m.simTimeMs - startedAt < 6 * HOUR) m.advance(60_000);
    const minutes = (m.simTimeMs - startedAt) / 60_000;
    expect(m.trueLevelMm).toBeGreaterThan(0.95 * 2500 - 5);
    expect(m.trueLevelMm).toBeLessThanOrEqual(2500);
    expect(m.trueLevelMm - low).toBeGreaterThan(1500);
    // ~43 m³ at 20–40 m³/h
    expect(minutes).toBeGreaterThan(55);
    expect(minutes).toBeLessThan(140);
  });

  it('a refill never overflows the tank', () => {
    const m = tank({ initialLevelPercent: 90, physics: QUIET });
    m.startRefill(100, 40);
    m.advance(3 * HOUR);
    expect(m.trueLevelMm).toBeLessThanOrEqual(2500);
    expect(m.registers()[TankRegister.LEVEL_MM]).toBeLessThanOrEqual(2502);
  });

  it('keeps water temperature plausible and varying over the day', () => {
    const m = tank();
    const temps: number[] = [];
    for (let h = 0; h < 24; h++) {
      temps.push(m.temperatureC);
      m.advance(HOUR);
    }
    expect(Math.min(...temps)).toBeGreaterThan(0);
    expect(Math.max(...temps)).toBeLessThan(35);
    expect(Math.max(...temps) - Math.min(...temps)).toBeGreaterThan(2);
  });
});

describe('water tank model: the transmitter', () => {
  it('reports the level within ±2 mm of the true level, with noise that is not constant', () => {
    const m = tank({ physics: QUIET });
    const diffs = new Set<number>();
    let sum = 0;
    const n = 5000;
    for (let i = 0; i < n; i++) {
      m.advance(1000);
      const reported = m.registers()[TankRegister.LEVEL_MM]!;
      const diff = reported - m.trueLevelMm;
      expect(Math.abs(diff)).toBeLessThanOrEqual(2);
      diffs.add(Math.round(diff));
      sum += diff;
    }
    expect(diffs.size).toBeGreaterThanOrEqual(3);
    expect(Math.abs(sum / n)).toBeLessThan(0.2); // unbiased
  });

  it('reading the registers does not change the state (noise is a function of time)', () => {
    const m = tank();
    m.advance(HOUR);
    const a = m.registers();
    expect(m.registers()).toEqual(a);
    expect(m.registers()).toEqual(a);
  });

  it('holds the documented static registers', () => {
    const m = tank();
    const regs = m.registers();
    expect(regs).toHaveLength(10);
    expect(regs[TankRegister.CAPACITY]).toBe(550);
    expect(regs[TankRegister.HEIGHT_MM]).toBe(2500);
    expect(regs[TankRegister.FIRMWARE]).toBe(0x0102);
    expect(regs[TankRegister.LOW_ALARM_MM]).toBe(750);
    const level = regs[TankRegister.LEVEL_MM]!;
    expect(regs[TankRegister.LOOP_CURRENT]).toBe(Math.round(400 + (1600 * level) / 2500));
  });

  it('counts uptime in a 32-bit register pair, high word first', () => {
    const m = tank();
    m.advance(100_000 * 1000);
    const regs = m.registers();
    expect(regs[TankRegister.UPTIME_HI]).toBe(1);
    expect(regs[TankRegister.UPTIME_LO]).toBe(100_000 - 65_536);
  });

  it('sets the low-level alarm bit below the writable threshold', () => {
    const m = tank({ initialLevelPercent: 35, physics: QUIET });
    expect(m.registers()[TankRegister.STATUS]! & TankStatus.LOW_LEVEL_ALARM).toBe(0);
    m.writeRegisters(TankRegister.LOW_ALARM_MM, [1000]);
    expect(m.registers()[TankRegister.LOW_ALARM_MM]).toBe(1000);
    expect(m.registers()[TankRegister.STATUS]! & TankStatus.LOW_LEVEL_ALARM).toBe(TankStatus.LOW_LEVEL_ALARM);
  });

  it('rejects writes to read-only registers (02), values above the tank (03) and reads past the map (02)', () => {
    const m = tank();
    expect(exceptionOf(() => m.writeRegisters(TankRegister.LEVEL_MM, [100]))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(exceptionOf(() => m.writeRegisters(TankRegister.FIRMWARE, [1, 2]))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(exceptionOf(() => m.writeRegisters(TankRegister.LOW_ALARM_MM, [2501]))).toBe(ExceptionCode.ILLEGAL_DATA_VALUE);
    expect(exceptionOf(() => m.readRegisters(9, 2))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(exceptionOf(() => m.readRegisters(100, 1))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(m.readRegisters(8, 2)).toHaveLength(2);
    expect(m.lowAlarmMm).toBe(750);
  });
});

describe('water tank model: faults', () => {
  it('stuck: the reported level freezes while the water keeps moving, with no status bit', () => {
    const m = tank({ initialLevelPercent: 80, physics: QUIET });
    m.setFault('stuck');
    const frozen = m.registers()[TankRegister.LEVEL_MM];
    m.startDraw(10, 60);
    for (let i = 0; i < 60; i++) {
      m.advance(60_000);
      expect(m.registers()[TankRegister.LEVEL_MM]).toBe(frozen);
      expect(m.registers()[TankRegister.STATUS]).toBe(0);
    }
    expect(frozen! - m.trueLevelMm).toBeGreaterThan(400);
    m.setFault('none');
    expect(Math.abs(m.registers()[TankRegister.LEVEL_MM]! - m.trueLevelMm)).toBeLessThanOrEqual(2);
  });

  it('out_of_range: an impossible level with status bit 1 and a 22 mA loop', () => {
    const m = tank();
    m.setFault('out_of_range');
    const r = decodeTankRegisters(m.registers());
    expect(r.levelMm).toBe(LEVEL_INVALID);
    expect(r.levelMm).toBeGreaterThan(r.heightMm);
    expect(r.status & TankStatus.OUT_OF_RANGE).toBe(TankStatus.OUT_OF_RANGE);
    expect(r.loopCurrentMa).toBe(22);
    m.setFault('none');
    expect(decodeTankRegisters(m.registers()).status & TankStatus.OUT_OF_RANGE).toBe(0);
  });

  it('sensor_fault: status bit 0 and a 3.5 mA loop', () => {
    const m = tank();
    m.setFault('sensor_fault');
    const r = decodeTankRegisters(m.registers());
    expect(r.status & TankStatus.SENSOR_FAULT).toBe(TankStatus.SENSOR_FAULT);
    expect(r.loopCurrentMa).toBe(3.5);
  });
});

describe('water tank model: determinism', () => {
  const trace = (m: WaterTankModel, steps: number, stepMs: number) => {
    const out: number[][] = [];
    for (let i = 0; i < steps; i++) {
      m.advance(stepMs);
      out.push(m.registers());
    }
    return out;
  };

  it('the same seed gives the same readings', () => {
    const physics = { drawsPerDay: 6 };
    expect(trace(tank({ seed: 7, physics }), 200, 10 * 60_000)).toEqual(trace(tank({ seed: 7, physics }), 200, 10 * 60_000));
  });

  it('a different seed gives different readings', () => {
    expect(trace(tank({ seed: 7 }), 50, 60_000)).not.toEqual(trace(tank({ seed: 8 }), 50, 60_000));
  });

  it('the state does not depend on how time was stepped', () => {
    const physics = { drawsPerDay: 6 };
    const coarse = tank({ seed: 3, physics });
    coarse.advance(2 * DAY);
    const fine = tank({ seed: 3, physics });
    for (let i = 0; i < 2 * 24 * 60; i++) fine.advance(59_999 + (i % 3)); // uneven steps, same total ± carry
    fine.advanceTo(coarse.simTimeMs);
    expect(fine.simTimeMs).toBe(coarse.simTimeMs);
    expect(fine.trueLevelMm).toBe(coarse.trueLevelMm);
    expect(fine.registers()).toEqual(coarse.registers());
  });
});

describe('tank register codec', () => {
  it('round-trips every field, including negative temperatures and 32-bit uptime', () => {
    const v = {
      levelMm: 1234,
      capacityM3: 55.5,
      heightMm: 2500,
      temperatureC: -3.7,
      status: 0b101,
      firmware: '1.2',
      lowAlarmMm: 750,
      loopCurrentMa: 11.9,
      uptimeS: 4_000_000_000,
    };
    const regs = encodeTankRegisters(v);
    expect(regs[TankRegister.TEMPERATURE]).toBe(0x10000 - 37);
    expect(regs.every((r) => Number.isInteger(r) && r >= 0 && r <= 0xffff)).toBe(true);
    expect(decodeTankRegisters(regs)).toEqual(v);
  });
});
