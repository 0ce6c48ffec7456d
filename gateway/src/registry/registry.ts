/**
 * The device registry: every ledger device with its live view (availability, last seen, latest
 * values). Availability comes from three sources, strongest first: the device's own retained
 * state (and last will), its agent's state (an agent gone offline makes its devices 'unknown',
 * not falsely 'offline': the devices may be fine, we just cannot see them), and silence past a
 * per-kind timeout.
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { GatewayConfig } from '../../../config/schema.js';
import type { Availability, DeviceUpdate, DeviceView, TelemetryValue } from '../../../protocol/ws.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';

interface Entry {
  device: LedgerDevice;
  view: DeviceView;
}

export interface RegistryContext {
  config: GatewayConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  ledger: readonly LedgerDevice[];
  now?: () => number;
}

export class DeviceRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #byAgent = new Map<string, Entry[]>();
  readonly #ctx: RegistryContext;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  readonly #unsubscribe: Array<() => void> = [];

  constructor(ctx: RegistryContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
    for (const device of ctx.ledger) {
      const entry: Entry = {
        device,
        view: {
          id: device.id,
          kind: device.kind,
          name: device.name,
          lat: device.lat,
          lon: device.lon,
          grid: device.grid,
          community: device.community,
          agent: device.agent,
          status: 'unknown',
          lastSeen: null,
          values: {},
          valuesTs: null,
        },
      };
      this.#entries.set(device.id, entry);
      const list = this.#byAgent.get(device.agent) ?? [];
      list.push(entry);
      this.#byAgent.set(device.agent, list);
    }
  }

  start(): void {
    const { bus } = this.#ctx;
    this.#unsubscribe.push(
      bus.on('telemetry', ({ device, message, receivedAt }) => {
        const entry = this.#entries.get(device.id);
        if (!entry) return;
        const update: DeviceUpdate = { id: device.id, lastSeen: receivedAt };
        entry.view.lastSeen = receivedAt;
        // A replayed old reading (store-and-forward) must not overwrite a newer one.
        if (entry.view.valuesTs === null || message.ts >= entry.view.valuesTs) {
          entry.view.values = { ...(message.values as Record<string, TelemetryValue>) };
          entry.view.valuesTs = message.ts;
          update.values = entry.view.values;
          update.valuesTs = message.ts;
        }
        this.#setStatus(entry, 'online', update);
        bus.emit('deviceUpdate', update);
      }),
      bus.on('event', ({ device, receivedAt }) => this.#heard(device.id, receivedAt)),
      bus.on('ack', ({ device, receivedAt }) => this.#heard(device.id, receivedAt)),
      bus.on('state', ({ device, message, receivedAt }) => {
        const entry = this.#entries.get(device.id);
        if (!entry) return;
        entry.view.lastSeen = receivedAt;
        const update: DeviceUpdate = { id: device.id, lastSeen: receivedAt };
        this.#setStatus(entry, message.status, update);
        bus.emit('deviceUpdate', update);
      }),
      bus.on('agentState', ({ agentId, message }) => {
        if (message.status !== 'offline') return;
        for (const entry of this.#byAgent.get(agentId) ?? []) {
          const update: DeviceUpdate = { id: entry.device.id };
          if (this.#setStatus(entry, 'unknown', update)) bus.emit('deviceUpdate', update);
        }
      }),
    );
    this.#timer = setInterval(() => this.checkSilence(), this.#ctx.config.availability.checkIntervalMs);
    this.#timer.unref();
    this.#refreshGauges();
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  get(id: string): LedgerDevice | undefined {
    return this.#entries.get(id)?.device;
  }

  view(id: string): DeviceView | undefined {
    return this.#entries.get(id)?.view;
  }

  views(): DeviceView[] {
    return Array.from(this.#entries.values(), (e) => e.view);
  }

  get size(): number {
    return this.#entries.size;
  }

  counts(): Record<string, Record<Availability, number>> {
    const out: Record<string, Record<Availability, number>> = {};
    for (const { view } of this.#entries.values()) {
      const c = (out[view.kind] ??= { online: 0, offline: 0, unknown: 0 });
      c[view.status]++;
    }
    return out;
  }

  /** Marks devices silent past their kind's timeout as offline. Called on a timer. */
  checkSilence(): void {
    const now = this.#now();
    const timeouts = this.#ctx.config.availability.silenceTimeoutSec;
    for (const entry of this.#entries.values()) {
      const { view } = entry;
      if (view.status !== 'online' || view.lastSeen === null) continue;
      if (now - view.lastSeen > timeouts[view.kind] * 1000) {
        const update: DeviceUpdate = { id: view.id };
        this.#setStatus(entry, 'offline', update);
        this.#ctx.bus.emit('deviceUpdate', update);
      }
    }
    this.#refreshGauges();
  }

  #heard(id: string, at: number): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    entry.view.lastSeen = at;
    const update: DeviceUpdate = { id, lastSeen: at };
    this.#setStatus(entry, 'online', update);
    this.#ctx.bus.emit('deviceUpdate', update);
  }

  #setStatus(entry: Entry, status: Availability, update: DeviceUpdate): boolean {
    if (entry.view.status === status) return false;
    this.#ctx.log.debug({ device: entry.device.id, from: entry.view.status, to: status }, 'availability changed');
    entry.view.status = status;
    update.status = status;
    return true;
  }

  #refreshGauges(): void {
    const g = this.#ctx.metrics.devicesByStatus;
    for (const [kind, byStatus] of Object.entries(this.counts())) {
      for (const [status, n] of Object.entries(byStatus)) g.set({ kind, status }, n);
    }
  }
}
