/**
 * The per-pole delivery state machine: forward only, final states absorb, the two corrections
 * (a late ack after the gateway's own expiry; a cancelled pole that reports it started), retries
 * only for failures a new attempt can overcome, and command ids that round-trip.
 */
import { describe, expect, it } from 'vitest';
import { classifyFailure, commandId, decideAck, parseCommandId, stopCommandId } from '../../gateway/src/broadcast/delivery.js';
import type { AckStatus } from '../../protocol/payloads.js';
import type { DeliveryState } from '../../protocol/broadcasts.js';
import { ID_PATTERN } from '../../protocol/topics.js';

const at = (state: DeliveryState, attempt = 1) => ({ state, attempt });
const ack = (status: AckStatus, reason?: string, attempt = 1) => ({ attempt, status, reason });
/** Retries allowed (attempts left, before expiry), also when the pole may have it (a warning or emergency). */
const ANY = { allowed: true, whenUncertain: true };
const NONE = { allowed: false, whenUncertain: true };
const ROUTINE = { allowed: true, whenUncertain: false };

describe('decideAck', () => {
  it('moves forward through accepted and playing to a final state', () => {
    expect(decideAck(at('sent'), ack('accepted'), ANY)).toEqual({ kind: 'advance', to: 'accepted', reason: null });
    expect(decideAck(at('accepted'), ack('playing'), ANY)).toEqual({ kind: 'advance', to: 'playing', reason: null });
    expect(decideAck(at('playing'), ack('done'), ANY)).toEqual({ kind: 'advance', to: 'done', reason: null });
    expect(decideAck(at('playing'), ack('preempted', 'pre-empted by emergency broadcast x'), ANY)).toEqual({
      kind: 'advance',
      to: 'preempted',
      reason: 'pre-empted by emergency broadcast x',
    });
    // A skipped ack (playing before accepted arrived) is fine; so is an ack for a delivery still queued (a late answer to an earlier send).
    expect(decideAck(at('sent'), ack('playing'), ANY)).toMatchObject({ kind: 'advance', to: 'playing' });
    expect(decideAck(at('queued'), ack('accepted'), ANY)).toMatchObject({ kind: 'advance', to: 'accepted' });
    expect(decideAck(at('sent'), ack('expired', 'arrived after its expiry'), ANY)).toEqual({ kind: 'advance', to: 'expired', reason: 'arrived after its expiry' });
  });

  it('ignores acks that would move backwards or come after a final state', () => {
    expect(decideAck(at('playing'), ack('accepted'), ANY)).toMatchObject({ kind: 'ignore' });
    expect(decideAck(at('playing'), ack('playing'), ANY)).toMatchObject({ kind: 'ignore' });
    for (const final of ['done', 'failed', 'preempted'] as const) {
      for (const status of ['accepted', 'playing', 'done', 'failed', 'preempted', 'rejected', 'expired'] as const) {
        expect(decideAck(at(final), ack(status), ANY), `${status} after ${final}`).toMatchObject({ kind: 'ignore' });
      }
    }
  });

  it('ignores acks of an earlier attempt', () => {
    expect(decideAck(at('sent', 2), ack('failed', 'pole offline: connection refused', 1), ANY)).toMatchObject({ kind: 'ignore' });
    expect(decideAck(at('sent', 2), ack('playing', undefined, 1), ANY)).toMatchObject({ kind: 'ignore' });
  });

  it('retries only what a new attempt can overcome, and only before the pole took it', async () => {
    expect(decideAck(at('sent'), ack('failed', 'pole offline: connection refused'), ANY)).toEqual({ kind: 'retry', reason: 'pole offline: connection refused' });
    expect(decideAck(at('sent'), ack('failed', 'pole busy: BUSY: a emergency broadcast is playing'), ANY)).toMatchObject({ kind: 'retry' });
    expect(decideAck(at('sent'), ack('failed', 'pole offline: connection refused'), NONE)).toEqual({ kind: 'advance', to: 'failed', reason: 'pole offline: connection refused' });
    expect(decideAck(at('accepted'), ack('failed', 'pole: AMPLIFIER_FAULT: no load current'), ANY)).toMatchObject({ kind: 'advance', to: 'failed' });
    expect(decideAck(at('playing'), ack('failed', 'lost contact with the pole while the job was playing'), ANY)).toMatchObject({ kind: 'advance', to: 'failed' });
    expect(decideAck(at('sent'), ack('rejected', 'pole refused: UNKNOWN_CLIP: no clip'), ANY)).toEqual({ kind: 'advance', to: 'failed', reason: 'rejected: pole refused: UNKNOWN_CLIP: no clip' });
  });

  it('a lost answer (the pole may have it) is retried for warnings and emergencies, and final for routine broadcasts', () => {
    expect(decideAck(at('sent'), ack('failed', 'pole offline: no answer within 3000 ms'), ANY)).toEqual({ kind: 'retry', reason: 'pole offline: no answer within 3000 ms' });
    expect(decideAck(at('sent'), ack('failed', 'pole offline: no answer within 3000 ms'), ROUTINE)).toEqual({
      kind: 'advance',
      to: 'failed',
      reason: 'pole offline: no answer within 3000 ms (the pole may have played it: its answer was lost)',
    });
    // Certainly not received: retried whatever the priority.
    expect(decideAck(at('sent'), ack('failed', 'pole offline: connection refused'), ROUTINE)).toMatchObject({ kind: 'retry' });
    expect(decideAck(at('sent'), ack('failed', 'pole busy: BUSY: …'), ROUTINE)).toMatchObject({ kind: 'retry' });
  });

  it('classifies the collector’s failure reasons', () => {
    expect(classifyFailure('pole offline: connection refused')).toBe('not_received');
    expect(classifyFailure('pole offline: EHOSTUNREACH (connect EHOSTUNREACH 10.20.3.7:80)')).toBe('not_received');
    expect(classifyFailure('pole busy: BUSY: a emergency broadcast is playing (job x)')).toBe('not_received');
    expect(classifyFailure('pole offline: no answer within 3000 ms')).toBe('uncertain');
    expect(classifyFailure('pole offline: ECONNRESET (socket hang up)')).toBe('uncertain');
    expect(classifyFailure('pole: AMPLIFIER_FAULT: power amplifier reports an output fault')).toBe('final');
    expect(classifyFailure('internal: boom')).toBe('final');
    expect(classifyFailure(undefined)).toBe('final');
  });

  it('a cancelled delivery whose pole reports it started is stopped again; its other acks change nothing', () => {
    expect(decideAck(at('cancelled'), ack('accepted'), ANY)).toEqual({ kind: 'restop' });
    expect(decideAck(at('cancelled'), ack('playing'), ANY)).toEqual({ kind: 'restop' });
    expect(decideAck(at('cancelled'), ack('done', 'stopped before the end'), ANY)).toMatchObject({ kind: 'ignore' });
    expect(decideAck(at('cancelled'), ack('failed', 'x'), ANY)).toMatchObject({ kind: 'ignore' });
  });

  it('an expiry the gateway decided gives way to the pole’s own later report', () => {
    expect(decideAck(at('expired'), ack('playing'), ANY)).toEqual({ kind: 'advance', to: 'playing', reason: null });
    expect(decideAck(at('expired'), ack('done'), ANY)).toMatchObject({ kind: 'advance', to: 'done' });
    expect(decideAck(at('expired'), ack('failed', 'pole offline: x'), ANY)).toMatchObject({ kind: 'ignore' });
  });
});

