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
import type { AuditEntry, AuditQuery, NewUser, OperationalStore, Role, Session, User, UserRecord } from './store.js';

interface UserRow {
  id: number;
  username: string;
  display_name: string;
  role: string;
  grids: string;
  password_hash: string;
  disabled: number;
  created_at: number;
}

function toUser(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    role: row.role as Role,
    grids: JSON.parse(row.grids) as string[],
    passwordHash: row.password_hash,
    disabled: row.disabled === 1,
    createdAt: row.created_at,
  };
}

function withoutSecret(u: UserRecord): User {
  const { passwordHash: _omit, ...user } = u;
  return user;
}

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
    const latest = MIGRATIONS.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new Error(`the operational store is at schema version ${current}, newer than this gateway knows (${latest}); upgrade the gateway`);
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.#db.transaction(() => {
        this.#db.exec(m.sql);
        this.#db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
      })();
    }
  }

  findUserByName(username: string): UserRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM users WHERE username = ?').get(username) as UserRow | undefined;
    return row ? toUser(row) : undefined;
  }

  getUser(id: number): User | undefined {
    const row = this.#db.prepare('SELECT * FROM users WHERE id = ?').get(id) as UserRow | undefined;
    return row ? withoutSecret(toUser(row)) : undefined;
  }

  listUsers(): User[] {
    return (this.#db.prepare('SELECT * FROM users ORDER BY username').all() as UserRow[]).map((r) => withoutSecret(toUser(r)));
  }

  createUser(user: NewUser, now: number): User {
    const info = this.#db
      .prepare('INSERT INTO users (username, display_name, role, grids, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(user.username, user.displayName, user.role, JSON.stringify(user.grids), user.passwordHash, now);
    return this.getUser(Number(info.lastInsertRowid))!;
  }

  updateUser(id: number, patch: Partial<Pick<UserRecord, 'displayName' | 'role' | 'grids' | 'disabled' | 'passwordHash'>>): User | undefined {
    const sets: string[] = [];
    const values: unknown[] = [];
    if (patch.displayName !== undefined) sets.push('display_name = ?'), values.push(patch.displayName);
    if (patch.role !== undefined) sets.push('role = ?'), values.push(patch.role);
    if (patch.grids !== undefined) sets.push('grids = ?'), values.push(JSON.stringify(patch.grids));
    if (patch.disabled !== undefined) sets.push('disabled = ?'), values.push(patch.disabled ? 1 : 0);
    if (patch.passwordHash !== undefined) sets.push('password_hash = ?'), values.push(patch.passwordHash);
    if (sets.length > 0) this.#db.prepare(`UPDATE users SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
    return this.getUser(id);
  }

  createSession(s: Session): void {
    this.#db.prepare('INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)').run(s.tokenHash, s.userId, s.createdAt, s.expiresAt);
  }

  findSession(tokenHash: string, now: number): Session | undefined {
    const row = this.#db.prepare('SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now) as
      | { token_hash: string; user_id: number; created_at: number; expires_at: number }
      | undefined;
    return row ? { tokenHash: row.token_hash, userId: row.user_id, createdAt: row.created_at, expiresAt: row.expires_at } : undefined;
  }

  deleteSession(tokenHash: string): void {
    this.#db.prepare('DELETE FROM sessions WHERE token_hash = ?').run(tokenHash);
  }

  deleteSessionsOf(userId: number): void {
    this.#db.prepare('DELETE FROM sessions WHERE user_id = ?').run(userId);
  }

  purgeExpiredSessions(now: number): number {
    return this.#db.prepare('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes;
  }

  audit(entry: Omit<AuditEntry, 'id'>): AuditEntry {
    const info = this.#db
      .prepare('INSERT INTO audit (ts, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)')
      .run(entry.ts, entry.actor, entry.action, entry.subject, JSON.stringify(entry.detail));
    return { id: Number(info.lastInsertRowid), ...entry };
  }

  listAudit(q: AuditQuery): AuditEntry[] {
    const where: string[] = [];
    const values: unknown[] = [];
    if (q.actor) where.push('actor = ?'), values.push(q.actor);
    if (q.action) where.push('action = ?'), values.push(q.action);
    if (q.from !== undefined) where.push('ts >= ?'), values.push(q.from);
    if (q.to !== undefined) where.push('ts <= ?'), values.push(q.to);
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ?`;
    const rows = this.#db.prepare(sql).all(...values, q.limit) as Array<{ id: number; ts: number; actor: string; action: string; subject: string | null; detail: string }>;
    return rows.map((r) => ({ id: r.id, ts: r.ts, actor: r.actor, action: r.action, subject: r.subject, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  close(): void {
    this.#db.close();
  }
}
