/**
 * Rows of the operational store's tables and their mapping to and from the domain types, shared by
 * the SQLite and the PostgreSQL implementation. Both hand rows over in the same shape: JSON columns
 * as text (PostgreSQL's jsonb is read as text, see pg-worker.ts), ms timestamps and ids as numbers.
 * The one difference is booleans: SQLite stores 0/1, PostgreSQL a boolean, so flags are read with
 * `Boolean()` and written as 0/1 (which PostgreSQL accepts for a boolean).
 */
import type { BroadcastContent, BroadcastSchedule, BroadcastTarget, DeliveryCounts } from '../../../protocol/broadcasts.js';
import { emptyCounts } from '../../../protocol/broadcasts.js';
import type { Dispatch, Incident, TimelineEntry } from '../../../protocol/incidents.js';
import type { StoredBroadcastJob, StoredDelivery } from './broadcasts.js';
import type { StoredSignal } from './incidents.js';
import type { AuditEntry, Role, Session, User, UserRecord } from './store.js';

const json = <T>(text: string): T => JSON.parse(text) as T;

// ---- users, sessions, audit ---------------------------------------------------------------------

export interface UserRow {
  id: number;
  username: string;
  display_name: string;
  role: string;
  grids: string;
  password_hash: string;
  disabled: number | boolean;
  created_at: number;
}

export function toUser(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    role: row.role as Role,
    grids: json<string[]>(row.grids),
    passwordHash: row.password_hash,
    disabled: Boolean(row.disabled),
    createdAt: row.created_at,
  };
}

export function withoutSecret(u: UserRecord): User {
  const { passwordHash: _omit, ...user } = u;
  return user;
}

export interface SessionRow {
  token_hash: string;
  user_id: number;
  created_at: number;
  expires_at: number;
}

export const toSession = (row: SessionRow): Session => ({ tokenHash: row.token_hash, userId: row.user_id, createdAt: row.created_at, expiresAt: row.expires_at });

export interface AuditRow {
  id: number;
  ts: number;
  actor: string;
  action: string;
  subject: string | null;
  detail: string;
}

export const toAudit = (r: AuditRow): AuditEntry => ({ id: r.id, ts: r.ts, actor: r.actor, action: r.action, subject: r.subject, detail: json<Record<string, unknown>>(r.detail) });

// ---- incidents ----------------------------------------------------------------------------------

/** An incident's row: the columns queries filter on, plus the whole incident as JSON. */
export function incidentParams(i: Incident) {
  return { id: i.id, category: i.category, status: i.status, grid: i.grid, createdAt: i.createdAt, updatedAt: i.updatedAt, body: JSON.stringify(i) };
}

/** Rows that hold a JSON document in `body` (incidents, fire danger days). */
export const fromBody = <T>(r: { body: string }): T => json<T>(r.body);

export interface SignalRow {
  incident_id: string;
  device_id: string;
  kind: StoredSignal['kind'];
  ts: number;
  received_at: number;
  bearing_deg: number | null;
  confidence: number | null;
  value: number | null;
}

export const toSignal = (r: SignalRow): StoredSignal => ({
  incidentId: r.incident_id,
  deviceId: r.device_id,
  kind: r.kind,
  ts: r.ts,
  receivedAt: r.received_at,
  bearingDeg: r.bearing_deg,
  confidence: r.confidence,
  value: r.value,
});

export const signalValues = (s: StoredSignal) => [s.incidentId, s.deviceId, s.kind, s.ts, s.receivedAt, s.bearingDeg, s.confidence, s.value];

export interface TimelineRow {
  id: number;
  incident_id: string;
  ts: number;
  actor: string;
  action: TimelineEntry['action'];
  detail: string;
}

export const toTimeline = (r: TimelineRow): TimelineEntry => ({ id: r.id, incidentId: r.incident_id, ts: r.ts, actor: r.actor, action: r.action, detail: json<Record<string, unknown>>(r.detail) });

export const timelineValues = (e: Omit<TimelineEntry, 'id'>) => [e.incidentId, e.ts, e.actor, e.action, JSON.stringify(e.detail)];

export interface DispatchRow {
  id: number;
  incident_id: string;
  ts: number;
  level: Dispatch['level'];
  recipient: string;
  channel: string;
  status: Dispatch['status'];
  detail: string | null;
}

export const toDispatch = (r: DispatchRow): Dispatch => ({ id: r.id, incidentId: r.incident_id, ts: r.ts, level: r.level, recipient: r.recipient, channel: r.channel, status: r.status, detail: r.detail });

export const dispatchValues = (d: Omit<Dispatch, 'id'>) => [d.incidentId, d.ts, d.level, d.recipient, d.channel, d.status, d.detail];

// ---- broadcasts ---------------------------------------------------------------------------------

