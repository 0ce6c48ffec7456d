/**
 * Incidents, their signals, timeline and dispatches in SQLite (schema version 2). An incident is
 * one row: the columns that queries filter on, plus the whole incident as JSON (`body`), which
 * is what the API returns.
 */
import type Database from 'better-sqlite3';
import { OPEN_STATUSES, type Dispatch, type Incident, type TimelineEntry } from '../../../protocol/incidents.js';
import type { FireDangerDay } from '../../../protocol/incidents.js';
import type { FireDangerStore, IncidentQuery, IncidentStore, StoredSignal } from './incidents.js';

export const INCIDENTS_SQL = `
  CREATE TABLE incident_numbers (day TEXT PRIMARY KEY, last INTEGER NOT NULL);
  CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    grid TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
  );
  CREATE INDEX incidents_created ON incidents (created_at);
  CREATE INDEX incidents_status ON incidents (status, created_at);
  CREATE TABLE incident_signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    bearing_deg REAL,
    confidence REAL,
    value REAL
  );
  CREATE INDEX incident_signals_incident ON incident_signals (incident_id, ts);
  CREATE TABLE incident_timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);
  CREATE TABLE incident_dispatches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    level TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT
  );
  CREATE INDEX incident_dispatches_incident ON incident_dispatches (incident_id, id);
  CREATE TABLE fire_danger_days (day TEXT PRIMARY KEY, body TEXT NOT NULL);
`;

const OPEN_SQL = OPEN_STATUSES.map((s) => `'${s}'`).join(', ');

class SqliteFireDangerStore implements FireDangerStore {
  readonly #save: Database.Statement;
  readonly #get: Database.Statement;
  readonly #list: Database.Statement;

  constructor(db: Database.Database) {
    this.#save = db.prepare('INSERT INTO fire_danger_days (day, body) VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET body = excluded.body');
    this.#get = db.prepare('SELECT body FROM fire_danger_days WHERE day = ?');
    this.#list = db.prepare('SELECT body FROM fire_danger_days ORDER BY day DESC LIMIT ?');
  }

  saveDay(day: FireDangerDay): void {
    this.#save.run(day.day, JSON.stringify(day));
  }

  getDay(day: string): FireDangerDay | undefined {
    const r = this.#get.get(day) as { body: string } | undefined;
    return r ? (JSON.parse(r.body) as FireDangerDay) : undefined;
  }

  days(limit: number): FireDangerDay[] {
    return (this.#list.all(limit) as Array<{ body: string }>).map((r) => JSON.parse(r.body) as FireDangerDay);
  }
}

export class SqliteIncidentStore implements IncidentStore {
  readonly #db: Database.Database;
  readonly fireDanger: FireDangerStore;
  readonly #stmts: {
    nextNumber: Database.Statement;
    getNumber: Database.Statement;
    insert: Database.Statement;
    update: Database.Statement;
    get: Database.Statement;
    open: Database.Statement;
    addSignal: Database.Statement;
    signals: Database.Statement;
    addTimeline: Database.Statement;
    timeline: Database.Statement;
    addDispatch: Database.Statement;
    dispatches: Database.Statement;
  };

  constructor(db: Database.Database) {
    this.#db = db;
    this.fireDanger = new SqliteFireDangerStore(db);
    this.#stmts = {
      nextNumber: db.prepare('INSERT INTO incident_numbers (day, last) VALUES (?, 1) ON CONFLICT (day) DO UPDATE SET last = last + 1'),
      getNumber: db.prepare('SELECT last FROM incident_numbers WHERE day = ?'),
      insert: db.prepare('INSERT INTO incidents (id, category, status, grid, created_at, updated_at, body) VALUES (@id, @category, @status, @grid, @createdAt, @updatedAt, @body)'),
      update: db.prepare('UPDATE incidents SET category = @category, status = @status, grid = @grid, updated_at = @updatedAt, body = @body WHERE id = @id'),
      get: db.prepare('SELECT body FROM incidents WHERE id = ?'),
      open: db.prepare(`SELECT body FROM incidents WHERE status IN (${OPEN_SQL}) ORDER BY created_at, id`),
      addSignal: db.prepare(
        'INSERT INTO incident_signals (incident_id, device_id, kind, ts, received_at, bearing_deg, confidence, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      signals: db.prepare('SELECT * FROM incident_signals WHERE incident_id = ? ORDER BY ts DESC, id DESC LIMIT ?'),
      addTimeline: db.prepare('INSERT INTO incident_timeline (incident_id, ts, actor, action, detail) VALUES (?, ?, ?, ?, ?)'),
      timeline: db.prepare('SELECT * FROM incident_timeline WHERE incident_id = ? ORDER BY id'),
      addDispatch: db.prepare('INSERT INTO incident_dispatches (incident_id, ts, level, recipient, channel, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      dispatches: db.prepare('SELECT * FROM incident_dispatches WHERE incident_id = ? ORDER BY id'),
    };
  }

  nextNumber(day: string): number {
    return this.#db.transaction(() => {
      this.#stmts.nextNumber.run(day);
      return (this.#stmts.getNumber.get(day) as { last: number }).last;
    })();
  }

