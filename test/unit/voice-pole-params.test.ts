/**
 * The `broadcast.play` / `broadcast.stop` params contract (docs/devices/voice-pole-api.md), as the
 * pole collector reads it: defaults, ranges, and refusal of anything ambiguous.
 */
import { describe, expect, it } from 'vitest';
import { parsePlayParams, parseStopParams } from '../../edge-agent/src/collectors/voice-pole.js';

describe('broadcast.play params', () => {
  it('takes text or a clip, with routine priority, the pole volume and one play by default', () => {
    expect(parsePlayParams({ text: '森林防火，人人有责' })).toEqual({ type: 'tts', text: '森林防火，人人有责', priority: 'routine', repeat: 1 });
    expect(parsePlayParams({ clipId: 'evacuation-01', priority: 'emergency', volume: 100, repeat: 3 })).toEqual({
      type: 'clip',
      clipId: 'evacuation-01',
      priority: 'emergency',
      volume: 100,
      repeat: 3,
    });
    // null means "not given", as JSON producers often send it
    expect(parsePlayParams({ text: '注意', clipId: null, volume: null })).toEqual({ type: 'tts', text: '注意', priority: 'routine', repeat: 1 });
  });

  it.each([
    [{}, /exactly one of text and clipId/],
    [{ text: '甲', clipId: 'evacuation-01' }, /exactly one/],
    [{ text: '   ' }, /non-empty/],
    [{ text: '字'.repeat(501) }, /longer than 500/],
    [{ clipId: 'bad id!' }, /clip id/],
    [{ text: '甲', priority: 'urgent' }, /priority must be one of routine, warning, emergency/],
    [{ text: '甲', volume: 101 }, /volume/],
    [{ text: '甲', volume: 50.5 }, /volume/],
    [{ text: '甲', repeat: 0 }, /repeat/],
    [{ text: '甲', repeat: 11 }, /repeat/],
    [{ text: '甲', prio: 'emergency' }, /unknown param "prio"/],
  ])('refuses %j', (params, reason) => {
    const r = parsePlayParams(params as Record<string, string | number | boolean | null>);
    expect(typeof r).toBe('string');
    expect(r).toMatch(reason);
  });
});

describe('broadcast.stop params', () => {
  it('stops a named play, or whatever plays', () => {
    expect(parseStopParams({ cmdId: 'bc-42' })).toEqual({ cmdId: 'bc-42' });
    expect(parseStopParams({})).toEqual({ cmdId: undefined });
    expect(parseStopParams({ cmdId: null })).toEqual({ cmdId: undefined });
    expect(parseStopParams({ cmdId: 'x y' })).toMatch(/id of a broadcast.play/);
    expect(parseStopParams({ jobId: 'bc-42' })).toMatch(/unknown param "jobId"/);
  });
});
