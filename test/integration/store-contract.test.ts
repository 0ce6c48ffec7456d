/**
 * One suite, two stores: every case runs against SqliteStore and PostgresStore (a real
 * PostgreSQL, test/helpers/postgres.ts), so the PostgreSQL store answers every question as the
 * SQLite one does — users, sessions, audit, incidents and their parts, fire danger days,
 * broadcast jobs and deliveries, transactions, and the refusal of a newer schema. What only
 * PostgreSQL has (timeouts, outages, concurrent migrations) is in store-postgres.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { emptyCounts, type BroadcastStatus } from '../../protocol/broadcasts.js';
import type { FireDangerDay, Incident, IncidentStatus } from '../../protocol/incidents.js';
import type { StoredBroadcastJob, StoredDelivery } from '../../gateway/src/store/broadcasts.js';
import { isUniqueViolation } from '../../gateway/src/store/errors.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import { SqliteStore } from '../../gateway/src/store/sqlite.js';
import type { OperationalStore } from '../../gateway/src/store/store.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

interface Backend {
  name: string;
  start(): Promise<void>;
  /** An empty store for one case. */
  fresh(): Promise<OperationalStore>;
  /** A store on its own new database, and a way to set the database's schema version behind its back. */
  isolated(): Promise<{ open(): OperationalStore; setSchemaVersion(v: number): Promise<void> }>;
  stop(): Promise<void>;
}

