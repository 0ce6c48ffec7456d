/**
 * InfluxDB line protocol, the one encoding the spool stores and every InfluxDB version accepts.
 * Timestamps are integer milliseconds (written with precision=ms). Numbers are always floats, so a
 * field never changes type between points (InfluxDB refuses that).
 */
import type { SeriesPoint } from './types.js';

const escapeMeasurement = (s: string) => s.replace(/[,\s\\]/g, (c) => `\\${c === '\n' ? 'n' : c}`);
const escapeKey = (s: string) => s.replace(/[,=\s\\]/g, (c) => `\\${c === '\n' ? 'n' : c}`);
const escapeString = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"`;

/** One point as a line, without the trailing newline. Returns undefined if it has no valid field. */
export function toLine(point: SeriesPoint): string | undefined {
  return lineWithPrefix(linePrefix(point.measurement, point.tags), point.fields, point.ts);
}

/** `measurement,tag=v,…` (tags sorted, empty values left out): the part of a line a series repeats. */
export function linePrefix(measurement: string, tags: Readonly<Record<string, string>>): string {
  let line = escapeMeasurement(measurement);
  for (const key of Object.keys(tags).sort()) {
    const v = tags[key];
    if (v === undefined || v === '') continue; // InfluxDB rejects empty tag values
    line += `,${escapeKey(key)}=${escapeKey(v)}`;
  }
  return line;
}

/**
 * The same text as String(n) for a finite number (both are ECMAScript's Number::toString), made
 * without V8's number-to-string cache: String(n) puts every new value's string in that cache,
 * which keeps it alive past the next young-generation GC, so at 10,000 readings/s the readings'
 * digits were a third of everything the gateway promoted to the old generation (sampling heap
 * profile of bench:alert-latency). JSON.stringify formats into a fresh string, and is faster.
 */
const numberText: (n: number) => string = JSON.stringify;

// Field keys repeat on every point of a kind: escape each once. Bounded, since a device could
// (within its schema) send keys we have never seen.
const fieldKeys = new Map<string, string>();

function fieldKey(key: string): string {
  let escaped = fieldKeys.get(key);
  if (escaped === undefined) {
    escaped = escapeKey(key);
    if (fieldKeys.size >= 10_000) fieldKeys.clear();
    fieldKeys.set(key, escaped);
  }
  return escaped;
}

/**
 * A line from its series prefix (see linePrefix; callers cache it per device), its fields and
 * its time. Returns undefined if no field is valid.
 */
export function lineWithPrefix(prefix: string, fields: Readonly<Record<string, number | string | boolean>>, ts: number): string | undefined {
  let out = '';
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    let encoded: string;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) continue;
      encoded = numberText(value); // no `i` suffix: a float, whether or not it is whole
    } else if (typeof value === 'boolean') {
      encoded = value ? 'true' : 'false';
    } else if (typeof value === 'string') {
      encoded = escapeString(value);
    } else {
      continue;
    }
    out += `${out === '' ? ' ' : ','}${fieldKey(key)}=${encoded}`;
  }
  if (out === '') return undefined;
  return `${prefix}${out} ${numberText(Math.trunc(ts))}`;
}
