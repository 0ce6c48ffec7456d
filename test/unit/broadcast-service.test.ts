/**
 * The broadcast service on a fake clock: the real registry, store (SQLite), target resolution and
 * state machine, with the MQTT side replaced by a recorder of published commands and acks
 * injected on the bus as ingest would emit them. What the real path does end to end is in
 * test/integration/broadcast-*.test.ts; here are the timings — ack timeouts, retries, expiry,
 * daily runs, coalesced progress, restart — that would take minutes for real.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { resolveConfig } from '../../config/load.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { BroadcastService, type BroadcastContext } from '../../gateway/src/broadcast/service.js';
import { Bus } from '../../gateway/src/bus.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics, type Metrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import { StoreUnavailableError } from '../../gateway/src/store/errors.js';
import { SqliteStore } from '../../gateway/src/store/sqlite.js';
import type { BroadcastRequest, BroadcastServerMessage } from '../../protocol/broadcasts.js';
import type { AckStatus, DeviceCommand } from '../../protocol/payloads.js';
import { failingStore, type FailingStore } from '../helpers/failing-store.js';
import { CONFIG_DIR } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const siteMap = SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), ledger);
const log = createLogger('silent');
const OFFICER = { username: 'duty-wang', displayName: '王值班' };
const MIN = 60_000;
/** A local Shanghai time (UTC+8) as an instant. */
const sh = (iso: string) => Date.parse(`${iso}+08:00`);

interface Harness {
  service: BroadcastService;
  bus: Bus;
  registry: DeviceRegistry;
  store: SqliteStore;
  /** The store the service uses: the SQLite one, behind a switch that makes it fail like PostgreSQL in an outage. */
  flaky: FailingStore;
  metrics: Metrics;
  sent: Array<{ pole: string; command: DeviceCommand; at: number }>;
  pushed: BroadcastServerMessage[];
  close(): void;
}

let dir: string;
let harnesses: Harness[] = [];
let seq = 0;

function build(opts: { storeFile?: string; broadcast?: Record<string, unknown>; ctx?: Partial<BroadcastContext> } = {}): Harness {
  const { config } = resolveConfig(
    // Poles stay online however long the fake clock runs (no telemetry is simulated here).
    { log: { level: 'silent' }, gateway: { availability: { flapDampingSec: 0, silenceTimeoutSec: { voice_pole: 10_000_000 } }, broadcast: { ackTimeoutMs: 5000, maxResends: 2, retryDelayMs: 10_000, maxAttempts: 3, ...opts.broadcast } } },
    { source: 'test', baseDir: CONFIG_DIR },
  );
  const gw = config.gateway!;
  const bus = new Bus(log);
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: gw, log, bus, metrics, ledger });
  const store = new SqliteStore(opts.storeFile ?? ':memory:');
  const flaky = failingStore(store);
  const sent: Harness['sent'] = [];
  const pushed: BroadcastServerMessage[] = [];
  const service = new BroadcastService({
    config: gw.broadcast,
    timeZone: 'Asia/Shanghai',
    log,
    bus,
    metrics,
    registry,
    store: flaky.store,
    site: siteMap,
    ledger,
    sendCommand: async (pole, command) => {
      sent.push({ pole, command, at: Date.now() });
    },
    hub: { publish: (m) => (pushed.push(m as BroadcastServerMessage), 1), onAttach: () => () => undefined },
    ...opts.ctx,
  });
  registry.start();
  service.start();
  const h: Harness = {
    service,
    bus,
    registry,
    store,
    flaky,
    metrics,
    sent,
    pushed,
    close() {
      service.stop();
      registry.stop();
      store.close();
      harnesses = harnesses.filter((x) => x !== h);
    },
  };
  harnesses.push(h);
  return h;
}

