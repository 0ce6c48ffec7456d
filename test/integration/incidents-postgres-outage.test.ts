/**
 * The incident service on a real PostgreSQL that goes away: stopped while an escalation is due,
 * a table locked so that an escalation's write times out half way, a camera alarm arriving while
 * it is down. The escalation tick must not throw (a throw from a timer ends the gateway process),
 * memory must not run ahead of the store, and the work must be done once the database is back —
 * once. The escalation timer is faked (ticks run when the test says), the service's clock is a
 * variable; the store, its worker thread and PostgreSQL run for real.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { IncidentService } from '../../gateway/src/alerts/incidents.js';
import type { DispatchNotice, Notifier } from '../../gateway/src/alerts/notifiers.js';
import type { Signal } from '../../gateway/src/alerts/rules.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { Bus } from '../../gateway/src/bus.js';
import { createMetrics, type Metrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import type { User } from '../../gateway/src/store/store.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { CONFIG_DIR } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const siteMap = SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), ledger);
const { config } = resolveConfig({ gateway: { alerts: { roster: [{ name: '茶山社区值班', level: 'community', communities: ['茶山社区'], phone: '13800000000' }] } } }, { source: 'test', baseDir: CONFIG_DIR });
const gw = config.gateway!;
const camera = ledger.find((d) => d.kind === 'camera' && d.grid === 'G01')!;
const T0 = Date.parse('2026-11-26T02:00:00Z');
/** Fire: 60 s at the grid level, then the community. */
const GRID_WAIT_MS = gw.alerts.escalation.fire.grid * 1000;

let server: PostgresServer;
let store: PostgresStore;
let url: string;
let clock: number;
let metrics: Metrics;
let notices: DispatchNotice[];
let pushed: ServerMessage[];
let logLines: Array<{ level: number; msg: string; operation?: string }>;
let service: IncidentService;
let worker: User;
let admin: User;