  insert(incident: Incident): void {
    this.#stmts.insert.run(row(incident));
  }

  update(incident: Incident): void {
    this.#stmts.update.run(row(incident));
  }

  get(id: string): Incident | undefined {
    const r = this.#stmts.get.get(id) as { body: string } | undefined;
    return r ? (JSON.parse(r.body) as Incident) : undefined;
  }

  list(q: IncidentQuery): { incidents: Incident[]; total: number } {
    const where: string[] = [];
    const values: unknown[] = [];
    if (q.status && q.status.length > 0) where.push(`status IN (${q.status.map(() => '?').join(', ')})`), values.push(...q.status);
    if (q.category) where.push('category = ?'), values.push(q.category);
    if (q.grids) where.push(q.grids.length ? `grid IN (${q.grids.map(() => '?').join(', ')})` : '0'), values.push(...q.grids);
    if (q.from !== undefined) where.push('created_at >= ?'), values.push(q.from);
    if (q.to !== undefined) where.push('created_at <= ?'), values.push(q.to);
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.#db.prepare(`SELECT COUNT(*) AS n FROM incidents ${clause}`).get(...values) as { n: number }).n;
    const rows = this.#db
      .prepare(`SELECT body FROM incidents ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...values, q.limit, q.offset) as Array<{ body: string }>;
    return { incidents: rows.map((r) => JSON.parse(r.body) as Incident), total };
  }

  open(): Incident[] {
    return (this.#stmts.open.all() as Array<{ body: string }>).map((r) => JSON.parse(r.body) as Incident);
  }

  addSignal(s: StoredSignal): void {
    this.#stmts.addSignal.run(s.incidentId, s.deviceId, s.kind, s.ts, s.receivedAt, s.bearingDeg, s.confidence, s.value);
  }

  signals(incidentId: string, limit: number): StoredSignal[] {
    const rows = this.#stmts.signals.all(incidentId, limit) as Array<{
      incident_id: string;
      device_id: string;
      kind: StoredSignal['kind'];
      ts: number;
      received_at: number;
      bearing_deg: number | null;
      confidence: number | null;
      value: number | null;
    }>;
    return rows.map((r) => ({
      incidentId: r.incident_id,
      deviceId: r.device_id,
      kind: r.kind,
      ts: r.ts,
      receivedAt: r.received_at,
      bearingDeg: r.bearing_deg,
      confidence: r.confidence,
      value: r.value,
    }));
  }

  addTimeline(e: Omit<TimelineEntry, 'id'>): TimelineEntry {
    const info = this.#stmts.addTimeline.run(e.incidentId, e.ts, e.actor, e.action, JSON.stringify(e.detail));
    return { id: Number(info.lastInsertRowid), ...e };
  }

  timeline(incidentId: string): TimelineEntry[] {
    const rows = this.#stmts.timeline.all(incidentId) as Array<{ id: number; incident_id: string; ts: number; actor: string; action: TimelineEntry['action']; detail: string }>;
    return rows.map((r) => ({ id: r.id, incidentId: r.incident_id, ts: r.ts, actor: r.actor, action: r.action, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  addDispatch(d: Omit<Dispatch, 'id'>): Dispatch {
    const info = this.#stmts.addDispatch.run(d.incidentId, d.ts, d.level, d.recipient, d.channel, d.status, d.detail);
    return { id: Number(info.lastInsertRowid), ...d };
  }

  dispatches(incidentId: string): Dispatch[] {
    const rows = this.#stmts.dispatches.all(incidentId) as Array<{
      id: number;
      incident_id: string;
      ts: number;
      level: Dispatch['level'];
      recipient: string;
      channel: string;
      status: Dispatch['status'];
      detail: string | null;
    }>;
    return rows.map((r) => ({ id: r.id, incidentId: r.incident_id, ts: r.ts, level: r.level, recipient: r.recipient, channel: r.channel, status: r.status, detail: r.detail }));
  }
}

function row(i: Incident) {
  return { id: i.id, category: i.category, status: i.status, grid: i.grid, createdAt: i.createdAt, updatedAt: i.updatedAt, body: JSON.stringify(i) };
}
