/**
 * Alarm snapshots: when a camera raises (or repeats) a fire/smoke alarm on an incident, the
 * gateway fetches that camera's ONVIF snapshot, at most one per camera per incident every
 * `minIntervalSec`, and keeps it with the incident.
 *
 * The JPEGs live in `<dataDir>/snapshots/`; their index is a small SQLite file beside them
 * (`index.sqlite`), so the folder is self-contained: deleting it deletes both. Retention drops
 * the oldest files past `maxBytes` and anything older than `maxAgeDays`, at start, after each
 * new snapshot and hourly.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { VideoConfig } from '../../../config/schema.js';
import type { Incident, IncidentCamera } from '../../../protocol/incidents.js';
import type { IncidentSnapshot } from '../../../protocol/video.js';
import type { Metrics } from '../metrics.js';
import type { CameraOnvif } from './camera-onvif.js';

export interface SnapshotContext {
  config: VideoConfig['snapshots'];
  dir: string;
  log: Logger;
  metrics: Metrics;
  onvif: CameraOnvif;
  now?: () => number;
}

interface SnapshotRow {
  name: string;
  incident_id: string;
  camera_id: string;
  camera_name: string;
  ts: number;
  bearing_deg: number | null;
  bytes: number;
}

export const SNAPSHOT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}\\.jpg$';
const RETENTION_INTERVAL_MS = 3_600_000;
/** Captures waiting beyond this are skipped (an alarm storm must not queue without bound). */
const MAX_QUEUED = 200;

const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '_');