export interface JobRow {
  id: string;
  title: string;
  status: string;
  priority: string;
  reason: string | null;
  content: string;
  spoken_text: string | null;
  clip_id: string | null;
  repeat: number;
  volume: number | null;
  target: string;
  target_label: string;
  pole_count: number;
  schedule: string;
  requested_expires_at: number | null;
  incident_id: string | null;
  retry_of: string | null;
  created_at: number;
  created_by: string;
  created_by_name: string;
  run: number;
  run_started_at: number | null;
  run_expires_at: number | null;
  next_run_at: number | null;
  counts: string;
  finished_at: number | null;
  cancelled_at: number | null;
  cancelled_by: string | null;
  cancel_reason: string | null;
}

export interface DeliveryRow {
  job_id: string;
  run: number;
  pole_index: number;
  pole_id: string;
  state: string;
  reason: string | null;
  attempt: number;
  sends: number;
  cmd_id: string | null;
  not_before: number | null;
  wait_online: number | boolean;
  sent_at: number | null;
  last_sent_at: number | null;
  accepted_at: number | null;
  playing_at: number | null;
  ended_at: number | null;
  updated_at: number;
}

export function toJob(r: JobRow): StoredBroadcastJob {
  return {
    id: r.id,
    title: r.title,
    status: r.status as StoredBroadcastJob['status'],
    priority: r.priority as StoredBroadcastJob['priority'],
    reason: r.reason,
    content: json<BroadcastContent>(r.content),
    text: r.spoken_text,
    clipId: r.clip_id,
    repeat: r.repeat,
    volume: r.volume,
    target: json<BroadcastTarget>(r.target),
    targetLabel: r.target_label,
    poleCount: r.pole_count,
    schedule: json<BroadcastSchedule>(r.schedule),
    requestedExpiresAt: r.requested_expires_at,
    incidentId: r.incident_id,
    retryOf: r.retry_of,
    createdAt: r.created_at,
    createdBy: r.created_by,
    createdByName: r.created_by_name,
    run: r.run,
    runStartedAt: r.run_started_at,
    runExpiresAt: r.run_expires_at,
    nextRunAt: r.next_run_at,
    counts: { ...emptyCounts(), ...json<Partial<DeliveryCounts>>(r.counts) },
    finishedAt: r.finished_at,
    cancelledAt: r.cancelled_at,
    cancelledBy: r.cancelled_by,
    cancelReason: r.cancel_reason,
  };
}

export function toDelivery(r: DeliveryRow): StoredDelivery {
  return {
    jobId: r.job_id,
    run: r.run,
    index: r.pole_index,
    pole: r.pole_id,
    state: r.state as StoredDelivery['state'],
    reason: r.reason,
    attempt: r.attempt,
    sends: r.sends,
    cmdId: r.cmd_id,
    notBefore: r.not_before,
    waitOnline: Boolean(r.wait_online),
    sentAt: r.sent_at,
    lastSentAt: r.last_sent_at,
    acceptedAt: r.accepted_at,
    playingAt: r.playing_at,
    endedAt: r.ended_at,
    updatedAt: r.updated_at,
  };
}

export const deliveryParams = (d: StoredDelivery) => ({
  job_id: d.jobId,
  run: d.run,
  pole_index: d.index,
  pole_id: d.pole,
  state: d.state,
  reason: d.reason,
  attempt: d.attempt,
  sends: d.sends,
  cmd_id: d.cmdId,
  not_before: d.notBefore,
  wait_online: d.waitOnline ? 1 : 0,
  sent_at: d.sentAt,
  last_sent_at: d.lastSentAt,
  accepted_at: d.acceptedAt,
  playing_at: d.playingAt,
  ended_at: d.endedAt,
  updated_at: d.updatedAt,
});

/** The job's mutable columns (what `updateJob` rewrites), by name. */
export function jobStateParams(job: StoredBroadcastJob) {
  return {
    id: job.id,
    status: job.status,
    run: job.run,
    run_started_at: job.runStartedAt,
    run_expires_at: job.runExpiresAt,
    next_run_at: job.nextRunAt,
    counts: JSON.stringify(job.counts),
    finished_at: job.finishedAt,
    cancelled_at: job.cancelledAt,
    cancelled_by: job.cancelledBy,
    cancel_reason: job.cancelReason,
  };
}

/** Every column of a new job, by name, with its resolved pole list. */
export function jobInsertParams(job: StoredBroadcastJob, poles: readonly string[]) {
  return {
    ...jobStateParams(job),
    title: job.title,
    priority: job.priority,
    reason: job.reason,
    content: JSON.stringify(job.content),
    spoken_text: job.text,
    clip_id: job.clipId,
    repeat: job.repeat,
    volume: job.volume,
    target: JSON.stringify(job.target),
    target_label: job.targetLabel,
    pole_count: job.poleCount,
    schedule: JSON.stringify(job.schedule),
    requested_expires_at: job.requestedExpiresAt,
    incident_id: job.incidentId,
    retry_of: job.retryOf,
    created_at: job.createdAt,
    created_by: job.createdBy,
    created_by_name: job.createdByName,
    poles: JSON.stringify(poles),
  };
}