const device = (id: string) => ledger.find((d) => d.id === id)!;
function setStatus(h: Harness, id: string, status: 'online' | 'offline') {
  h.bus.emit('state', { device: device(id), message: { ts: Date.now(), seq: ++seq, status }, receivedAt: Date.now() });
}
function ack(h: Harness, id: string, cmdId: string, status: AckStatus, reason?: string) {
  h.bus.emit('ack', { device: device(id), message: { ts: Date.now(), seq: ++seq, cmdId, status, ...(reason ? { reason } : {}) }, receivedAt: Date.now() });
}
/** Advances the fake clock, running timers (the tick, sends, flushes) on the way. */
const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);
const plays = (h: Harness, pole?: string) => h.sent.filter((s) => s.command.name === 'broadcast.play' && (!pole || s.pole === pole));
const stops = (h: Harness) => h.sent.filter((s) => s.command.name === 'broadcast.stop');
const deliveries = (h: Harness, id: string) => Object.fromEntries(h.service.get(id).deliveries.map((d) => [d.pole, d]));
const text = (poles: string[], extra: Partial<BroadcastRequest> = {}): BroadcastRequest => ({
  target: { type: 'poles', poles },
  content: { type: 'text', text: '森林防火，人人有责。' },
  ...extra,
});
const audit = (h: Harness, action: string) => h.store.listAudit({ action, limit: 100 });

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(sh('2025-04-01T10:00:00'));
  dir = mkdtempSync(join(tmpdir(), 'gs-bc-unit-'));
});
afterEach(() => {
  for (const h of [...harnesses]) h.close();
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

describe('a broadcast job', () => {
  it('sends one broadcast.play per pole with the content and expiry; acks take each delivery to done; the job finishes and is audited', async () => {
    const h = build();
    for (const p of ['pole-001', 'pole-002']) setStatus(h, p, 'online');
    const { broadcast } = await h.service.create(text(['pole-001', 'pole-002'], { priority: 'warning', repeat: 2, volume: 85 }), OFFICER);
    expect(broadcast).toMatchObject({ status: 'active', run: 1, poleCount: 2, createdBy: 'duty-wang', createdByName: '王值班', counts: { queued: 2 } });
    await advance(0);
    expect(plays(h).map((s) => [s.pole, s.command])).toEqual([
      ['pole-001', { id: `${broadcast.id}-1-0`, ts: Date.now(), name: 'broadcast.play', params: { priority: 'warning', repeat: 2, text: '森林防火，人人有责。', volume: 85 }, expiresAt: Date.now() + 60 * MIN }],
      ['pole-002', { id: `${broadcast.id}-1-1`, ts: Date.now(), name: 'broadcast.play', params: { priority: 'warning', repeat: 2, text: '森林防火，人人有责。', volume: 85 }, expiresAt: Date.now() + 60 * MIN }],
    ]);
    expect(h.service.get(broadcast.id).broadcast.counts).toMatchObject({ queued: 0, sent: 2 });

    for (const [i, p] of ['pole-001', 'pole-002'].entries()) {
      ack(h, p, `${broadcast.id}-1-${i}`, 'accepted');
      await advance(800);
      ack(h, p, `${broadcast.id}-1-${i}`, 'playing');
    }
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'playing', acceptedAt: sh('2025-04-01T10:00:00'), playingAt: sh('2025-04-01T10:00:00.800') });
    await advance(5000);
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'done');
    expect(h.service.get(broadcast.id).broadcast.status).toBe('active');
    ack(h, 'pole-002', `${broadcast.id}-1-1`, 'done');
    const after = h.service.get(broadcast.id);
    expect(after.broadcast).toMatchObject({ status: 'finished', finishedAt: Date.now(), counts: { done: 2, sent: 0, playing: 0 } });
    expect(after.deliveries.map((d) => [d.pole, d.state, d.sends, d.endedAt])).toEqual([
      ['pole-001', 'done', 1, Date.now()],
      ['pole-002', 'done', 1, Date.now()],
    ]);

    expect(audit(h, 'broadcast.create')).toEqual([
      expect.objectContaining({ actor: 'duty-wang', subject: broadcast.id, detail: expect.objectContaining({ priority: 'warning', poles: 2, text: '森林防火，人人有责。' }) }),
    ]);
    expect(audit(h, 'broadcast.finish')).toEqual([expect.objectContaining({ actor: 'system', subject: broadcast.id, detail: expect.objectContaining({ counts: { done: 2 } }) })]);
    const metric = async (name: string) => (await h.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));
    expect(await metric('gs_broadcast_deliveries_total')).toEqual(['gs_broadcast_deliveries_total{state="done"} 2']);
    expect(await metric('gs_broadcast_jobs_total')).toEqual(['gs_broadcast_jobs_total{priority="warning"} 1']);
    expect(await metric('gs_broadcast_time_to_playing_seconds')).toContain('gs_broadcast_time_to_playing_seconds_count{priority="warning"} 2');

    // The store holds the same as memory (what a restart would see).
    expect(h.store.broadcasts.getJob(broadcast.id)).toMatchObject({ status: 'finished', counts: { done: 2 } });
    expect(h.store.broadcasts.deliveries(broadcast.id, 1).map((d) => d.state)).toEqual(['done', 'done']);
  });

  it('ignores acks that would move a pole backwards, of another pole, or of an earlier attempt', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001']), OFFICER);
    await advance(0);
    const cmd = `${broadcast.id}-1-0`;
    ack(h, 'pole-001', cmd, 'playing');
    ack(h, 'pole-001', cmd, 'accepted'); // late
    expect(deliveries(h, broadcast.id)['pole-001']!.state).toBe('playing');
    ack(h, 'pole-002', cmd, 'done'); // another device claims it
    ack(h, 'pole-001', `${cmd}.2`, 'done'); // an attempt that was never made
    expect(deliveries(h, broadcast.id)['pole-001']!.state).toBe('playing');
    ack(h, 'pole-001', cmd, 'done');
    ack(h, 'pole-001', cmd, 'playing'); // after the end
    ack(h, 'pole-001', cmd, 'failed', 'pole: AMPLIFIER_FAULT');
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'done', reason: null });
  });
});

