/** Broadcast jobs and per-pole deliveries in SQLite (schema version 3). */
import type Database from 'better-sqlite3';
import type { BroadcastStore } from './broadcasts.js';

export const BROADCASTS_SQL = `
  CREATE TABLE broadcast_placeholder (id INTEGER PRIMARY KEY);
`;

export class SqliteBroadcastStore implements BroadcastStore {
  readonly #db: Database.Database;
  constructor(db: Database.Database) {
    this.#db = db;
  }
}