function sqliteBackend(): Backend {
  let dir = '';
  let n = 0;
  let current: SqliteStore | undefined;
  return {
    name: 'sqlite',
    async start() {
      dir = mkdtempSync(join(tmpdir(), 'gs-store-contract-'));
    },
    async fresh() {
      current?.close();
      current = new SqliteStore(join(dir, `case-${++n}.sqlite`));
      return current;
    },
    async isolated() {
      const file = join(dir, `isolated-${++n}.sqlite`);
      return {
        open: () => new SqliteStore(file),
        async setSchemaVersion(v) {
          const db = new Database(file);
          db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(v, 'from the future', Date.now());
          db.close();
        },
      };
    },
    async stop() {
      current?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const TABLES = 'users, sessions, audit, incident_numbers, incidents, incident_signals, incident_timeline, incident_dispatches, fire_danger_days, broadcast_jobs, broadcast_deliveries';

function postgresBackend(): Backend {
  let server: PostgresServer;
  let url = '';
  let shared: PostgresStore | undefined;
  const raw = async (dbUrl: string, sql: string, values: unknown[] = []) => {
    const client = await server.connect(dbUrl);
    try {
      await client.query(sql, values);
    } finally {
      await client.end();
    }
  };
  return {
    name: 'postgres',
    async start() {
      server = await startPostgres();
      // A Chinese collation, where 'Bob' sorts between 'alice' and 'carol': the store must still order as SQLite does (bytes).
      url = await server.createDatabase({ icuLocale: 'zh-CN' });
    },
    async fresh() {
      // One store (one worker, one connection) for the suite, emptied before each case.
      shared ??= new PostgresStore({ url, password: server.password });
      await raw(url, `TRUNCATE ${TABLES} RESTART IDENTITY CASCADE`);
      return shared;
    },
    async isolated() {
      const dbUrl = await server.createDatabase({ icuLocale: 'zh-CN' });
      return {
        open: () => new PostgresStore({ url: dbUrl, password: server.password }),
        setSchemaVersion: (v) => raw(dbUrl, 'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [v, 'from the future', Date.now()]),
      };
    },
    async stop() {
      shared?.close();
      await server?.stop();
    },
  };
}

// ---- fixtures -----------------------------------------------------------------------------------

const T0 = Date.parse('2026-11-26T02:00:00Z');

function incident(id: string, over: Partial<Incident> = {}): Incident {
  return {
    id,
    category: 'fire',
    kind: 'camera_smoke',
    severity: 'warning',
    status: 'new',
    title: '烟雾 · 青峰社区',
    createdAt: T0,
    updatedAt: T0,
    firstSignalAt: T0,
    lastSignalAt: T0,
    signalCount: 1,
    devices: ['cam-0001'],
    cameras: [{ id: 'cam-0001', name: '1号塔', lat: 29.41, lon: 105.88, bearingDeg: 123.5, lastSignalAt: T0, signals: 1 }],
    location: { method: 'bearing_line', cameraId: 'cam-0001', from: { lat: 29.41, lon: 105.88 }, to: { lat: 29.42, lon: 105.9 }, bearingDeg: 123.5 },
    grid: 'G01',
    gridName: '一网格',
    community: '青峰社区',
    nearestTanks: [{ id: 'tank-001', name: '1号水池', distanceM: 420.5, status: 'online', levelPercent: 87.25 }],
    nearestPoles: [],
    level: 'grid',
    escalateAt: T0 + 300_000,
    acknowledgedAt: null,
    acknowledgedBy: null,
    closedAt: null,
    closedBy: null,
    closeReason: null,
    ...over,
  };
}

function job(id: string, over: Partial<StoredBroadcastJob> = {}): StoredBroadcastJob {
  return {
    id,
    title: '防火提示',
    status: 'active',
    priority: 'routine',
    reason: null,
    content: { type: 'template', template: 'fire-danger-warning', values: { level: 4 } },
    text: '今日森林火险等级四级，请勿野外用火。',
    clipId: null,
    repeat: 2,
    volume: 80,
    target: { type: 'grids', grids: ['G01', 'G02'] },
    targetLabel: '网格 G01、G02',
    poleCount: 3,
    schedule: { type: 'now' },
    requestedExpiresAt: null,
    incidentId: null,
    retryOf: null,
    createdAt: T0,
    createdBy: 'duty-wang',
    createdByName: '王值班',
    run: 1,
    runStartedAt: T0,
    runExpiresAt: T0 + 600_000,
    nextRunAt: null,
    counts: { ...emptyCounts(), queued: 3 },
    finishedAt: null,
    cancelledAt: null,
    cancelledBy: null,
    cancelReason: null,
    ...over,
  };
}

function delivery(jobId: string, run: number, index: number, pole: string, over: Partial<StoredDelivery> = {}): StoredDelivery {
  return {
    jobId,
    run,
    index,
    pole,
    state: 'queued',
    reason: null,
    attempt: 1,
    sends: 0,
    cmdId: null,
    notBefore: null,
    waitOnline: false,
    sentAt: null,
    lastSentAt: null,
    acceptedAt: null,
    playingAt: null,
    endedAt: null,
    updatedAt: T0,
    ...over,
  };
}

const fireDay = (day: string, over: Partial<FireDangerDay> = {}): FireDangerDay => ({
  day,
  temperatureC: 31.5,
  humidityPercent: 28,
  dewPointC: 10.2,
  rain24hMm: 0,
  stations: 3,
  angstrom: 1.9,
  nesterov: 4200,
  computedLevel: 4,
  manualLevel: null,
  manualBy: null,
  manualNote: null,
  updatedAt: T0,
  ...over,
});

const newUser = (username: string, over: Partial<{ role: 'viewer' | 'grid_worker' | 'duty_officer' | 'admin'; grids: string[] }> = {}) => ({
  username,
  displayName: `${username} 显示名`,
  role: over.role ?? ('viewer' as const),
  grids: over.grids ?? [],
  passwordHash: `scrypt$hash-of-${username}`,
});

// ---- the suite ----------------------------------------------------------------------------------

describe.each([sqliteBackend(), postgresBackend()])('$name store', (backend) => {
  let store: OperationalStore;

  beforeAll(() => backend.start());
  afterAll(() => backend.stop());
  beforeEach(async () => {
    store = await backend.fresh();
  });

  describe('users', () => {
    it('creates, finds and lists users (by username, byte order), never handing out the hash but to findUserByName', () => {
      const created = store.createUser(newUser('alice', { role: 'grid_worker', grids: ['G01', 'G02'] }), T0);
      store.createUser(newUser('Bob'), T0 + 1);
      store.createUser(newUser('carol', { role: 'admin' }), T0 + 2);
      expect(created).toEqual({ id: created.id, username: 'alice', displayName: 'alice 显示名', role: 'grid_worker', grids: ['G01', 'G02'], disabled: false, createdAt: T0 });
      expect(created).not.toHaveProperty('passwordHash');
      expect(store.getUser(created.id)).toEqual(created);
      expect(store.getUser(created.id + 1000)).toBeUndefined();
      expect(store.findUserByName('alice')).toEqual({ ...created, passwordHash: 'scrypt$hash-of-alice' });
      expect(store.findUserByName('nobody')).toBeUndefined();
      const listed = store.listUsers();
      expect(listed.map((u) => u.username)).toEqual(['Bob', 'alice', 'carol']);
      for (const u of listed) expect(u).not.toHaveProperty('passwordHash');
    });

    it('refuses a second user with the same name, with a unique-violation error, and goes on working', () => {
      store.createUser(newUser('alice'), T0);
      let error: unknown;
      try {
        store.createUser(newUser('alice', { role: 'admin' }), T0);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/unique/i);
      expect(isUniqueViolation(error)).toBe(true);
      expect(store.listUsers()).toHaveLength(1);
      expect(store.findUserByName('alice')!.role).toBe('viewer');
      expect(store.createUser(newUser('bob'), T0).username).toBe('bob');
    });

    it('updates only the fields a patch sets', () => {
      const u = store.createUser(newUser('alice'), T0);
      expect(store.updateUser(u.id, {})).toEqual(u);
      expect(store.updateUser(u.id, { displayName: '爱丽丝', role: 'grid_worker', grids: ['G07'] })).toEqual({ ...u, displayName: '爱丽丝', role: 'grid_worker', grids: ['G07'] });
      expect(store.updateUser(u.id, { disabled: true })!.disabled).toBe(true);
      expect(store.updateUser(u.id, { disabled: false })!.disabled).toBe(false);
      store.updateUser(u.id, { passwordHash: 'scrypt$new' });
      expect(store.findUserByName('alice')).toMatchObject({ passwordHash: 'scrypt$new', displayName: '爱丽丝', grids: ['G07'], disabled: false });
      expect(store.updateUser(u.id + 1000, { displayName: 'x' })).toBeUndefined();
    });
  });

  describe('sessions', () => {
    it('finds a session only before it expires, deletes one or all of a user, and purges expired ones', () => {
      const alice = store.createUser(newUser('alice'), T0);
      const bob = store.createUser(newUser('bob'), T0);
      store.createSession({ tokenHash: 'a1', userId: alice.id, createdAt: T0, expiresAt: T0 + 1000 });
      store.createSession({ tokenHash: 'a2', userId: alice.id, createdAt: T0, expiresAt: T0 + 5000 });
      store.createSession({ tokenHash: 'b1', userId: bob.id, createdAt: T0, expiresAt: T0 + 1000 });
      store.createSession({ tokenHash: 'b2', userId: bob.id, createdAt: T0, expiresAt: T0 + 9000 });
      expect(store.findSession('a1', T0 + 999)).toEqual({ tokenHash: 'a1', userId: alice.id, createdAt: T0, expiresAt: T0 + 1000 });
      expect(store.findSession('a1', T0 + 1000)).toBeUndefined();
      expect(store.findSession('zz', T0)).toBeUndefined();
      store.deleteSession('a2');
      expect(store.findSession('a2', T0)).toBeUndefined();
      expect(store.purgeExpiredSessions(T0 + 1000)).toBe(2);
      expect(store.purgeExpiredSessions(T0 + 1000)).toBe(0);
      expect(store.findSession('b2', T0 + 1000)).toBeDefined();
      store.deleteSessionsOf(bob.id);
      expect(store.findSession('b2', T0)).toBeUndefined();
    });

    it('refuses a session of an unknown user (foreign key)', () => {
      expect(() => store.createSession({ tokenHash: 'x', userId: 4242, createdAt: T0, expiresAt: T0 + 1 })).toThrow(/foreign key/i);
    });
  });

  describe('audit', () => {
    it('returns entries newest first (ts, then id), filtered by actor, action and time, up to the limit', () => {
      const a = store.audit({ ts: T0, actor: 'alice', action: 'login', subject: null, detail: {} });
      const b = store.audit({ ts: T0 + 10, actor: 'bob', action: 'user.create', subject: 'carol', detail: { role: 'viewer', grids: ['G01'] } });
      const c = store.audit({ ts: T0 + 10, actor: 'alice', action: 'user.create', subject: 'dave', detail: { nested: { n: 1.5, ok: true } } });
      const d = store.audit({ ts: T0 + 20, actor: 'system', action: 'incident.escalate', subject: 'INC-1', detail: {} });
      expect(b.id).toBeGreaterThan(a.id);
      expect(c).toEqual({ id: c.id, ts: T0 + 10, actor: 'alice', action: 'user.create', subject: 'dave', detail: { nested: { n: 1.5, ok: true } } });
      const ids = (q: Parameters<OperationalStore['listAudit']>[0]) => store.listAudit(q).map((e) => e.id);
      expect(ids({ limit: 10 })).toEqual([d.id, c.id, b.id, a.id]);
      expect(ids({ limit: 2 })).toEqual([d.id, c.id]);
      expect(ids({ actor: 'alice', limit: 10 })).toEqual([c.id, a.id]);
      expect(ids({ action: 'user.create', limit: 10 })).toEqual([c.id, b.id]);
      expect(ids({ from: T0 + 10, to: T0 + 10, limit: 10 })).toEqual([c.id, b.id]);
      expect(ids({ from: T0 + 11, limit: 10 })).toEqual([d.id]);
      expect(ids({ actor: 'alice', action: 'login', to: T0, limit: 10 })).toEqual([a.id]);
      expect(store.listAudit({ actor: 'bob', limit: 1 })[0]).toEqual(b);
    });
  });

  describe('incidents', () => {
    it('numbers incidents per day from 1', () => {
      expect([1, 2, 3].map(() => store.incidents.nextNumber('20261126'))).toEqual([1, 2, 3]);
      expect(store.incidents.nextNumber('20261127')).toBe(1);
      expect(store.incidents.nextNumber('20261126')).toBe(4);
    });

    it('stores an incident whole and replaces it on update', () => {
      const i = incident('INC-20261126-0001');
      store.incidents.insert(i);
      expect(store.incidents.get(i.id)).toEqual(i);
      expect(store.incidents.get('INC-none')).toBeUndefined();
      const acked = { ...i, status: 'acknowledged' as const, updatedAt: T0 + 60_000, acknowledgedAt: T0 + 60_000, acknowledgedBy: 'grid-li', escalateAt: null, location: null, grid: 'G02' };
      store.incidents.update(acked);
      expect(store.incidents.get(i.id)).toEqual(acked);
      expect(store.incidents.list({ grids: ['G02'], limit: 10, offset: 0 }).total).toBe(1);
      expect(() => store.incidents.insert(i)).toThrow();
    });

    it('lists with each filter, newest first (ties by id), counting every match past the page', () => {
      const rows: Array<[string, IncidentStatus, Incident['category'], string | null, number]> = [
        ['INC-A', 'new', 'fire', 'G01', T0],
        ['INC-B', 'dispatched', 'fire', 'G02', T0 + 1000],
        ['INC-C', 'resolved', 'water', 'G01', T0 + 2000],
        ['INC-D', 'false_alarm', 'fire', null, T0 + 3000],
        ['INC-E', 'new', 'device', 'G03', T0 + 3000],
        ['INC-F', 'on_site', 'fire', 'G01', T0 + 4000],
      ];
      for (const [id, status, category, grid, createdAt] of rows) store.incidents.insert(incident(id, { status, category, grid, createdAt, updatedAt: createdAt }));
      const ids = (q: Partial<Parameters<OperationalStore['incidents']['list']>[0]>) => {
        const r = store.incidents.list({ limit: 100, offset: 0, ...q });
        return { ids: r.incidents.map((i) => i.id), total: r.total };
      };
      expect(ids({})).toEqual({ ids: ['INC-F', 'INC-E', 'INC-D', 'INC-C', 'INC-B', 'INC-A'], total: 6 });
      expect(ids({ limit: 2, offset: 1 })).toEqual({ ids: ['INC-E', 'INC-D'], total: 6 });
      expect(ids({ limit: 2, offset: 6 })).toEqual({ ids: [], total: 6 });
      expect(ids({ status: ['new', 'on_site'] })).toEqual({ ids: ['INC-F', 'INC-E', 'INC-A'], total: 3 });
      expect(ids({ status: [] })).toEqual({ ids: ['INC-F', 'INC-E', 'INC-D', 'INC-C', 'INC-B', 'INC-A'], total: 6 });
      expect(ids({ category: 'fire' })).toEqual({ ids: ['INC-F', 'INC-D', 'INC-B', 'INC-A'], total: 4 });
      expect(ids({ grids: ['G01', 'G03'] })).toEqual({ ids: ['INC-F', 'INC-E', 'INC-C', 'INC-A'], total: 4 });
      expect(ids({ grids: [] })).toEqual({ ids: [], total: 0 });
      expect(ids({ from: T0 + 1000, to: T0 + 3000 })).toEqual({ ids: ['INC-E', 'INC-D', 'INC-C', 'INC-B'], total: 4 });
      expect(ids({ status: ['new', 'false_alarm', 'on_site'], category: 'fire', grids: ['G01'], from: T0, to: T0 + 3999, limit: 1 })).toEqual({ ids: ['INC-A'], total: 1 });
    });

    it('gives the open incidents oldest first', () => {
      store.incidents.insert(incident('INC-2', { createdAt: T0 + 2, status: 'acknowledged' }));
      store.incidents.insert(incident('INC-1', { createdAt: T0 + 1, status: 'new' }));
      store.incidents.insert(incident('INC-3', { createdAt: T0 + 3, status: 'resolved' }));
      store.incidents.insert(incident('INC-4', { createdAt: T0 + 1, status: 'dispatched' }));
      store.incidents.insert(incident('INC-5', { createdAt: T0 + 5, status: 'false_alarm' }));
      store.incidents.insert(incident('INC-6', { createdAt: T0 + 6, status: 'on_site' }));
      expect(store.incidents.open().map((i) => i.id)).toEqual(['INC-1', 'INC-4', 'INC-2', 'INC-6']);
    });

    it('keeps signals (latest first, limited), the timeline and the dispatches of each incident', () => {
      store.incidents.insert(incident('INC-1'));
      store.incidents.insert(incident('INC-2'));
      store.incidents.addSignal({ incidentId: 'INC-1', deviceId: 'cam-1', kind: 'camera_smoke', ts: T0, receivedAt: T0 + 5, bearingDeg: 12.25, confidence: 0.875, value: null });
      store.incidents.addSignal({ incidentId: 'INC-1', deviceId: 'cam-2', kind: 'camera_fire', ts: T0 + 10, receivedAt: T0 + 15, bearingDeg: null, confidence: null, value: 63.5 });
      store.incidents.addSignal({ incidentId: 'INC-1', deviceId: 'cam-3', kind: 'camera_smoke', ts: T0 + 10, receivedAt: T0 + 16, bearingDeg: 300, confidence: 0.5, value: null });
      store.incidents.addSignal({ incidentId: 'INC-2', deviceId: 'tank-1', kind: 'tank_low', ts: T0, receivedAt: T0, bearingDeg: null, confidence: null, value: 1 });
      expect(store.incidents.signals('INC-1', 10).map((s) => s.deviceId)).toEqual(['cam-3', 'cam-2', 'cam-1']);
      expect(store.incidents.signals('INC-1', 2).map((s) => s.deviceId)).toEqual(['cam-3', 'cam-2']);
      expect(store.incidents.signals('INC-1', 10)[2]).toEqual({ incidentId: 'INC-1', deviceId: 'cam-1', kind: 'camera_smoke', ts: T0, receivedAt: T0 + 5, bearingDeg: 12.25, confidence: 0.875, value: null });
      expect(store.incidents.signals('INC-none', 10)).toEqual([]);

      const t1 = store.incidents.addTimeline({ incidentId: 'INC-1', ts: T0 + 20, actor: 'system', action: 'created', detail: { signal: 'smoke' } });
      const t2 = store.incidents.addTimeline({ incidentId: 'INC-1', ts: T0 + 10, actor: 'grid-li', action: 'note', detail: { text: '已到场，确认冒烟' } });
      store.incidents.addTimeline({ incidentId: 'INC-2', ts: T0, actor: 'system', action: 'created', detail: {} });
      expect(t2.id).toBeGreaterThan(t1.id);
      expect(store.incidents.timeline('INC-1')).toEqual([t1, t2]);

      const d1 = store.incidents.addDispatch({ incidentId: 'INC-1', ts: T0, level: 'grid', recipient: 'grid-li', channel: 'app', status: 'sent', detail: null });
      const d2 = store.incidents.addDispatch({ incidentId: 'INC-1', ts: T0, level: 'community', recipient: '张主任', channel: 'sms', status: 'failed', detail: 'HTTP 502' });
      expect(store.incidents.dispatches('INC-1')).toEqual([d1, d2]);
      expect(store.incidents.dispatches('INC-2')).toEqual([]);
    });

    it('refuses parts of an incident that does not exist (foreign key)', () => {
      expect(() => store.incidents.addTimeline({ incidentId: 'INC-none', ts: T0, actor: 'system', action: 'created', detail: {} })).toThrow(/foreign key/i);
    });

    it('keeps one fire danger rating per day, most recent first', () => {
      store.incidents.fireDanger.saveDay(fireDay('2026-11-24'));
      store.incidents.fireDanger.saveDay(fireDay('2026-11-26', { computedLevel: 5 }));
      store.incidents.fireDanger.saveDay(fireDay('2026-11-25', { temperatureC: null, computedLevel: null }));
      const manual = fireDay('2026-11-26', { computedLevel: 5, manualLevel: 3, manualBy: 'duty-wang', manualNote: '气象局：三级', updatedAt: T0 + 1 });
      store.incidents.fireDanger.saveDay(manual);
      expect(store.incidents.fireDanger.getDay('2026-11-26')).toEqual(manual);
      expect(store.incidents.fireDanger.getDay('2026-11-01')).toBeUndefined();
      expect(store.incidents.fireDanger.days(10).map((d) => d.day)).toEqual(['2026-11-26', '2026-11-25', '2026-11-24']);
      expect(store.incidents.fireDanger.days(2).map((d) => d.day)).toEqual(['2026-11-26', '2026-11-25']);
      expect(store.incidents.fireDanger.days(10)[1]).toEqual(fireDay('2026-11-25', { temperatureC: null, computedLevel: null }));
    });
  });

  describe('broadcasts', () => {
    it('stores a job whole with its pole list, and rewrites only its mutable fields', () => {
      const j = job('BC-1', { schedule: { type: 'daily', start: '08:00', end: '09:00', until: T0 + 86_400_000 }, requestedExpiresAt: null });
      store.broadcasts.insertJob(j, ['pole-3', 'pole-1', 'pole-2']);
      expect(store.broadcasts.getJob('BC-1')).toEqual(j);
      expect(store.broadcasts.jobPoles('BC-1')).toEqual(['pole-3', 'pole-1', 'pole-2']);
      expect(store.broadcasts.getJob('BC-none')).toBeUndefined();
      expect(store.broadcasts.jobPoles('BC-none')).toEqual([]);
      const done = {
        ...j,
        title: 'not rewritten',
        status: 'cancelled' as const,
        run: 2,
        runStartedAt: T0 + 100,
        runExpiresAt: T0 + 200,
        nextRunAt: T0 + 86_400_000,
        counts: { ...emptyCounts(), done: 2, failed: 1 },
        finishedAt: T0 + 300,
        cancelledAt: T0 + 300,
        cancelledBy: 'duty-wang',
        cancelReason: '误发',
      };
      store.broadcasts.updateJob(done);
      expect(store.broadcasts.getJob('BC-1')).toEqual({ ...done, title: j.title });
      expect(() => store.broadcasts.insertJob(j, [])).toThrow();
    });

    it('lists jobs with each filter, newest first, counting every match past the page', () => {
      const specs: Array<[string, BroadcastStatus, StoredBroadcastJob['priority'], string, string | null, number, Partial<StoredBroadcastJob>]> = [
        ['BC-A', 'finished', 'routine', 'duty-wang', null, T0, { finishedAt: T0 + 500 }],
        ['BC-B', 'cancelled', 'emergency', 'duty-zhao', 'INC-1', T0 + 1000, { cancelledAt: T0 + 1500, finishedAt: T0 + 9999 }],
        ['BC-C', 'active', 'warning', 'duty-wang', 'INC-1', T0 + 2000, {}],
        ['BC-D', 'scheduled', 'routine', 'duty-zhao', null, T0 + 3000, {}],
        ['BC-E', 'finished', 'routine', 'duty-wang', null, T0 + 3000, { finishedAt: T0 + 4000 }],
      ];
      for (const [id, status, priority, createdBy, incidentId, createdAt, over] of specs) {
        store.broadcasts.insertJob(job(id, { status, priority, createdBy, incidentId, createdAt, ...over }), ['pole-1']);
      }
      store.broadcasts.insertDeliveries([delivery('BC-A', 1, 0, 'pole-7'), delivery('BC-C', 1, 0, 'pole-8'), delivery('BC-C', 2, 0, 'pole-7'), delivery('BC-E', 1, 0, 'pole-9')]);
      const ids = (q: Partial<Parameters<OperationalStore['broadcasts']['listJobs']>[0]>) => {
        const r = store.broadcasts.listJobs({ limit: 100, offset: 0, ...q });
        return { ids: r.jobs.map((j) => j.id), total: r.total };
      };
      expect(ids({})).toEqual({ ids: ['BC-E', 'BC-D', 'BC-C', 'BC-B', 'BC-A'], total: 5 });
      expect(ids({ limit: 2, offset: 2 })).toEqual({ ids: ['BC-C', 'BC-B'], total: 5 });
      expect(ids({ status: ['finished', 'cancelled'] })).toEqual({ ids: ['BC-E', 'BC-B', 'BC-A'], total: 3 });
      expect(ids({ priority: 'routine' })).toEqual({ ids: ['BC-E', 'BC-D', 'BC-A'], total: 3 });
      expect(ids({ createdBy: 'duty-zhao' })).toEqual({ ids: ['BC-D', 'BC-B'], total: 2 });
      expect(ids({ incidentId: 'INC-1' })).toEqual({ ids: ['BC-C', 'BC-B'], total: 2 });
      expect(ids({ pole: 'pole-7' })).toEqual({ ids: ['BC-C', 'BC-A'], total: 2 });
      expect(ids({ pole: 'pole-1' })).toEqual({ ids: [], total: 0 });
      expect(ids({ from: T0 + 1000, to: T0 + 2000 })).toEqual({ ids: ['BC-C', 'BC-B'], total: 2 });
      // Ended: cancelled_at wins over finished_at.
      expect(ids({ endedAfter: T0 + 1500 })).toEqual({ ids: ['BC-E', 'BC-B'], total: 2 });
      expect(ids({ endedAfter: T0 + 1501 })).toEqual({ ids: ['BC-E'], total: 1 });
      expect(ids({ status: ['finished'], priority: 'routine', createdBy: 'duty-wang', pole: 'pole-9', limit: 1 })).toEqual({ ids: ['BC-E'], total: 1 });
    });

    it('gives the scheduled and active jobs oldest first', () => {
      store.broadcasts.insertJob(job('BC-3', { status: 'scheduled', createdAt: T0 + 3 }), []);
      store.broadcasts.insertJob(job('BC-1', { status: 'active', createdAt: T0 + 1 }), []);
      store.broadcasts.insertJob(job('BC-2', { status: 'finished', createdAt: T0 + 2 }), []);
      store.broadcasts.insertJob(job('BC-4', { status: 'cancelled', createdAt: T0 + 4 }), []);
      expect(store.broadcasts.openJobs().map((j) => j.id)).toEqual(['BC-1', 'BC-3']);
    });

    it('inserts and updates deliveries by (job, run, index), listed per run in pole order', () => {
      store.broadcasts.insertJob(job('BC-1'), ['pole-a', 'pole-b', 'pole-c']);
      const run1 = [delivery('BC-1', 1, 2, 'pole-c'), delivery('BC-1', 1, 0, 'pole-a', { waitOnline: true, notBefore: T0 + 5 }), delivery('BC-1', 1, 1, 'pole-b')];
      store.broadcasts.insertDeliveries(run1);
      store.broadcasts.insertDeliveries([delivery('BC-1', 2, 0, 'pole-a')]);
      expect(store.broadcasts.deliveries('BC-1', 1)).toEqual([run1[1], run1[2], run1[0]]);
      const sent = delivery('BC-1', 1, 0, 'pole-a', { state: 'playing', attempt: 2, sends: 3, cmdId: 'BC-1.1.0.2', sentAt: T0 + 10, lastSentAt: T0 + 20, acceptedAt: T0 + 30, playingAt: T0 + 40, updatedAt: T0 + 40 });
      const failed = delivery('BC-1', 1, 2, 'pole-c', { state: 'failed', reason: '设备忙', endedAt: T0 + 50, waitOnline: false, updatedAt: T0 + 50 });
      store.broadcasts.saveDeliveries([sent, failed]);
      expect(store.broadcasts.deliveries('BC-1', 1)).toEqual([sent, run1[2], failed]);
      expect(store.broadcasts.deliveries('BC-1', 2)).toEqual([delivery('BC-1', 2, 0, 'pole-a')]);
      expect(store.broadcasts.deliveries('BC-1', 3)).toEqual([]);
      // The same delivery twice in one batch: the later state wins.
      store.broadcasts.saveDeliveries([{ ...sent, state: 'done', endedAt: T0 + 60 }, { ...sent, state: 'expired', endedAt: T0 + 70 }]);
      expect(store.broadcasts.deliveries('BC-1', 1)[0]).toMatchObject({ state: 'expired', endedAt: T0 + 70 });
      expect(() => store.broadcasts.insertDeliveries([delivery('BC-1', 2, 0, 'pole-a')])).toThrow();
    });

    it('writes a large job’s deliveries whole', () => {
      const poles = Array.from({ length: 4500 }, (_, i) => `pole-${String(i).padStart(5, '0')}`);
      store.broadcasts.insertJob(job('BC-BIG', { poleCount: poles.length }), poles);
      store.broadcasts.insertDeliveries(poles.map((p, i) => delivery('BC-BIG', 1, i, p)));
      store.broadcasts.saveDeliveries(poles.map((p, i) => delivery('BC-BIG', 1, i, p, { state: 'done', endedAt: T0 + i })));
      const rows = store.broadcasts.deliveries('BC-BIG', 1);
      expect(rows).toHaveLength(4500);
      expect(rows[4499]).toEqual(delivery('BC-BIG', 1, 4499, 'pole-04499', { state: 'done', endedAt: T0 + 4499 }));
      expect(store.broadcasts.jobPoles('BC-BIG')).toEqual(poles);
    });
  });

  describe('transactions', () => {
    it('writes nothing of a transaction whose function throws, across every part, and rethrows the same error', () => {
      store.createUser(newUser('before'), T0);
      const boom = new Error('boom');
      let thrown: unknown;
      try {
        store.transaction(() => {
          store.createUser(newUser('inside'), T0);
          store.audit({ ts: T0, actor: 'inside', action: 'x', subject: null, detail: {} });
          store.incidents.insert(incident('INC-TX'));
          store.incidents.addTimeline({ incidentId: 'INC-TX', ts: T0, actor: 'system', action: 'created', detail: {} });
          store.broadcasts.insertJob(job('BC-TX'), ['pole-1']);
          store.broadcasts.insertDeliveries([delivery('BC-TX', 1, 0, 'pole-1')]);
          store.incidents.fireDanger.saveDay(fireDay('2026-11-26'));
          throw boom;
        });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBe(boom);
      expect(store.listUsers().map((u) => u.username)).toEqual(['before']);
      expect(store.listAudit({ limit: 10 })).toEqual([]);
      expect(store.incidents.get('INC-TX')).toBeUndefined();
      expect(store.broadcasts.getJob('BC-TX')).toBeUndefined();
      expect(store.broadcasts.listJobs({ pole: 'pole-1', limit: 10, offset: 0 }).total).toBe(0);
      expect(store.incidents.fireDanger.days(10)).toEqual([]);
      // And the store goes on: a transaction that returns commits, and gives back fn's value.
      expect(store.transaction(() => (store.incidents.insert(incident('INC-OK')), store.incidents.nextNumber('d')))).toBe(1);
      expect(store.incidents.get('INC-OK')).toBeDefined();
    });

    it('undoes a nested transaction that throws, keeping the outer one’s work (a savepoint)', () => {
      const result = store.transaction(() => {
        store.createUser(newUser('outer'), T0);
        expect(() =>
          store.transaction(() => {
            store.createUser(newUser('inner'), T0);
            throw new Error('inner fails');
          }),
        ).toThrow('inner fails');
        store.transaction(() => store.createUser(newUser('inner-ok'), T0));
        return 'done';
      });
      expect(result).toBe('done');
      expect(store.listUsers().map((u) => u.username)).toEqual(['inner-ok', 'outer']);
    });

    it('refuses a transaction function that returns a promise, writing nothing', () => {
      expect(() => store.transaction(() => (store.createUser(newUser('async'), T0), Promise.resolve(1)))).toThrow(/promise/i);
      expect(store.findUserByName('async')).toBeUndefined();
    });
  });

  describe('schema', () => {
    it('refuses a database whose schema is newer than this gateway knows', async () => {
      const db = await backend.isolated();
      db.open().close(); // migrates it
      const again = db.open(); // current: opens
      expect(again.ping()).toBe(true);
      again.close();
      await db.setSchemaVersion(99);
      expect(() => db.open()).toThrow(/schema version 99, newer than this gateway knows \([34]\); upgrade the gateway/);
    });
  });
});