describe('offline poles and expiry', () => {
  it('an offline pole stays queued, plays when it returns within the expiry, and never after it', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'offline');
    setStatus(h, 'pole-002', 'offline');
    const { broadcast } = await h.service.create(text(['pole-001', 'pole-002'], { expiresAt: Date.now() + 10 * MIN }), OFFICER);
    await advance(5 * MIN);
    expect(plays(h)).toEqual([]);
    expect(h.service.get(broadcast.id).broadcast.counts).toMatchObject({ queued: 2 });

    setStatus(h, 'pole-001', 'online'); // back within the expiry
    await advance(0);
    expect(plays(h).map((s) => s.pole)).toEqual(['pole-001']);

    await advance(5 * MIN + 1000); // past the expiry
    expect(deliveries(h, broadcast.id)['pole-002']).toMatchObject({ state: 'expired', reason: 'the pole was offline until the expiry', sends: 0 });
    setStatus(h, 'pole-002', 'online'); // back too late
    await advance(10_000);
    expect(plays(h, 'pole-002')).toEqual([]);
  });

  it('a pole back online gets what waited for it highest priority first', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'offline');
    const routine = await h.service.create(text(['pole-001']), OFFICER);
    const emergency = await h.service.create(text(['pole-001'], { priority: 'emergency', reason: '山火' }), OFFICER);
    const warning = await h.service.create(text(['pole-001'], { priority: 'warning' }), OFFICER);
    await advance(2000);
    expect(plays(h)).toEqual([]);
    setStatus(h, 'pole-001', 'online');
    await advance(0);
    expect(plays(h).map((s) => s.command.id)).toEqual([`${emergency.broadcast.id}-1-0`, `${warning.broadcast.id}-1-0`, `${routine.broadcast.id}-1-0`]);
  });

  it('a command not answered is sent again with the same id, a bounded number of times, then waits for the pole to be heard', async () => {
    const h = build({ broadcast: { ackTimeoutMs: 5000, maxResends: 2 } });
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001']), OFFICER);
    await advance(0);
    await advance(5000);
    await advance(5000);
    await advance(5000);
    await advance(5000);
    const ids = plays(h).map((s) => s.command.id);
    expect(ids).toEqual([`${broadcast.id}-1-0`, `${broadcast.id}-1-0`, `${broadcast.id}-1-0`]);
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'queued', sends: 3, reason: 'no answer from the pole’s agent; waiting for the pole to be heard online' });
    // The agent comes back (its poles are heard again): the same command goes once more, and this time it is answered.
    setStatus(h, 'pole-001', 'offline');
    setStatus(h, 'pole-001', 'online');
    await advance(0);
    expect(plays(h).map((s) => s.command.id)).toHaveLength(4);
    expect(plays(h).at(-1)!.command.id).toBe(`${broadcast.id}-1-0`);
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'accepted');
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'playing');
    expect(deliveries(h, broadcast.id)['pole-001']!.state).toBe('playing');
  });

  it('a pole its agent cannot reach gets new attempts (new command ids) after a doubling delay, bounded; a refusal is final', async () => {
    const h = build({ broadcast: { retryDelayMs: 10_000, maxAttempts: 3 } });
    for (const p of ['pole-001', 'pole-002']) setStatus(h, p, 'online');
    const { broadcast } = await h.service.create(text(['pole-001', 'pole-002']), OFFICER);
    await advance(0);
    const id = `${broadcast.id}-1-0`;
    ack(h, 'pole-001', id, 'failed', 'pole offline: connection refused');
    ack(h, 'pole-002', `${broadcast.id}-1-1`, 'rejected', 'pole refused: UNKNOWN_CLIP: no clip');
    expect(deliveries(h, broadcast.id)['pole-002']).toMatchObject({ state: 'failed', reason: 'rejected: pole refused: UNKNOWN_CLIP: no clip' });
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'queued', attempt: 2, reason: 'pole offline: connection refused' });
    await advance(9000);
    expect(plays(h, 'pole-001')).toHaveLength(1);
    await advance(2000);
    expect(plays(h, 'pole-001').map((s) => s.command.id)).toEqual([id, `${id}.2`]);
    ack(h, 'pole-001', id, 'playing'); // the first attempt cannot come back to life
    ack(h, 'pole-001', `${id}.2`, 'failed', 'pole busy: BUSY: a emergency broadcast is playing');
    await advance(19_000); // the second retry waits twice as long
    expect(plays(h, 'pole-001')).toHaveLength(2);
    await advance(2000);
    expect(plays(h, 'pole-001')).toHaveLength(3);
    ack(h, 'pole-001', `${id}.3`, 'failed', 'pole offline: connection refused');
    await advance(11_000);
    expect(plays(h, 'pole-001').map((s) => s.command.id)).toEqual([id, `${id}.2`, `${id}.3`]);
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'failed', attempt: 3, reason: 'pole offline: connection refused' });
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'finished', counts: { failed: 2 } });
  });

  it('a lost answer from the pole is tried again for an emergency, but not for a routine broadcast (it may have played)', async () => {
    const h = build({ broadcast: { retryDelayMs: 1000 } });
    setStatus(h, 'pole-001', 'online');
    setStatus(h, 'pole-002', 'online');
    const routine = await h.service.create(text(['pole-001']), OFFICER);
    const emergency = await h.service.create(text(['pole-002'], { priority: 'emergency', reason: '山火' }), OFFICER);
    await advance(0);
    ack(h, 'pole-001', `${routine.broadcast.id}-1-0`, 'failed', 'pole offline: no answer within 3000 ms');
    ack(h, 'pole-002', `${emergency.broadcast.id}-1-0`, 'failed', 'pole offline: no answer within 3000 ms');
    await advance(1500);
    expect(deliveries(h, routine.broadcast.id)['pole-001']).toMatchObject({ state: 'failed', reason: 'pole offline: no answer within 3000 ms (the pole may have played it: its answer was lost)' });
    expect(plays(h, 'pole-001')).toHaveLength(1);
    expect(plays(h, 'pole-002').map((s) => s.command.id)).toEqual([`${emergency.broadcast.id}-1-0`, `${emergency.broadcast.id}-1-0.2`]);
  });

  it('an ack delivered late (the agent’s uplink was down) corrects an expiry the gateway decided', async () => {
    const h = build({ broadcast: { ackTimeoutMs: 5000, maxResends: 0 } });
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001'], { expiresAt: Date.now() + 2 * MIN }), OFFICER);
    await advance(2 * MIN + 10_000);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'finished', counts: { expired: 1 } });
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'playing');
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'done');
    expect(deliveries(h, broadcast.id)['pole-001']!.state).toBe('done');
    await advance(100);
    expect(h.store.broadcasts.getJob(broadcast.id)!.counts).toMatchObject({ done: 1, expired: 0 });
  });
});

