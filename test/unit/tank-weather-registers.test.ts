/**
 * The weather registers (10–12, firmware 1.3) of the tank transmitter map: scaling, negative
 * temperatures, the 0x8000 "no data" sentinel, decoding a short (older) map, and the simulated
 * transmitter answering with the map its firmware has.
 */
import { describe, expect, it } from 'vitest';
import { ExceptionCode, ModbusException } from '../../edge-agent/src/modbus/mbap.js';
import {
  decodeTankRegisters,
  encodeTankRegisters,
  NO_DATA,
  TANK_BASE_REGISTER_COUNT,
  TANK_REGISTER_COUNT,
  tankRegisterCount,
  TankRegister,
  type TankRegisterValues,
} from '../../edge-agent/src/modbus/tank-registers.js';
import { WaterTankModel } from '../../simulators/src/water-tank/model.js';
import { SiteWeather, WeatherStation } from '../../simulators/src/water-tank/weather.js';

const base: TankRegisterValues = {
  levelMm: 1751,
  capacityM3: 55,
  heightMm: 2500,
  temperatureC: 9.8,
  status: 0,
  firmware: '1.3',
  lowAlarmMm: 750,
  loopCurrentMa: 15.21,
  uptimeS: 35,
};

describe('weather register codec', () => {
  it('appends three registers after the old map without moving it', () => {
    expect(TankRegister).toMatchObject({ UPTIME_LO: 9, AIR_TEMPERATURE: 10, HUMIDITY: 11, RAIN_TODAY: 12 });
    expect(TANK_BASE_REGISTER_COUNT).toBe(10);
    expect(TANK_REGISTER_COUNT).toBe(13);
    const regs = encodeTankRegisters({ ...base, airTemperatureC: 14.6, humidityPercent: 41.5, rainTodayMm: 0 });
    expect(regs).toHaveLength(13);
    expect(regs.slice(0, 10)).toEqual([1751, 550, 2500, 98, 0, 0x0103, 750, 1521, 0, 35]);
    expect(regs.slice(10)).toEqual([146, 415, 0]);
  });

  it('round-trips weather values, negative temperatures as int16', () => {
    const v = { ...base, airTemperatureC: -2.5, humidityPercent: 100, rainTodayMm: 123.4 };
    const regs = encodeTankRegisters(v);
    expect(regs[TankRegister.AIR_TEMPERATURE]).toBe(0xffe7);
    expect(regs[TankRegister.HUMIDITY]).toBe(1000);
    expect(regs[TankRegister.RAIN_TODAY]).toBe(1234);
    expect(decodeTankRegisters(regs)).toEqual(v);
    expect(decodeTankRegisters(encodeTankRegisters({ ...v, airTemperatureC: -40 })).airTemperatureC).toBe(-40);
    expect(decodeTankRegisters(encodeTankRegisters({ ...v, airTemperatureC: 0 })).airTemperatureC).toBe(0);
  });

  it('writes 0x8000 for a missing value and leaves it out when decoding', () => {
    const regs = encodeTankRegisters(base);
    expect(regs.slice(10)).toEqual([NO_DATA, NO_DATA, NO_DATA]);
    const decoded = decodeTankRegisters(regs);
    expect(decoded).toEqual(base);
    expect(Object.keys(decoded)).not.toContain('airTemperatureC');
    const partial = decodeTankRegisters(encodeTankRegisters({ ...base, humidityPercent: 80 }));
    expect(partial.humidityPercent).toBe(80);
    expect(partial.airTemperatureC).toBeUndefined();
    expect(partial.rainTodayMm).toBeUndefined();
    expect(encodeTankRegisters({ ...base, airTemperatureC: Number.NaN })[TankRegister.AIR_TEMPERATURE]).toBe(NO_DATA);
  });

  it('never lets a real value read as the sentinel', () => {
    const regs = encodeTankRegisters({ ...base, airTemperatureC: -5000, humidityPercent: 5000, rainTodayMm: -1 });
    expect(regs[TankRegister.AIR_TEMPERATURE]).toBe(0x8001); // −3276.7 °C: absurd, but not "no data"
    expect(regs[TankRegister.HUMIDITY]).toBe(0x7fff);
    expect(regs[TankRegister.RAIN_TODAY]).toBe(0);
    expect(regs.every((r) => Number.isInteger(r) && r >= 0 && r <= 0xffff)).toBe(true);
  });

  it('decodes a read of the old map (registers 0..9) without weather', () => {
    const regs = encodeTankRegisters({ ...base, airTemperatureC: 14.6, humidityPercent: 41.5, rainTodayMm: 0 }).slice(0, 10);
    const decoded = decodeTankRegisters(regs);
    expect(decoded.levelMm).toBe(1751);
    expect(decoded.airTemperatureC).toBeUndefined();
    expect(decoded.humidityPercent).toBeUndefined();
    expect(() => decodeTankRegisters(regs.slice(0, 9))).toThrow(RangeError);
  });

  it('the map follows the firmware: 1.3 and later have the weather registers', () => {
    expect(tankRegisterCount('1.2')).toBe(10);
    expect(tankRegisterCount('0.9')).toBe(10);
    expect(tankRegisterCount('1.3')).toBe(13);
    expect(tankRegisterCount('1.10')).toBe(13);
    expect(tankRegisterCount('2.0')).toBe(13);
  });
});

describe('the simulated transmitter', () => {
  const tank = (opts: Partial<ConstructorParameters<typeof WaterTankModel>[0]> = {}) =>
    new WaterTankModel({ heightMm: 2500, capacityM3: 55, lowPercent: 30, seed: 42, startTimeMs: Date.UTC(2025, 11, 15, 5), ...opts });
  const exceptionOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      if (err instanceof ModbusException) return err.exceptionCode;
      throw err;
    }
    return undefined;
  };
  const station = () => new WeatherStation({ site: new SiteWeather({ seed: 1 }), lat: 29.43, lon: 105.88, seed: 42 });

  it('with a weather sensor: firmware 1.3, 13 registers holding its readings', () => {
    const m = tank({ weather: station() });
    const regs = m.readRegisters(0, 13);
    const w = m.measure().weather!;
    expect(regs[TankRegister.FIRMWARE]).toBe(0x0103);
    expect(regs.slice(10)).toEqual(encodeTankRegisters({ ...base, ...w }).slice(10));
    expect(decodeTankRegisters(regs)).toMatchObject(w);
    expect(exceptionOf(() => m.readRegisters(12, 2))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(m.readRegisters(11, 2)).toHaveLength(2);
  });

  it('keeps reading the weather while the level sensor is faulty', () => {
    const m = tank({ weather: station() });
    m.setFault('sensor_fault');
    expect(m.readRegisters(10, 3)).not.toContain(NO_DATA);
  });

  it('firmware 1.3 without a sensor reads NO_DATA; firmware 1.2 has no weather registers', () => {
    expect(tank({ firmware: '1.3' }).readRegisters(10, 3)).toEqual([NO_DATA, NO_DATA, NO_DATA]);
    const old = tank();
    expect(old.firmware).toBe('1.2');
    expect(old.registers()).toHaveLength(10);
    expect(exceptionOf(() => old.readRegisters(0, 13))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(exceptionOf(() => old.readRegisters(10, 1))).toBe(ExceptionCode.ILLEGAL_DATA_ADDRESS);
    expect(() => tank({ firmware: '1.2', weather: station() })).toThrow(/no weather registers/);
  });
});
