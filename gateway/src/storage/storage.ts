/**
 * Storage: turns bus facts into InfluxDB points (schema in docs/storage.md).
 *   measurement = device kind (water_tank, camera, voice_pole), tags device/grid/community,
 *                 fields = telemetry values, time = device ts
 *   device_event  tags device/grid/community/type, fields phase/severity/bearing_deg/…, time = device ts
 *   device_status tags device/kind, field status ('online'|'offline'|'unknown'), time = gateway time
 */
import type { Logger } from 'pino';
import type { GatewayConfig, InfluxConfig } from '../../../config/schema.js';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { InfluxV1Target } from './influx-v1.js';
import { InfluxV2Target } from './influx-v2.js';
import type { SeriesPoint, SeriesTarget } from './types.js';
import { SeriesWriter } from './writer.js';

export interface StorageContext {
  config: GatewayConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  now?: () => number;
}

/** `api: 'v2'` (InfluxDB 2.x/3.x) throws here when org, bucket or token is missing, so the gateway does not start. */
function createTarget(influx: InfluxConfig): SeriesTarget {
  return influx.api === 'v2' ? new InfluxV2Target(influx) : new InfluxV1Target(influx);
}

function deviceTags(device: LedgerDevice): Record<string, string> {
  return { device: device.id, grid: device.grid, community: device.community };
}

export class StorageService {
  readonly writer: SeriesWriter;
  readonly #ctx: StorageContext;
  readonly #off: Array<() => void> = [];

  constructor(ctx: StorageContext, target?: SeriesTarget | null) {
    this.#ctx = ctx;
    const influx = ctx.config.influx;
    const t = target !== undefined ? target : influx.enabled ? createTarget(influx) : null;
    const spool = { ...ctx.config.spool, dir: ctx.config.spool.dir ?? `${ctx.config.dataDir}/spool` };
    this.writer = new SeriesWriter({ config: influx, spool, log: ctx.log, bus: ctx.bus, metrics: ctx.metrics, target: t });
  }

  async start(): Promise<void> {
    const { bus, registry } = this.#ctx;
    const now = this.#ctx.now ?? Date.now;
    this.#off.push(
      bus.on('telemetry', ({ device, message }) => {
        this.writer.write({
          measurement: device.kind,
          tags: deviceTags(device),
          fields: message.values as SeriesPoint['fields'],
          ts: message.ts,
        });
      }),
      bus.on('event', ({ device, message }) => {
        const fields: SeriesPoint['fields'] = { phase: message.phase, seq: message.seq };
        if (message.severity) fields.severity = message.severity;
        if (message.bearingDeg !== undefined) fields.bearing_deg = message.bearingDeg;
        if (message.confidence !== undefined) fields.confidence = message.confidence;
        if (message.temperatureC !== undefined) fields.temperature_c = message.temperatureC;
        if (message.message) fields.message = message.message;
        if (message.source) fields.source = message.source;
        this.writer.write({ measurement: 'device_event', tags: { ...deviceTags(device), type: message.type }, fields, ts: message.ts });
      }),
      bus.on('deviceUpdate', (update) => {
        if (!update.status) return;
        const device = registry.get(update.id);
        if (!device) return;
        this.writer.write({
          measurement: 'device_status',
          tags: { device: device.id, kind: device.kind },
          fields: { status: update.status },
          ts: now(),
        });
      }),
    );
    await this.writer.start();
  }

  async stop(): Promise<void> {
    for (const off of this.#off.splice(0)) off();
    await this.writer.stop();
  }
}
