/**
 * The `/ws` device snapshot (protocol/ws.ts: one column per DeviceView field) back into DeviceView
 * rows. A snapshot of another format, or whose columns do not line up, is refused whole (null):
 * misaligned columns would put one device's state on another. A row with a bad value is dropped
 * with a warning, as one bad device must not blank the map.
 *
 * Each column's shape is checked first; the rows are then read in one pass with no per-column
 * intermediate arrays (50,000 rows: what this allocates is what the page keeps).
 */
import { DEVICE_SNAPSHOT_FORMAT, type DeviceView, type TelemetryValue } from '../../protocol/ws.js';
import { KINDS, STATUSES } from './devices.js';
import { isNumber, isObject, isString, type Json } from './json.js';

/**
 * The values of every row that has none: one frozen object, not 50,000 empty ones (the store
 * replaces a device's values with a new object on an update, it never writes into them).
 */
const NO_VALUES: Record<string, TelemetryValue> = Object.freeze({});

const isTelemetryValue = (v: unknown): v is TelemetryValue => isNumber(v) || typeof v === 'string' || typeof v === 'boolean';

/**
 * A column of exactly `count` items: an array, or a Float64Array of numbers (the feed worker
 * packs number columns so: feed-connection.ts).
 */
const isColumn = (v: unknown, count: number): v is ArrayLike<unknown> => (Array.isArray(v) || v instanceof Float64Array) && v.length === count;

/** Reads row i of a column; undefined when the row's value is bad. */
type RowReader<T> = (i: number) => T | undefined;

/**
 * A table column. A row whose code is not an index into the table, or whose table entry `accept`
 * refuses (a kind this page does not know), reads as undefined. Null if misshapen.
 */
function tableReader<T extends string>(v: unknown, count: number, accept: (s: string) => s is T): RowReader<T> | null {
  if (!isObject(v) || !Array.isArray(v.table) || !isColumn(v.codes, count)) return null;
  const table = v.table.map((s) => (isString(s) && accept(s) ? s : undefined));
  const codes = v.codes;
  // A code that is not an array index (1.5, -1, "0") finds no entry.
  return (i) => {
    const code = codes[i];
    return typeof code === 'number' ? table[code] : undefined;
  };
}

const anyString = (s: string): s is string => true;
const isKind = (s: string): s is DeviceView['kind'] => (KINDS as readonly string[]).includes(s);
const isStatus = (s: string): s is DeviceView['status'] => (STATUSES as readonly string[]).includes(s);

const isPattern = (p: unknown): p is [string, string, number] =>
  Array.isArray(p) && p.length === 3 && isString(p[0]) && isString(p[1]) && Number.isInteger(p[2]) && (p[2] as number) >= 0 && (p[2] as number) <= 15;

/** A numbered column (ids, names). Null if misshapen. */
function numberedReader(v: unknown, count: number): RowReader<string> | null {
  if (!isObject(v) || !Array.isArray(v.patterns) || !isColumn(v.codes, count) || !isColumn(v.numbers, count)) return null;
  const patterns = v.patterns.map((p) => (isPattern(p) ? p : undefined));
  const { codes, numbers } = v;
  return (i) => {
    const code = codes[i];
    const pattern = typeof code === 'number' ? patterns[code] : undefined;
    if (!pattern) return undefined;
    const n = numbers[i];
    if (n === null) return pattern[0] + pattern[1];
    if (!Number.isSafeInteger(n) || (n as number) < 0) return undefined;
    return pattern[0] + (pattern[2] === 0 ? String(n) : String(n).padStart(pattern[2], '0')) + pattern[1];
  };
}

