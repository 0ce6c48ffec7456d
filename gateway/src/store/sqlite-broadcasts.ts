/** Broadcast jobs and per-pole deliveries in SQLite (schema version 3). */
import type Database from 'better-sqlite3';
import type { BroadcastJobQuery, BroadcastStore, StoredBroadcastJob, StoredDelivery } from './broadcasts.js';
import { JOB_SQL, jobList } from './queries.js';
import { deliveryParams, jobInsertParams, jobStateParams, toDelivery, toJob, type DeliveryRow, type JobRow } from './rows.js';

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
    this.#updateJob = db.prepare(JOB_SQL.update);
  }

  insertJob(job: StoredBroadcastJob, poles: readonly string[]): void {
    this.#db.prepare(JOB_SQL.insert).run(jobInsertParams(job, poles));
  }

  updateJob(job: StoredBroadcastJob): void {
    this.#updateJob.run(jobStateParams(job));
  }

  getJob(id: string): StoredBroadcastJob | undefined {
    const row = this.#db.prepare(JOB_SQL.get).get(id) as JobRow | undefined;
    return row ? toJob(row) : undefined;
  }

  jobPoles(id: string): string[] {
    const row = this.#db.prepare(JOB_SQL.poles).get(id) as { poles: string } | undefined;
    return row ? (JSON.parse(row.poles) as string[]) : [];
  }

  listJobs(q: BroadcastJobQuery): { jobs: StoredBroadcastJob[]; total: number } {
    const page = jobList(q);
    const total = (this.#db.prepare(page.countSql).get(...page.values) as { n: number }).n;
    const rows = this.#db.prepare(page.pageSql).all(...page.pageValues) as JobRow[];
    return { jobs: rows.map(toJob), total };
  }

  openJobs(): StoredBroadcastJob[] {
    return (this.#db.prepare(JOB_SQL.open).all() as JobRow[]).map(toJob);
  }

  insertDeliveries(rows: readonly StoredDelivery[]): void {
    for (const d of rows) this.#insertDelivery.run(deliveryParams(d));
  }

  saveDeliveries(rows: readonly StoredDelivery[]): void {
    for (const d of rows) this.#updateDelivery.run(deliveryParams(d));
  }

  deliveries(jobId: string, run: number): StoredDelivery[] {
    const rows = this.#db.prepare(JOB_SQL.deliveries).all(jobId, run) as DeliveryRow[];
    return rows.map(toDelivery);
  }
}
