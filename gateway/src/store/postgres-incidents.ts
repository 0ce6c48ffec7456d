/**
 * Incidents, their signals, timeline and dispatches in PostgreSQL (schema version 2): the SQL and
 * row mapping SQLite uses (queries.ts, rows.ts), ids from RETURNING, and the day's incident
 * number from one atomic upsert, so two gateways never hand out the same number.
 */
import type { Dispatch, FireDangerDay, Incident, TimelineEntry } from '../../../protocol/incidents.js';
import type { FireDangerStore, IncidentQuery, IncidentStore, StoredSignal } from './incidents.js';
import type { PgSql } from './postgres-sql.js';
import { INCIDENT_SQL, incidentList } from './queries.js';
import * as rows from './rows.js';

type BodyRow = { body: string };

class PostgresFireDangerStore implements FireDangerStore {
  readonly #sql: PgSql;

  constructor(sql: PgSql) {
    this.#sql = sql;
  }

  saveDay(day: FireDangerDay): void {
    this.#sql.run(INCIDENT_SQL.saveDay, [day.day, JSON.stringify(day)]);
  }

  getDay(day: string): FireDangerDay | undefined {
    const r = this.#sql.get<BodyRow>(INCIDENT_SQL.getDay, [day]);
    return r ? rows.fromBody<FireDangerDay>(r) : undefined;
  }

  days(limit: number): FireDangerDay[] {
    return this.#sql.all<BodyRow>(INCIDENT_SQL.days, [limit]).map((r) => rows.fromBody<FireDangerDay>(r));
  }
}

export class PostgresIncidentStore implements IncidentStore {
  readonly #sql: PgSql;
  readonly fireDanger: FireDangerStore;

  constructor(sql: PgSql) {
    this.#sql = sql;
    this.fireDanger = new PostgresFireDangerStore(sql);
  }

  nextNumber(day: string): number {
    const r = this.#sql.get<{ last: number }>(
      'INSERT INTO incident_numbers (day, last) VALUES (?, 1) ON CONFLICT (day) DO UPDATE SET last = incident_numbers.last + 1 RETURNING last',
      [day],
    );
    return r!.last;
  }

  insert(incident: Incident): void {
    this.#sql.run(INCIDENT_SQL.insert, rows.incidentParams(incident));
  }

  update(incident: Incident): void {
    this.#sql.run(INCIDENT_SQL.update, rows.incidentParams(incident));
  }

  get(id: string): Incident | undefined {
    const r = this.#sql.get<BodyRow>(INCIDENT_SQL.get, [id]);
    return r ? rows.fromBody<Incident>(r) : undefined;
  }

  list(q: IncidentQuery): { incidents: Incident[]; total: number } {
    const page = incidentList(q);
    const total = this.#sql.get<{ n: number }>(page.countSql, page.values)!.n;
    const found = this.#sql.all<BodyRow>(page.pageSql, page.pageValues);
    return { incidents: found.map((r) => rows.fromBody<Incident>(r)), total };
  }

  open(): Incident[] {
    return this.#sql.all<BodyRow>(INCIDENT_SQL.open).map((r) => rows.fromBody<Incident>(r));
  }

  addSignal(s: StoredSignal): void {
    this.#sql.run(INCIDENT_SQL.addSignal, rows.signalValues(s));
  }

  signals(incidentId: string, limit: number): StoredSignal[] {
    return this.#sql.all<rows.SignalRow>(INCIDENT_SQL.signals, [incidentId, limit]).map(rows.toSignal);
  }

  addTimeline(e: Omit<TimelineEntry, 'id'>): TimelineEntry {
    const r = this.#sql.get<{ id: number }>(`${INCIDENT_SQL.addTimeline} RETURNING id`, rows.timelineValues(e));
    return { id: r!.id, ...e };
  }

  timeline(incidentId: string): TimelineEntry[] {
    return this.#sql.all<rows.TimelineRow>(INCIDENT_SQL.timeline, [incidentId]).map(rows.toTimeline);
  }

  addDispatch(d: Omit<Dispatch, 'id'>): Dispatch {
    const r = this.#sql.get<{ id: number }>(`${INCIDENT_SQL.addDispatch} RETURNING id`, rows.dispatchValues(d));
    return { id: r!.id, ...d };
  }

  dispatches(incidentId: string): Dispatch[] {
    return this.#sql.all<rows.DispatchRow>(INCIDENT_SQL.dispatches, [incidentId]).map(rows.toDispatch);
  }
}
