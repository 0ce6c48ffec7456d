/**
 * Incidents, their signals, timeline and dispatches in SQLite (schema version 2). An incident is
 * one row: the columns that queries filter on, plus the whole incident as JSON (`body`), which
 * is what the API returns.
 */
import type Database from 'better-sqlite3';
import type { Dispatch, FireDangerDay, Incident, TimelineEntry } from '../../../protocol/incidents.js';
import type { FireDangerStore, IncidentQuery, IncidentStore, StoredSignal } from './incidents.js';
import { INCIDENT_SQL, incidentList } from './queries.js';
import * as rows from './rows.js';

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

class SqliteFireDangerStore implements FireDangerStore {
  readonly #save: Database.Statement;
  readonly #get: Database.Statement;
  readonly #list: Database.Statement;

  constructor(db: Database.Database) {
    this.#save = db.prepare(INCIDENT_SQL.saveDay);
    this.#get = db.prepare(INCIDENT_SQL.getDay);
    this.#list = db.prepare(INCIDENT_SQL.days);
  }

  saveDay(day: FireDangerDay): void {
    this.#save.run(day.day, JSON.stringify(day));
  }

  getDay(day: string): FireDangerDay | undefined {
    const r = this.#get.get(day) as { body: string } | undefined;
    return r ? rows.fromBody<FireDangerDay>(r) : undefined;
  }

  days(limit: number): FireDangerDay[] {
    return (this.#list.all(limit) as Array<{ body: string }>).map((r) => rows.fromBody<FireDangerDay>(r));
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
      insert: db.prepare(INCIDENT_SQL.insert),
      update: db.prepare(INCIDENT_SQL.update),
      get: db.prepare(INCIDENT_SQL.get),
      open: db.prepare(INCIDENT_SQL.open),
      addSignal: db.prepare(INCIDENT_SQL.addSignal),
      signals: db.prepare(INCIDENT_SQL.signals),
      addTimeline: db.prepare(INCIDENT_SQL.addTimeline),
      timeline: db.prepare(INCIDENT_SQL.timeline),
      addDispatch: db.prepare(INCIDENT_SQL.addDispatch),
      dispatches: db.prepare(INCIDENT_SQL.dispatches),
    };
  }

  nextNumber(day: string): number {
    return this.#db.transaction(() => {
      this.#stmts.nextNumber.run(day);
      return (this.#stmts.getNumber.get(day) as { last: number }).last;
    })();
  }

  insert(incident: Incident): void {
    this.#stmts.insert.run(rows.incidentParams(incident));
  }

  update(incident: Incident): void {
    this.#stmts.update.run(rows.incidentParams(incident));
  }

  get(id: string): Incident | undefined {
    const r = this.#stmts.get.get(id) as { body: string } | undefined;
    return r ? rows.fromBody<Incident>(r) : undefined;
  }

  list(q: IncidentQuery): { incidents: Incident[]; total: number } {
    const page = incidentList(q);
    const total = (this.#db.prepare(page.countSql).get(...page.values) as { n: number }).n;
    const found = this.#db.prepare(page.pageSql).all(...page.pageValues) as Array<{ body: string }>;
    return { incidents: found.map((r) => rows.fromBody<Incident>(r)), total };
  }

  open(): Incident[] {
    return (this.#stmts.open.all() as Array<{ body: string }>).map((r) => rows.fromBody<Incident>(r));
  }

  addSignal(s: StoredSignal): void {
    this.#stmts.addSignal.run(...rows.signalValues(s));
  }

  signals(incidentId: string, limit: number): StoredSignal[] {
    return (this.#stmts.signals.all(incidentId, limit) as rows.SignalRow[]).map(rows.toSignal);
  }

  addTimeline(e: Omit<TimelineEntry, 'id'>): TimelineEntry {
    const info = this.#stmts.addTimeline.run(...rows.timelineValues(e));
    return { id: Number(info.lastInsertRowid), ...e };
  }

  timeline(incidentId: string): TimelineEntry[] {
    return (this.#stmts.timeline.all(incidentId) as rows.TimelineRow[]).map(rows.toTimeline);
  }

  addDispatch(d: Omit<Dispatch, 'id'>): Dispatch {
    const info = this.#stmts.addDispatch.run(...rows.dispatchValues(d));
    return { id: Number(info.lastInsertRowid), ...d };
  }

  dispatches(incidentId: string): Dispatch[] {
    return (this.#stmts.dispatches.all(incidentId) as rows.DispatchRow[]).map(rows.toDispatch);
  }
}