let halted = false;
async function halt(): Promise<void> {
  await server.halt();
  halted = true;
}
async function resume(): Promise<void> {
  await server.resume();
  halted = false;
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function alarm(device: LedgerDevice = camera): Signal {
  return { kind: 'camera_smoke', device, ts: clock, receivedAt: clock, severity: 'critical', bearingDeg: 120, confidence: 0.9, value: null, repeats: 0, clear: false };
}

/** Runs `n` escalation ticks (one a second). Throws if a tick throws, as the real timer would, ending the process. */
function ticks(n: number): void {
  for (let i = 0; i < n; i++) {
    clock += 1000;
    vi.advanceTimersByTime(1000);
  }
}

const storeErrors = async (operation: string) => {
  const line = (await metrics.registry.getSingleMetricAsString('gs_store_errors_total')).split('\n').find((l) => l.includes(`operation="${operation}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
};
const escalations = (id: string) => store.incidents.timeline(id).filter((t) => t.action === 'escalated');
const logged = (msg: RegExp) => logLines.filter((l) => msg.test(l.msg));

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  url = await server.createDatabase();
  store = new PostgresStore({ url, password: server.password, callTimeoutMs: 500 });
  clock = T0;
  metrics = createMetrics();
  notices = [];
  pushed = [];
  logLines = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line) as (typeof logLines)[number]) });
  const bus = new Bus(log);
  const registry = new DeviceRegistry({ config: gw, log, bus, metrics, ledger });
  const recorder: Notifier = { channel: 'test', notify: async (n) => (notices.push(n), []) };
  worker = store.createUser({ username: 'wang', displayName: '王网格员', role: 'grid_worker', grids: ['G01'], passwordHash: 'x' }, T0);
  admin = store.createUser({ username: 'admin', displayName: '管理员', role: 'admin', grids: [], passwordHash: 'x' }, T0);
  service = new IncidentService({ config: gw.alerts, timeZone: 'Asia/Shanghai', log, metrics, registry, store, siteMap, push: { publish: (m) => (pushed.push(m), 1) }, notifiers: [recorder], now: () => clock });
  service.start();
});

afterEach(async () => {
  service.stop();
  vi.useRealTimers();
  if (halted) await resume(); // a test that failed half way
  store.close();
});

describe('the escalation tick on PostgreSQL', () => {
  it('survives PostgreSQL stopping while an escalation is due, and escalates once, when it is back', async () => {
    service.handleSignal(alarm());
    const [incident] = store.incidents.open();
    expect(incident).toMatchObject({ id: 'INC-20261126-0001', level: 'grid', status: 'dispatched' });
    expect(notices.map((n) => n.level)).toEqual(['grid']);

    await halt();
    await until('the store to notice', () => !store.ping());
    clock = T0 + GRID_WAIT_MS; // due now
    expect(() => ticks(10)).not.toThrow();
    expect(await storeErrors('incident_escalation')).toBe(10);
    expect(logged(/operational store unavailable: incident_escalation failed/)).toHaveLength(1); // once, not per tick
    // Nothing half done in memory: still due at the grid level.
    expect(service.openFor(admin)).toMatchObject([{ id: incident!.id, level: 'grid', escalateAt: T0 + GRID_WAIT_MS }]);
    expect(notices).toHaveLength(1);

    await resume();
    await until('the store to reconnect', () => store.ping());
    ticks(1);
    expect(store.incidents.get(incident!.id)).toMatchObject({ level: 'community' });
    ticks(30);
    expect(escalations(incident!.id).map((t) => t.detail.level)).toEqual(['community']);
    expect(store.listAudit({ action: 'incident.escalate', limit: 10 })).toHaveLength(1);
    await vi.waitFor(() => expect(notices.map((n) => [n.level, n.reason])).toEqual([
      ['grid', 'dispatched'],
      ['community', 'escalated'],
    ]));
    expect(logged(/incident_escalation works again/)).toHaveLength(1);
  }, 30_000);

  it('an escalation whose write times out half way (a locked table) is undone in memory and done once the lock is gone', async () => {
    service.handleSignal(alarm());
    const [incident] = store.incidents.open();
    const locker = await server.connect(url);
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE');
    try {
      clock = T0 + GRID_WAIT_MS - 1000;
      // The tick reads the users, moves the incident up in memory, and its UPDATE waits for the lock until the call timeout.
      expect(() => ticks(1)).not.toThrow();
      expect(await storeErrors('incident_escalation')).toBe(1);
      expect(logged(/operational store unavailable: incident_escalation failed/)[0]).toMatchObject({ err: expect.stringMatching(/did not answer within 500 ms/) });
      expect(service.openFor(admin)).toMatchObject([{ level: 'grid', escalateAt: T0 + GRID_WAIT_MS, status: 'dispatched' }]);
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }
    await until('the store to reconnect', () => store.ping());
    expect(store.incidents.get(incident!.id)).toMatchObject({ level: 'grid' }); // the timed-out write was not done
    ticks(1);
    expect(store.incidents.get(incident!.id)).toMatchObject({ level: 'community', escalateAt: clock + gw.alerts.escalation.fire.community * 1000 });
    ticks(10);
    expect(escalations(incident!.id)).toHaveLength(1);
    await vi.waitFor(() => expect(notices.map((n) => n.level)).toEqual(['grid', 'community']));
  }, 30_000);

  it('a camera alarm while PostgreSQL is down raises its incident once it is back, in order with what came after', async () => {
    await halt();
    await until('the store to notice', () => !store.ping());
    expect(() => service.handleSignal(alarm())).not.toThrow();
    clock += 20_000;
    expect(() => service.handleSignal(alarm())).not.toThrow(); // the same fire again: it must join, not make a second incident
    expect(() => ticks(3)).not.toThrow();
    expect(notices).toHaveLength(0);
    expect(logged(/operational store unavailable: incident_signal failed/)).toHaveLength(1);

    await resume();
    await until('the store to reconnect', () => store.ping());
    ticks(1);
    const open = store.incidents.open();
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ signalCount: 2, firstSignalAt: T0, lastSignalAt: T0 + 20_000, status: 'dispatched' });
    expect(pushed.filter((m) => m.type === 'incident' && m.isNew)).toHaveLength(1);
    await vi.waitFor(() => expect(notices.map((n) => [n.level, n.recipients.map((r) => r.name)])).toEqual([['grid', [worker.username]]]));
  }, 30_000);
});
