/**
 * Water-tank simulators on Modbus TCP: one server per tank, as each tank in the field has its own
 * transmitter behind its own RS485-to-TCP gateway (or 4G DTU). Simulated time runs `timeScale`
 * times faster than real time; the model is brought up to date whenever it is read, and once a
 * second in the background so a long unread stretch is not caught up in one go.
 *
 * A fleet shares one site weather; which tanks carry a weather sensor, and which run firmware
 * too old for the weather registers, follows from the tank id alone (`transmitterFit`).
 */
import type { LedgerDevice, WaterTankSettings } from '../../../config/ledger.js';
import { ModbusTcpServer, type RegisterBank } from '../modbus/server.js';
import { WaterTankModel, type TankPhysics, type TankSensorFault } from './model.js';
import { SiteWeather, WeatherStation, type Climate } from './weather.js';

/**
 * Sensor faults (see model.ts) plus transport ones: `disconnected` closes every connection and
 * every new one at once (a gateway that lost power or its uplink); `no_response` keeps the TCP
 * connection but never answers (a gateway whose RS485 slave is dead).
 */
export type TankFault = TankSensorFault | 'disconnected' | 'no_response';

export interface TankSimulatorOptions {
  settings: WaterTankSettings;
  seed: number;
  /** simulated seconds per real second; 0 freezes time. Default 1. */
  timeScale?: number;
  host?: string;
  /** 0 (default) picks a free port */
  port?: number;
  /** default settings.modbusUnit */
  unitId?: number;
  /** real clock, ms; default Date.now */
  now?: () => number;
  /** simulated time at start, ms since the epoch; default: the real time now */
  startTimeMs?: number;
  initialLevelPercent?: number;
  physics?: Partial<TankPhysics>;
  /** "major.minor"; default 1.3 with a weather sensor, else 1.2 (no weather registers) */
  firmware?: string;
  /** a weather sensor on the cabinet, at the tank's place; `site` defaults to a SiteWeather of `seed` */
  weather?: { lat: number; lon: number; site?: SiteWeather };
}

export interface TankSimulator {
  readonly host: string;
  readonly port: number;
  readonly unitId: number;
  readonly model: WaterTankModel;
  readonly server: ModbusTcpServer;
  readonly fault: TankFault;
  setFault(fault: TankFault): void;
  /** Brings the model up to the simulated time of now. */
  sync(): void;
  close(): Promise<void>;
}

export async function startTankSimulator(opts: TankSimulatorOptions): Promise<TankSimulator> {
  const { settings } = opts;
  const now = opts.now ?? Date.now;
  const timeScale = opts.timeScale ?? 1;
  if (!(timeScale >= 0)) throw new RangeError(`timeScale ${timeScale}`);
  const model = new WaterTankModel({
    heightMm: settings.heightMm,
    capacityM3: settings.capacityM3,
    lowPercent: settings.lowPercent,
    seed: opts.seed,
    startTimeMs: opts.startTimeMs ?? now(),
    ...(opts.initialLevelPercent !== undefined ? { initialLevelPercent: opts.initialLevelPercent } : {}),
    ...(opts.physics ? { physics: opts.physics } : {}),
    ...(opts.firmware !== undefined ? { firmware: opts.firmware } : {}),
    ...(opts.weather
      ? { weather: new WeatherStation({ site: opts.weather.site ?? new SiteWeather({ seed: opts.seed }), lat: opts.weather.lat, lon: opts.weather.lon, seed: opts.seed }) }
      : {}),
  });
  const realStart = now();
  const simStart = model.simTimeMs;
  const sync = () => model.advanceTo(simStart + (now() - realStart) * timeScale);
  const bank: RegisterBank = {
    read: (_table, address, quantity) => {
      sync();
      return model.readRegisters(address, quantity);
    },
    write: (address, values) => {
      sync();
      model.writeRegisters(address, values);
    },
  };
  const unitId = opts.unitId ?? settings.modbusUnit;
  const server = new ModbusTcpServer({ unitId, bank });
  const host = opts.host ?? '127.0.0.1';
  const port = await server.listen({ host, port: opts.port ?? 0 });
  const ticker = timeScale > 0 ? setInterval(sync, 1000) : undefined;
  ticker?.unref();
  let fault: TankFault = 'none';

  return {
    host,
    port,
    unitId,
    model,
    server,
    get fault() {
      return fault;
    },
    setFault(next: TankFault) {
      fault = next;
      sync();
      model.setFault(next === 'disconnected' || next === 'no_response' ? 'none' : next);
      server.setMode(next === 'disconnected' ? 'drop' : next === 'no_response' ? 'silent' : 'serve');
    },
    sync,
    async close() {
      if (ticker) clearInterval(ticker);
      await server.close();
    },
  };
}

