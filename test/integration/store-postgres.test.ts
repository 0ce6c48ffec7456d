/**
 * What only the PostgreSQL store has, against a real PostgreSQL: its errors, the call timeout
 * (a hung database must not hold the event loop), a connection lost inside a transaction, an
 * outage (ping false, calls failing fast, reconnecting), two gateways migrating one empty
 * database at once, and the cost of one synchronous call. The behaviour both stores share is in
 * store-contract.test.ts.
 */
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresError, StoreTimeoutError, StoreUnavailableError } from '../../gateway/src/store/errors.js';
import { PgBridge } from '../../gateway/src/store/pg-bridge.js';
import { PostgresStore, withPassword } from '../../gateway/src/store/postgres.js';
import { REPO } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

let server: PostgresServer;
let url: string;
const stores: Array<{ close(): void }> = [];

const open = (opts: { callTimeoutMs?: number; applicationName?: string } = {}) => {
  const store = new PostgresStore({ url, password: server.password, ...opts });
  stores.push(store);
  return store;
};
let plain: PostgresStore | undefined;
/** The cases that need no options of their own share one store (each opening starts a worker). */
const shared = () => (plain ??= open());
const newUser = (username: string) => ({ username, displayName: username, role: 'viewer' as const, grids: [], passwordHash: 'scrypt$x' });
/** Blocks this thread, as a long synchronous step inside a transaction would. */
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A TCP proxy to PostgreSQL that can go silent: while frozen it accepts connections and drops
 * every byte both ways, as a dead network path does (no reset, no answer). It runs in a thread of
 * its own: this thread blocks in every store call.
 */
const PROXY = `
  const { parentPort, workerData } = require('node:worker_threads');
  const net = require('node:net');
  let frozen = false;
  const sockets = new Set();
  const proxy = net.createServer((down) => {
    const up = net.connect(workerData.port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => { sockets.delete(s); down.destroy(); up.destroy(); });
    }
    down.on('data', (d) => frozen || up.write(d));
    up.on('data', (d) => frozen || down.write(d));
  });
  proxy.listen(0, '127.0.0.1', () => parentPort.postMessage(proxy.address().port));
  parentPort.on('message', (m) => {
    if (m === 'close') { for (const s of sockets) s.destroy(); proxy.close(); parentPort.close(); return; }
    frozen = m === 'freeze';
    parentPort.postMessage(m);
  });
`;

async function freezableProxy(port: number): Promise<{ port: number; freeze(on: boolean): Promise<void>; close(): Promise<void> }> {
  const worker = new Worker(PROXY, { eval: true, workerData: { port } });
  const next = () => new Promise<unknown>((resolve) => worker.once('message', resolve));
  const proxyPort = (await next()) as number;
  return {
    port: proxyPort,
    async freeze(on) {
      worker.postMessage(on ? 'freeze' : 'thaw');
      await next();
    },
    async close() {
      worker.postMessage('close');
      await new Promise((resolve) => worker.once('exit', resolve));
    },
  };
}

beforeAll(async () => {
  server = await startPostgres();
  url = await server.createDatabase();
});

afterAll(async () => {
  for (const s of stores) s.close();
  await server?.stop();
});

