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
  /**
   * Device time of the newest message that decided the status. A replayed older message (the
   * agent's outbox after an outage) must not undo a newer state, e.g. turn an offline tank
   * back online.
   */
  statusTs: number;
  /** Gateway time of the last status change shown, and a change held back by flap damping. */
  changedAt: number;
  held: Availability | undefined;
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
        statusTs: 0,
        changedAt: Number.NEGATIVE_INFINITY,
        held: undefined,
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
        // A replayed old reading (store-and-forward) must not overwrite a newer one. Values merge:
        // cameras and poles may report only the fields that changed.
        if (entry.view.valuesTs === null || message.ts >= entry.view.valuesTs) {
          // Merged in place: a new object per reading lived until the next one and cost the GC
          // (at 20,000 readings/s every one of them was promoted to the old generation).
          mergeValues(entry.view.values, message.values as Record<string, TelemetryValue>);
          entry.view.valuesTs = message.ts;
          update.values = entry.view.values;
          update.valuesTs = message.ts;
        }
        this.#signOfLife(entry, message.ts, update);
        bus.emit('deviceUpdate', update);
      }),
      bus.on('event', ({ device, message, receivedAt }) => this.#heard(device.id, message.ts, receivedAt)),
      bus.on('ack', ({ device, message, receivedAt }) => this.#heard(device.id, message.ts, receivedAt)),
      bus.on('state', ({ device, message, receivedAt }) => {
        const entry = this.#entries.get(device.id);
        if (!entry) return;
        entry.view.lastSeen = receivedAt;
        const update: DeviceUpdate = { id: device.id, lastSeen: receivedAt };
        if (message.ts >= entry.statusTs) {
          entry.statusTs = message.ts;
          this.#setStatus(entry, message.status, update);
        }
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

  /**
   * Applies what another gateway instance ingested (cluster fan-out, docs/architecture.md): the
   * live view only — nothing goes on the bus, so it is not stored, alerted on or sent on again.
   * Newer values win by device time, lastSeen by the latest; the peer's status is taken as it is
   * (the peer damped it) from a `delta`, but from a `snapshot` (periodic, may be old) only for a
   * device this instance has never heard. Returns what changed here, or undefined.
   */
  applyPeerUpdate(update: DeviceUpdate, from: 'delta' | 'snapshot'): DeviceUpdate | undefined {
    const entry = this.#entries.get(update.id);
    if (!entry) return undefined;
    const { view } = entry;
    const changed: DeviceUpdate = { id: view.id };
    let any = false;
    if (update.lastSeen !== undefined && update.lastSeen !== null && (view.lastSeen === null || update.lastSeen > view.lastSeen)) {
      view.lastSeen = changed.lastSeen = update.lastSeen;
      any = true;
    }
    if (update.values && typeof update.valuesTs === 'number' && (view.valuesTs === null || update.valuesTs > view.valuesTs)) {
      view.values = changed.values = { ...view.values, ...update.values };
      view.valuesTs = changed.valuesTs = update.valuesTs;
      any = true;
    }
    const heardHere = entry.statusTs > 0 || entry.changedAt !== Number.NEGATIVE_INFINITY;
    if (update.status && update.status !== view.status && (from === 'delta' || !heardHere)) {
      view.status = changed.status = update.status;
      entry.changedAt = this.#now();
      entry.held = undefined;
      any = true;
    }
    return any ? changed : undefined;
  }

  /**
   * Marks devices silent past their kind's timeout as offline and applies status changes that flap
   * damping held back. Called on a timer.
   */
  checkSilence(): void {
    const now = this.#now();
    const timeouts = this.#ctx.config.availability.silenceTimeoutSec;
    for (const entry of this.#entries.values()) {
      const { view } = entry;
      const update: DeviceUpdate = { id: view.id };
      let changed = false;
      if (entry.held !== undefined) changed = this.#setStatus(entry, entry.held, update);
      if (view.status === 'online' && view.lastSeen !== null && now - view.lastSeen > timeouts[view.kind] * 1000) {
        changed = this.#setStatus(entry, 'offline', update) || changed;
      }
      if (changed) this.#ctx.bus.emit('deviceUpdate', update);
    }
    this.#refreshGauges();
  }

  #heard(id: string, deviceTs: number, at: number): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    entry.view.lastSeen = at;
    const update: DeviceUpdate = { id, lastSeen: at };
    this.#signOfLife(entry, deviceTs, update);
    this.#ctx.bus.emit('deviceUpdate', update);
  }

  /** Any message newer than the last state says the device is up. */
  #signOfLife(entry: Entry, deviceTs: number, update: DeviceUpdate): void {
    if (deviceTs < entry.statusTs) return;
    entry.statusTs = deviceTs;
    this.#setStatus(entry, 'online', update);
  }

  #setStatus(entry: Entry, status: Availability, update: DeviceUpdate): boolean {
    if (entry.view.status === status) {
      entry.held = undefined; // it flapped back before the hold ended: nothing to show
      return false;
    }
    const now = this.#now();
    if (now - entry.changedAt < this.#ctx.config.availability.flapDampingSec * 1000) {
      entry.held = status;
      return false;
    }
    this.#ctx.log.debug({ device: entry.device.id, from: entry.view.status, to: status }, 'availability changed');
    entry.view.status = status;
    entry.changedAt = now;
    entry.held = undefined;
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

/** Copies `from` into `into`; never `__proto__` (a plain assignment of that key would set the prototype). */
function mergeValues(into: Record<string, TelemetryValue>, from: Record<string, TelemetryValue>): void {
  for (const key of Object.keys(from)) {
    if (key === '__proto__') continue;
    into[key] = from[key]!;
  }
}
