/**
 * Escalation on schedule, with fake timers: the incident service with a real SQLite store (a
 * temp file, so a second service on the same file is a gateway restart), the real registry and
 * site map. The dashboard push is a recording sink here; the WebSocket path is covered by
 * test/integration/alerts-scenario.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { IncidentService } from '../../gateway/src/alerts/incidents.js';
import type { Notifier, DispatchNotice } from '../../gateway/src/alerts/notifiers.js';
import type { Signal } from '../../gateway/src/alerts/rules.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { Bus } from '../../gateway/src/bus.js';
import { createLogger } from '../../gateway/src/log.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import { SqliteStore } from '../../gateway/src/store/sqlite.js';
import type { OperationalStore, User } from '../../gateway/src/store/store.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { failingStore } from '../helpers/failing-store.js';
import { CONFIG_DIR } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const siteMap = SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), ledger);
const { config } = resolveConfig({ gateway: { alerts: { roster: [{ name: '茶山社区值班', level: 'community', communities: ['茶山社区'], phone: '13800000000' }] } } }, { source: 'test', baseDir: CONFIG_DIR });
const gw = config.gateway!;
const log = createLogger('silent');
const camera = ledger.find((d) => d.kind === 'camera' && d.grid === 'G01')!;
const T0 = Date.parse('2026-11-26T02:00:00Z'); // 10:00 in Chongqing

let dir: string;
let store: SqliteStore;
let worker: User;

function service(notices: DispatchNotice[] = [], pushed: ServerMessage[] = [], operational: OperationalStore = store) {
  const bus = new Bus(log);
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: gw, log, bus, metrics, ledger });
  const recorder: Notifier = { channel: 'test', notify: async (n) => (notices.push(n), []) };
  const s = new IncidentService({
    config: gw.alerts,
    timeZone: 'Asia/Shanghai',
    log,
    metrics,
    registry,
    store: operational,
    siteMap,
    push: { publish: (m) => (pushed.push(m), 1) },
    notifiers: [recorder],
  });
  s.start();
  return s;
}

function alarm(device: LedgerDevice = camera, bearingDeg: number | null = 120): Signal {
  const now = Date.now();
  return { kind: 'camera_smoke', device, ts: now, receivedAt: now, severity: 'critical', bearingDeg, confidence: 0.9, value: null, repeats: 0, clear: false };
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0, toFake: ['Date', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
  dir = mkdtempSync(join(tmpdir(), 'gs-escalation-'));
  store = new SqliteStore(join(dir, 'store.sqlite'));
  worker = store.createUser({ username: 'wang', displayName: '王网格员', role: 'grid_worker', grids: ['G01'], passwordHash: 'x' }, T0);
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
  vi.useRealTimers();
});

describe('escalation', () => {
  it('moves up grid → community → street → district on the fire schedule, and survives a restart', async () => {
    const notices: DispatchNotice[] = [];
    let s = service(notices);
    s.handleSignal(alarm());
    const [incident] = store.incidents.open();
    expect(incident!.id).toBe('INC-20261126-0001');
    expect(incident!.status).toBe('dispatched');
    expect(incident!.level).toBe('grid');
    expect(notices.map((n) => [n.level, n.recipients.map((r) => r.name)])).toEqual([['grid', ['wang']]]);

    // Fire: 60 s at the grid level.
    await vi.advanceTimersByTimeAsync(59_000);
    expect(store.incidents.get(incident!.id)!.level).toBe('grid');
    await vi.advanceTimersByTimeAsync(2_000);
    let now = store.incidents.get(incident!.id)!;
    expect(now.level).toBe('community');
    expect(now.escalateAt).toBe(T0 + 60_000 + 120_000);
    expect(notices.at(-1)).toMatchObject({ level: 'community', reason: 'escalated' });
    expect(notices.at(-1)!.recipients).toEqual([{ name: '茶山社区值班', username: null, phone: '13800000000', role: 'community' }]);

    // The gateway restarts 30 s later; the deadline was stored with the incident.
    s.stop();
    await vi.advanceTimersByTimeAsync(30_000);
    s = service(notices);
    await vi.advanceTimersByTimeAsync(88_000);
    expect(store.incidents.get(incident!.id)!.level).toBe('community');
    await vi.advanceTimersByTimeAsync(2_000);
    now = store.incidents.get(incident!.id)!;
    expect(now.level).toBe('street');
    // The street level is 300 s, then the district, where the chain ends.
    await vi.advanceTimersByTimeAsync(301_000);
    now = store.incidents.get(incident!.id)!;
    expect(now.level).toBe('district');
    expect(now.escalateAt).toBeNull();
    await vi.advanceTimersByTimeAsync(3_600_000);
    const steps = store.incidents.timeline(incident!.id).filter((t) => t.action === 'escalated');
    expect(steps.map((t) => [t.detail.level, t.ts - T0])).toEqual([
      ['community', 60_000],
      ['street', 180_000],
      ['district', 480_000],
    ]);
    expect(store.listAudit({ action: 'incident.escalate', limit: 10 })).toHaveLength(3);
    s.stop();
  });

  it('stops when the grid worker acknowledges, and never fires for a closed incident', async () => {
    const s = service();
    s.handleSignal(alarm());
    const [incident] = store.incidents.open();
    await vi.advanceTimersByTimeAsync(30_000);
    const acked = s.act(incident!.id, 'acknowledge', worker);
    expect(acked.status).toBe('acknowledged');
    expect(acked.escalateAt).toBeNull();
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(store.incidents.get(incident!.id)!.level).toBe('grid');

    // A second fire far away, dismissed before its deadline: no escalation ever.
    const far = ledger.find((d) => d.kind === 'camera' && d.grid !== 'G01' && Math.abs(d.lat - camera.lat) > 0.05)!;
    s.handleSignal(alarm(far, null));
    const second = store.incidents.open().find((i) => i.id !== incident!.id)!;
    const duty = store.createUser({ username: 'li', displayName: '李值班', role: 'duty_officer', grids: [], passwordHash: 'x' }, Date.now());
    s.act(second.id, 'false_alarm', duty, { reason: '炊烟' });
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(store.incidents.timeline(second.id).some((t) => t.action === 'escalated')).toBe(false);
    s.stop();
  });

  it('a grid worker cannot act on another grid, and a false alarm needs a reason', () => {
    const s = service();
    const other = ledger.find((d) => d.kind === 'camera' && d.grid === 'G30')!;
    s.handleSignal(alarm(other, null));
    const [incident] = store.incidents.open();
    expect(() => s.act(incident!.id, 'acknowledge', worker)).toThrow(/no incident/);
    const duty = store.createUser({ username: 'li', displayName: '李值班', role: 'duty_officer', grids: [], passwordHash: 'x' }, Date.now());
    expect(() => s.act(incident!.id, 'false_alarm', duty, { reason: '  ' })).toThrow(/why/);
    s.act(incident!.id, 'false_alarm', duty, { reason: '云雾' });
    // The same camera keeps alarming at the same spot: absorbed, nobody paged again.
    const notices: DispatchNotice[] = [];
    const again = service(notices);
    again.handleSignal(alarm(other, null));
    expect(store.incidents.open()).toHaveLength(0);
    expect(notices).toHaveLength(0);
    expect(store.incidents.get(incident!.id)!.signalCount).toBe(2);
    s.stop();
    again.stop();
  });

  // A commit whose answer never came may have been done (docs/architecture.md, "No call waits for
  // ever"). A stand-in store commits and then throws StoreTimeoutError; the real timeouts and
  // outages are in test/integration/incidents-postgres-outage.test.ts.
  it('an escalation whose commit timed out but was done is not done again, and is announced once', async () => {
    const notices: DispatchNotice[] = [];
    const flaky = failingStore(store);
    const s = service(notices, [], flaky.store);
    s.handleSignal(alarm());
    const [incident] = store.incidents.open();
    flaky.commitTimesOut();
    await vi.advanceTimersByTimeAsync(61_000);
    expect(store.incidents.get(incident!.id)!.level).toBe('community'); // stored, though the commit "failed"
    await vi.advanceTimersByTimeAsync(10_000);
    const steps = store.incidents.timeline(incident!.id).filter((t) => t.action === 'escalated');
    expect(steps.map((t) => [t.detail.level, t.ts - T0])).toEqual([['community', 60_000]]);
    expect(store.incidents.get(incident!.id)!.escalateAt).toBe(T0 + 60_000 + 120_000);
    expect(notices.map((n) => [n.level, n.reason])).toEqual([
      ['grid', 'dispatched'],
      ['community', 'escalated'],
    ]);
    s.stop();
  });
});
