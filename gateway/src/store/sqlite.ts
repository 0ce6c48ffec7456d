/**
 * The operational store in one SQLite file (better-sqlite3@12; 13 crashes on Node 20), WAL mode.
 * Schema changes are numbered migrations applied in order at open, each in a transaction, and
 * recorded in `schema_migrations`; a database from a newer version is refused.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import { SqliteBroadcastStore } from './sqlite-broadcasts.js';
import { SqliteIncidentStore } from './sqlite-incidents.js';
import { auditList, USER_SQL, userUpdate } from './queries.js';
import { toAudit, toSession, toUser, withoutSecret, type AuditRow, type SessionRow, type UserRow } from './rows.js';
import { refuseNewerSchema } from './schema-version.js';
import type { AuditEntry, AuditQuery, NewUser, OperationalStore, Session, User, UserRecord } from './store.js';

export class SqliteStore implements OperationalStore {
  readonly #db: Database.Database;
  readonly incidents: SqliteIncidentStore;
  readonly broadcasts: SqliteBroadcastStore;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#migrate();
    this.incidents = new SqliteIncidentStore(this.#db);
    this.broadcasts = new SqliteBroadcastStore(this.#db);
  }

  ping(): boolean {
    try {
      return this.#db.open && (this.#db.prepare('SELECT 1 AS ok').get() as { ok: number }).ok === 1;
    } catch {
      return false;
    }
  }

  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  #migrate(): void {
    this.#db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const current = (this.#db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0;
    refuseNewerSchema(current);
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.#db.transaction(() => {
        this.#db.exec(m.sql);
        this.#db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
      })();
    }
  }

  findUserByName(username: string): UserRecord | undefined {
    const row = this.#db.prepare(USER_SQL.byName).get(username) as UserRow | undefined;
    return row ? toUser(row) : undefined;
  }

  getUser(id: number): User | undefined {
    const row = this.#db.prepare(USER_SQL.byId).get(id) as UserRow | undefined;
    return row ? withoutSecret(toUser(row)) : undefined;
  }

  listUsers(): User[] {
    return (this.#db.prepare(USER_SQL.all).all() as UserRow[]).map((r) => withoutSecret(toUser(r)));
  }

  createUser(user: NewUser, now: number): User {
    const info = this.#db.prepare(USER_SQL.insert).run(user.username, user.displayName, user.role, JSON.stringify(user.grids), user.passwordHash, now);
    return this.getUser(Number(info.lastInsertRowid))!;
  }

  updateUser(id: number, patch: Partial<Pick<UserRecord, 'displayName' | 'role' | 'grids' | 'disabled' | 'passwordHash'>>): User | undefined {
    const update = userUpdate(id, patch);
    if (update) this.#db.prepare(update.sql).run(...update.values);
    return this.getUser(id);
  }

  createSession(s: Session): void {
    this.#db.prepare(USER_SQL.insertSession).run(s.tokenHash, s.userId, s.createdAt, s.expiresAt);
  }

  findSession(tokenHash: string, now: number): Session | undefined {
    const row = this.#db.prepare(USER_SQL.session).get(tokenHash, now) as SessionRow | undefined;
    return row ? toSession(row) : undefined;
  }

  deleteSession(tokenHash: string): void {
    this.#db.prepare(USER_SQL.deleteSession).run(tokenHash);
  }

  deleteSessionsOf(userId: number): void {
    this.#db.prepare(USER_SQL.deleteSessionsOf).run(userId);
  }

  purgeExpiredSessions(now: number): number {
    return this.#db.prepare(USER_SQL.purgeSessions).run(now).changes;
  }

  audit(entry: Omit<AuditEntry, 'id'>): AuditEntry {
    const info = this.#db.prepare(USER_SQL.insertAudit).run(entry.ts, entry.actor, entry.action, entry.subject, JSON.stringify(entry.detail));
    return { id: Number(info.lastInsertRowid), ...entry };
  }

  listAudit(q: AuditQuery): AuditEntry[] {
    const { sql, values } = auditList(q);
    return (this.#db.prepare(sql).all(...values) as AuditRow[]).map(toAudit);
  }

  close(): void {
    this.#db.close();
  }
}
