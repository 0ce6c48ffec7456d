/**
 * One pole's delivery of one run of a broadcast, as a state machine driven by the pole's acks
 * (through its agent) and the gateway's own clocks:
 *
 *   queued → sent → accepted → playing → done | failed | expired | preempted | cancelled
 *
 * States only move forward: an ack that would move a delivery back (a late `accepted` after
 * `playing`, anything after `done`) is ignored. Two exceptions keep the record true to what the
 * pole did: `expired` set by the gateway's clock (no answer before the expiry) gives way to the
 * pole's own later report that it did take or play the broadcast (an agent whose uplink was down
 * delivers its acks late), and a `cancelled` delivery whose pole reports it started anyway (the
 * stop overtook the play) is stopped again.
 *
 * Command ids are deterministic — `<job>-<run>-<index>` for the first attempt, `.<n>` appended
 * for attempt n ≥ 2 — so a re-sent command is the same command to the agent and the pole
 * (idempotent), and an ack names its job, run, pole and attempt.
 */
import type { AckStatus } from '../../../protocol/payloads.js';
import type { DeliveryState, FinalDeliveryState } from '../../../protocol/broadcasts.js';
import { FINAL_DELIVERY_STATES } from '../../../protocol/broadcasts.js';

export const RANK: Record<DeliveryState, number> = {
  queued: 0,
  sent: 1,
  accepted: 2,
  playing: 3,
  done: 4,
  failed: 4,
  expired: 4,
  preempted: 4,
  cancelled: 4,
};

export function isFinal(state: DeliveryState): state is FinalDeliveryState {
  return (FINAL_DELIVERY_STATES as readonly string[]).includes(state);
}

export function commandId(jobId: string, run: number, index: number, attempt: number): string {
  return attempt <= 1 ? `${jobId}-${run}-${index}` : `${jobId}-${run}-${index}.${attempt}`;
}

export function stopCommandId(playId: string, n: number): string {
  return `${playId}.stop${n}`;
}

const CMD_ID = /^([0-9a-z]+)-(\d+)-(\d+)(?:\.(\d+))?(\.stop\d+)?$/;

export interface ParsedCommandId {
  jobId: string;
  run: number;
  index: number;
  attempt: number;
  /** An id of a broadcast.stop (its acks are only logged). */
  stop: boolean;
}

/** The job, run, pole index and attempt a command id names; undefined for ids that are not ours. */
export function parseCommandId(id: string): ParsedCommandId | undefined {
  const m = CMD_ID.exec(id);
  if (!m) return undefined;
  return { jobId: m[1]!, run: Number(m[2]), index: Number(m[3]), attempt: m[4] ? Number(m[4]) : 1, stop: m[5] !== undefined };
}

/**
 * What a `failed` ack says about whether the pole has the broadcast (the collector's reasons,
 * docs/devices/voice-pole-api.md):
 * - `not_received`: the pole certainly did not take it — its port refused the connection, the
 *   network had no route, or it answered BUSY. A new attempt cannot play it twice.
 * - `uncertain`: the request may have reached the pole and only the answer was lost (`no answer
 *   within 3000 ms`, a reset connection). A new attempt (a new job id to the pole) may play it a
 *   second time; the agent drops a re-sent command id, so the same id cannot be tried again.
 * - `final`: anything else — an amplifier fault, a refusal, lost contact while playing.
 */
export type FailureKind = 'not_received' | 'uncertain' | 'final';

const NOT_RECEIVED = /connection refused|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN/;

export function classifyFailure(reason: string | undefined): FailureKind {
  if (reason === undefined) return 'final';
  if (reason.startsWith('pole busy')) return 'not_received';
  if (reason.startsWith('pole offline')) return NOT_RECEIVED.test(reason) ? 'not_received' : 'uncertain';
  return 'final';
}

export type AckDecision =
  | { kind: 'ignore'; why: string }
  | { kind: 'advance'; to: Exclude<DeliveryState, 'queued' | 'sent' | 'cancelled'>; reason: string | null }
  /** Not carried out now; try again with a new command id. */
  | { kind: 'retry'; reason: string }
  /** A cancelled delivery's pole started it anyway: stop it again. */
  | { kind: 'restop' };

/**
 * What an ack means for a delivery. `attempt` is the attempt the ack's command id names;
 * `retry` says whether another attempt fits (attempts left, expiry not reached) and whether the
 * broadcast may be retried when the pole may already have it: at least once for warnings and
 * emergencies (hearing an evacuation order twice is better than not at all), at most once for
 * routine ones.
 */
export function decideAck(
  delivery: { state: DeliveryState; attempt: number },
  ack: { attempt: number; status: AckStatus; reason?: string | undefined },
  retry: { allowed: boolean; whenUncertain: boolean },
): AckDecision {
  const { state } = delivery;
  if (ack.attempt !== delivery.attempt) return { kind: 'ignore', why: `ack of attempt ${ack.attempt}; the delivery is at attempt ${delivery.attempt}` };
  const reason = ack.reason ?? null;
  if (state === 'cancelled') {
    return ack.status === 'accepted' || ack.status === 'playing' ? { kind: 'restop' } : { kind: 'ignore', why: 'cancelled' };
  }
  if (state === 'expired') {
    // The gateway gave up waiting; the pole says it did take it after all.
    if (ack.status === 'accepted' || ack.status === 'playing' || ack.status === 'done' || ack.status === 'preempted') {
      return { kind: 'advance', to: ack.status, reason };
    }
    return { kind: 'ignore', why: 'expired' };
  }
  if (isFinal(state)) return { kind: 'ignore', why: `already ${state}` };
  switch (ack.status) {
    case 'accepted':
    case 'playing':
      return RANK[ack.status] > RANK[state] ? { kind: 'advance', to: ack.status, reason: null } : { kind: 'ignore', why: `${ack.status} after ${state}` };
    case 'done':
    case 'preempted':
    case 'expired':
      return { kind: 'advance', to: ack.status, reason };
    case 'rejected':
      return { kind: 'advance', to: 'failed', reason: `rejected: ${reason ?? 'no reason given'}` };
    case 'failed': {
      const kind = classifyFailure(ack.reason);
      if (RANK[state] < RANK.accepted && retry.allowed && (kind === 'not_received' || (kind === 'uncertain' && retry.whenUncertain))) {
        return { kind: 'retry', reason: reason! };
      }
      const maybe = kind === 'uncertain' ? ' (the pole may have played it: its answer was lost)' : '';
      return { kind: 'advance', to: 'failed', reason: `${reason ?? 'failed (no reason given)'}${maybe}` };
    }
    default:
      return { kind: 'ignore', why: `unknown ack status ${String(ack.status)}` };
  }
}
