/**
 * The seam between device-native protocols and the uplink. A collector talks to one kind of
 * device (Modbus TCP tanks, ONVIF cameras, vendor HTTP poles) and emits normalised readings;
 * it never touches MQTT. The uplink assigns `seq`, stores each reading in the outbox and
 * forwards it.
 */
import type { Logger } from 'pino';
import type { AckStatus, DeviceCommand, DeviceEvent, DeviceKind, TelemetryValuesMap } from '../../../protocol/payloads.js';

export type Reading =
  | { [K in DeviceKind]: { channel: 'telemetry'; deviceId: string; kind: K; ts: number; values: TelemetryValuesMap[K] } }[DeviceKind]
  | { channel: 'event'; deviceId: string; ts: number; event: Omit<DeviceEvent, 'ts' | 'seq'> }
  | { channel: 'state'; deviceId: string; ts: number; status: 'online' | 'offline'; reason?: string }
  | { channel: 'ack'; deviceId: string; ts: number; cmdId: string; status: AckStatus; reason?: string };

export interface CollectorContext {
  log: Logger;
  /** Hands a reading to the uplink. Synchronous and cheap: it only appends to the outbox. */
  emit(reading: Reading): void;
}

export interface Collector {
  readonly name: string;
  start(ctx: CollectorContext): Promise<void>;
  stop(): Promise<void>;
  /**
   * Devices whose commands this collector executes (voice poles, PTZ cameras). The agent
   * subscribes to their command topics and hands each valid, unexpired, first-seen command here;
   * the collector reports progress with `ack` readings (accepted, playing, done, failed …).
   */
  readonly commandDevices?: readonly string[];
  handleCommand?(deviceId: string, command: DeviceCommand): void;
}
