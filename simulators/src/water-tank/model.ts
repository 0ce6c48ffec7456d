/**
 * A fire-fighting water tank and its level transmitter (ultrasonic or pressure, 4–20 mA into an
 * RS485/TCP Modbus gateway). The water drains slowly (evaporation, seepage), is now and then drawn
 * off for other uses (the misuse GB 50974 asks to watch for), and is refilled by people some hours
 * after it falls below the low mark (monitoring never refills by itself). The transmitter reads
 * the level with ±2 mm class noise.
 *
 * Time advances in fixed ticks of simulated time, and random draws happen per tick, so the state
 * depends only on the seed and the simulated time reached, not on how the steps were cut: a model
 * advanced by 1 h once equals one advanced by 1 s 3600 times. Noise is a hash of (seed, tick),
 * so reading the registers never changes the state.
 *
 * A transmitter with firmware 1.3 or later has the weather registers; a weather sensor on the
 * cabinet (weather.ts) fills them, otherwise they read NO_DATA. Older firmware has none.
 */
import { prng } from '../fleet/geography.js';
import { encodeTankRegisters, LEVEL_INVALID, tankRegisterCount, TankRegister, TankStatus } from '../../../edge-agent/src/modbus/tank-registers.js';
import { ExceptionCode, ModbusException } from '../../../edge-agent/src/modbus/mbap.js';
import type { WeatherReading, WeatherStation } from './weather.js';

/** Faults inside the transmitter; transport faults (disconnected) belong to the simulator. */
export type TankSensorFault = 'none' | 'stuck' | 'out_of_range' | 'sensor_fault';
export type TankActivity = 'idle' | 'draw' | 'refill';

export interface TankPhysics {
  evaporationMmPerDay: number;
  /** loss per day as a share of the current volume, in % */
  seepagePercentPerDay: number;
  /** mean number of draws for other uses per day (Poisson) */
  drawsPerDay: number;
  drawFlowM3PerHour: [number, number];
  drawMinutes: [number, number];
  refillFlowM3PerHour: [number, number];
  /** delay from falling below the low mark to the refill starting */
  refillDelayHours: [number, number];
  refillTargetPercent: [number, number];
  /** half-width of the level noise before rounding to whole mm (1.5 → reported within ±2 mm) */
  noiseMm: number;
  /** water temperature: yearly mean, seasonal and daily half-amplitudes (°C) */
  temperatureMeanC: number;
  temperatureSeasonalC: number;
  temperatureDailyC: number;
}

export const DEFAULT_TANK_PHYSICS: Readonly<TankPhysics> = {
  evaporationMmPerDay: 4,
  seepagePercentPerDay: 0.1,
  drawsPerDay: 0.25,
  drawFlowM3PerHour: [3, 10],
  drawMinutes: [10, 60],
  refillFlowM3PerHour: [20, 40],
  refillDelayHours: [2, 12],
  refillTargetPercent: [95, 99],
  noiseMm: 1.5,
  temperatureMeanC: 16,
  temperatureSeasonalC: 8,
  temperatureDailyC: 1.5,
};

export interface TankModelOptions {
  heightMm: number;
  capacityM3: number;
  /** refill is arranged below this; also the transmitter's initial low-alarm threshold */
  lowPercent: number;
  seed: number;
  /** simulated wall-clock time at tick 0, ms since the epoch (temperature follows it). Default 2025-04-01T00:00+08:00. */
  startTimeMs?: number;
  /** default: random in 70–98 % */
  initialLevelPercent?: number;
  /** simulated seconds per tick; default 1 */
  tickS?: number;
  physics?: Partial<TankPhysics>;
  /** "major.minor"; default 1.3 with a weather sensor, else 1.2. 1.3 and later have the weather registers. */
  firmware?: string;
  /** the weather sensor on the transmitter's cabinet, if it has one (needs firmware ≥ 1.3) */
  weather?: WeatherStation;
}

