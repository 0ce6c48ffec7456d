/**
 * WebSocket messages between the gateway (`/ws`) and the dashboard: UTF-8 JSON, in text frames
 * except the device snapshot, which is sent as a binary frame of the same JSON (docs/protocol.md).
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

// ---- the device snapshot: columns, not one object per device ---------------------------------
// 50,000 DeviceView objects are 10.5–12.4 MB of JSON, which a browser takes seconds to receive
// and parse. As columns (row i of every column is the same device), with repeated strings as
// table codes, numbered names as patterns and times as offsets, the same snapshot is ~2.5 MB.

/** The snapshot's format; a client ignores a snapshot whose `format` it does not know. */
export const DEVICE_SNAPSHOT_FORMAT = 'columns/1';

/** Repeated strings: row i's value is `table[codes[i]]`. */
export interface TableColumn<T extends string = string> {
  table: T[];
  codes: number[];
}

/**
 * Strings that mostly differ by a number ("cam-00012", "竹海社区监控12号"): row i's value is the
 * `[prefix, suffix, width]` pattern at `codes[i]` around `numbers[i]`, zero-padded to `width` digits
 * (0: not padded), or `prefix + suffix` when `numbers[i]` is null. Ids and names are most of a
 * snapshot's bytes otherwise.
 */
export interface NumberedColumn {
  patterns: Array<[prefix: string, suffix: string, width: number]>;
  codes: number[];
  numbers: Array<number | null>;
}

/**
 * Numbers with few decimals (a ledger's coordinates): row i's value is
 * `(base + offsets[i]) / 10 ** decimals`. The gateway uses this form only where it gives back
 * every row's number exactly, and a plain array of numbers otherwise.
 */
export interface DecimalColumn {
  decimals: number;
  base: number;
  offsets: number[];
}

/** Times in ms: row i's value is `base + offsets[i]`, or null (13-digit times cost 14 bytes each). */
export interface TimeColumn {
  base: number;
  offsets: Array<number | null>;
}

/**
 * One telemetry field, for the devices that have it: `rowGaps[0]` is the first such row, each
 * further gap the distance to the previous one (ascending rows); `values[k]` belongs to the k-th.
 */
export interface ValueColumn {
  field: string;
  rowGaps: number[];
  values: TelemetryValue[];
}

/** Ledger facts (DeviceView's fixed fields), one column each; they do not change while the gateway runs. */
export interface DeviceLedgerColumns {
  id: NumberedColumn;
  name: NumberedColumn;
  kind: TableColumn<DeviceKind>;
  lat: DecimalColumn | number[];
  lon: DecimalColumn | number[];
  grid: TableColumn;
  community: TableColumn;
  agent: TableColumn;
}

/** Live state (DeviceView's changing fields), in the same row order as the ledger columns. */
export interface DeviceLiveColumns {
  status: TableColumn<Availability>;
  lastSeen: TimeColumn;
  /** A device without a field has no row in its column; one with no values at all is in none. */
  values: ValueColumn[];
  valuesTs: TimeColumn;
}

/** Every device, as DeviceView rows would carry them; `count` is every column's length. */
export interface DeviceSnapshotMessage {
  type: 'devices.snapshot';
  format: typeof DEVICE_SNAPSHOT_FORMAT;
  count: number;
  ledger: DeviceLedgerColumns;
  live: DeviceLiveColumns;
}

export type ServerMessage =
  | { type: 'hello'; protocol: 1; serverTime: number; /** site id, as in /api/site */ site: string; storage: StorageStatus }
  | DeviceSnapshotMessage
  /** Coalesced: one message per flush interval with the latest update per device. */
  | { type: 'devices.update'; updates: DeviceUpdate[] }
  | { type: 'storage'; storage: StorageStatus }
  | IncidentServerMessage
  | BroadcastServerMessage;
