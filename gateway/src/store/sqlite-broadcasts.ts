/** Broadcast jobs and per-pole deliveries in SQLite (schema version 3). */
import type Database from 'better-sqlite3';
import type { BroadcastContent, BroadcastSchedule, BroadcastTarget, DeliveryCounts } from '../../../protocol/broadcasts.js';
import { emptyCounts } from '../../../protocol/broadcasts.js';
import type { BroadcastJobQuery, BroadcastStore, StoredBroadcastJob, StoredDelivery } from './broadcasts.js';

export const BROADCASTS_SQL = `
  CREATE TABLE broadcast_jobs (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    reason TEXT,
    content TEXT NOT NULL,
    spoken_text TEXT,
    clip_id TEXT,
    repeat INTEGER NOT NULL,
    volume INTEGER,
    target TEXT NOT NULL,
    target_label TEXT NOT NULL,
    pole_count INTEGER NOT NULL,
    poles TEXT NOT NULL,
    schedule TEXT NOT NULL,
    requested_expires_at INTEGER,
    incident_id TEXT,
    retry_of TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    run INTEGER NOT NULL DEFAULT 0,
    run_started_at INTEGER,
    run_expires_at INTEGER,
    next_run_at INTEGER,
    counts TEXT NOT NULL,
    finished_at INTEGER,
    cancelled_at INTEGER,
    cancelled_by TEXT,
    cancel_reason TEXT
  );
  CREATE INDEX broadcast_jobs_created ON broadcast_jobs (created_at);
  CREATE INDEX broadcast_jobs_status ON broadcast_jobs (status, created_at);
  CREATE INDEX broadcast_jobs_incident ON broadcast_jobs (incident_id) WHERE incident_id IS NOT NULL;
  CREATE TABLE broadcast_deliveries (
    job_id TEXT NOT NULL REFERENCES broadcast_jobs (id) ON DELETE CASCADE,
    run INTEGER NOT NULL,
    pole_index INTEGER NOT NULL,
    pole_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempt INTEGER NOT NULL,
    sends INTEGER NOT NULL,
    cmd_id TEXT,
    not_before INTEGER,
    wait_online INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER,
    last_sent_at INTEGER,
    accepted_at INTEGER,
    playing_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, run, pole_index)
  ) WITHOUT ROWID;
  CREATE INDEX broadcast_deliveries_pole ON broadcast_deliveries (pole_id, job_id);
`;

interface JobRow {
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

interface DeliveryRow {
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
  wait_online: number;
  sent_at: number | null;
  last_sent_at: number | null;
  accepted_at: number | null;
  playing_at: number | null;
  ended_at: number | null;
  updated_at: number;
}

/** Every column but the (possibly large) pole list. */
const JOB_COLUMNS = `id, title, status, priority, reason, content, spoken_text, clip_id, repeat, volume, target, target_label, pole_count,
  schedule, requested_expires_at, incident_id, retry_of, created_at, created_by, created_by_name, run, run_started_at, run_expires_at,
  next_run_at, counts, finished_at, cancelled_at, cancelled_by, cancel_reason`;

function toJob(r: JobRow): StoredBroadcastJob {
  return {
    id: r.id,
    title: r.title,
    status: r.status as StoredBroadcastJob['status'],
    priority: r.priority as StoredBroadcastJob['priority'],
    reason: r.reason,
    content: JSON.parse(r.content) as BroadcastContent,
    text: r.spoken_text,
    clipId: r.clip_id,
    repeat: r.repeat,
    volume: r.volume,
    target: JSON.parse(r.target) as BroadcastTarget,
    targetLabel: r.target_label,
    poleCount: r.pole_count,
    schedule: JSON.parse(r.schedule) as BroadcastSchedule,
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
    counts: { ...emptyCounts(), ...(JSON.parse(r.counts) as Partial<DeliveryCounts>) },
    finishedAt: r.finished_at,
    cancelledAt: r.cancelled_at,
    cancelledBy: r.cancelled_by,
    cancelReason: r.cancel_reason,
  };
}

function toDelivery(r: DeliveryRow): StoredDelivery {
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
    waitOnline: r.wait_online === 1,
    sentAt: r.sent_at,
    lastSentAt: r.last_sent_at,
    acceptedAt: r.accepted_at,
    playingAt: r.playing_at,
    endedAt: r.ended_at,
    updatedAt: r.updated_at,
  };
}

