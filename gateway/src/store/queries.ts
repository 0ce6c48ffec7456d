/**
 * SQL that SQLite and PostgreSQL run alike, written once: `?` positional and `@name` named
 * parameters (the PostgreSQL store turns them into `$n`, postgres.ts), no dialect-only syntax.
 * Filters build a WHERE clause and its values from a query object, so both stores give the same
 * answer to the same question (order, filters, totals, limit/offset).
 */
import { OPEN_STATUSES } from '../../../protocol/incidents.js';
import type { BroadcastJobQuery } from './broadcasts.js';
import type { IncidentQuery } from './incidents.js';
import type { AuditQuery, UserRecord } from './store.js';

export interface Filter {
  /** `WHERE …`, or '' for no condition. */
  clause: string;
  values: unknown[];
}

const filter = (where: string[], values: unknown[]): Filter => ({ clause: where.length ? `WHERE ${where.join(' AND ')}` : '', values });
/** A count of every match and one page of them, newest first. */
export interface Paged {
  countSql: string;
  pageSql: string;
  values: unknown[];
  pageValues: unknown[];
}

function paged(table: string, columns: string, f: Filter, q: { limit: number; offset: number }): Paged {
  return {
    countSql: `SELECT COUNT(*) AS n FROM ${table} ${f.clause}`,
    pageSql: `SELECT ${columns} FROM ${table} ${f.clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
    values: f.values,
    pageValues: [...f.values, q.limit, q.offset],
  };
}

const list = (n: number) => Array.from({ length: n }, () => '?').join(', ');

// ---- users, sessions, audit ---------------------------------------------------------------------

export const USER_SQL = {
  byName: 'SELECT * FROM users WHERE username = ?',
  byId: 'SELECT * FROM users WHERE id = ?',
  all: 'SELECT * FROM users ORDER BY username',
  insert: 'INSERT INTO users (username, display_name, role, grids, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  session: 'SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?',
  insertSession: 'INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
  deleteSession: 'DELETE FROM sessions WHERE token_hash = ?',
  deleteSessionsOf: 'DELETE FROM sessions WHERE user_id = ?',
  purgeSessions: 'DELETE FROM sessions WHERE expires_at <= ?',
  insertAudit: 'INSERT INTO audit (ts, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)',
} as const;

/** `UPDATE users SET …` for the fields a patch sets; null when it sets none. */
export function userUpdate(
  id: number,
  patch: Partial<Pick<UserRecord, 'displayName' | 'role' | 'grids' | 'disabled' | 'passwordHash'>>,
): { sql: string; values: unknown[] } | null {
  const sets: string[] = [];
  const values: unknown[] = [];
  if (patch.displayName !== undefined) sets.push('display_name = ?'), values.push(patch.displayName);
  if (patch.role !== undefined) sets.push('role = ?'), values.push(patch.role);
  if (patch.grids !== undefined) sets.push('grids = ?'), values.push(JSON.stringify(patch.grids));
  if (patch.disabled !== undefined) sets.push('disabled = ?'), values.push(patch.disabled ? 1 : 0);
  if (patch.passwordHash !== undefined) sets.push('password_hash = ?'), values.push(patch.passwordHash);
  return sets.length > 0 ? { sql: `UPDATE users SET ${sets.join(', ')} WHERE id = ?`, values: [...values, id] } : null;
}

/** Newest first, at most `limit`. */
export function auditList(q: AuditQuery): { sql: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  if (q.actor) where.push('actor = ?'), values.push(q.actor);
  if (q.action) where.push('action = ?'), values.push(q.action);
  if (q.from !== undefined) where.push('ts >= ?'), values.push(q.from);
  if (q.to !== undefined) where.push('ts <= ?'), values.push(q.to);
  const f = filter(where, values);
  return { sql: `SELECT * FROM audit ${f.clause} ORDER BY ts DESC, id DESC LIMIT ?`, values: [...f.values, q.limit] };
}

// ---- incidents ----------------------------------------------------------------------------------

const OPEN_SQL = OPEN_STATUSES.map((s) => `'${s}'`).join(', ');

export const INCIDENT_SQL = {
  insert: 'INSERT INTO incidents (id, category, status, grid, created_at, updated_at, body) VALUES (@id, @category, @status, @grid, @createdAt, @updatedAt, @body)',
  update: 'UPDATE incidents SET category = @category, status = @status, grid = @grid, updated_at = @updatedAt, body = @body WHERE id = @id',
  get: 'SELECT body FROM incidents WHERE id = ?',
  open: `SELECT body FROM incidents WHERE status IN (${OPEN_SQL}) ORDER BY created_at, id`,
  addSignal: 'INSERT INTO incident_signals (incident_id, device_id, kind, ts, received_at, bearing_deg, confidence, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  signals: 'SELECT * FROM incident_signals WHERE incident_id = ? ORDER BY ts DESC, id DESC LIMIT ?',
  addTimeline: 'INSERT INTO incident_timeline (incident_id, ts, actor, action, detail) VALUES (?, ?, ?, ?, ?)',
  timeline: 'SELECT * FROM incident_timeline WHERE incident_id = ? ORDER BY id',
  addDispatch: 'INSERT INTO incident_dispatches (incident_id, ts, level, recipient, channel, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)',
  dispatches: 'SELECT * FROM incident_dispatches WHERE incident_id = ? ORDER BY id',
  saveDay: 'INSERT INTO fire_danger_days (day, body) VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET body = excluded.body',
  getDay: 'SELECT body FROM fire_danger_days WHERE day = ?',
  days: 'SELECT body FROM fire_danger_days ORDER BY day DESC LIMIT ?',
} as const;

export function incidentFilter(q: IncidentQuery): Filter {
  const where: string[] = [];
  const values: unknown[] = [];
  if (q.status && q.status.length > 0) where.push(`status IN (${list(q.status.length)})`), values.push(...q.status);
  if (q.category) where.push('category = ?'), values.push(q.category);
  if (q.grids) where.push(q.grids.length ? `grid IN (${list(q.grids.length)})` : 'FALSE'), values.push(...q.grids);
  if (q.from !== undefined) where.push('created_at >= ?'), values.push(q.from);
  if (q.to !== undefined) where.push('created_at <= ?'), values.push(q.to);
  return filter(where, values);
}

export const incidentList = (q: IncidentQuery): Paged => paged('incidents', 'body', incidentFilter(q), q);

// ---- broadcasts ---------------------------------------------------------------------------------

/** Every column of a job but the (possibly large) pole list. */
export const JOB_COLUMNS = `id, title, status, priority, reason, content, spoken_text, clip_id, repeat, volume, target, target_label, pole_count,
  schedule, requested_expires_at, incident_id, retry_of, created_at, created_by, created_by_name, run, run_started_at, run_expires_at,
  next_run_at, counts, finished_at, cancelled_at, cancelled_by, cancel_reason`;

export const JOB_SQL = {
  insert: `INSERT INTO broadcast_jobs (${JOB_COLUMNS}, poles) VALUES (@id, @title, @status, @priority, @reason, @content, @spoken_text, @clip_id,
        @repeat, @volume, @target, @target_label, @pole_count, @schedule, @requested_expires_at, @incident_id, @retry_of, @created_at,
        @created_by, @created_by_name, @run, @run_started_at, @run_expires_at, @next_run_at, @counts, @finished_at, @cancelled_at,
        @cancelled_by, @cancel_reason, @poles)`,
  update: `UPDATE broadcast_jobs SET status = @status, run = @run, run_started_at = @run_started_at,
      run_expires_at = @run_expires_at, next_run_at = @next_run_at, counts = @counts, finished_at = @finished_at,
      cancelled_at = @cancelled_at, cancelled_by = @cancelled_by, cancel_reason = @cancel_reason WHERE id = @id`,
  get: `SELECT ${JOB_COLUMNS} FROM broadcast_jobs WHERE id = ?`,
  poles: 'SELECT poles FROM broadcast_jobs WHERE id = ?',
  open: `SELECT ${JOB_COLUMNS} FROM broadcast_jobs WHERE status IN ('scheduled', 'active') ORDER BY created_at, id`,
  deliveries: 'SELECT * FROM broadcast_deliveries WHERE job_id = ? AND run = ? ORDER BY pole_index',
} as const;

export function jobFilter(q: BroadcastJobQuery): Filter {
  const where: string[] = [];
  const values: unknown[] = [];
  if (q.status && q.status.length > 0) where.push(`status IN (${list(q.status.length)})`), values.push(...q.status);
  if (q.priority) where.push('priority = ?'), values.push(q.priority);
  if (q.createdBy) where.push('created_by = ?'), values.push(q.createdBy);
  if (q.incidentId) where.push('incident_id = ?'), values.push(q.incidentId);
  if (q.pole) where.push('id IN (SELECT job_id FROM broadcast_deliveries WHERE pole_id = ?)'), values.push(q.pole);
  if (q.from !== undefined) where.push('created_at >= ?'), values.push(q.from);
  if (q.to !== undefined) where.push('created_at <= ?'), values.push(q.to);
  if (q.endedAfter !== undefined) where.push('COALESCE(cancelled_at, finished_at) >= ?'), values.push(q.endedAfter);
  return filter(where, values);
}

export const jobList = (q: BroadcastJobQuery): Paged => paged('broadcast_jobs', JOB_COLUMNS, jobFilter(q), q);
