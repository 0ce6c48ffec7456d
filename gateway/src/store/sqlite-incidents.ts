/** Incidents, their signals, timeline and dispatches in SQLite (schema version 2). */
import type Database from 'better-sqlite3';
import type { IncidentStore } from './incidents.js';

export const INCIDENTS_SQL = `
  CREATE TABLE incident_placeholder (id INTEGER PRIMARY KEY);
`;

export class SqliteIncidentStore implements IncidentStore {
  readonly #db: Database.Database;
  constructor(db: Database.Database) {
    this.#db = db;
  }
}