export interface TankMeasurement {
  /** level register value: mm, or LEVEL_INVALID / 0 while faulted */
  levelMm: number;
  temperatureC: number;
  loopCurrentMa: number;
  status: number;
  /** the cabinet's weather sensor, if there is one */
  weather?: WeatherReading;
}

const DAY_S = 86_400;
const DEFAULT_START = Date.UTC(2025, 2, 31, 16, 0, 0); // 2025-04-01 00:00 China Standard Time
const lerp = ([a, b]: [number, number], u: number) => a + (b - a) * u;

export class WaterTankModel {
  readonly heightMm: number;
  readonly capacityM3: number;
  readonly lowPercent: number;
  readonly seed: number;
  readonly startTimeMs: number;
  readonly tickS: number;
  readonly physics: Readonly<TankPhysics>;
  readonly firmware: string;
  /** registers 0..registerCount−1 exist (10, or 13 with the weather registers) */
  readonly registerCount: number;
  readonly weather: WeatherStation | undefined;
  /** mm of level per m³ of water (the tank is taken as prismatic) */
  readonly mmPerM3: number;

  #rand: () => number;
  #tick = 0;
  #carryMs = 0;
  #levelMm: number;
  #lowAlarmMm: number;
  #fault: TankSensorFault = 'none';
  #stuck: { levelMm: number; loopCurrentMa: number } | undefined;
  #draw: { mmPerS: number; remainingS: number } | undefined;
  #refill: { mmPerS: number; targetMm: number } | undefined;
  #refillDueTick: number | undefined;
  /** this tank's offset from the regional water temperature (shade, depth), ±1 °C */
  #temperatureOffsetC: number;

  constructor(opts: TankModelOptions) {
    if (!(opts.heightMm > 0) || !(opts.capacityM3 > 0)) throw new RangeError('tank height and capacity must be positive');
    this.heightMm = opts.heightMm;
    this.capacityM3 = opts.capacityM3;
    this.lowPercent = opts.lowPercent;
    this.seed = opts.seed >>> 0;
    this.startTimeMs = opts.startTimeMs ?? DEFAULT_START;
    this.tickS = opts.tickS ?? 1;
    this.physics = { ...DEFAULT_TANK_PHYSICS, ...opts.physics };
    this.firmware = opts.firmware ?? (opts.weather ? '1.3' : '1.2');
    this.registerCount = tankRegisterCount(this.firmware);
    if (opts.weather && this.registerCount <= TankRegister.RAIN_TODAY) {
      throw new RangeError(`firmware ${this.firmware} has no weather registers (1.3 and later have)`);
    }
    this.weather = opts.weather;
    this.mmPerM3 = this.heightMm / this.capacityM3;
    this.#rand = prng(this.seed);
    const initial = opts.initialLevelPercent ?? 70 + 28 * this.#rand();
    this.#levelMm = (Math.max(0, Math.min(100, initial)) / 100) * this.heightMm;
    this.#lowAlarmMm = Math.round((this.lowPercent / 100) * this.heightMm);
    this.#temperatureOffsetC = 2 * this.#rand() - 1;
  }

  // ---- time ----------------------------------------------------------------------------------

  /** Simulated time now, ms since the epoch. */
  get simTimeMs(): number {
    return this.startTimeMs + this.#tick * this.tickS * 1000;
  }
  get elapsedS(): number {
    return this.#tick * this.tickS;
  }