describe('cancel', () => {
  it('stops the poles that have the broadcast, cancels the rest, re-stops a pole that reports it started anyway, and is audited', async () => {
    const h = build();
    for (const p of ['pole-001', 'pole-002']) setStatus(h, p, 'online');
    setStatus(h, 'pole-003', 'offline');
    const { broadcast } = await h.service.create(text(['pole-001', 'pole-002', 'pole-003']), OFFICER);
    await advance(0);
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'playing');
    const cancelled = h.service.cancel(broadcast.id, { username: 'duty-li', displayName: '李值班' }, '误发');
    expect(cancelled).toMatchObject({ status: 'cancelled', cancelledBy: 'duty-li', cancelReason: '误发', counts: { cancelled: 3 } });
    await advance(0);
    expect(stops(h).map((s) => [s.pole, s.command.params])).toEqual([
      ['pole-001', { cmdId: `${broadcast.id}-1-0` }],
      ['pole-002', { cmdId: `${broadcast.id}-1-1` }],
    ]);
    expect(deliveries(h, broadcast.id)['pole-003']).toMatchObject({ state: 'cancelled', reason: 'cancelled by duty-li' });
    expect(deliveries(h, broadcast.id)['pole-001']).toMatchObject({ state: 'cancelled', reason: 'cancelled by duty-li (stop sent)' });
    // pole-002 had the play before the stop: it reports it started; it is stopped again. Its later "done" changes nothing.
    ack(h, 'pole-002', `${broadcast.id}-1-1`, 'playing');
    expect(stops(h).map((s) => s.command.id)).toEqual([`${broadcast.id}-1-0.stop1`, `${broadcast.id}-1-1.stop1`, `${broadcast.id}-1-1.stop2`]);
    ack(h, 'pole-002', `${broadcast.id}-1-1`, 'done', 'stopped before the end');
    expect(deliveries(h, broadcast.id)['pole-002']!.state).toBe('cancelled');
    setStatus(h, 'pole-003', 'online');
    await advance(60_000);
    expect(plays(h, 'pole-003')).toEqual([]);
    expect(audit(h, 'broadcast.cancel')).toEqual([
      expect.objectContaining({ actor: 'duty-li', subject: broadcast.id, detail: expect.objectContaining({ reason: '误发', stopsSent: 2 }) }),
    ]);
    expect(() => h.service.cancel(broadcast.id, OFFICER)).toThrow(/already been cancelled/);
    expect(h.pushed.at(-1)).toMatchObject({ type: 'broadcast.finished', broadcast: { id: broadcast.id, status: 'cancelled' } });
  });
});

