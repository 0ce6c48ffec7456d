/**
 * The gateway's typed internal bus. Modules publish facts (a reading arrived, a device changed)
 * and others react; a listener that throws is logged and contained, it never stops the others
 * or the publisher.
 */
import type { Logger } from 'pino';
import type { AgentState, CommandAck, DeviceEvent, DeviceState, Telemetry } from '../../protocol/payloads.js';
import type { DeviceUpdate, StorageStatus } from '../../protocol/ws.js';
import type { LedgerDevice } from '../../config/ledger.js';

export interface BusEvents {
  /** A validated, de-duplicated telemetry message from a ledger device. */
  telemetry: { device: LedgerDevice; message: Telemetry; receivedAt: number };
  event: { device: LedgerDevice; message: DeviceEvent; receivedAt: number };
  state: { device: LedgerDevice; message: DeviceState; receivedAt: number };
  ack: { device: LedgerDevice; message: CommandAck; receivedAt: number };
  agentState: { agentId: string; message: AgentState; receivedAt: number };
  /** A device's live view changed (registry output). */
  deviceUpdate: DeviceUpdate;
  storageStatus: StorageStatus;
}

type Listener<T> = (payload: T) => void;

export class Bus {
  readonly #listeners = new Map<keyof BusEvents, Set<Listener<never>>>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  on<K extends keyof BusEvents>(name: K, listener: Listener<BusEvents[K]>): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof BusEvents>(name: K, payload: BusEvents[K]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<BusEvents[K]>)(payload);
      } catch (err) {
        this.#log.error({ err, event: name }, 'bus listener failed');
      }
    }
  }
}