export class SnapshotService {
  readonly #ctx: SnapshotContext;
  readonly #now: () => number;
  readonly #db: Database.Database;
  /** `incident|camera` → when the last snapshot was taken and the signal it was for */
  readonly #last = new Map<string, { at: number; signalAt: number }>();
  readonly #queue: Array<() => Promise<void>> = [];
  readonly #inFlight = new Set<Promise<void>>();
  #running = 0;
  #retention: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(ctx: SnapshotContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
    mkdirSync(ctx.dir, { recursive: true });
    this.#db = new Database(join(ctx.dir, 'index.sqlite'));
    this.#db.pragma('journal_mode = WAL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS snapshots (
        name TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        camera_name TEXT NOT NULL,
        ts INTEGER NOT NULL,
        bearing_deg REAL,
        bytes INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS snapshots_incident ON snapshots (incident_id, ts);
      CREATE INDEX IF NOT EXISTS snapshots_ts ON snapshots (ts);
    `);
  }

  start(): void {
    this.enforceRetention();
    this.#retention = setInterval(() => this.enforceRetention(), RETENTION_INTERVAL_MS);
    this.#retention.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#retention);
    this.#queue.length = 0;
    await Promise.allSettled([...this.#inFlight]);
    this.#db.close();
  }

  /** The incident listener: a snapshot for each camera whose alarm is newer than its last snapshot. */
  onIncident(incident: Incident): void {
    if (this.#stopped || !this.#ctx.config.enabled || incident.category !== 'fire') return;
    const now = this.#now();
    const minGapMs = this.#ctx.config.minIntervalSec * 1000;
    for (const camera of incident.cameras) {
      const key = `${incident.id}|${camera.id}`;
      const last = this.#last.get(key);
      if (last && (camera.lastSignalAt <= last.signalAt || now - last.at < minGapMs)) continue;
      this.#last.set(key, { at: now, signalAt: camera.lastSignalAt });
      this.#enqueue(() => this.#capture(incident.id, camera));
    }
    // Keys of long-closed incidents need not stay: the map is bounded by recent alarms.
    if (this.#last.size > 10_000) for (const [k, v] of this.#last) if (now - v.at > 24 * 3_600_000) this.#last.delete(k);
  }

  #enqueue(task: () => Promise<void>): void {
    if (this.#queue.length >= MAX_QUEUED) {
      this.#ctx.metrics.videoSnapshots.inc({ result: 'skipped' });
      return;
    }
    this.#queue.push(task);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#ctx.config.concurrency && this.#queue.length > 0) {
      const task = this.#queue.shift()!;
      this.#running++;
      const p = task().finally(() => {
        this.#running--;
        this.#inFlight.delete(p);
        this.#pump();
      });
      this.#inFlight.add(p);
    }
  }

  async #capture(incidentId: string, camera: IncidentCamera): Promise<void> {
    const { log, metrics } = this.#ctx;
    try {
      const jpeg = await this.#ctx.onvif.snapshot(camera.id, this.#ctx.config.timeoutMs);
      if (this.#stopped) return;
      const snap = this.save(incidentId, camera, jpeg);
      metrics.videoSnapshots.inc({ result: 'stored' });
      log.info({ incident: incidentId, camera: camera.id, name: snap.name, bytes: snap.bytes }, 'snapshot stored');
    } catch (err) {
      metrics.videoSnapshots.inc({ result: 'failed' });
      log.warn({ incident: incidentId, camera: camera.id, err: (err as Error).message }, 'snapshot failed');
    }
  }

  /** Stores a JPEG for an incident's camera (written whole, then renamed into place) and applies retention. */
  save(incidentId: string, camera: Pick<IncidentCamera, 'id' | 'name' | 'bearingDeg'>, jpeg: Buffer): IncidentSnapshot {
    const ts = this.#now();
    const stamp = new Date(ts).toISOString().replace(/[-:]/g, '').replace('.', '');
    let name = `${safe(incidentId)}_${safe(camera.id)}_${stamp}.jpg`;
    for (let n = 2; this.#db.prepare('SELECT 1 FROM snapshots WHERE name = ?').get(name); n++) name = `${safe(incidentId)}_${safe(camera.id)}_${stamp}-${n}.jpg`;
    const file = join(this.#ctx.dir, name);
    writeFileSync(`${file}.tmp`, jpeg);
    renameSync(`${file}.tmp`, file);
    const row: SnapshotRow = { name, incident_id: incidentId, camera_id: camera.id, camera_name: camera.name, ts, bearing_deg: camera.bearingDeg, bytes: jpeg.length };
    this.#db
      .prepare('INSERT INTO snapshots (name, incident_id, camera_id, camera_name, ts, bearing_deg, bytes) VALUES (@name, @incident_id, @camera_id, @camera_name, @ts, @bearing_deg, @bytes)')
      .run(row);
    this.enforceRetention();
    return toSnapshot(row);
  }

  list(incidentId: string): IncidentSnapshot[] {
    const rows = this.#db.prepare('SELECT * FROM snapshots WHERE incident_id = ? ORDER BY ts, name').all(incidentId) as SnapshotRow[];
    return rows.map(toSnapshot);
  }

  /** The snapshot and its bytes, or undefined. The name is only ever looked up, never joined into a path unchecked. */
  read(name: string): { snapshot: IncidentSnapshot; jpeg: Buffer } | undefined {
    const row = this.#db.prepare('SELECT * FROM snapshots WHERE name = ?').get(name) as SnapshotRow | undefined;
    if (!row) return undefined;
    try {
      return { snapshot: toSnapshot(row), jpeg: readFileSync(join(this.#ctx.dir, row.name)) };
    } catch {
      this.#db.prepare('DELETE FROM snapshots WHERE name = ?').run(name);
      return undefined;
    }
  }

  /** Bytes and count on disk, for /health-like views and tests. */
  usage(): { files: number; bytes: number } {
    const r = this.#db.prepare('SELECT COUNT(*) AS files, COALESCE(SUM(bytes), 0) AS bytes FROM snapshots').get() as { files: number; bytes: number };
    return r;
  }

  enforceRetention(): void {
    if (this.#stopped) return;
    const { maxAgeDays, maxBytes } = this.#ctx.config;
    const doomed: string[] = [];
    const cutoff = this.#now() - maxAgeDays * 86_400_000;
    for (const r of this.#db.prepare('SELECT name FROM snapshots WHERE ts < ?').all(cutoff) as Array<{ name: string }>) doomed.push(r.name);
    let total = this.usage().bytes;
    if (total > maxBytes) {
      for (const r of this.#db.prepare('SELECT name, bytes FROM snapshots WHERE ts >= ? ORDER BY ts, name').iterate(cutoff) as Iterable<{ name: string; bytes: number }>) {
        if (total <= maxBytes) break;
        doomed.push(r.name);
        total -= r.bytes;
      }
    }
    if (doomed.length === 0) return;
    const del = this.#db.prepare('DELETE FROM snapshots WHERE name = ?');
    this.#db.transaction(() => {
      for (const name of doomed) del.run(name);
    })();
    for (const name of doomed) rmSync(join(this.#ctx.dir, name), { force: true });
    this.#ctx.log.info({ removed: doomed.length }, 'snapshots: retention removed the oldest');
  }
}

function toSnapshot(r: SnapshotRow): IncidentSnapshot {
  return {
    name: r.name,
    url: `/api/snapshots/${encodeURIComponent(r.name)}`,
    incidentId: r.incident_id,
    cameraId: r.camera_id,
    cameraName: r.camera_name,
    ts: r.ts,
    bearingDeg: r.bearing_deg,
    bytes: r.bytes,
  };
}
