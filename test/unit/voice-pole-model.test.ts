/**
 * The broadcast terminal's behaviour on a hand-driven clock: durations from the text, priorities,
 * pre-emption (no resume), idempotent job ids, stop, and the amplifier fault. The HTTP face is
 * tested in test/integration/voice-pole-simulator-api.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  BUILT_IN_CLIPS,
  CHIME_MS,
  PoleError,
  PoleModel,
  REPEAT_GAP_MS,
  START_DELAY_MS,
  nominalDurationMs,
  speechDurationMs,
  type PlayRequest,
} from '../../simulators/src/voice-pole/model.js';

function clock(start = 1_750_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms), get t() { return t; } };
}

const tts = (jobId: string, text: string, extra: Partial<PlayRequest> = {}): PlayRequest => ({ jobId, type: 'tts', text, priority: 'routine', repeat: 1, ...extra });

function poleError(fn: () => unknown): PoleError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PoleError) return err;
    throw err;
  }
  throw new Error('expected a PoleError');
}

describe('speech duration', () => {
  it('reads Chinese at 4.5 syllables a second, digits one by one, with pauses at punctuation', () => {
    expect(speechDurationMs('森林防火人人有责')).toBe(Math.round((8 / 4.5) * 1000)); // 1778 ms
    // 8 Han + comma (250 ms) + full stop (500 ms)
    expect(speechDurationMs('森林防火，人人有责。')).toBe(Math.round((8 / 4.5) * 1000) + 750);
    // 火警 12119: 2 Han + 5 digits
    expect(speechDurationMs('火警12119')).toBe(Math.round((7 / 4.5) * 1000));
    // a typical 60-character notice takes ~15 s, as a broadcast announcer would
    const notice = '各位村民请注意：当前森林火险等级为四级，属高度危险。请勿携带火种进山，严禁野外烧荒、祭祀用火。发现火情请立即拨打一二一一九报警。';
    const ms = speechDurationMs(notice);
    expect(ms).toBeGreaterThan(13_000);
    expect(ms).toBeLessThan(18_000);
  });

  it('adds the chime once and a gap between repeats', () => {
    expect(nominalDurationMs(10_000, 1)).toBe(CHIME_MS + 10_000);
    expect(nominalDurationMs(10_000, 3)).toBe(CHIME_MS + 30_000 + 2 * REPEAT_GAP_MS);
  });
});

describe('pole model', () => {
  it('plays a job through accepted → playing → done on the scaled schedule', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now, timeScale: 10 });
    const { job, created } = pole.play(tts('j1', '森林防火，人人有责', { repeat: 2, volume: 85 }));
    expect(created).toBe(true);
    const nominal = nominalDurationMs(speechDurationMs('森林防火，人人有责'), 2);
    expect(job).toMatchObject({ state: 'accepted', volume: 85, nominalDurationMs: nominal, durationMs: Math.round(nominal / 10), startedAt: null });
    expect(pole.status()).toMatchObject({ state: 'playing', jobId: 'j1', jobState: 'accepted', priority: 'routine', volume: 85 });

    c.advance(START_DELAY_MS / 10);
    expect(pole.job('j1')).toMatchObject({ state: 'playing', startedAt: c.t });
    const started = c.t;
    c.advance(job.durationMs - 1);
    expect(pole.job('j1')?.state).toBe('playing');
    expect(pole.remainingMs()).toBe(1);
    c.advance(1);
    expect(pole.job('j1')).toMatchObject({ state: 'done', startedAt: started, endedAt: started + job.durationMs });
    expect(pole.status()).toMatchObject({ state: 'idle', jobId: null, volume: 70, remainingMs: null });
    expect(pole.starts).toBe(1);
  });

  it('a job read long after it ended has still started and ended at the right times', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    const { job } = pole.play(tts('j1', '测试'));
    const t0 = c.t;
    c.advance(3_600_000);
    expect(pole.job('j1')).toMatchObject({ state: 'done', startedAt: t0 + START_DELAY_MS, endedAt: t0 + START_DELAY_MS + job.durationMs });
  });

  it('a higher priority pre-empts at once; the pre-empted job does not resume', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    pole.play({ jobId: 'routine-1', type: 'clip', clipId: 'fire-warning-01', priority: 'routine', repeat: 1 });
    c.advance(5000);
    expect(pole.job('routine-1')?.state).toBe('playing');
    const { job: emergency } = pole.play(tts('emerg-1', '紧急通知：山火逼近，请立即撤离', { priority: 'emergency', volume: 100 }));
    expect(pole.job('routine-1')).toMatchObject({ state: 'preempted', endedAt: c.t, preemptedBy: 'emerg-1', preemptedByPriority: 'emergency' });
    expect(pole.status()).toMatchObject({ jobId: 'emerg-1', priority: 'emergency', volume: 100 });
    c.advance(START_DELAY_MS + emergency.durationMs);
    expect(pole.job('emerg-1')?.state).toBe('done');
    // Idle afterwards: the routine clip is over for good.
    c.advance(60_000);
    expect(pole.status()).toMatchObject({ state: 'idle', jobId: null });
    expect(pole.job('routine-1')?.state).toBe('preempted');
  });

  it('the same priority pre-empts too (the later decision wins); a job not yet sounding can be pre-empted', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    pole.play(tts('w1', '注意防火', { priority: 'warning' }));
    pole.play(tts('w2', '今日火险等级四级', { priority: 'warning' }));
    expect(pole.job('w1')).toMatchObject({ state: 'preempted', startedAt: null, preemptedBy: 'w2' });
    expect(pole.status().jobId).toBe('w2');
  });

  it('a lower priority is refused with BUSY and leaves no job behind', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    pole.play(tts('e1', '紧急疏散', { priority: 'emergency' }));
    const err = poleError(() => pole.play(tts('r1', '防火宣传', { priority: 'routine' })));
    expect(err.code).toBe('BUSY');
    expect(err.detail).toEqual({ currentJob: { jobId: 'e1', priority: 'emergency' } });
    expect(pole.job('r1')).toBeUndefined();
    expect(pole.status().jobId).toBe('e1');
    // Once the emergency is over, the routine job is taken.
    c.advance(60_000);
    expect(pole.play(tts('r1', '防火宣传', { priority: 'routine' })).created).toBe(true);
  });

  it('plays a job id at most once: the same id returns the existing job, playing or long done', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now, timeScale: 100 });
    const first = pole.play(tts('c-1', '森林防火，人人有责'));
    c.advance(20);
    const again = pole.play(tts('c-1', '森林防火，人人有责'));
    expect(again.created).toBe(false);
    expect(again.job).toBe(first.job);
    expect(again.job.state).toBe('playing');
    c.advance(10_000);
    const later = pole.play(tts('c-1', '森林防火，人人有责'));
    expect(later).toMatchObject({ created: false, job: { state: 'done' } });
    expect(pole.jobs().filter((j) => j.jobId === 'c-1')).toHaveLength(1);
    expect(pole.starts).toBe(1);
    // A duplicate does not pre-empt anything either.
    pole.play(tts('c-2', '第二条'));
    pole.play(tts('c-1', '森林防火，人人有责'));
    expect(pole.status().jobId).toBe('c-2');
  });

  it('the same id with other content is a conflict, not a silent replay', () => {
    const pole = new PoleModel({ now: clock().now });
    pole.play(tts('c-1', '森林防火'));
    expect(poleError(() => pole.play(tts('c-1', '别的内容'))).code).toBe('JOB_ID_CONFLICT');
    expect(poleError(() => pole.play(tts('c-1', '森林防火', { volume: 90 }))).code).toBe('JOB_ID_CONFLICT');
    // Omitting the volume means the terminal's setting, which is what the job got.
    expect(pole.play(tts('c-1', '森林防火', { volume: 70 })).created).toBe(false);
  });

  it('plays built-in clips for their recorded length and refuses unknown ones', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    const evac = BUILT_IN_CLIPS.find((x) => x.id === 'evacuation-01')!;
    const { job } = pole.play({ jobId: 'k1', type: 'clip', clipId: 'evacuation-01', priority: 'emergency', repeat: 3 });
    expect(job).toMatchObject({ title: '紧急疏散', nominalDurationMs: CHIME_MS + 3 * evac.durationMs + 2 * REPEAT_GAP_MS });
    const err = poleError(() => pole.play({ jobId: 'k2', type: 'clip', clipId: 'no-such-clip', priority: 'emergency', repeat: 1 }));
    expect(err.code).toBe('UNKNOWN_CLIP');
  });

  it('stop ends the active job or a named one; stopping what already ended is no error', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    expect(pole.stop()).toEqual({ job: null, stopped: false });
    pole.play(tts('s1', '森林防火，人人有责'));
    c.advance(1000);
    const r = pole.stop('s1');
    expect(r.stopped).toBe(true);
    expect(r.job).toMatchObject({ jobId: 's1', state: 'stopped', stoppedBy: 'api', endedAt: c.t });
    expect(pole.stop('s1')).toMatchObject({ stopped: false, job: { state: 'stopped' } });
    pole.play(tts('s2', '注意'));
    expect(pole.stop()).toMatchObject({ stopped: true, job: { jobId: 's2' } });
    expect(poleError(() => pole.stop('nope')).code).toBe('JOB_NOT_FOUND');
  });

  it('an amplifier fault fails the active job at once and later jobs when they would start', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now });
    pole.play(tts('f1', '森林防火，人人有责'));
    c.advance(1000);
    pole.setAmplifierFault(true);
    expect(pole.job('f1')).toMatchObject({ state: 'failed', error: { code: 'AMPLIFIER_FAULT' } });
    expect(pole.status()).toMatchObject({ state: 'fault', fault: { code: 'AMPLIFIER_FAULT' } });

    const { job } = pole.play(tts('f2', '紧急疏散', { priority: 'emergency' }));
    expect(job.state).toBe('accepted');
    c.advance(START_DELAY_MS);
    expect(pole.job('f2')).toMatchObject({ state: 'failed', startedAt: null, endedAt: c.t, error: { code: 'AMPLIFIER_FAULT' } });

    pole.setAmplifierFault(false);
    pole.play(tts('f3', '恢复'));
    c.advance(START_DELAY_MS);
    expect(pole.job('f3')?.state).toBe('playing');
    expect(pole.status().state).toBe('playing');
  });

  it('remembers a bounded number of jobs, newest first in the status', () => {
    const c = clock();
    const pole = new PoleModel({ now: c.now, jobMemory: 5, timeScale: 1000 });
    for (let i = 0; i < 8; i++) {
      pole.play(tts(`m${i}`, '测试'));
      c.advance(1000);
    }
    expect(pole.jobs().map((j) => j.jobId)).toEqual(['m3', 'm4', 'm5', 'm6', 'm7']);
    expect(pole.status(3).lastJobs.map((j) => j.jobId)).toEqual(['m7', 'm6', 'm5']);
  });
});