describe('PostgreSQL store', () => {
  it("surfaces PostgreSQL's error, message and SQLSTATE, on the calling thread", () => {
    const store = shared();
    store.createUser(newUser('errors-alice'), 1);
    let error: unknown;
    try {
      store.createUser(newUser('errors-alice'), 2);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PostgresError);
    expect(error).toMatchObject({ code: '23505', constraint: 'users_username_key', message: 'duplicate key value violates unique constraint "users_username_key"' });
    expect((error as Error).stack).toContain('store-postgres.test.ts');
  });

  it('fails the commit of a transaction in which a statement failed, even if the function caught it (PostgreSQL aborts the transaction)', () => {
    const store = shared();
    store.createUser(newUser('aborted-bob'), 1);
    expect(() =>
      store.transaction(() => {
        store.audit({ ts: 1, actor: 'aborted-bob', action: 'x', subject: null, detail: {} });
        try {
          store.createUser(newUser('aborted-bob'), 2);
        } catch {
          // a caller that swallows the error must not believe the rest was committed
        }
      }),
    ).toThrow(/rolled back/);
    expect(store.listAudit({ actor: 'aborted-bob', limit: 10 })).toEqual([]);
  });

  it('gives up on a call after callTimeoutMs (a locked table), throwing a clear error, and recovers once the lock is gone', async () => {
    const store = open({ callTimeoutMs: 400 });
    store.createUser(newUser('timeout-carol'), 1);
    const locker = await server.connect(url);
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE');
    try {
      const t0 = performance.now();
      let error: unknown;
      try {
        store.transaction(() => {
          store.createUser(newUser('timeout-dave'), 1);
          store.incidents.get('INC-1'); // waits for the lock
        });
      } catch (err) {
        error = err;
      }
      const blockedMs = performance.now() - t0;
      expect(error).toBeInstanceOf(StoreTimeoutError);
      expect((error as Error).message).toMatch(/did not answer within 400 ms \(query "SELECT body FROM incidents WHERE id = \$1"\)/);
      expect(blockedMs).toBeGreaterThanOrEqual(390);
      expect(blockedMs).toBeLessThan(1500);
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }
    await until('the store to reconnect', () => store.ping());
    expect(store.findUserByName('timeout-carol')).toBeDefined();
    expect(store.findUserByName('timeout-dave')).toBeUndefined(); // the transaction it was in left nothing
    expect(store.incidents.get('INC-1')).toBeUndefined();
  });

  it('on a database that stops answering: the first call gives up after callTimeoutMs, the next fail at once, all resume when it answers again', async () => {
    const proxy = await freezableProxy(server.port);
    const viaProxy = new URL(url);
    viaProxy.port = String(proxy.port);
    const store = new PostgresStore({ url: viaProxy.toString(), password: server.password, callTimeoutMs: 300, connectTimeoutMs: 2000 });
    stores.push(store);
    try {
      store.createUser(newUser('silent-gina'), 1);
      await proxy.freeze(true);
      let t0 = performance.now();
      expect(() => store.findUserByName('silent-gina')).toThrow(StoreTimeoutError);
      expect(performance.now() - t0).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, 50)); // the worker drops the silent connection
      t0 = performance.now();
      for (let i = 0; i < 20; i++) expect(() => store.findUserByName('silent-gina')).toThrow(StoreUnavailableError);
      expect(store.ping()).toBe(false);
      expect(performance.now() - t0).toBeLessThan(100); // 21 calls, no waiting: the event loop stays free
      await proxy.freeze(false);
      await until('the store to reconnect', () => store.ping());
      expect(store.findUserByName('silent-gina')).toMatchObject({ username: 'silent-gina' });
    } finally {
      await proxy.close();
    }
  });

  it('refuses the rest of a transaction whose connection was lost, and commits nothing of it', async () => {
    const store = open({ applicationName: 'gs-victim' });
    const killer = new PgBridge({ connectionString: withPassword(url, server.password), displayUrl: url, callTimeoutMs: 5000, connectTimeoutMs: 5000, applicationName: 'gs-killer' });
    stores.push(killer);
    let error: unknown;
    try {
      store.transaction(() => {
        store.createUser(newUser('lost-1'), 1);
        killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gs-victim'");
        sleepSync(500); // long enough for the worker to notice and reconnect
        store.createUser(newUser('lost-2'), 1); // must not run on the new connection, outside the transaction
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/lost inside a transaction|terminat/);
    await until('the store to reconnect', () => store.ping());
    expect(store.findUserByName('lost-1')).toBeUndefined();
    expect(store.findUserByName('lost-2')).toBeUndefined();
    store.createUser(newUser('lost-after'), 1);
    expect(store.findUserByName('lost-after')).toBeDefined();
  });

  it('two gateways starting on one empty database: one migrates, the other waits and finds it current', async () => {
    const empty = await server.createDatabase();
    const children = [0, 1].map(() => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/helpers/store-migrate-child.ts'), withPassword(empty, server.password)], {
        cwd: REPO,
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const lines: string[] = [];
      const waiters: Array<() => void> = [];
      createInterface({ input: child.stdout! }).on('line', (l) => {
        lines.push(l);
        for (const w of waiters.splice(0)) w();
      });
      const line = (n: number) =>
        new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('migrate child did not answer in 20 s')), 20_000);
          const check = () => (lines.length > n ? (clearTimeout(timer), resolve(lines[n]!)) : waiters.push(check));
          check();
        });
      return { child, line };
    });
    expect(await Promise.all(children.map((c) => c.line(0)))).toEqual(['ready', 'ready']);
    for (const c of children) c.child.stdin!.write('go\n');
    const results = (await Promise.all(children.map((c) => c.line(1)))).map((l) => JSON.parse(l) as { from?: number; to?: number; error?: string });
    expect(results.filter((r) => r.error)).toEqual([]);
    expect(results.map((r) => `${r.from}->${r.to}`).sort()).toEqual(['0->4', '4->4']);
    const check = await server.connect(empty);
    try {
      expect((await check.query('SELECT version, name FROM schema_migrations ORDER BY version')).rows).toEqual([
        { version: 1, name: 'users, sessions, audit' },
        { version: 2, name: 'incidents, signals, timeline, dispatches' },
        { version: 3, name: 'broadcast jobs and per-pole deliveries' },
        { version: 4, name: 'cluster queue: signals and incident decisions handed to the leader' },
      ]);
    } finally {
      await check.end();
    }
  });

  it('round trip of one synchronous call (blocks the event loop that long)', () => {
    const store = shared();
    const user = store.createUser(newUser('roundtrip-erin'), 1);
    const measure = (fn: () => void) => {
      for (let i = 0; i < 200; i++) fn(); // warm up
      const us: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const t0 = performance.now();
        fn();
        us.push((performance.now() - t0) * 1000);
      }
      us.sort((a, b) => a - b);
      return { p50: Math.round(us[1000]!), p90: Math.round(us[1800]!), p99: Math.round(us[1980]!), max: Math.round(us.at(-1)!) };
    };
    const ping = measure(() => store.ping());
    const getUser = measure(() => store.getUser(user.id));
    process.stdout.write(`${JSON.stringify({ bench: 'store-postgres-sync-call', unit: 'µs', ping, getUser })}\n`);
    // Loose bounds: this is a measurement, not a benchmark gate.
    expect(ping.p50).toBeLessThan(5000);
    expect(getUser.p50).toBeLessThan(5000);
  });

  it('while the database is down: ping false, calls fail fast, opening fails clearly; all back after it restarts', async () => {
    const store = shared();
    store.createUser(newUser('outage-frank'), 1);
    expect(store.ping()).toBe(true);
    await server.halt();
    try {
      await until('ping to turn false', () => !store.ping(), 5000);
      const t0 = performance.now();
      expect(() => store.findUserByName('outage-frank')).toThrow(StoreUnavailableError);
      expect(performance.now() - t0).toBeLessThan(50);
      expect(() => store.findUserByName('outage-frank')).toThrow(/unreachable/);
      expect(() => new PostgresStore({ url, password: server.password, callTimeoutMs: 1000 })).toThrow(/operational store at postgres:\/\/127\.0\.0\.1:\d+\/\S+: .*ECONNREFUSED/);
    } finally {
      await server.resume();
    }
    await until('ping to turn true', () => store.ping());
    expect(store.findUserByName('outage-frank')).toMatchObject({ username: 'outage-frank' });
  });
});
