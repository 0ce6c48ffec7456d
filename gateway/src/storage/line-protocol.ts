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
  let fields = '';
  for (const [key, value] of Object.entries(point.fields)) {
    let encoded: string;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) continue;
      encoded = String(value); // no `i` suffix: a float, whether or not it is whole
    } else if (typeof value === 'boolean') {
      encoded = value ? 'true' : 'false';
    } else {
      encoded = escapeString(value);
    }
    fields += `${fields === '' ? '' : ','}${escapeKey(key)}=${encoded}`;
  }
  if (fields === '') return undefined;
  let line = escapeMeasurement(point.measurement);
  for (const key of Object.keys(point.tags).sort()) {
    const v = point.tags[key];
    if (v === undefined || v === '') continue; // InfluxDB rejects empty tag values
    line += `,${escapeKey(key)}=${escapeKey(v)}`;
  }
  return `${line} ${fields} ${Math.trunc(point.ts)}`;
}
