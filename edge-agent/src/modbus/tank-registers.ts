/**
 * Register map of the GreenShield water-tank level transmitter (see
 * docs/devices/water-tank-modbus.md, which is written from this file). The agent decodes with it
 * and the simulator encodes with it; the mbpoll integration test checks the documented numbers
 * independently of both.
 *
 * Holding registers (FC 03) and input registers (FC 04) hold the same map. Addresses are PDU
 * addresses (0-based); register 40001 / mbpoll `-r 1` is address 0. 16-bit values big-endian;
 * the one 32-bit value puts its high word first.
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
} as const;

/** Registers 0..9; reading past the end is exception 02. */
export const TANK_REGISTER_COUNT = 10;

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
}

const u16 = (v: number) => Math.max(0, Math.min(0xffff, Math.round(v)));

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
  ];
}

/** Decodes registers 0..9 (a read starting at address 0). */
export function decodeTankRegisters(regs: readonly number[]): TankRegisterValues {
  if (regs.length < TANK_REGISTER_COUNT) throw new RangeError(`need ${TANK_REGISTER_COUNT} registers, got ${regs.length}`);
  const r = (i: number) => regs[i] ?? 0;
  const fw = r(TankRegister.FIRMWARE);
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
  };
}