  /** Advances simulated time by `dtMs` (a remainder shorter than a tick is carried over). */
  advance(dtMs: number): void {
    if (!(dtMs > 0)) return;
    const tickMs = this.tickS * 1000;
    this.#carryMs += dtMs;
    const ticks = Math.floor(this.#carryMs / tickMs);
    this.#carryMs -= ticks * tickMs;
    for (let i = 0; i < ticks; i++) this.#step();
  }

  /** Advances to an absolute simulated time; earlier times are ignored (time never runs back). */
  advanceTo(simTimeMs: number): void {
    this.advance(simTimeMs - this.simTimeMs - this.#carryMs);
  }

  #step(): void {
    const p = this.physics;
    const dt = this.tickS;
    let level = this.#levelMm;
    level -= (p.evaporationMmPerDay / DAY_S) * dt;
    level -= level * (p.seepagePercentPerDay / 100 / DAY_S) * dt;

    // One draw per tick from the stream, whatever happens, so the stream stays aligned with time.
    const u = this.#rand();
    if (this.#draw) {
      level -= this.#draw.mmPerS * dt;
      this.#draw.remainingS -= dt;
      if (this.#draw.remainingS <= 0) this.#draw = undefined;
    } else if (!this.#refill && u < (p.drawsPerDay / DAY_S) * dt) {
      this.#draw = {
        mmPerS: (lerp(p.drawFlowM3PerHour, this.#rand()) * this.mmPerM3) / 3600,
        remainingS: lerp(p.drawMinutes, this.#rand()) * 60,
      };
    }

    if (this.#refill) {
      level += this.#refill.mmPerS * dt;
      if (level >= this.#refill.targetMm) this.#refill = undefined;
    } else if (this.#refillDueTick !== undefined) {
      if (this.#tick >= this.#refillDueTick) {
        this.#refillDueTick = undefined;
        this.startRefill();
      }
    } else if (level < (this.lowPercent / 100) * this.heightMm) {
      this.#refillDueTick = this.#tick + Math.round((lerp(p.refillDelayHours, this.#rand()) * 3600) / dt);
    }

    this.#levelMm = Math.max(0, Math.min(this.heightMm, level)); // the overflow pipe caps it
    this.#tick++;
  }

  // ---- scripted events (demo, tests) ---------------------------------------------------------

  /** Starts a refill now (a truck or the supply valve), up to `targetPercent` (default random 95–99). */
  startRefill(targetPercent?: number, flowM3PerHour?: number): void {
    const p = this.physics;
    const target = targetPercent ?? lerp(p.refillTargetPercent, this.#rand());
    const flow = flowM3PerHour ?? lerp(p.refillFlowM3PerHour, this.#rand());
    this.#draw = undefined;
    this.#refillDueTick = undefined;
    this.#refill = { mmPerS: (flow * this.mmPerM3) / 3600, targetMm: (Math.min(100, target) / 100) * this.heightMm };
  }

  /** Starts drawing water off (use for other purposes, or firefighting). */
  startDraw(flowM3PerHour: number, minutes: number): void {
    this.#draw = { mmPerS: (flowM3PerHour * this.mmPerM3) / 3600, remainingS: minutes * 60 };
  }

  /** Sets the true water level (scenario setup). */
  setLevelMm(levelMm: number): void {
    this.#levelMm = Math.max(0, Math.min(this.heightMm, levelMm));
  }

  get activity(): TankActivity {
    return this.#refill ? 'refill' : this.#draw ? 'draw' : 'idle';
  }
  /** The simulated time a refill has been arranged for, if one is pending. */
  get refillDueAtMs(): number | undefined {
    return this.#refillDueTick === undefined ? undefined : this.startTimeMs + this.#refillDueTick * this.tickS * 1000;
  }

  // ---- the water and the transmitter --------------------------------------------------------

  /** The real water level (what a dipstick would say), mm. */
  get trueLevelMm(): number {
    return this.#levelMm;
  }
  get trueVolumeM3(): number {
    return this.#levelMm / this.mmPerM3;
  }
  get lowAlarmMm(): number {
    return this.#lowAlarmMm;
  }

  get fault(): TankSensorFault {
    return this.#fault;
  }
  setFault(fault: TankSensorFault): void {
    if (fault === 'stuck' && this.#fault !== 'stuck') {
      const m = this.#liveLevel();
      this.#stuck = { levelMm: m, loopCurrentMa: this.#loopCurrent(m) };
    }
    if (fault !== 'stuck') this.#stuck = undefined;
    this.#fault = fault;
  }

  /** The transmitter's noise for this tick: triangular on ±noiseMm, a pure function of (seed, tick). */
  #noise(salt: number, halfWidth: number): number {
    const r = prng((this.seed ^ Math.imul(this.#tick + 1, 0x9e3779b1) ^ Math.imul(salt, 0x85ebca6b)) >>> 0);
    return (r() + r() - 1) * halfWidth;
  }
  #liveLevel(): number {
    return Math.max(0, Math.round(this.#levelMm + this.#noise(1, this.physics.noiseMm)));
  }
  #loopCurrent(levelMm: number): number {
    return 4 + (16 * Math.min(levelMm, this.heightMm)) / this.heightMm;
  }

  /** Water temperature: seasonal cycle (coldest late January) plus a daily one (warmest 16:00 CST). */
  get temperatureC(): number {
    const p = this.physics;
    const t = this.simTimeMs / 1000;
    const dayOfYear = (t / DAY_S) % 365.25;
    const hourCst = ((t / 3600 + 8) % 24 + 24) % 24;
    const seasonal = -p.temperatureSeasonalC * Math.cos((2 * Math.PI * (dayOfYear - 20)) / 365.25);
    const daily = p.temperatureDailyC * Math.sin((2 * Math.PI * (hourCst - 10)) / 24);
    return p.temperatureMeanC + this.#temperatureOffsetC + seasonal + daily + this.#noise(2, 0.1);
  }

  measure(): TankMeasurement {
    const temperatureC = Math.round(this.temperatureC * 10) / 10;
    // The weather sensor is a separate probe: level faults do not touch it.
    const weather = this.weather ? { weather: this.weather.read(this.simTimeMs) } : {};
    switch (this.#fault) {
      case 'out_of_range':
        return { levelMm: LEVEL_INVALID, temperatureC, loopCurrentMa: 22, status: TankStatus.OUT_OF_RANGE, ...weather };
      case 'sensor_fault':
        return { levelMm: 0, temperatureC, loopCurrentMa: 3.5, status: TankStatus.SENSOR_FAULT, ...weather };
      default: {
        const levelMm = this.#stuck?.levelMm ?? this.#liveLevel();
        const loopCurrentMa = this.#stuck?.loopCurrentMa ?? this.#loopCurrent(levelMm);
        return { levelMm, temperatureC, loopCurrentMa, status: levelMm < this.#lowAlarmMm ? TankStatus.LOW_LEVEL_ALARM : 0, ...weather };
      }
    }
  }

  /** All registers (0..9, or 0..12 with firmware ≥ 1.3) as the transmitter would answer now. */
  registers(): number[] {
    const m = this.measure();
    const regs = encodeTankRegisters({
      levelMm: m.levelMm,
      capacityM3: this.capacityM3,
      heightMm: this.heightMm,
      temperatureC: m.temperatureC,
      status: m.status,
      firmware: this.firmware,
      lowAlarmMm: this.#lowAlarmMm,
      loopCurrentMa: m.loopCurrentMa,
      uptimeS: this.elapsedS,
      ...m.weather,
    });
    return regs.slice(0, this.registerCount);
  }

  readRegisters(address: number, quantity: number): number[] {
    if (address + quantity > this.registerCount) {
      throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS, `registers ${address}..${address + quantity - 1}`);
    }
    return this.registers().slice(address, address + quantity);
  }

  /** Only LOW_ALARM_MM is writable; the whole write is rejected if any register is not. */
  writeRegisters(address: number, values: readonly number[]): void {
    if (address !== TankRegister.LOW_ALARM_MM || values.length !== 1) {
      throw new ModbusException(ExceptionCode.ILLEGAL_DATA_ADDRESS, 'only register 6 (low-level alarm) is writable');
    }
    const mm = values[0] ?? 0;
    if (mm > this.heightMm) throw new ModbusException(ExceptionCode.ILLEGAL_DATA_VALUE, `${mm} mm is above the tank height`);
    this.#lowAlarmMm = mm;
  }
}
