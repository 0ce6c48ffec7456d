/**
 * The voice-pole collector against pole simulators over real HTTP, with short intervals and fast
 * playback: telemetry on change plus heartbeat, acks for play / stop / pre-emption / faults,
 * offline and back, idempotency across an agent restart. The whole path through the gateway is
 * in voice-pole-broadcast.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { VoicePoleCollector, type VoicePoleDevice, type VoicePoleCollectorOptions } from '../../edge-agent/src/collectors/voice-pole.js';
import { startPoleSimulator, type PoleSimulator, type PoleSimulatorOptions } from '../../simulators/src/voice-pole/simulator.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import { validate } from '../../protocol/validate.js';

const device: VoicePoleDevice = {
  id: 'pole-007',
  kind: 'voice_pole',
  name: '测试广播',
  lat: 29.41,
  lon: 105.86,
  grid: 'G13',
  community: '茶山社区',
  agent: 'agent-chashan',
  settings: {},
};

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function poleSim(opts: Partial<PoleSimulatorOptions> = {}): Promise<PoleSimulator> {
  const sim = await startPoleSimulator({ deviceId: device.id, timeScale: 20, ...opts });
  cleanup.push(() => sim.close());
  return sim;
}

type Ack = Extract<Reading, { channel: 'ack' }>;
type Tel = Extract<Reading, { channel: 'telemetry'; kind: 'voice_pole' }>;

function collect(url: string, opts: Partial<VoicePoleCollectorOptions> = {}) {
  const readings: Reading[] = [];
  const log = pino({ level: 'silent' });
  const collector = new VoicePoleCollector([{ device, url }], { pollIntervalMs: 40, timeoutMs: 1000, activePollMs: 20, ...opts });
  cleanup.push(() => collector.stop());
  const acks = (cmdId?: string) => readings.filter((r): r is Ack => r.channel === 'ack' && (cmdId === undefined || r.cmdId === cmdId));
  return {
    collector,
    readings,
    acks,
    statuses: (cmdId: string) => acks(cmdId).map((a) => a.status),
    states: () => readings.filter((r): r is Extract<Reading, { channel: 'state' }> => r.channel === 'state'),
    tel: () => readings.filter((r): r is Tel => r.channel === 'telemetry' && r.kind === 'voice_pole'),
    start: () => collector.start({ log, emit: (r) => void readings.push(r) }),
    send: (command: Omit<DeviceCommand, 'ts'>) => collector.handleCommand(device.id, { ts: Date.now(), ...command }),
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const play = (id: string, params: DeviceCommand['params']): Omit<DeviceCommand, 'ts'> => ({ id, name: 'broadcast.play', params });
const isTerminal = (s: string) => ['done', 'failed', 'rejected', 'preempted', 'expired'].includes(s);

describe('voice-pole collector ↔ simulator over HTTP', () => {
  it('reports online once and telemetry only on change, plus every Nth poll unchanged', async () => {
    const sim = await poleSim();
    const h = collect(sim.url, { heartbeatPolls: 5 });
    await h.start();
    await until(() => sim.requests.filter((r) => r.path === '/api/v1/status').length >= 17, 'status polls');
    await h.collector.stop();
    const polls = sim.requests.filter((r) => r.path === '/api/v1/status' && r.status === 200).length;
    expect(h.states().map((s) => s.status)).toEqual(['online']);
    // Idle all along: the first poll, then polls 6, 11, 16 … (the last answer may be cut off by stop()).
    const n = h.tel().length;
    expect([1 + Math.floor((polls - 1) / 5), 1 + Math.floor((polls - 2) / 5)]).toContain(n);
    expect(h.tel()[0]!.values).toEqual({ playback: 'idle', volume: 70 });
    for (const r of h.readings) {
      if (r.channel === 'telemetry') expect(validate.telemetry('voice_pole', JSON.stringify({ ts: r.ts, seq: 1, values: r.values })).ok).toBe(true);
    }
  });

  it('plays: accepted → playing → done, telemetry follows with the command id', async () => {
    const sim = await poleSim({ timeScale: 5 });
    const h = collect(sim.url, { pollIntervalMs: 1000 }); // slow status polls: telemetry must follow the job anyway
    await h.start();
    await until(() => h.tel().length >= 1, 'first telemetry');
    h.send(play('bc-1', { text: '森林防火，人人有责', priority: 'warning', volume: 90, repeat: 2 }));
    await until(() => h.acks('bc-1').some((a) => isTerminal(a.status)), 'end of bc-1');
    expect(h.statuses('bc-1')).toEqual(['accepted', 'playing', 'done']);
    const ts = h.acks('bc-1').map((a) => a.ts);
    expect([...ts].sort((a, b) => a - b)).toEqual(ts);
    expect(new Set(ts).size).toBe(3);
    for (const a of h.acks('bc-1')) expect(validate.ack(JSON.stringify({ ts: a.ts, seq: 1, cmdId: a.cmdId, status: a.status })).ok).toBe(true);
    const job = sim.model.job('bc-1')!;
    expect(job).toMatchObject({ type: 'tts', text: '森林防火，人人有责', priority: 'warning', volume: 90, repeat: 2, state: 'done' });
    await until(() => h.tel().at(-1)?.values.playback === 'idle', 'idle again');
    expect(h.tel().map((t) => t.values)).toContainEqual({ playback: 'playing', volume: 90, currentCommandId: 'bc-1' });
  });

  it('a higher priority pre-empts: the routine play acks preempted with who took over', async () => {
    const sim = await poleSim({ timeScale: 10 });
    const h = collect(sim.url);
    await h.start();
    h.send(play('r-1', { clipId: 'fire-warning-01' }));
    await until(() => h.statuses('r-1').includes('playing'), 'routine playing');
    h.send(play('e-1', { text: '紧急通知：山火逼近，请立即撤离', priority: 'emergency', volume: 100 }));
    await until(() => h.acks('e-1').some((a) => isTerminal(a.status)), 'emergency ends');
    expect(h.statuses('r-1')).toEqual(['accepted', 'playing', 'preempted']);
    expect(h.acks('r-1')[2]!.reason).toBe('pre-empted by emergency broadcast e-1');
    expect(h.statuses('e-1')).toEqual(['accepted', 'playing', 'done']);
  });

  it('refuses bad params itself, and reports the pole refusing (rejected) or busy (failed)', async () => {
    const sim = await poleSim({ timeScale: 2 });
    const h = collect(sim.url);
    await h.start();
    h.send(play('bad-1', { text: '甲', priority: 'urgent' }));
    h.send(play('bad-2', { clipId: 'no-such-clip' }));
    h.send({ id: 'bad-3', name: 'ptz.stop', params: {} });
    h.send(play('e-1', { clipId: 'evacuation-01', priority: 'emergency' }));
    await until(() => h.statuses('e-1').includes('accepted'), 'emergency accepted');
    h.send(play('r-1', { text: '例行宣传', priority: 'routine' }));
    await until(() => ['bad-2', 'r-1'].every((id) => h.acks(id).length > 0), 'answers');
    expect(h.acks('bad-1')).toMatchObject([{ status: 'rejected', reason: 'priority must be one of routine, warning, emergency' }]);
    expect(h.acks('bad-2')).toMatchObject([{ status: 'rejected', reason: expect.stringMatching(/^pole refused: UNKNOWN_CLIP: /) }]);
    expect(h.acks('bad-3')).toMatchObject([{ status: 'rejected', reason: 'ptz.stop is not a voice-pole command' }]);
    expect(h.acks('r-1')).toMatchObject([{ status: 'failed', reason: expect.stringMatching(/^pole busy: BUSY: a emergency broadcast is playing \(job e-1\)/) }]);
    expect(sim.model.job('r-1')).toBeUndefined();
  });

  it('stop: the stop command acks accepted → done, the stopped play ends done with a reason', async () => {
    const sim = await poleSim({ timeScale: 1 });
    const h = collect(sim.url);
    await h.start();
    h.send(play('p-1', { clipId: 'fire-warning-01' }));
    await until(() => h.statuses('p-1').includes('playing'), 'playing');
    h.send({ id: 's-1', name: 'broadcast.stop', params: { cmdId: 'p-1' } });
    await until(() => h.acks('p-1').some((a) => isTerminal(a.status)) && h.acks('s-1').some((a) => isTerminal(a.status)), 'stopped');
    expect(h.acks('s-1')).toMatchObject([{ status: 'accepted' }, { status: 'done', reason: 'stopped p-1' }]);
    expect(h.acks('p-1')).toMatchObject([{ status: 'accepted' }, { status: 'playing' }, { status: 'done', reason: 'stopped before the end' }]);
    expect(sim.model.job('p-1')?.state).toBe('stopped');
    // Nothing playing now: a stop of whatever plays is done, with the reason.
    h.send({ id: 's-2', name: 'broadcast.stop', params: {} });
    await until(() => h.acks('s-2').length >= 2, 's-2');
    expect(h.acks('s-2')[1]).toMatchObject({ status: 'done', reason: 'nothing was playing' });
  });

  it('offline: one offline state with the reason, plays fail "pole offline", one online when back', async () => {
    const sim = await poleSim();
    const h = collect(sim.url);
    await h.start();
    await until(() => h.states().length === 1, 'online');
    await sim.setFault('offline');
    await until(() => h.states().length === 2, 'offline');
    expect(h.states()[1]).toMatchObject({ status: 'offline', reason: 'connection refused' });
    h.send(play('o-1', { text: '森林防火' }));
    await until(() => h.acks('o-1').length > 0, 'o-1 answer');
    expect(h.acks('o-1')).toMatchObject([{ status: 'failed', reason: 'pole offline: connection refused' }]);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.states()).toHaveLength(2);
    await sim.setFault('none');
    await until(() => h.states().length === 3, 'online again', 8000);
    expect(h.states().map((s) => s.status)).toEqual(['online', 'offline', 'online']);
    expect(sim.model.jobs()).toEqual([]);
  });

  it('amplifier fault: the play is accepted, then fails with the pole\'s code; telemetry shows the fault', async () => {
    const sim = await poleSim();
    const h = collect(sim.url);
    await h.start();
    await sim.setFault('fault');
    h.send(play('f-1', { text: '森林防火' }));
    await until(() => h.acks('f-1').some((a) => isTerminal(a.status)), 'f-1 ends');
    expect(h.acks('f-1')).toMatchObject([
      { status: 'accepted' },
      { status: 'failed', reason: 'pole: AMPLIFIER_FAULT: power amplifier reports an output fault (no load current)' },
    ]);
    await until(() => h.tel().at(-1)?.values.playback === 'fault', 'fault telemetry');
  });

  it('slow: answers within the timeout work; beyond it the play fails and is not played', async () => {
    const sim = await poleSim({ slowMs: 100 });
    await sim.setFault('slow');
    const h = collect(sim.url, { timeoutMs: 1500 });
    await h.start();
    h.send(play('s-1', { text: '测试' }));
    await until(() => h.acks('s-1').some((a) => isTerminal(a.status)), 's-1 ends');
    expect(h.statuses('s-1')).toEqual(['accepted', 'playing', 'done']);

    const slower = await poleSim({ slowMs: 500 });
    await slower.setFault('slow');
    const h2 = collect(slower.url, { timeoutMs: 150 });
    await h2.start();
    h2.send(play('s-2', { text: '测试' }));
    await until(() => h2.acks('s-2').length > 0, 's-2 answer');
    expect(h2.acks('s-2')).toMatchObject([{ status: 'failed', reason: 'pole offline: no answer within 150 ms' }]);
    // Both attempts were given up by the agent before the pole got to them, so it never took the job.
    await until(() => slower.requests.filter((r) => r.path === '/api/v1/play' && r.status === 499).length === 2, 'both plays dropped');
    expect(slower.model.job('s-2')).toBeUndefined();
  });

  it('plays a command id once: ignored while watched, and after an agent restart the pole returns its job', async () => {
    const sim = await poleSim({ timeScale: 10 });
    const h = collect(sim.url);
    await h.start();
    h.send(play('d-1', { text: '森林防火，人人有责' }));
    h.send(play('d-1', { text: '森林防火，人人有责' }));
    await until(() => h.statuses('d-1').includes('playing'), 'playing');
    await h.collector.stop(); // the agent restarts mid-broadcast and forgets what it saw

    const h2 = collect(sim.url);
    await h2.start();
    h2.send(play('d-1', { text: '森林防火，人人有责' }));
    await until(() => h2.acks('d-1').some((a) => isTerminal(a.status)), 'd-1 ends');
    expect(h2.acks('d-1')[0]).toMatchObject({ status: 'accepted', reason: expect.stringMatching(/^the pole already had this job/) });
    expect(h2.statuses('d-1').at(-1)).toBe('done');
    expect(sim.model.jobs().filter((j) => j.jobId === 'd-1')).toHaveLength(1);
    expect(sim.model.starts).toBe(1);
    expect(sim.requests.filter((r) => r.jobId === 'd-1').map((r) => r.status)).toEqual([201, 200]);
  });

  it('wrong credentials: the pole is reported offline with the pole\'s reason', async () => {
    const sim = await poleSim();
    const h = collect(sim.url.replace('pole-sim', 'wrong'));
    await h.start();
    await until(() => h.states().length === 1, 'offline');
    expect(h.states()[0]).toMatchObject({ status: 'offline', reason: 'status answered UNAUTHORIZED: missing or wrong credentials' });
    h.send(play('a-1', { text: '测试' }));
    await until(() => h.acks('a-1').length > 0, 'a-1 answer');
    expect(h.acks('a-1')[0]).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^pole refused the agent's credentials/) });
  });
});
