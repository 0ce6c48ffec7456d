import { describe, expect, it } from 'vitest';
import { parseTopic, topics } from '../../protocol/topics.js';
import { validate } from '../../protocol/validate.js';
import { RecentMessages } from '../../gateway/src/ingest/dedupe.js';

const ts = Date.UTC(2026, 0, 1);

describe('topics', () => {
  it('round-trips every channel and refuses anything else', () => {
    expect(parseTopic(topics.telemetry('tank-001'))).toEqual({ scope: 'device', deviceId: 'tank-001', channel: 'telemetry' });
    expect(parseTopic(topics.agentState('agent-1'))).toEqual({ scope: 'agent', agentId: 'agent-1', channel: 'state' });
    for (const bad of ['gs/v1/devices/tank-001', 'gs/v2/devices/x/telemetry', 'gs/v1/devices/x/other', 'gs/v1/devices/../telemetry', 'gs/v1/agents/a/event', 'gs/v1/devices/x/telemetry/extra']) {
      expect(parseTopic(bad), bad).toBeUndefined();
    }
  });

  it('parses exactly as splitting on "/" would, over valid, near-valid and malformed topics', () => {
    // The rule as first written (split into 5 parts): the reference the hot-path parser must match.
    const reference = (topic: string) => {
      const parts = topic.split('/');
      if (parts.length !== 5 || parts[0] !== 'gs' || parts[1] !== 'v1') return undefined;
      const [, , scope, id, channel] = parts as [string, string, string, string, string];
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(id)) return undefined;
      if (scope === 'devices' && ['telemetry', 'event', 'state', 'ack', 'cmd'].includes(channel)) return { scope: 'device', deviceId: id, channel };
      if (scope === 'agents' && channel === 'state') return { scope: 'agent', agentId: id, channel: 'state' };
      return undefined;
    };
    const ids = ['tank-001', 'a', 'A.b_c-9', '', '-x', 'x'.repeat(64), 'x'.repeat(65), '+', '#', '水池', 'a b', '..'];
    const channels = ['telemetry', 'event', 'state', 'ack', 'cmd', '', 'Telemetry', 'telemetr', 'telemetryx', 'state/x', 'cmd/', 'other'];
    const heads = ['gs/v1/devices/', 'gs/v1/agents/', 'gs/v1/device/', 'gs/v2/devices/', '/gs/v1/devices/', 'gs/v1//devices/', 'GS/v1/devices/', ''];
    let checked = 0;
    for (const head of heads) {
      for (const id of ids) {
        for (const channel of channels) {
          for (const topic of [`${head}${id}/${channel}`, `${head}${id}`, `${head}${id}/${channel}/`]) {
            expect(parseTopic(topic), topic).toEqual(reference(topic));
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(heads.length * ids.length * channels.length * 3);
  });
});

describe('payload validation', () => {
  it('accepts a well-formed tank reading', () => {
    const r = validate.telemetry('water_tank', JSON.stringify({ ts, seq: 0, values: { levelMm: 1000, levelPercent: 40, volumeM3: 20 } }));
    expect(r.ok).toBe(true);
  });

  it.each([
    ['not JSON', '{', 'not_json'],
    ['too large', JSON.stringify({ ts, seq: 1, values: { levelMm: 1, levelPercent: 1, volumeM3: 1 }, pad: 'x'.repeat(20_000) }), 'too_large'],
    ['seconds, not ms', JSON.stringify({ ts: 1_700_000_000, seq: 1, values: { levelMm: 1, levelPercent: 1, volumeM3: 1 } }), 'schema'],
    ['negative level', JSON.stringify({ ts, seq: 1, values: { levelMm: -1, levelPercent: 1, volumeM3: 1 } }), 'schema'],
    ['string number', JSON.stringify({ ts, seq: 1, values: { levelMm: '1', levelPercent: 1, volumeM3: 1 } }), 'schema'],
    ['prototype key', '{"ts":1767225600000,"seq":1,"values":{"levelMm":1,"levelPercent":1,"volumeM3":1},"__proto__":{"admin":true}}', 'schema'],
    ['camera values on a tank', JSON.stringify({ ts, seq: 1, values: { panDeg: 10 } }), 'schema'],
    ['array', '[1,2,3]', 'schema'],
  ])('rejects %s', (_name, payload, reason) => {
    const r = validate.telemetry('water_tank', payload);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('says where a payload is wrong', () => {
    const r = validate.telemetry('water_tank', JSON.stringify({ ts, seq: 1, values: { levelMm: 1, levelPercent: 101, volumeM3: 1 } }));
    expect(r).toEqual({ ok: false, reason: 'schema', detail: 'values.levelPercent: must be <= 100' });
  });

  it('fills the default phase of an event', () => {
    const r = validate.event(JSON.stringify({ ts, seq: 3, type: 'smoke', bearingDeg: 120.5 }));
    expect(r.ok && r.value.phase).toBe('pulse');
  });
});

describe('duplicate detection', () => {
  it('drops a repeat of (seq, ts) but not a rebooted device reusing seq with a new ts', () => {
    const recent = new RecentMessages(4);
    expect(recent.isDuplicate('d', 'telemetry', 1, ts)).toBe(false);
    expect(recent.isDuplicate('d', 'telemetry', 1, ts)).toBe(true);
    expect(recent.isDuplicate('d', 'event', 1, ts)).toBe(false);
    expect(recent.isDuplicate('d', 'telemetry', 1, ts + 5)).toBe(false);
    for (let s = 2; s < 10; s++) recent.isDuplicate('d', 'telemetry', s, ts + s);
    // seq 1 fell out of the 4-entry window: memory stays bounded.
    expect(recent.isDuplicate('d', 'telemetry', 1, ts + 5)).toBe(false);
  });

  it('keeps the last `window` pairs per device and channel, a re-recorded seq counting as newest', () => {
    const recent = new RecentMessages(3);
    for (const s of [1, 2, 3]) expect(recent.isDuplicate('d', 'telemetry', s, ts + s)).toBe(false);
    // seq 1 again with a new ts (a reboot): recorded as the newest pair, the old (1, ts+1) retired.
    expect(recent.isDuplicate('d', 'telemetry', 1, ts + 100)).toBe(false);
    expect(recent.isDuplicate('d', 'telemetry', 1, ts + 1)).toBe(false);
    expect(recent.isDuplicate('d', 'telemetry', 1, ts + 1)).toBe(true);
    // Another device and another channel have rings of their own.
    expect(recent.isDuplicate('e', 'telemetry', 2, ts + 2)).toBe(false);
    expect(recent.isDuplicate('d', 'ack', 3, ts + 3)).toBe(false);
    // (3, ts+3) is still inside d's window (the re-recorded seq 1 took the slots of 1 and 2); 4, 5, 6 push it out.
    expect(recent.isDuplicate('d', 'telemetry', 3, ts + 3)).toBe(true);
    for (const s of [4, 5, 6]) recent.isDuplicate('d', 'telemetry', s, ts + s);
    expect(recent.isDuplicate('d', 'telemetry', 3, ts + 3)).toBe(false);
    expect(() => new RecentMessages(0)).toThrow(/positive integer/);
  });
});
