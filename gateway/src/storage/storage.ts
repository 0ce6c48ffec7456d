/**
 * Storage: turns bus facts into InfluxDB points (schema in docs/storage.md).
 *   measurement = device kind (water_tank, camera, voice_pole), tags device/grid/community,
 *                 fields = telemetry values, time = device ts
 *   device_event  tags device/grid/community/type, fields phase/severity/bearing_deg/…, time = device ts
 *   device_status tags device/kind, field status ('online'|'offline'|'unknown'), time = gateway time
 */
import type { Logger } from 'pino';
import type { GatewayConfig } from '../../../config/schema.js';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { createTarget } from './target.js';
import { linePrefix, lineWithPrefix } from './line-protocol.js';
import type { SeriesPoint, SeriesTarget, SeriesWriter, StorageStatus } from './types.js';
import { WorkerSeriesWriter } from './worker-writer.js';
import { InlineSeriesWriter } from './writer.js';

export interface StorageContext {
  config: GatewayConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  now?: () => number;
}

function deviceTags(device: LedgerDevice): Record<string, string> {
  return { device: device.id, grid: device.grid, community: device.community };
}

export class StorageService {
  readonly writer: SeriesWriter;
  readonly #ctx: StorageContext;
  readonly #off: Array<() => void> = [];
  /** Per device: the line prefix of its telemetry series (measurement and tags never change). */
  readonly #prefixes = new WeakMap<LedgerDevice, string>();

  /**
   * `target`: an injected target runs the writer inline (benchmarks of the ingest path); null
   * turns storage off. Otherwise the writer runs in a worker thread with its own connection.
   */
  constructor(ctx: StorageContext, target?: SeriesTarget | null) {
    this.#ctx = ctx;
    const influx = ctx.config.influx;
    const spool = { ...ctx.config.spool, dir: ctx.config.spool.dir ?? `${ctx.config.dataDir}/spool` };
    const log = ctx.log;
    const onStatus = (status: StorageStatus) => ctx.bus.emit('storageStatus', status);
    if (target !== undefined || !influx.enabled) {
      this.writer = new InlineSeriesWriter({ config: influx, spool, log, onStatus, metrics: ctx.metrics, target: target ?? null });
    } else {
      // Built here for queries (and so a bad v2 config fails now); the worker makes its own for writes.
      const queryTarget = createTarget(influx);
      this.writer = new WorkerSeriesWriter({ config: influx, spool, log, onStatus, metrics: ctx.metrics, queryTarget });
    }
  }

  async start(): Promise<void> {
    const { bus, registry } = this.#ctx;
    const now = this.#ctx.now ?? Date.now;
    this.#off.push(
      bus.on('telemetry', ({ device, message }) => {
        let prefix = this.#prefixes.get(device);
        if (prefix === undefined) this.#prefixes.set(device, (prefix = linePrefix(device.kind, deviceTags(device))));
        const line = lineWithPrefix(prefix, message.values as SeriesPoint['fields'], message.ts);
        if (line !== undefined) this.writer.writeLine(line);
      }),
      bus.on('event', ({ device, message }) => {
        const fields: SeriesPoint['fields'] = { phase: message.phase, seq: message.seq };
        if (message.severity) fields.severity = message.severity;
        if (message.bearingDeg !== undefined) fields.bearing_deg = message.bearingDeg;
        if (message.confidence !== undefined) fields.confidence = message.confidence;
        if (message.temperatureC !== undefined) fields.temperature_c = message.temperatureC;
        if (message.message) fields.message = message.message;
        if (message.source) fields.source = message.source;
        this.#write({ measurement: 'device_event', tags: { ...deviceTags(device), type: message.type }, fields, ts: message.ts });
      }),
      bus.on('deviceUpdate', (update) => {
        if (!update.status) return;
        const device = registry.get(update.id);
        if (!device) return;
        this.#write({
          measurement: 'device_status',
          tags: { device: device.id, kind: device.kind },
          fields: { status: update.status },
          ts: now(),
        });
      }),
    );
    await this.writer.start();
  }

  #write(point: SeriesPoint): void {
    const line = lineWithPrefix(linePrefix(point.measurement, point.tags), point.fields, point.ts);
    if (line !== undefined) this.writer.writeLine(line);
  }

  async stop(): Promise<void> {
    for (const off of this.#off.splice(0)) off();
    await this.writer.stop();
  }
}
