import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { parseLedgerCsv } from '../../config/ledger.js';
import { Bus } from '../../gateway/src/bus.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import type { DeviceUpdate } from '../../protocol/ws.js';

const { devices: ledger } = parseLedgerCsv(
  'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm\n' +
    'tank-1,water_tank,A,29.4,105.9,G01,c,agent-a,50,2500\n' +
    'cam-1,camera,B,29.4,105.9,G01,c,agent-a,,\n' +
    'cam-2,camera,C,29.4,105.9,G01,c,agent-b,,\n',
);

function setup(flapDampingSec = 0) {
  let now = Date.UTC(2026, 10, 26, 12);
  const { config } = resolveConfig(
    { gateway: { availability: { silenceTimeoutSec: { camera: 60, water_tank: 600 }, flapDampingSec } } },
    { source: 't', baseDir: '/' },
  );
  const log = pino({ level: 'silent' });
  const bus = new Bus(log);
  const updates: DeviceUpdate[] = [];
  bus.on('deviceUpdate', (u) => updates.push(u));
  const registry = new DeviceRegistry({ config: config.gateway!, log, bus, metrics: createMetrics(), ledger, now: () => now });
  registry.start();
  const device = (id: string) => ledger.find((d) => d.id === id)!;
  return {
    registry,
    bus,
    updates,
    advance: (ms: number) => (now += ms),
    now: () => now,
    device,
    stop: () => registry.stop(),
  };
}

const tankValues = (levelMm: number) => ({ levelMm, levelPercent: levelMm / 25, volumeM3: levelMm / 50 });

describe('device registry', () => {
  it('starts every ledger device as unknown and turns it online on telemetry', () => {
    const r = setup();
    expect(r.registry.view('tank-1')?.status).toBe('unknown');
    r.bus.emit('telemetry', { device: r.device('tank-1'), message: { ts: r.now(), seq: 0, values: tankValues(1000) }, receivedAt: r.now() });
    expect(r.registry.view('tank-1')).toMatchObject({ status: 'online', values: { levelMm: 1000 }, valuesTs: r.now() });
    expect(r.updates.at(-1)).toMatchObject({ id: 'tank-1', status: 'online', values: { levelMm: 1000 } });
    r.stop();
  });

  it('marks a device offline after its kind’s silence timeout, not before', () => {
    const r = setup();
    r.bus.emit('event', { device: r.device('cam-1'), message: { ts: r.now(), seq: 0, type: 'motion', phase: 'pulse' }, receivedAt: r.now() });
    r.advance(59_000);
    r.registry.checkSilence();
    expect(r.registry.view('cam-1')?.status).toBe('online');
    r.advance(2_000);
    r.registry.checkSilence();
    expect(r.registry.view('cam-1')?.status).toBe('offline');
    r.stop();
  });

  it('an agent going offline makes only its own devices unknown, not offline', () => {
    const r = setup();
    for (const id of ['cam-1', 'cam-2']) {
      r.bus.emit('state', { device: r.device(id), message: { ts: r.now(), seq: 0, status: 'online' }, receivedAt: r.now() });
    }
    r.bus.emit('agentState', { agentId: 'agent-a', message: { ts: r.now() - 86_400_000, seq: 0, status: 'offline' }, receivedAt: r.now() });
    expect(r.registry.view('cam-1')?.status).toBe('unknown');
    expect(r.registry.view('cam-2')?.status).toBe('online');
    r.stop();
  });

  it('a replayed older reading neither overwrites newer values nor undoes a newer offline state', () => {
    const r = setup();
    const t = r.now();
    r.bus.emit('telemetry', { device: r.device('tank-1'), message: { ts: t, seq: 5, values: tankValues(900) }, receivedAt: t });
    r.bus.emit('state', { device: r.device('tank-1'), message: { ts: t + 10_000, seq: 6, status: 'offline', reason: 'no answer' }, receivedAt: t + 10 });
    // The agent's outbox now delivers an older reading after the state.
    r.bus.emit('telemetry', { device: r.device('tank-1'), message: { ts: t - 60_000, seq: 4, values: tankValues(950) }, receivedAt: t + 20 });
    expect(r.registry.view('tank-1')).toMatchObject({ status: 'offline', values: { levelMm: 900 }, valuesTs: t });
    // A newer reading does bring it back.
    r.bus.emit('telemetry', { device: r.device('tank-1'), message: { ts: t + 20_000, seq: 7, values: tankValues(880) }, receivedAt: t + 30 });
    expect(r.registry.view('tank-1')).toMatchObject({ status: 'online', values: { levelMm: 880 } });
    r.stop();
  });

  it('merges partial values (a camera reports only what changed)', () => {
    const r = setup();
    r.bus.emit('telemetry', { device: r.device('cam-1'), message: { ts: r.now(), seq: 0, values: { panDeg: 10, streamOk: true } }, receivedAt: r.now() });
    r.bus.emit('telemetry', { device: r.device('cam-1'), message: { ts: r.now() + 1, seq: 1, values: { panDeg: 20 } }, receivedAt: r.now() });
    expect(r.registry.view('cam-1')?.values).toEqual({ panDeg: 20, streamOk: true });
    r.stop();
  });

  it('damps flapping: at most one shown change per damping interval, the latest state wins', () => {
    const r = setup(30);
    const state = (status: 'online' | 'offline', ts: number) =>
      r.bus.emit('state', { device: r.device('cam-1'), message: { ts, seq: 0, status }, receivedAt: r.now() });
    state('online', r.now());
    expect(r.registry.view('cam-1')?.status).toBe('online');
    const shown = () => r.updates.filter((u) => u.id === 'cam-1' && u.status !== undefined).map((u) => u.status);
    // A bad link: offline/online every few seconds.
    for (let i = 1; i <= 6; i++) {
      r.advance(4000);
      state(i % 2 ? 'offline' : 'online', r.now());
    }
    expect(shown()).toEqual(['online']);
    r.advance(4000);
    state('offline', r.now());
    r.advance(10_000); // 38 s after the last shown change
    r.registry.checkSilence();
    expect(shown()).toEqual(['online', 'offline']);
    expect(r.registry.view('cam-1')?.status).toBe('offline');
    // It came back and stayed: shown once the interval is over, not before.
    state('online', r.now());
    r.registry.checkSilence();
    expect(shown()).toEqual(['online', 'offline']);
    r.advance(31_000);
    r.registry.checkSilence();
    expect(shown()).toEqual(['online', 'offline', 'online']);
    r.stop();
  });
});
