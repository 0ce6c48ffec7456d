/**
 * The broadcast part of the operational store: jobs (with the pole list their target resolved
 * to) and one delivery per pole and run. The broadcast service keeps the open jobs in memory and
 * writes their changes here in small batches; on start it resumes from what is stored.
 */
import type { BroadcastJob, BroadcastStatus, BroadcastPriority, DeliveryState } from '../../../protocol/broadcasts.js';

/** A job as stored: its view plus what only the gateway needs. */
export interface StoredBroadcastJob extends BroadcastJob {
  /** The expiry the request asked for (once-only jobs), else null: the run's expiry follows from the schedule. */
  requestedExpiresAt: number | null;
}

export interface StoredDelivery {
  jobId: string;
  run: number;
  /** Position of the pole in the job's resolved list; part of the command id. */
  index: number;
  pole: string;
  state: DeliveryState;
  reason: string | null;
  attempt: number;
  sends: number;
  cmdId: string | null;
  /** Queued: not sent before this time (a retry's delay). */
  notBefore: number | null;
  /** Queued: not sent until the pole is next heard online (its agent did not answer). */
  waitOnline: boolean;
  sentAt: number | null;
  lastSentAt: number | null;
  acceptedAt: number | null;
  playingAt: number | null;
  endedAt: number | null;
  updatedAt: number;
}

export interface BroadcastJobQuery {
  status?: BroadcastStatus[];
  priority?: BroadcastPriority;
  createdBy?: string;
  incidentId?: string;
  /** Jobs that delivered (or are delivering) to this pole in any run. */
  pole?: string;
  /** createdAt range, ms. */
  from?: number;
  to?: number;
  /** Ended (finished or cancelled) at or after this time. */
  endedAfter?: number;
  limit: number;
  offset: number;
}

export interface BroadcastStore {
  /** A new job, its resolved pole list and (for a job that starts now) its first run's deliveries. */
  insertJob(job: StoredBroadcastJob, poles: readonly string[]): void;
  /** Rewrites a job's mutable fields (status, run, counts, cancellation…). */
  updateJob(job: StoredBroadcastJob): void;
  getJob(id: string): StoredBroadcastJob | undefined;
  /** The pole ids the job's target resolved to, in command-index order. */
  jobPoles(id: string): string[];
  /** Newest first; `total` counts every match. */
  listJobs(q: BroadcastJobQuery): { jobs: StoredBroadcastJob[]; total: number };
  /** Jobs still scheduled or active (to resume after a restart). */
  openJobs(): StoredBroadcastJob[];
  insertDeliveries(rows: readonly StoredDelivery[]): void;
  /** Updates deliveries by (jobId, run, index). */
  saveDeliveries(rows: readonly StoredDelivery[]): void;
  deliveries(jobId: string, run: number): StoredDelivery[];
}
