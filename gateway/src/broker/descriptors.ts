/**
 * How many MQTT connections the embedded broker holds at most (gateway.mqtt.maxConnections).
 *
 * Every connection is a file descriptor, and so is everything else the gateway opens: HTTP and
 * WebSocket clients (the dashboards), InfluxDB requests, spool segments, SQLite, ffmpeg pipes. With
 * no cap, a flood of device connections takes the last descriptor and the gateway goes deaf: libuv
 * accepts and at once closes what it has no descriptor for, /health stops answering, and a new
 * spool segment or InfluxDB connection would fail the same way (docs/BENCHMARKS.md, "Connections").
 * 'auto' keeps a reserve for the rest: a quarter of the limit, at most 1024.
 */
import { readFileSync } from 'node:fs';

/** Descriptors kept for everything but MQTT connections under `limit`. */
export const reserveFor = (limit: number): number => Math.min(1024, Math.floor(limit / 4));

/**
 * The soft open-file limit (RLIMIT_NOFILE) from /proc/self/limits, or undefined where that cannot
 * be read (not Linux) or says "unlimited". Node raises the soft limit to the hard one at start, so
 * this is what the process can really open.
 */
export function openFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m || m[1] === 'unlimited') return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export interface ConnectionCap {
  /** Connections held at most; Infinity when there is no cap (limit unknown). */
  max: number;
  /** The open-file limit it was derived from or checked against, if known. */
  fileLimit: number | undefined;
  /** Set when an explicit setting leaves less than the reserve for the rest of the gateway. */
  warning?: string;
}

/** `fileLimit`: openFileLimit(), or undefined where it is not known. */
export function resolveMaxConnections(setting: number | 'auto', fileLimit: number | undefined): ConnectionCap {
  if (setting === 'auto') {
    if (fileLimit === undefined) return { max: Number.POSITIVE_INFINITY, fileLimit };
    return { max: Math.max(1, fileLimit - reserveFor(fileLimit)), fileLimit };
  }
  if (fileLimit !== undefined && setting > fileLimit - reserveFor(fileLimit)) {
    return {
      max: setting,
      fileLimit,
      warning:
        `gateway.mqtt.maxConnections ${setting} leaves fewer than ${reserveFor(fileLimit)} of the process's ${fileLimit} descriptors ` +
        'for the HTTP API, dashboards and storage: a flood of device connections can make the gateway deaf (raise LimitNOFILE, or use "auto")',
    };
  }
  return { max: setting, fileLimit };
}
