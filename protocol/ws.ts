/**
 * WebSocket messages between the gateway (`/ws`) and the dashboard. JSON text frames.
 * Server -> client only for now; the client sends nothing but WebSocket pings.
 */
import type { BroadcastServerMessage } from './broadcasts.js';
import type { IncidentServerMessage } from './incidents.js';
import type { DeviceKind } from './payloads.js';

export type Availability = 'online' | 'offline' | 'unknown';
export type TelemetryValue = number | string | boolean;

/** A device as the API and the dashboard see it: ledger facts plus live state. */
export interface DeviceView {
  id: string;
  kind: DeviceKind;
  name: string;
  lat: number;
  lon: number;
  grid: string;
  community: string;
  agent: string;
  status: Availability;
  /** Gateway time (ms) of the last message from or about this device; null if never heard. */
  lastSeen: number | null;
  /** Latest telemetry values and their device time. */
  values: Record<string, TelemetryValue>;
  valuesTs: number | null;
}

/** A change to one device; only the fields that changed besides `id`. */
export type DeviceUpdate = Pick<DeviceView, 'id'> & Partial<Pick<DeviceView, 'status' | 'lastSeen' | 'values' | 'valuesTs'>>;

export interface StorageStatus {
  /** 'ok': writes land; 'down': InfluxDB unreachable, points are not being stored; 'disabled': no InfluxDB configured. */
  state: 'ok' | 'down' | 'disabled';
  url: string | null;
  message: string | null;
}

export type ServerMessage =
  | { type: 'hello'; protocol: 1; serverTime: number; /** site id, as in /api/site */ site: string; storage: StorageStatus }
  | { type: 'devices.snapshot'; devices: DeviceView[] }
  /** Coalesced: one message per flush interval with the latest update per device. */
  | { type: 'devices.update'; updates: DeviceUpdate[] }
  | { type: 'storage'; storage: StorageStatus }
  | IncidentServerMessage
  | BroadcastServerMessage;
