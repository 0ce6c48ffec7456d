/**
 * Broadcast jobs and per-pole deliveries in PostgreSQL (schema version 3): the SQL and row mapping
 * SQLite uses (queries.ts, rows.ts). Deliveries are written in batches of one statement each
 * (`jsonb_to_recordset`), not one round trip per pole: a job for every pole of the district
 * inserts them in a few calls.
 */
import type { BroadcastJobQuery, BroadcastStore, StoredBroadcastJob, StoredDelivery } from './broadcasts.js';
import type { PgSql } from './postgres-sql.js';
import { JOB_SQL, jobList } from './queries.js';
import { deliveryParams, jobInsertParams, jobStateParams, toDelivery, toJob, type DeliveryRow, type JobRow } from './rows.js';

/** Rows per statement: bounds one call's size and time. */
const DELIVERY_BATCH = 2000;

/** The columns of deliveryParams() as a record type; wait_online arrives as 0/1. */
const DELIVERY_RECORD = `x(job_id text, run integer, pole_index integer, pole_id text, state text, reason text, attempt integer, sends integer,
  cmd_id text, not_before bigint, wait_online integer, sent_at bigint, last_sent_at bigint, accepted_at bigint, playing_at bigint, ended_at bigint,
  updated_at bigint)`;

const INSERT_DELIVERIES = `INSERT INTO broadcast_deliveries
  (job_id, run, pole_index, pole_id, state, reason, attempt, sends, cmd_id, not_before, wait_online, sent_at, last_sent_at, accepted_at, playing_at, ended_at, updated_at)
  SELECT job_id, run, pole_index, pole_id, state, reason, attempt, sends, cmd_id, not_before, wait_online <> 0, sent_at, last_sent_at, accepted_at,
    playing_at, ended_at, updated_at
  FROM jsonb_to_recordset(?::jsonb) AS ${DELIVERY_RECORD}`;

const UPDATE_DELIVERIES = `UPDATE broadcast_deliveries AS d SET state = x.state, reason = x.reason, attempt = x.attempt, sends = x.sends,
  cmd_id = x.cmd_id, not_before = x.not_before, wait_online = x.wait_online <> 0, sent_at = x.sent_at, last_sent_at = x.last_sent_at,
  accepted_at = x.accepted_at, playing_at = x.playing_at, ended_at = x.ended_at, updated_at = x.updated_at
  FROM jsonb_to_recordset(?::jsonb) AS ${DELIVERY_RECORD}
  WHERE d.job_id = x.job_id AND d.run = x.run AND d.pole_index = x.pole_index`;

export class PostgresBroadcastStore implements BroadcastStore {
  readonly #sql: PgSql;

  constructor(sql: PgSql) {
    this.#sql = sql;
  }

  insertJob(job: StoredBroadcastJob, poles: readonly string[]): void {
    this.#sql.run(JOB_SQL.insert, jobInsertParams(job, poles));
  }

  updateJob(job: StoredBroadcastJob): void {
    this.#sql.run(JOB_SQL.update, jobStateParams(job));
  }

  getJob(id: string): StoredBroadcastJob | undefined {
    const row = this.#sql.get<JobRow>(JOB_SQL.get, [id]);
    return row ? toJob(row) : undefined;
  }

  jobPoles(id: string): string[] {
    const row = this.#sql.get<{ poles: string }>(JOB_SQL.poles, [id]);
    return row ? (JSON.parse(row.poles) as string[]) : [];
  }

  listJobs(q: BroadcastJobQuery): { jobs: StoredBroadcastJob[]; total: number } {
    const page = jobList(q);
    const total = this.#sql.get<{ n: number }>(page.countSql, page.values)!.n;
    return { jobs: this.#sql.all<JobRow>(page.pageSql, page.pageValues).map(toJob), total };
  }

  openJobs(): StoredBroadcastJob[] {
    return this.#sql.all<JobRow>(JOB_SQL.open).map(toJob);
  }

  insertDeliveries(rows: readonly StoredDelivery[]): void {
    this.#batches(INSERT_DELIVERIES, rows);
  }

  saveDeliveries(rows: readonly StoredDelivery[]): void {
    // One UPDATE … FROM applies one source row per target row: keep the last of repeats, as SQLite's one-by-one updates do.
    const last = new Map<string, StoredDelivery>();
    for (const d of rows) last.set(`${d.jobId}\u0000${d.run}\u0000${d.index}`, d);
    this.#batches(UPDATE_DELIVERIES, [...last.values()]);
  }

  deliveries(jobId: string, run: number): StoredDelivery[] {
    return this.#sql.all<DeliveryRow>(JOB_SQL.deliveries, [jobId, run]).map(toDelivery);
  }

  #batches(sql: string, rows: readonly StoredDelivery[]): void {
    for (let i = 0; i < rows.length; i += DELIVERY_BATCH) {
      this.#sql.run(sql, [JSON.stringify(rows.slice(i, i + DELIVERY_BATCH).map(deliveryParams))]);
    }
  }
}