const deliveryParams = (d: StoredDelivery) => ({
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

export class SqliteBroadcastStore implements BroadcastStore {
  readonly #db: Database.Database;
  readonly #insertDelivery: Database.Statement;
  readonly #updateDelivery: Database.Statement;
  readonly #updateJob: Database.Statement;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#insertDelivery = db.prepare(`INSERT INTO broadcast_deliveries
      (job_id, run, pole_index, pole_id, state, reason, attempt, sends, cmd_id, not_before, wait_online, sent_at, last_sent_at, accepted_at, playing_at, ended_at, updated_at)
      VALUES (@job_id, @run, @pole_index, @pole_id, @state, @reason, @attempt, @sends, @cmd_id, @not_before, @wait_online, @sent_at, @last_sent_at, @accepted_at, @playing_at, @ended_at, @updated_at)`);
    this.#updateDelivery = db.prepare(`UPDATE broadcast_deliveries SET state = @state, reason = @reason, attempt = @attempt, sends = @sends,
      cmd_id = @cmd_id, not_before = @not_before, wait_online = @wait_online, sent_at = @sent_at, last_sent_at = @last_sent_at,
      accepted_at = @accepted_at, playing_at = @playing_at, ended_at = @ended_at, updated_at = @updated_at
      WHERE job_id = @job_id AND run = @run AND pole_index = @pole_index`);
    this.#updateJob = db.prepare(`UPDATE broadcast_jobs SET status = @status, run = @run, run_started_at = @run_started_at,
      run_expires_at = @run_expires_at, next_run_at = @next_run_at, counts = @counts, finished_at = @finished_at,
      cancelled_at = @cancelled_at, cancelled_by = @cancelled_by, cancel_reason = @cancel_reason WHERE id = @id`);
  }

  insertJob(job: StoredBroadcastJob, poles: readonly string[]): void {
    this.#db
      .prepare(
        `INSERT INTO broadcast_jobs (${JOB_COLUMNS}, poles) VALUES (@id, @title, @status, @priority, @reason, @content, @spoken_text, @clip_id,
        @repeat, @volume, @target, @target_label, @pole_count, @schedule, @requested_expires_at, @incident_id, @retry_of, @created_at,
        @created_by, @created_by_name, @run, @run_started_at, @run_expires_at, @next_run_at, @counts, @finished_at, @cancelled_at,
        @cancelled_by, @cancel_reason, @poles)`,
      )
      .run({
        ...this.#jobParams(job),
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
      });
  }

  #jobParams(job: StoredBroadcastJob) {
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

  updateJob(job: StoredBroadcastJob): void {
    this.#updateJob.run(this.#jobParams(job));
  }

  getJob(id: string): StoredBroadcastJob | undefined {
    const row = this.#db.prepare(`SELECT ${JOB_COLUMNS} FROM broadcast_jobs WHERE id = ?`).get(id) as JobRow | undefined;
    return row ? toJob(row) : undefined;
  }

  jobPoles(id: string): string[] {
    const row = this.#db.prepare('SELECT poles FROM broadcast_jobs WHERE id = ?').get(id) as { poles: string } | undefined;
    return row ? (JSON.parse(row.poles) as string[]) : [];
  }

  listJobs(q: BroadcastJobQuery): { jobs: StoredBroadcastJob[]; total: number } {
    const where: string[] = [];
    const values: unknown[] = [];
    if (q.status && q.status.length > 0) {
      where.push(`status IN (${q.status.map(() => '?').join(', ')})`);
      values.push(...q.status);
    }
    if (q.priority) where.push('priority = ?'), values.push(q.priority);
    if (q.createdBy) where.push('created_by = ?'), values.push(q.createdBy);
    if (q.incidentId) where.push('incident_id = ?'), values.push(q.incidentId);
    if (q.pole) where.push('id IN (SELECT job_id FROM broadcast_deliveries WHERE pole_id = ?)'), values.push(q.pole);
    if (q.from !== undefined) where.push('created_at >= ?'), values.push(q.from);
    if (q.to !== undefined) where.push('created_at <= ?'), values.push(q.to);
    if (q.endedAfter !== undefined) where.push('COALESCE(cancelled_at, finished_at) >= ?'), values.push(q.endedAfter);
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.#db.prepare(`SELECT COUNT(*) AS n FROM broadcast_jobs ${clause}`).get(...values) as { n: number }).n;
    const rows = this.#db
      .prepare(`SELECT ${JOB_COLUMNS} FROM broadcast_jobs ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...values, q.limit, q.offset) as JobRow[];
    return { jobs: rows.map(toJob), total };
  }

  openJobs(): StoredBroadcastJob[] {
    const rows = this.#db.prepare(`SELECT ${JOB_COLUMNS} FROM broadcast_jobs WHERE status IN ('scheduled', 'active') ORDER BY created_at`).all() as JobRow[];
    return rows.map(toJob);
  }

  insertDeliveries(rows: readonly StoredDelivery[]): void {
    for (const d of rows) this.#insertDelivery.run(deliveryParams(d));
  }

  saveDeliveries(rows: readonly StoredDelivery[]): void {
    for (const d of rows) this.#updateDelivery.run(deliveryParams(d));
  }

  deliveries(jobId: string, run: number): StoredDelivery[] {
    const rows = this.#db.prepare('SELECT * FROM broadcast_deliveries WHERE job_id = ? AND run = ? ORDER BY pole_index').all(jobId, run) as DeliveryRow[];
    return rows.map(toDelivery);
  }
}