describe('schedules', () => {
  it('a daily broadcast runs in its window each day, each run expiring at the window’s end', async () => {
    vi.setSystemTime(sh('2025-04-01T07:00:00'));
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(
      text(['pole-001'], { schedule: { type: 'daily', start: '08:00', end: '09:00', until: sh('2025-04-03T12:00:00') } }),
      OFFICER,
    );
    expect(broadcast).toMatchObject({ status: 'scheduled', run: 0, nextRunAt: sh('2025-04-01T08:00:00') });
    await advance(59 * MIN);
    expect(plays(h)).toEqual([]);
    await advance(MIN + 10); // sends go out on the turn after the tick
    expect(plays(h).map((s) => [s.command.id, s.command.expiresAt])).toEqual([[`${broadcast.id}-1-0`, sh('2025-04-01T09:00:00')]]);
    expect(plays(h)[0]!.at - sh('2025-04-01T08:00:00')).toBeLessThan(20);
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'accepted');
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'playing');
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'done');
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'scheduled', run: 1, counts: { done: 1 }, nextRunAt: sh('2025-04-02T08:00:00') });
    expect(h.pushed.filter((m) => m.type === 'broadcast.updated').map((m) => m.type === 'broadcast.updated' && m.broadcast.status)).toEqual(['active', 'scheduled']);

    // Day two: the pole is offline through the window: the run expires at 09:00, nothing is played late.
    setStatus(h, 'pole-001', 'offline');
    vi.setSystemTime(sh('2025-04-02T07:59:59'));
    await advance(2000);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'active', run: 2 });
    await advance(61 * MIN);
    expect(h.service.get(broadcast.id).deliveries[0]).toMatchObject({ run: 2, state: 'expired' });
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'scheduled', nextRunAt: sh('2025-04-03T08:00:00') });
    setStatus(h, 'pole-001', 'online');
    await advance(1000);
    expect(plays(h)).toHaveLength(1);
    // Run 1 is still on record.
    expect(h.service.get(broadcast.id, 1).deliveries[0]).toMatchObject({ run: 1, state: 'done' });

    // Day three is the last (until is at noon); then the job is finished.
    vi.setSystemTime(sh('2025-04-03T08:00:00'));
    await advance(2000);
    expect(plays(h).map((s) => s.command.id)).toEqual([`${broadcast.id}-1-0`, `${broadcast.id}-3-0`]);
    ack(h, 'pole-001', `${broadcast.id}-3-0`, 'done');
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'finished', run: 3 });
    expect(audit(h, 'broadcast.run_end').map((a) => a.detail.run)).toEqual([2, 1]);
  });

  it('a broadcast at a time waits for it', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001'], { schedule: { type: 'at', at: sh('2025-04-01T18:00:00') } }), OFFICER);
    expect(broadcast).toMatchObject({ status: 'scheduled', nextRunAt: sh('2025-04-01T18:00:00') });
    vi.setSystemTime(sh('2025-04-01T17:59:58'));
    await advance(1000);
    expect(plays(h)).toEqual([]);
    await advance(1010);
    expect(plays(h).map((s) => s.command.expiresAt)).toEqual([sh('2025-04-01T18:30:00')]);
  });
});

