/**
 * Register map of the GreenShield water-tank level transmitter (see
 * docs/devices/water-tank-modbus.md, which is written from this file). The agent decodes with it
 * and the simulator encodes with it; the mbpoll integration test checks the documented numbers
 * independently of both.
 *
 * Holding registers (FC 03) and input registers (FC 04) hold the same map. Addresses are PDU
 * addresses (0-based); register 40001 / mbpoll `-r 1` is address 0. 16-bit values big-endian;
 * the one 32-bit value puts its high word first.
 *
 * Firmware 1.3 appended registers 10–12 for a weather sensor on the same cabinet (air
 * temperature, humidity, the rain gauge's daily counter); older firmware has 0–9 only and
 * answers exception 02 past them. Without a weather sensor, 10–12 read NO_DATA.
 */
import { fromInt16, toInt16 } from './mbap.js';

export const TankRegister = {
  /** uint16, mm of water above the tank floor; 0xFFFF when over range */
  LEVEL_MM: 0,
  /** uint16, 0.1 m³ */
  CAPACITY: 1,
  /** uint16, mm: the transmitter's full-scale level (the tank's usable height) */
  HEIGHT_MM: 2,
  /** int16, 0.1 °C */
  TEMPERATURE: 3,
  /** uint16 bit field, TankStatus */
  STATUS: 4,
  /** uint16, major << 8 | minor */
  FIRMWARE: 5,
  /** uint16, mm; writable (FC 06/16); the low-level alarm bit is set below it */
  LOW_ALARM_MM: 6,
  /** uint16, 0.01 mA: the 4–20 mA loop current the level is derived from */
  LOOP_CURRENT: 7,
  /** uint32 across two registers (high word first), seconds since power-on */
  UPTIME_HI: 8,
  UPTIME_LO: 9,
  /** int16, 0.1 °C, air temperature at the cabinet; NO_DATA without a weather sensor (firmware ≥ 1.3) */
  AIR_TEMPERATURE: 10,
  /** uint16, 0.1 %RH; NO_DATA without a weather sensor (firmware ≥ 1.3) */
  HUMIDITY: 11,
  /** uint16, 0.1 mm of rain since local midnight (the gauge's daily counter); NO_DATA without a gauge (firmware ≥ 1.3) */
  RAIN_TODAY: 12,
} as const;

/** The whole map, registers 0..12 (firmware 1.3 and later); reading past the end is exception 02. */
export const TANK_REGISTER_COUNT = 13;
/** Registers 0..9: the map of firmware before 1.3, which has no weather registers. */
export const TANK_BASE_REGISTER_COUNT = 10;

/** How many registers a transmitter with this firmware ("major.minor") has. */
export function tankRegisterCount(firmware: string): number {
  const [major = 0, minor = 0] = firmware.split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 3) ? TANK_REGISTER_COUNT : TANK_BASE_REGISTER_COUNT;
}

/**
 * A weather register with nothing to report: no sensor fitted, or the sensor not answering.
 * 0x8000 (−32768 as int16) is the "no data" value industrial transmitters commonly use; it is
 * outside every valid range here, signed or not.
 */
export const NO_DATA = 0x8000;

export const TankStatus = {
  /** no echo / loop current below 3.6 mA (NAMUR NE 43 low): the level is not valid */
  SENSOR_FAULT: 1 << 0,
  /** loop current above 20.5 mA: the reading is beyond full scale and not valid */
  OUT_OF_RANGE: 1 << 1,
  /** level below the LOW_ALARM_MM register */
  LOW_LEVEL_ALARM: 1 << 2,
} as const;

/** Level register value sent while over range. */
export const LEVEL_INVALID = 0xffff;

export interface TankRegisterValues {
  levelMm: number;
  capacityM3: number;
  heightMm: number;
  temperatureC: number;
  status: number;
  firmware: string;
  lowAlarmMm: number;
  loopCurrentMa: number;
  uptimeS: number;
  /** °C; absent: NO_DATA (or a map without the weather registers) */
  airTemperatureC?: number;
  /** %RH; absent: NO_DATA */
  humidityPercent?: number;
  /** mm since local midnight; absent: NO_DATA */
  rainTodayMm?: number;
}

const u16 = (v: number) => Math.max(0, Math.min(0xffff, Math.round(v)));
/** A weather value in tenths, or NO_DATA; clamped so that no real value can read as NO_DATA. */
function weatherRegister(v: number | undefined, signed: boolean): number {
  if (v === undefined || !Number.isFinite(v)) return NO_DATA;
  const tenths = Math.max(signed ? -0x7fff : 0, Math.min(0x7fff, Math.round(v * 10)));
  return fromInt16(tenths);
}

export function encodeTankRegisters(v: TankRegisterValues): number[] {
  const [major, minor] = v.firmware.split('.').map(Number);
  const uptime = Math.max(0, Math.floor(v.uptimeS)) >>> 0;
  return [
    u16(v.levelMm),
    u16(v.capacityM3 * 10),
    u16(v.heightMm),
    fromInt16(v.temperatureC * 10),
    v.status & 0xffff,
    (((major ?? 0) & 0xff) << 8) | ((minor ?? 0) & 0xff),
    u16(v.lowAlarmMm),
    u16(v.loopCurrentMa * 100),
    uptime >>> 16,
    uptime & 0xffff,
    weatherRegister(v.airTemperatureC, true),
    weatherRegister(v.humidityPercent, false),
    weatherRegister(v.rainTodayMm, false),
  ];
}

/**
 * Decodes a read starting at address 0: registers 0..9, and the weather registers if the read
 * covered them (NO_DATA ones are left out).
 */
export function decodeTankRegisters(regs: readonly number[]): TankRegisterValues {
  if (regs.length < TANK_BASE_REGISTER_COUNT) throw new RangeError(`need ${TANK_BASE_REGISTER_COUNT} registers, got ${regs.length}`);
  const r = (i: number) => regs[i] ?? 0;
  const fw = r(TankRegister.FIRMWARE);
  const weather: Pick<TankRegisterValues, 'airTemperatureC' | 'humidityPercent' | 'rainTodayMm'> = {};
  if (regs.length >= TANK_REGISTER_COUNT) {
    if (r(TankRegister.AIR_TEMPERATURE) !== NO_DATA) weather.airTemperatureC = toInt16(r(TankRegister.AIR_TEMPERATURE)) / 10;
    if (r(TankRegister.HUMIDITY) !== NO_DATA) weather.humidityPercent = r(TankRegister.HUMIDITY) / 10;
    if (r(TankRegister.RAIN_TODAY) !== NO_DATA) weather.rainTodayMm = r(TankRegister.RAIN_TODAY) / 10;
  }
  return {
    levelMm: r(TankRegister.LEVEL_MM),
    capacityM3: r(TankRegister.CAPACITY) / 10,
    heightMm: r(TankRegister.HEIGHT_MM),
    temperatureC: toInt16(r(TankRegister.TEMPERATURE)) / 10,
    status: r(TankRegister.STATUS),
    firmware: `${fw >> 8}.${fw & 0xff}`,
    lowAlarmMm: r(TankRegister.LOW_ALARM_MM),
    loopCurrentMa: r(TankRegister.LOOP_CURRENT) / 100,
    uptimeS: r(TankRegister.UPTIME_HI) * 0x10000 + r(TankRegister.UPTIME_LO),
    ...weather,
  };
}
