/**
 * The cluster's queue to its leader (PostgreSQL only, schema version 4): the signals a follower's
 * rules raise, the incident decisions its users take, the broadcasts they create, cancel or
 * re-send and the pole acks the follower ingests wait here, in order, for the instance holding
 * the lease (cluster/leadership.ts). A row is done once the leader has applied it — for a
 * decision or a broadcast command, in the same transaction as the change itself, so it is applied
 * once or not at all; for an ack, in the transaction that stores the progress it made; for a
 * signal, right after, and a signal applied by a leader that died before marking it is
 * recognised by its (device, kind, ts, receivedAt) in the incident's signals.
 *
 * Inserting a row and marking it done each NOTIFY (at commit): `gs_cluster_queue` wakes the
 * leader, `gs_cluster_done` the follower waiting for its decision.
 */
import type { PgSql } from './postgres-sql.js';

export const QUEUE_CHANNEL = 'gs_cluster_queue';
export const DONE_CHANNEL = 'gs_cluster_done';

export type QueueKind = 'signal' | 'action' | 'broadcast' | 'ack';

export interface QueueRow {
  id: number;
  kind: QueueKind;
  /** The instance that queued it. */
  origin: string;
  createdAt: number;
  body: unknown;
}

/** What became of a row: applied (with what the leader answers, for a broadcast command), or refused with an API error code and message. */
export type QueueResult = { ok: true; value?: unknown } | { ok: false; code: string; message: string };

export interface ClusterQueue {
  /** Queues a row (and wakes the leader); returns its id. */
  enqueue(kind: QueueKind, origin: string, body: unknown, now: number): number;
  /** Rows not yet done, oldest first. */
  pending(limit: number): QueueRow[];
  /**
   * Marks a row done with its result (and wakes whoever waits for it). False when it was done
   * already — applied by another leader, or given up by the follower that queued it.
   */
  finish(id: number, result: QueueResult, now: number): boolean;
  /** A row's result once done; undefined while pending (or purged). */
  result(id: number): QueueResult | undefined;
  /** Whether a signal is among the stored signals of some incident (applied before). */
  signalApplied(deviceId: string, kind: string, ts: number, receivedAt: number): boolean;
  /** Removes rows done before `before`; returns how many. */
  purge(before: number): number;
}

export class PostgresClusterQueue implements ClusterQueue {
  readonly #sql: PgSql;

  constructor(sql: PgSql) {
    this.#sql = sql;
  }

  enqueue(kind: QueueKind, origin: string, body: unknown, now: number): number {
    const row = this.#sql.get<{ id: string | number }>(
      `WITH queued AS (INSERT INTO cluster_signals (kind, origin, created_at, body) VALUES (?, ?, ?, ?) RETURNING id)
       SELECT id, pg_notify('${QUEUE_CHANNEL}', id::text) FROM queued`,
      [kind, origin, now, JSON.stringify(body)],
    );
    return Number(row!.id);
  }

  pending(limit: number): QueueRow[] {
    const rows = this.#sql.all<{ id: string | number; kind: QueueKind; origin: string; created_at: string | number; body: unknown }>(
      'SELECT id, kind, origin, created_at, body FROM cluster_signals WHERE done_at IS NULL ORDER BY id LIMIT ?',
      [limit],
    );
    return rows.map((r) => ({ id: Number(r.id), kind: r.kind, origin: r.origin, createdAt: Number(r.created_at), body: typeof r.body === 'string' ? (JSON.parse(r.body) as unknown) : r.body }));
  }

  finish(id: number, result: QueueResult, now: number): boolean {
    const changed = this.#sql.run(
      `UPDATE cluster_signals SET done_at = ?, result = ? WHERE id = ? AND done_at IS NULL RETURNING pg_notify('${DONE_CHANNEL}', id::text)`,
      [now, JSON.stringify(result), id],
    );
    return changed === 1;
  }

  result(id: number): QueueResult | undefined {
    const row = this.#sql.get<{ done_at: string | number | null; result: unknown }>('SELECT done_at, result FROM cluster_signals WHERE id = ?', [id]);
    if (!row || row.done_at === null) return undefined;
    return (typeof row.result === 'string' ? JSON.parse(row.result) : row.result) as QueueResult;
  }

  signalApplied(deviceId: string, kind: string, ts: number, receivedAt: number): boolean {
    return this.#sql.get('SELECT 1 AS found FROM incident_signals WHERE device_id = ? AND ts = ? AND kind = ? AND received_at = ? LIMIT 1', [deviceId, ts, kind, receivedAt]) !== undefined;
  }

  purge(before: number): number {
    return this.#sql.run('DELETE FROM cluster_signals WHERE done_at IS NOT NULL AND done_at < ?', [before]);
  }
}