// The store failing as PostgreSQL's does (StoreUnavailableError at once while it is down; a
// commit that times out after it was done) through a stand-in switch on the SQLite store; the real
// outage of PostgreSQL is in test/integration/incidents-postgres-outage.test.ts and
// gateway-postgres.test.ts.
describe('the operational store failing', () => {
  const storeErrors = async (h: Harness, operation: string) =>
    Number((await h.metrics.registry.getSingleMetricAsString('gs_store_errors_total')).split('\n').find((l) => l.includes(`operation="${operation}"`))?.split(' ').at(-1) ?? 0);

  it('a scheduled run that comes due while the store is down starts once it answers; the tick never throws', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001'], { schedule: { type: 'at', at: Date.now() + 10 * MIN } }), OFFICER);
    h.flaky.down = true;
    await advance(12 * MIN); // rejects if a timer throws, as the process would end
    expect(plays(h)).toEqual([]);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'scheduled', run: 0 });
    expect(await storeErrors(h, 'broadcast_run')).toBeGreaterThanOrEqual(100);

    h.flaky.down = false;
    await advance(1010);
    expect(plays(h).map((s) => [s.command.id, s.command.expiresAt])).toEqual([[`${broadcast.id}-1-0`, sh('2025-04-01T10:40:00')]]);
    expect(h.store.broadcasts.getJob(broadcast.id)).toMatchObject({ status: 'active', run: 1 });
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'done');
    await advance(1000);
    expect(h.store.broadcasts.getJob(broadcast.id)).toMatchObject({ status: 'finished', run: 1, counts: { done: 1 } });
    expect(plays(h)).toHaveLength(1);
  });

  it('a run start whose commit timed out but was done carries on from the store: one run, one play', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001'], { schedule: { type: 'at', at: Date.now() + 10 * MIN } }), OFFICER);
    await advance(10 * MIN - 1000);
    h.flaky.commitTimesOut();
    await advance(1000); // the run's start is committed, and the service is told it failed
    await advance(2010);
    expect(h.store.broadcasts.deliveries(broadcast.id, 2)).toEqual([]);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'active', run: 1 });
    expect(plays(h).map((s) => s.command.id)).toEqual([`${broadcast.id}-1-0`]);
  });

  it('the end of a run the store refuses is written on a later tick; the acks that ended it are kept', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001']), OFFICER);
    await advance(100); // sent, and that written
    h.flaky.down = true;
    ack(h, 'pole-001', `${broadcast.id}-1-0`, 'done');
    await advance(5000);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'active', counts: { done: 1 } });
    expect(h.store.broadcasts.getJob(broadcast.id)).toMatchObject({ status: 'active', counts: { sent: 1 } });
    h.flaky.down = false;
    await advance(1000);
    expect(h.store.broadcasts.getJob(broadcast.id)).toMatchObject({ status: 'finished', counts: { done: 1 } });
    expect(h.store.broadcasts.deliveries(broadcast.id, 1)).toMatchObject([{ state: 'done' }]);
    expect(audit(h, 'broadcast.finish')).toHaveLength(1);
  });

  it('a cancel the store refuses changes nothing and stops no pole', async () => {
    const h = build();
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create(text(['pole-001']), OFFICER);
    await advance(0);
    h.flaky.down = true;
    expect(() => h.service.cancel(broadcast.id, OFFICER, '误发')).toThrow(StoreUnavailableError);
    await advance(0);
    expect(stops(h)).toEqual([]);
    expect(h.service.get(broadcast.id).broadcast).toMatchObject({ status: 'active', counts: { sent: 1 } });
    h.flaky.down = false;
    expect(h.service.cancel(broadcast.id, OFFICER, '误发')).toMatchObject({ status: 'cancelled', counts: { cancelled: 1 } });
    await advance(100);
    expect(stops(h)).toHaveLength(1);
    expect(h.store.broadcasts.deliveries(broadcast.id, 1)).toMatchObject([{ state: 'cancelled' }]);
  });
});