describe('command ids', () => {
  it('are deterministic per job, run, pole and attempt, valid ids, and parse back', () => {
    expect(commandId('bm8x2k1f0a1b2c', 3, 17, 1)).toBe('bm8x2k1f0a1b2c-3-17');
    expect(commandId('bm8x2k1f0a1b2c', 3, 17, 2)).toBe('bm8x2k1f0a1b2c-3-17.2');
    expect(stopCommandId('bm8x2k1f0a1b2c-3-17.2', 1)).toBe('bm8x2k1f0a1b2c-3-17.2.stop1');
    const re = new RegExp(ID_PATTERN);
    for (const id of ['bm8x2k1f0a1b2c-3-17', 'bm8x2k1f0a1b2c-366-99999.50', 'bm8x2k1f0a1b2c-366-99999.50.stop3']) expect(id).toMatch(re);
    expect(parseCommandId('bm8x2k1f0a1b2c-3-17')).toEqual({ jobId: 'bm8x2k1f0a1b2c', run: 3, index: 17, attempt: 1, stop: false });
    expect(parseCommandId('bm8x2k1f0a1b2c-3-17.2')).toEqual({ jobId: 'bm8x2k1f0a1b2c', run: 3, index: 17, attempt: 2, stop: false });
    expect(parseCommandId('bm8x2k1f0a1b2c-3-17.2.stop1')).toMatchObject({ attempt: 2, stop: true });
    for (const other of ['bc-1', 'c-1', 'st-5', 'BM8-1-2', 'x-1-2-3']) expect(parseCommandId(other), other).toBeUndefined();
  });
});
