/**
 * Water-tank collector: polls each tank's level transmitter over Modbus TCP (register map in
 * docs/devices/water-tank-modbus.md) and emits normalised telemetry, sensor-fault events and
 * online/offline states.
 *
 * - Polls are staggered over the interval, so 58 tanks do not all hit the network at once.
 * - A reading the transmitter flags as invalid (status bits 0/1), or a level the tank cannot
 *   hold, is never sent as telemetry; it opens a `sensor_fault` event, closed when it clears.
 * - A tank that stops answering is reported offline once, with the reason, after
 *   `offlineAfterFailures` failed polls in a row; it is retried with exponential backoff and
 *   reported online once when it answers. Logs follow the same changes, not every failed poll.
 * - Level %, volume and the fault bound use the ledger's height and capacity (the command
 *   center's record, which its alarm thresholds refer to); a transmitter configured otherwise is
 *   logged once.
 * - One read covers the whole map, weather registers included. A transmitter whose firmware
 *   predates them refuses that read (exception 02/03) or answers short; it is then read with the
 *   old 10-register map, without weather, and looked at again after it restarts (its uptime
 *   falls), after it was offline, and every `weatherProbeIntervalMs` (a one-off garbled answer
 *   must not cost a tank its weather for good).
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { WaterTankValues } from '../../../protocol/payloads.js';
import { ModbusError, ModbusTcpClient, type HoldingRegisterReader } from '../modbus/client.js';
import { ExceptionCode } from '../modbus/mbap.js';
import {
  decodeTankRegisters,
  TANK_BASE_REGISTER_COUNT,
  TANK_REGISTER_COUNT,
  TankStatus,
  type TankRegisterValues,
} from '../modbus/tank-registers.js';
import type { Collector, CollectorContext, Reading } from './collector.js';

export type WaterTankDevice = Extract<LedgerDevice, { kind: 'water_tank' }>;

export interface WaterTankTarget {
  device: WaterTankDevice;
  host: string;
  port: number;
  unitId: number;
}

export interface WaterTankCollectorOptions {
  pollIntervalMs: number;
  /** per request, connect included */
  timeoutMs: number;
  /** ceiling of the retry backoff after failures; default max(pollIntervalMs, 60 s) */
  maxBackoffMs?: number;
  /** failed polls in a row before a tank is reported offline; default 2 */
  offlineAfterFailures?: number;
  /** how often a transmitter read with the old map (no weather) is tried with the whole map again; default 1 h */
  weatherProbeIntervalMs?: number;
  /** clock for reading timestamps; default Date.now */
  now?: () => number;
  /** opens a client to one Modbus TCP endpoint (tanks sharing host:port share it); a seam for tests */
  connect?: (endpoint: { host: string; port: number; timeoutMs: number }) => HoldingRegisterReader;
}

interface TankPoller {
  readonly target: WaterTankTarget;
  readonly client: HoldingRegisterReader;
  readonly log: Logger;
  timer: NodeJS.Timeout | undefined;
  inFlight: Promise<void> | undefined;
  failures: number;
  state: 'unknown' | 'online' | 'offline';
  /** message of the open sensor_fault event, if any */
  fault: string | undefined;
  configChecked: boolean;
  /** the register map the transmitter answered: 'full' (0–12) or 'base' (0–9, no weather) */
  map: 'unknown' | 'full' | 'base';
  /** with map 'base': when to try the whole map again (Date.now() clock) */
  probeAt: number;
  lastUptimeS: number | undefined;
}

