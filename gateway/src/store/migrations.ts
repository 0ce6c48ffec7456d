/**
 * The operational store's schema, as numbered migrations applied in order (see sqlite.ts). A
 * released migration is never edited: a change is a new version. Each capability keeps its
 * tables' SQL next to its store implementation.
 */
import { BROADCASTS_SQL } from './sqlite-broadcasts.js';
import { INCIDENTS_SQL } from './sqlite-incidents.js';

export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'users, sessions, audit',
    sql: `
      CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL,
        grids TEXT NOT NULL DEFAULT '[]',
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX sessions_user ON sessions (user_id);
      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
      );
      CREATE INDEX audit_ts ON audit (ts);
      CREATE INDEX audit_actor ON audit (actor, ts);
    `,
  },
  { version: 2, name: 'incidents, signals, timeline, dispatches', sql: INCIDENTS_SQL },
  { version: 3, name: 'broadcast jobs and per-pole deliveries', sql: BROADCASTS_SQL },
];