describe('progress on the WebSocket', () => {
  it('is coalesced per job: a burst of acks is one message, counts in every message, the end never coalesced away', async () => {
    const h = build({ broadcast: { progressIntervalMs: 250 } });
    const poles = ledger.filter((d) => d.kind === 'voice_pole').slice(0, 40).map((d) => d.id);
    for (const p of poles) setStatus(h, p, 'online');
    const { broadcast } = await h.service.create(text(poles), OFFICER);
    await advance(0);
    h.pushed.length = 0;
    poles.forEach((p, i) => ack(h, p, `${broadcast.id}-1-${i}`, 'accepted'));
    poles.forEach((p, i) => ack(h, p, `${broadcast.id}-1-${i}`, 'playing'));
    await advance(1000);
    const progress = () => h.pushed.filter((m): m is Extract<BroadcastServerMessage, { type: 'broadcast.progress' }> => m.type === 'broadcast.progress');
    expect(progress()).toHaveLength(1);
    expect(progress()[0]).toMatchObject({ id: broadcast.id, run: 1, total: 40, counts: { playing: 40, accepted: 0, sent: 0 } });
    expect(progress()[0]!.changes).toHaveLength(40);
    expect(progress()[0]!.changes[0]).toEqual([poles[0], 'playing']);

    // 40 dones spread over 400 ms: at most one message per 250 ms, each with the counts so far.
    for (const [i, p] of poles.entries()) {
      ack(h, p, `${broadcast.id}-1-${i}`, 'done');
      await advance(10);
    }
    const done = progress().slice(1);
    expect(done.length).toBeGreaterThanOrEqual(2);
    expect(done.length).toBeLessThanOrEqual(3);
    expect(done.map((m) => m.counts.done)).toEqual([...done.map((m) => m.counts.done)].sort((a, b) => a - b));
    expect(done.at(-1)!.counts.done).toBe(40);
    const finished = h.pushed.findIndex((m) => m.type === 'broadcast.finished');
    expect(finished).toBeGreaterThan(h.pushed.indexOf(done.at(-1)!));
    expect(h.pushed[finished]).toMatchObject({ broadcast: { status: 'finished', counts: { done: 40 } } });
  });
});

