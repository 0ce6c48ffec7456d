/**
 * The operational store in PostgreSQL, for several gateway instances sharing users, sessions,
 * the audit log, incidents and broadcasts. Same interface, same SQL and row mapping as the SQLite
 * store (queries.ts, rows.ts), synchronous through a worker thread (pg-bridge.ts).
 *
 * Opening connects and applies the migrations (postgres-migrations.ts), so a gateway whose
 * database is unreachable or too new does not start. `transaction(fn)` is BEGIN … COMMIT on the
 * worker's one connection (ROLLBACK and the same error when fn throws); a nested call is a
 * savepoint, as with better-sqlite3. Unlike SQLite, a failed statement aborts a PostgreSQL
 * transaction: everything after it in the transaction fails, and so does its commit.
 */
import type { Logger } from 'pino';
import { PostgresClusterQueue } from './cluster.js';
import { PgBridge } from './pg-bridge.js';
import { migratePostgres } from './postgres-migrations.js';
import { PostgresBroadcastStore } from './postgres-broadcasts.js';
import { PostgresIncidentStore } from './postgres-incidents.js';
import { PgSql } from './postgres-sql.js';
import { auditList, USER_SQL, userUpdate } from './queries.js';
import { toAudit, toSession, toUser, withoutSecret, type AuditRow, type SessionRow, type UserRow } from './rows.js';
import type { AuditEntry, AuditQuery, NewUser, OperationalStore, Session, User, UserRecord } from './store.js';

export interface PostgresStoreOptions {
  /** postgres://user@host:port/database[?sslmode=…]; a password here is used too, but prefer `password`. */
  url: string;
  password?: string | undefined;
  /** No call blocks the event loop longer than this (default 5000). */
  callTimeoutMs?: number | undefined;
  /** Default: callTimeoutMs. */
  connectTimeoutMs?: number | undefined;
  /** Seen in pg_stat_activity. */
  applicationName?: string | undefined;
  log?: Logger | undefined;
}

/** Migrations may wait for another instance's: longer than one call. */
const MIGRATION_TIMEOUT_MS = 60_000;

/** The URL without credentials, for messages and logs. */
export function displayPostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}

/** The URL for pg with the password in it (pg reads a `password` query parameter): the configured URL never holds it. */
export function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  u.searchParams.set('password', password);
  return u.toString();
}

export class PostgresStore implements OperationalStore {
  readonly #pg: PgBridge;
  readonly #sql: PgSql;
  readonly incidents: PostgresIncidentStore;
  readonly broadcasts: PostgresBroadcastStore;
  readonly cluster: PostgresClusterQueue;
  /** Depth of transaction() calls in progress: 0 outside, 1 in BEGIN … COMMIT, more in savepoints. */
  #depth = 0;

  constructor(opts: PostgresStoreOptions) {
    const callTimeoutMs = opts.callTimeoutMs ?? 5000;
    const displayUrl = displayPostgresUrl(opts.url);
    this.#pg = new PgBridge({
      connectionString: withPassword(opts.url, opts.password),
      displayUrl,
      callTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? callTimeoutMs,
      applicationName: opts.applicationName ?? 'greenshield-gateway',
      log: opts.log,
    });
    try {
      const { from, to } = migratePostgres(this.#pg, Math.max(callTimeoutMs, MIGRATION_TIMEOUT_MS));
      if (to > from) opts.log?.info({ url: displayUrl, from, to }, 'operational store schema migrated');
    } catch (err) {
      this.#pg.close();
      throw new Error(`the operational store at ${displayUrl}: ${(err as Error).message}`, { cause: err });
    }
    this.#sql = new PgSql(this.#pg);
    this.incidents = new PostgresIncidentStore(this.#sql);
    this.broadcasts = new PostgresBroadcastStore(this.#sql);
    this.cluster = new PostgresClusterQueue(this.#sql);
  }

  ping(): boolean {
    return this.#pg.ping();
  }

  transaction<T>(fn: () => T): T {
    const depth = this.#depth;
    const savepoint = `gs_tx_${depth}`;
    if (depth === 0) this.#pg.begin();
    else this.#sql.run(`SAVEPOINT ${savepoint}`);
    this.#depth = depth + 1;
    let result: T;
    try {
      result = fn();
      if (typeof (result as { then?: unknown } | null)?.then === 'function') throw new TypeError('Transaction function cannot return a promise');
    } catch (err) {
      this.#depth = depth;
      try {
        if (depth === 0) {
          this.#pg.rollback();
        } else {
          this.#sql.run(`ROLLBACK TO SAVEPOINT ${savepoint}`);
          this.#sql.run(`RELEASE SAVEPOINT ${savepoint}`);
        }
      } catch {
        // fn's error is the one to report; a lost connection rolled the transaction back anyway
      }
      throw err;
    }
    this.#depth = depth;
    if (depth === 0) this.#pg.commit();
    else this.#sql.run(`RELEASE SAVEPOINT ${savepoint}`);
    return result;
  }

  findUserByName(username: string): UserRecord | undefined {
    const row = this.#sql.get<UserRow>(USER_SQL.byName, [username]);
    return row ? toUser(row) : undefined;
  }

  getUser(id: number): User | undefined {
    const row = this.#sql.get<UserRow>(USER_SQL.byId, [id]);
    return row ? withoutSecret(toUser(row)) : undefined;
  }

  listUsers(): User[] {
    return this.#sql.all<UserRow>(USER_SQL.all).map((r) => withoutSecret(toUser(r)));
  }

  createUser(user: NewUser, now: number): User {
    const row = this.#sql.get<UserRow>(`${USER_SQL.insert} RETURNING *`, [user.username, user.displayName, user.role, JSON.stringify(user.grids), user.passwordHash, now]);
    return withoutSecret(toUser(row!));
  }

  updateUser(id: number, patch: Partial<Pick<UserRecord, 'displayName' | 'role' | 'grids' | 'disabled' | 'passwordHash'>>): User | undefined {
    const update = userUpdate(id, patch);
    if (update) this.#sql.run(update.sql, update.values);
    return this.getUser(id);
  }

  createSession(s: Session): void {
    this.#sql.run(USER_SQL.insertSession, [s.tokenHash, s.userId, s.createdAt, s.expiresAt]);
  }

  findSession(tokenHash: string, now: number): Session | undefined {
    const row = this.#sql.get<SessionRow>(USER_SQL.session, [tokenHash, now]);
    return row ? toSession(row) : undefined;
  }

  deleteSession(tokenHash: string): void {
    this.#sql.run(USER_SQL.deleteSession, [tokenHash]);
  }

  deleteSessionsOf(userId: number): void {
    this.#sql.run(USER_SQL.deleteSessionsOf, [userId]);
  }

  purgeExpiredSessions(now: number): number {
    return this.#sql.run(USER_SQL.purgeSessions, [now]);
  }

  audit(entry: Omit<AuditEntry, 'id'>): AuditEntry {
    const row = this.#sql.get<{ id: number }>(`${USER_SQL.insertAudit} RETURNING id`, [entry.ts, entry.actor, entry.action, entry.subject, JSON.stringify(entry.detail)]);
    return { id: row!.id, ...entry };
  }

  listAudit(q: AuditQuery): AuditEntry[] {
    const { sql, values } = auditList(q);
    return this.#sql.all<AuditRow>(sql, values).map(toAudit);
  }

  close(): void {
    this.#pg.close();
  }
}