/** A decimal column, or a plain array of numbers. Null if misshapen. */
function decimalReader(v: unknown, count: number): RowReader<number> | null {
  if (Array.isArray(v) || v instanceof Float64Array) {
    if (v.length !== count) return null;
    const numbers: ArrayLike<unknown> = v;
    return (i) => {
      const n = numbers[i];
      return isNumber(n) ? n : undefined;
    };
  }
  if (!isObject(v) || !Number.isInteger(v.decimals) || (v.decimals as number) < 0 || (v.decimals as number) > 9 || !isNumber(v.base) || !isColumn(v.offsets, count)) return null;
  const scale = 10 ** (v.decimals as number);
  const { base, offsets } = v;
  return (i) => {
    const o = offsets[i];
    return isNumber(o) ? (base + o) / scale : undefined;
  };
}

/** A time column: a row reads as a number, null, or undefined for a bad offset. Null if misshapen. */
function timeReader(v: unknown, count: number): RowReader<number | null> | null {
  if (!isObject(v) || !isNumber(v.base) || !isColumn(v.offsets, count)) return null;
  const { base, offsets } = v;
  return (i) => {
    const o = offsets[i];
    return o === null ? null : isNumber(o) ? base + o : undefined;
  };
}

/**
 * The devices of a `devices.snapshot` message (its `type` already checked), or null when its
 * format is not this page's or its columns do not line up.
 */
export function decodeDeviceSnapshot(msg: Json): DeviceView[] | null {
  if (msg.format !== DEVICE_SNAPSHOT_FORMAT) return null;
  const { count, ledger, live } = msg;
  if (!Number.isInteger(count) || (count as number) < 0 || !isObject(ledger) || !isObject(live) || !Array.isArray(live.values)) return null;
  const n = count as number;
  const id = numberedReader(ledger.id, n);
  const name = numberedReader(ledger.name, n);
  const lat = decimalReader(ledger.lat, n);
  const lon = decimalReader(ledger.lon, n);
  const kind = tableReader(ledger.kind, n, isKind);
  const grid = tableReader(ledger.grid, n, anyString);
  const community = tableReader(ledger.community, n, anyString);
  const agent = tableReader(ledger.agent, n, anyString);
  const status = tableReader(live.status, n, isStatus);
  const lastSeen = timeReader(live.lastSeen, n);
  const valuesTs = timeReader(live.valuesTs, n);
  if (!id || !name || !lat || !lon || !kind || !grid || !community || !agent || !status || !lastSeen || !valuesTs) return null;

  const rows = new Array<DeviceView | null>(n);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const d = {
      id: id(i),
      kind: kind(i),
      name: name(i),
      lat: lat(i),
      lon: lon(i),
      grid: grid(i),
      community: community(i),
      agent: agent(i),
      status: status(i),
      lastSeen: lastSeen(i),
      values: NO_VALUES,
      valuesTs: valuesTs(i),
    };
    const ok =
      d.id !== undefined && d.kind !== undefined && d.name !== undefined && d.lat !== undefined && d.lon !== undefined && d.grid !== undefined &&
      d.community !== undefined && d.agent !== undefined && d.status !== undefined && d.lastSeen !== undefined && d.valuesTs !== undefined;
    rows[i] = ok ? (d as DeviceView) : null;
    if (!ok) bad++;
  }

  for (const column of live.values) {
    if (!isObject(column) || !isString(column.field) || !Array.isArray(column.rowGaps) || !isColumn(column.values, column.rowGaps.length)) return null;
    const { field, rowGaps, values } = column;
    let row = 0;
    for (let k = 0; k < rowGaps.length; k++) {
      const gap = rowGaps[k];
      // Rows ascend: only the first gap may be 0. Anything else means the column is not aligned.
      if (!Number.isInteger(gap) || (gap as number) < (k === 0 ? 0 : 1)) return null;
      row = k === 0 ? (gap as number) : row + (gap as number);
      if (row >= n) return null;
      const device = rows[row];
      const value = values[k];
      if (!device) continue;
      if (isTelemetryValue(value)) {
        if (device.values === NO_VALUES) device.values = {};
        device.values[field] = value;
      }
      else {
        rows[row] = null;
        bad++;
      }
    }
  }

  if (bad === 0) return rows as DeviceView[];
  console.warn(`devices.snapshot: ignored ${bad} malformed device(s)`);
  return rows.filter((d): d is DeviceView => d !== null);
}