/** Targets for the tanks in a ledger that have a Modbus address; the rest are listed as missing. */
export function tankTargetsFromLedger(
  devices: readonly LedgerDevice[],
  opts: { agent?: string; defaultPort?: number } = {},
): { targets: WaterTankTarget[]; missing: string[] } {
  const targets: WaterTankTarget[] = [];
  const missing: string[] = [];
  for (const device of devices) {
    if (device.kind !== 'water_tank' || (opts.agent !== undefined && device.agent !== opts.agent)) continue;
    const { modbusHost, modbusPort, modbusUnit } = device.settings;
    if (modbusHost === undefined) missing.push(device.id);
    else targets.push({ device, host: modbusHost, port: modbusPort ?? opts.defaultPort ?? 502, unitId: modbusUnit });
  }
  return { targets, missing };
}

/** Why a poll failed, in words for the `reason` of an offline state. */
function describeFailure(err: unknown): string {
  if (err instanceof ModbusError) return `${err.kind}: ${err.message}`;
  return `internal: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500);
}

/**
 * How a transmitter without the weather registers answers a read that covers them: exception 02
 * (the standard answer), 03 (some firmware checks the quantity first), or an answer holding only
 * the registers it has (a malformed response to the client).
 */
function isShorterMap(err: unknown): boolean {
  if (!(err instanceof ModbusError)) return false;
  if (err.kind === 'protocol') return true;
  return err.kind === 'exception' && (err.exceptionCode === ExceptionCode.ILLEGAL_DATA_ADDRESS || err.exceptionCode === ExceptionCode.ILLEGAL_DATA_VALUE);
}

/** The weather fields of WaterTankValues: their schema ranges (protocol/payloads.ts). */
const WEATHER_RANGES = [
  ['airTemperatureC', -50, 60],
  ['humidityPercent', 0, 100],
  ['rainTodayMm', 0, 1000],
] as const;

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

export class WaterTankCollector implements Collector {
  readonly name = 'water-tank';
  readonly #targets: readonly WaterTankTarget[];
  readonly #opts: Required<Omit<WaterTankCollectorOptions, 'connect'>> & Pick<WaterTankCollectorOptions, 'connect'>;
  #pollers: TankPoller[] = [];
  #clients = new Map<string, HoldingRegisterReader>();
  #ctx: CollectorContext | undefined;
  #log: Logger | undefined;
  #running = false;
  #emitFailed = false;

  constructor(targets: readonly WaterTankTarget[], opts: WaterTankCollectorOptions) {
    for (const t of targets) {
      if (t.device.kind !== 'water_tank') throw new TypeError(`${String((t.device as LedgerDevice).id)} is not a water tank`);
    }
    const ids = new Set(targets.map((t) => t.device.id));
    if (ids.size !== targets.length) throw new Error('a water tank is listed twice');
    if (!(opts.pollIntervalMs > 0) || !(opts.timeoutMs > 0)) throw new RangeError('pollIntervalMs and timeoutMs must be positive');
    this.#targets = targets;
    this.#opts = {
      pollIntervalMs: opts.pollIntervalMs,
      timeoutMs: opts.timeoutMs,
      maxBackoffMs: opts.maxBackoffMs ?? Math.max(opts.pollIntervalMs, 60_000),
      offlineAfterFailures: Math.max(1, opts.offlineAfterFailures ?? 2),
      weatherProbeIntervalMs: opts.weatherProbeIntervalMs ?? 3_600_000,
      now: opts.now ?? Date.now,
      connect: opts.connect,
    };
  }

  async start(ctx: CollectorContext): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#ctx = ctx;
    this.#log = ctx.log.child({ module: 'water-tank' });
    const n = this.#targets.length;
    this.#pollers = this.#targets.map((target, i) => {
      const poller: TankPoller = {
        target,
        client: this.#clientFor(target),
        log: this.#log!.child({ deviceId: target.device.id }),
        timer: undefined,
        inFlight: undefined,
        failures: 0,
        state: 'unknown',
        fault: undefined,
        configChecked: false,
        map: 'unknown',
        probeAt: 0,
        lastUptimeS: undefined,
      };
      // Spread first polls evenly over one interval; later ones keep that phase.
      this.#schedule(poller, Math.floor((i * this.#opts.pollIntervalMs) / Math.max(1, n)));
      return poller;
    });
    this.#log.info({ tanks: n, pollIntervalMs: this.#opts.pollIntervalMs }, 'polling water tanks');
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    for (const p of this.#pollers) clearTimeout(p.timer);
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    // Closing the clients fails any request in flight at once, so the polls below settle quickly.
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(this.#pollers.map((p) => p.inFlight));
    this.#pollers = [];
  }

  #clientFor(target: WaterTankTarget): HoldingRegisterReader {
    const key = `${target.host}:${target.port}`;
    let client = this.#clients.get(key);
    if (!client) {
      const endpoint = { host: target.host, port: target.port, timeoutMs: this.#opts.timeoutMs };
      client = this.#opts.connect ? this.#opts.connect(endpoint) : new ModbusTcpClient(endpoint);
      this.#clients.set(key, client);
    }
    return client;
  }

  #schedule(p: TankPoller, delayMs: number): void {
    if (!this.#running) return;
    p.timer = setTimeout(() => {
      p.timer = undefined;
      const started = Date.now();
      p.inFlight = this.#poll(p).then((ok) => {
        p.inFlight = undefined;
        const delay = ok
          ? Math.max(0, this.#opts.pollIntervalMs - (Date.now() - started))
          : Math.min(this.#opts.pollIntervalMs * 2 ** Math.max(0, p.failures - 1), this.#opts.maxBackoffMs);
        this.#schedule(p, delay);
      });
    }, delayMs);
  }

  /** One poll; never rejects. Resolves true if the tank answered. */
  async #poll(p: TankPoller): Promise<boolean> {
    let regs: number[];
    try {
      regs = await this.#read(p);
    } catch (err) {
      if (this.#running) this.#onFailure(p, err);
      return false;
    }
    if (!this.#running) return true;
    const ts = this.#opts.now();
    try {
      this.#onReading(p, decodeTankRegisters(regs), ts);
      return true;
    } catch (err) {
      this.#onFailure(p, err);
      return false;
    }
  }

  /** Reads the whole map, or registers 0–9 of a transmitter known not to have the rest. */
  async #read(p: TankPoller): Promise<number[]> {
    const { unitId } = p.target;
    if (p.map === 'base' && Date.now() < p.probeAt) return p.client.readHoldingRegisters(unitId, 0, TANK_BASE_REGISTER_COUNT);
    try {
      const regs = await p.client.readHoldingRegisters(unitId, 0, TANK_REGISTER_COUNT);
      if (p.map === 'base' && this.#running) p.log.info('transmitter now has weather registers; reading registers 0–12');
      p.map = 'full';
      return regs;
    } catch (err) {
      if (!isShorterMap(err)) throw err;
      const regs = await p.client.readHoldingRegisters(unitId, 0, TANK_BASE_REGISTER_COUNT);
      if (p.map !== 'base' && this.#running) {
        p.log.info({ reason: describeFailure(err) }, 'transmitter has no weather registers (older firmware); reading registers 0–9');
      }
      p.map = 'base';
      p.probeAt = Date.now() + this.#opts.weatherProbeIntervalMs;
      return regs;
    }
  }

  #onFailure(p: TankPoller, err: unknown): void {
    p.failures++;
    if (p.state === 'offline' || p.failures < this.#opts.offlineAfterFailures) return;
    p.state = 'offline';
    p.map = 'unknown'; // it may come back as another transmitter
    const reason = describeFailure(err);
    if (err instanceof ModbusError) p.log.warn({ reason, failures: p.failures }, 'water tank offline');
    else p.log.error({ err, failures: p.failures }, 'water tank poll failed unexpectedly');
    this.#emit({ channel: 'state', deviceId: p.target.device.id, ts: this.#opts.now(), status: 'offline', reason });
  }

  #onReading(p: TankPoller, r: TankRegisterValues, ts: number): void {
    const { device } = p.target;
    const { heightMm, capacityM3 } = device.settings;
    p.failures = 0;
    if (p.state !== 'online') {
      if (p.state === 'offline') p.log.info('water tank back online');
      p.state = 'online';
      this.#emit({ channel: 'state', deviceId: device.id, ts, status: 'online' });
    }
    // A restart may have been a firmware update: look for the weather registers again.
    if (p.map === 'base' && p.lastUptimeS !== undefined && r.uptimeS < p.lastUptimeS) p.map = 'unknown';
    p.lastUptimeS = r.uptimeS;
    if (!p.configChecked) {
      p.configChecked = true;
      if (Math.abs(r.heightMm - heightMm) > heightMm * 0.01 || Math.abs(r.capacityM3 - capacityM3) > Math.max(0.1, capacityM3 * 0.01)) {
        p.log.warn(
          { ledger: { heightMm, capacityM3 }, transmitter: { heightMm: r.heightMm, capacityM3: r.capacityM3 } },
          'transmitter configuration differs from the ledger; the ledger values are used',
        );
      }
    }

    const source = `modbus:status=0x${r.status.toString(16).padStart(4, '0')}`;
    const fault = this.#faultOf(r, heightMm);
    if (fault !== undefined) {
      if (p.fault === undefined) {
        p.fault = fault;
        p.log.warn({ status: r.status, levelMm: r.levelMm }, `water tank sensor fault: ${fault}`);
        this.#emit({ channel: 'event', deviceId: device.id, ts, event: { type: 'sensor_fault', phase: 'start', severity: 'warning', message: fault, source } });
      }
      return; // an invalid level is never sent as telemetry
    }
    if (p.fault !== undefined) {
      p.log.info({ was: p.fault }, 'water tank sensor fault cleared');
      p.fault = undefined;
      this.#emit({
        channel: 'event',
        deviceId: device.id,
        ts,
        event: { type: 'sensor_fault', phase: 'end', severity: 'info', message: 'level reading valid again', source },
      });
    }

    const share = Math.min(1, r.levelMm / heightMm);
    const values: WaterTankValues = {
      levelMm: r.levelMm,
      levelPercent: round(share * 100, 1),
      volumeM3: round(share * capacityM3, 2),
      sensorStatus: r.status,
    };
    if (r.temperatureC >= -50 && r.temperatureC <= 80) values.temperatureC = r.temperatureC;
    // Weather registers: absent with older firmware or no sensor (NO_DATA); a value outside the
    // schema range is a sensor fault of its own and is left out rather than failing the level.
    for (const [field, min, max] of WEATHER_RANGES) {
      const v = r[field];
      if (v !== undefined && v >= min && v <= max) values[field] = v;
    }
    this.#emit({ channel: 'telemetry', kind: 'water_tank', deviceId: device.id, ts, values });
  }

  /** Why this reading's level is not valid, or undefined if it is. */
  #faultOf(r: TankRegisterValues, heightMm: number): string | undefined {
    if (r.status & TankStatus.SENSOR_FAULT) return 'level transmitter reports a sensor fault (no echo or loop current below 3.6 mA)';
    if (r.status & TankStatus.OUT_OF_RANGE) return 'level transmitter reports the level out of range';
    // ±2 mm noise and the overflow pipe keep a sound reading near or below full height.
    const limit = Math.min(20_000, heightMm + Math.max(50, heightMm * 0.02));
    if (r.levelMm > limit) return `implausible level ${r.levelMm} mm for a ${heightMm} mm tank`;
    return undefined;
  }

  #emit(reading: Reading): void {
    if (!this.#running || !this.#ctx) return;
    try {
      this.#ctx.emit(reading);
    } catch (err) {
      // The uplink's problem, not the tank's: keep polling, say it once.
      if (!this.#emitFailed) this.#log?.error({ err }, 'emit failed; readings are being lost');
      this.#emitFailed = true;
    }
  }
}