describe('restart', () => {
  it('resumes jobs from the store: a queued pole is sent, an unanswered command re-sent with the same id, a scheduled job runs', async () => {
    const file = join(dir, 'store.sqlite');
    const h1 = build({ storeFile: file });
    setStatus(h1, 'pole-001', 'online');
    setStatus(h1, 'pole-002', 'offline');
    const now = await h1.service.create(text(['pole-001', 'pole-002']), OFFICER);
    const later = await h1.service.create(text(['pole-003'], { schedule: { type: 'at', at: Date.now() + 10 * MIN } }), OFFICER);
    await advance(100);
    expect(plays(h1).map((s) => s.command.id)).toEqual([`${now.broadcast.id}-1-0`]);
    h1.close();

    // A new gateway on the same store: nothing heard from any pole yet (unknown, not offline).
    const h2 = build({ storeFile: file });
    await advance(0);
    expect(h2.service.get(now.broadcast.id).deliveries.map((d) => d.state)).toEqual(['sent', 'sent']);
    expect(plays(h2).map((s) => s.command.id)).toEqual([`${now.broadcast.id}-1-1`]);
    await advance(5000);
    // Both unanswered after the ack timeout: the same ids again.
    expect(plays(h2).map((s) => s.command.id)).toEqual([`${now.broadcast.id}-1-1`, `${now.broadcast.id}-1-0`, `${now.broadcast.id}-1-1`]);
    ack(h2, 'pole-001', `${now.broadcast.id}-1-0`, 'playing');
    expect(h2.service.get(now.broadcast.id).deliveries[0]!.state).toBe('playing');

    await advance(10 * MIN);
    expect(plays(h2, 'pole-003').map((s) => s.command.id)).toEqual([`${later.broadcast.id}-1-0`]);
  });
});

describe('refusals', () => {
  it('a dry run stores and sends nothing; an emergency needs a reason; an unknown clip or template is named', async () => {
    const h = build();
    const preview = await h.service.create(text(['pole-001', 'pole-002']), OFFICER, { dryRun: true });
    expect(preview.poles!.map((p) => p.id)).toEqual(['pole-001', 'pole-002']);
    expect(preview.broadcast).toMatchObject({ status: 'active', counts: { queued: 2 } });
    await advance(1000);
    expect(h.sent).toEqual([]);
    expect(h.store.broadcasts.listJobs({ limit: 10, offset: 0 }).total).toBe(0);

    await expect(h.service.create(text(['pole-001'], { priority: 'emergency' }), OFFICER)).rejects.toMatchObject({ code: 'BROADCAST_REASON_REQUIRED' });
    await expect(h.service.create({ ...text(['pole-001']), content: { type: 'template', template: 'evacuation-order', values: { area: '北坡' } } }, OFFICER)).rejects.toMatchObject({
      code: 'BROADCAST_REASON_REQUIRED', // the template's priority is emergency
    });
    await expect(h.service.create({ ...text(['pole-001']), content: { type: 'clip', clipId: 'nope-01' } }, OFFICER)).rejects.toThrow(/no clip "nope-01" on the poles/);
    await expect(h.service.create({ ...text(['pole-001']), content: { type: 'template', template: 'nope' } }, OFFICER)).rejects.toThrow(/no template "nope"/);
    expect(h.sent).toEqual([]);
  });

  it('templates take current values from the provider', async () => {
    const h = build({ ctx: { templateValues: () => ({ fireDangerLevel: 4, fireDangerName: '高火险' }) } });
    setStatus(h, 'pole-001', 'online');
    const { broadcast } = await h.service.create({ ...text(['pole-001']), content: { type: 'template', template: 'fire-danger-warning' } }, OFFICER);
    expect(broadcast).toMatchObject({ priority: 'warning', title: '森林火险预警' });
    expect(broadcast.text).toContain('森林火险等级为4级，高火险。');
    await advance(0);
    expect(plays(h)[0]!.command.params.text).toBe(broadcast.text);
  });
});