// ---- a fleet -----------------------------------------------------------------------------------

export interface TankEndpoint {
  host: string;
  port: number;
  unitId: number;
}

export interface TankFleetOptions {
  seed: number;
  timeScale?: number;
  host?: string;
  /** tank i listens on basePort + i; 0 or absent: a free port each */
  basePort?: number;
  now?: () => number;
  startTimeMs?: number;
  physics?: Partial<TankPhysics>;
  /** which tanks have a weather sensor: 'some' (default, one in four by id), 'all' or 'none' */
  weatherSensors?: 'some' | 'all' | 'none';
  /** the site's climate, default Yongchuan (weather.ts) */
  climate?: Partial<Climate>;
}

export interface TankFleet {
  /** deviceId → where its transmitter answers */
  readonly endpoints: Map<string, TankEndpoint>;
  readonly simulators: Map<string, TankSimulator>;
  /** the weather all the fleet's weather sensors read */
  readonly weather: SiteWeather;
  close(): Promise<void>;
}

/** FNV-1a: a per-tank seed from the fleet seed and the device id, stable as tanks are added. */
function seedFor(fleetSeed: number, id: string): number {
  let h = 0x811c9dc5 ^ (fleetSeed >>> 0);
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * What a tank's cabinet holds, from its id alone (not the ledger, not the seed), so the same tanks
 * have sensors in every run: one in four has a weather sensor (firmware 1.3); of the rest, half
 * run firmware 1.3 without a sensor (weather registers read NO_DATA) and half the older 1.2
 * (no weather registers at all). With the shipped ledger: 11, 26 and 21 of 58 tanks.
 */
export function transmitterFit(id: string, sensors: 'some' | 'all' | 'none' = 'some'): { firmware: '1.2' | '1.3'; weatherSensor: boolean } {
  let h = seedFor(0, id);
  // murmur3's finaliser: FNV-1a's low bits alone follow the last character too closely
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  const weatherSensor = sensors === 'all' || (sensors === 'some' && h % 4 === 0);
  return { firmware: weatherSensor || (h >>> 2) % 2 === 0 ? '1.3' : '1.2', weatherSensor };
}

/** Starts one simulator per water tank in `devices` (other kinds are skipped). */
export async function startTankFleet(devices: readonly LedgerDevice[], opts: TankFleetOptions): Promise<TankFleet> {
  const simulators = new Map<string, TankSimulator>();
  const endpoints = new Map<string, TankEndpoint>();
  const weather = new SiteWeather({ seed: opts.seed, ...(opts.climate ? { climate: opts.climate } : {}) });
  const close = async () => {
    await Promise.all([...simulators.values()].map((s) => s.close()));
  };
  try {
    let i = 0;
    for (const device of devices) {
      if (device.kind !== 'water_tank') continue;
      const fit = transmitterFit(device.id, opts.weatherSensors);
      const sim = await startTankSimulator({
        settings: device.settings,
        seed: seedFor(opts.seed, device.id),
        ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
        ...(opts.host !== undefined ? { host: opts.host } : {}),
        port: opts.basePort ? opts.basePort + i : 0,
        ...(opts.now ? { now: opts.now } : {}),
        ...(opts.startTimeMs !== undefined ? { startTimeMs: opts.startTimeMs } : {}),
        ...(opts.physics ? { physics: opts.physics } : {}),
        firmware: fit.firmware,
        ...(fit.weatherSensor ? { weather: { lat: device.lat, lon: device.lon, site: weather } } : {}),
      });
      simulators.set(device.id, sim);
      endpoints.set(device.id, { host: sim.host, port: sim.port, unitId: sim.unitId });
      i++;
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { endpoints, simulators, weather, close };
}
