/**
 * The leader's lease on a real PostgreSQL: of several instances trying every interval, exactly one
 * holds the advisory lock; when its session is killed on the server (pg_terminate_backend, as a
 * dead process or an operator ends it) it stops leading at once and another takes over at its next
 * try; a graceful stop hands over within an interval; and a gateway on the PostgreSQL store starts
 * as a follower and leads once it holds the lease (gs_cluster_leader on /metrics); a broadcast
 * created through one instance reaches the other's dashboards.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaderLease, leaseKeyOf } from '../../gateway/src/cluster/lease.js';
import { createLogger } from '../../gateway/src/log.js';
import { PostgresStore, withPassword } from '../../gateway/src/store/postgres.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { startTestGateway, testLogLevel, waitFor, type TestGateway } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

let server: PostgresServer;
let url: string;
let dir: string;
const leases: LeaderLease[] = [];
const clients: pg.Client[] = [];
const gateways: TestGateway[] = [];
const log = createLogger(testLogLevel());

function lease(name: string, key: string, opts: { ttlMs?: number } = {}): LeaderLease {
  const l = new LeaderLease({
    connectionString: withPassword(url, server.password),
    displayUrl: url,
    applicationName: name,
    key,
    intervalMs: 200,
    ttlMs: opts.ttlMs ?? 3000,
    connectTimeoutMs: 2000,
    channels: ['gs_test_channel'],
    log: log.child({ lease: name }),
  });
  leases.push(l);
  return l;
}

/** Every change of `l`, with its time. */
function record(l: LeaderLease): Array<{ leading: boolean; at: number }> {
  const changes: Array<{ leading: boolean; at: number }> = [];
  l.onChange((leading) => changes.push({ leading, at: Date.now() }));
  return changes;
}

async function lockHolders(key: string): Promise<string[]> {
  const check = clients[0]!;
  const r = await check.query(
    "SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = $1::bigint",
    [key],
  );
  return r.rows.map((x: { app: string }) => x.app);
}

beforeAll(async () => {
  server = await startPostgres();
  url = await server.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-cluster-lease-'));
  clients.push(await server.connect(url));
}, 60_000);

afterEach(async () => {
  await Promise.all(leases.splice(0).map((l) => l.stop()));
  for (const gw of gateways.splice(0)) await gw.close();
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the leader lease (pg_try_advisory_lock on a session of its own)', () => {
  it('one of three leads; killing its session hands the lease to another within about an interval', async () => {
    const key = leaseKeyOf('lease-test-a');
    const [a, b, c] = [lease('gs-a', key), lease('gs-b', key), lease('gs-c', key)];
    const changes = [record(a), record(b), record(c)];
    for (const l of [a, b, c]) l.start();
    await waitFor(() => [a, b, c].some((l) => l.leading), { what: 'a leader' });
    await new Promise((r) => setTimeout(r, 600)); // three more tries each: still one
    expect([a, b, c].filter((l) => l.leading)).toHaveLength(1);
    const leader = [a, b, c].find((l) => l.leading)!;
    const leaderName = ['gs-a', 'gs-b', 'gs-c'][[a, b, c].indexOf(leader)]!;
    expect(await lockHolders(key)).toEqual([`${leaderName}-lease`]);

    // The server ends the leader's session, as when its process dies.
    const killedAt = Date.now();
    await clients[0]!.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [`${leaderName}-lease`]);
    await waitFor(() => !leader.leading, { timeoutMs: 3000, what: 'the old leader stepping down' });
    const next = await waitFor(() => [a, b, c].find((l) => l !== leader && l.leading), { timeoutMs: 3000, what: 'another leader' });
    const tookOverMs = Date.now() - killedAt;
    expect(tookOverMs).toBeLessThan(2000); // interval 200 ms
    expect([a, b, c].filter((l) => l.leading)).toEqual([next]);
    // Each change was reported once: the old leader up then down, the new one up.
    const oldChanges = changes[[a, b, c].indexOf(leader)]!;
    expect(oldChanges.map((x) => x.leading)).toEqual([true, false]);
    expect(changes[[a, b, c].indexOf(next)]!.map((x) => x.leading)).toEqual([true]);
    // The old leader reconnects, as a follower.
    await waitFor(() => leader.connected, { what: 'the old leader reconnected' });
    await new Promise((r) => setTimeout(r, 600));
    expect(leader.leading).toBe(false);
    expect([a, b, c].filter((l) => l.leading)).toHaveLength(1);
  });

  it('a graceful stop frees the lock at once; another key is another lease', async () => {
    const key = leaseKeyOf('lease-test-b');
    const [a, b] = [lease('gs-d', key), lease('gs-e', key)];
    const other = lease('gs-f', leaseKeyOf('another-site'));
    a.start();
    await waitFor(() => a.leading, { what: 'a leading' });
    b.start();
    other.start();
    await waitFor(() => other.leading, { what: 'the other site has its own leader' });
    expect(b.leading).toBe(false);
    await a.stop();
    expect(a.leading).toBe(false);
    await waitFor(() => b.leading, { timeoutMs: 2000, what: 'b leading after a stopped' });
  });

  it('delivers notifications to every instance listening', async () => {
    const key = leaseKeyOf('lease-test-c');
    const [a, b] = [lease('gs-g', key), lease('gs-h', key)];
    const got: string[] = [];
    b.onNotification((channel, payload) => got.push(`${channel}:${payload}`));
    a.start();
    b.start();
    await waitFor(() => a.connected && b.connected, { what: 'both connected' });
    await a.notify('gs_test_channel', 'hello');
    await waitFor(() => got.includes('gs_test_channel:hello'), { what: 'the notification' });
  });
});

describe('a gateway on the PostgreSQL store', () => {
  it('starts as a follower, leads once it holds the lease, says so on /metrics, and hands over on stop', async () => {
    const passwordFile = join(dir, 'pg-password');
    writeFileSync(passwordFile, `${server.password}\n`, { mode: 0o600 });
    new PostgresStore({ url, password: server.password }).close(); // the schema, once
    const gw = (name: string) =>
      startTestGateway({
        influxUrl: null,
        gateway: { store: { kind: 'postgres', postgres: { url, passwordFile, applicationName: name } }, cluster: { leaseIntervalMs: 200 } },
      });
    const a = await gw('gw-lease-a');
    gateways.push(a);
    await waitFor(() => a.leadership?.leading, { what: 'a leading' });
    const b = await gw('gw-lease-b');
    gateways.push(b);
    await new Promise((r) => setTimeout(r, 600));
    expect(b.leadership?.leading).toBe(false);
    const metric = async (g: TestGateway, name: string) => {
      const text = await (await fetch(`${g.httpUrl}/metrics`)).text();
      return text.split('\n').filter((l) => l.startsWith(name));
    };
    expect(await metric(a, 'gs_cluster_leader ')).toEqual(['gs_cluster_leader 1']);
    expect(await metric(b, 'gs_cluster_leader ')).toEqual(['gs_cluster_leader 0']);
    expect(await metric(a, 'gs_cluster_leader_changes_total{to="leader"}')).toEqual(['gs_cluster_leader_changes_total{to="leader"} 1']);
    // /ready keeps its meaning: both are ready, leader or not.
    for (const g of [a, b]) expect((await fetch(`${g.httpUrl}/ready`)).status).toBe(200);

    // A broadcast created through the follower runs there, and the leader's dashboards see it too.
    const seen: ServerMessage[] = [];
    const ws = new WebSocket(`${a.httpUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await a.tokenFor('viewer')}` } });
    ws.on('message', (data) => seen.push(JSON.parse(String(data)) as ServerMessage));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    try {
      const res = await b.api('/api/broadcasts', {
        method: 'POST',
        as: 'duty_officer',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ target: { type: 'poles', poles: ['pole-001'] }, content: { type: 'text', text: '森林防火，人人有责。' }, expiresAt: Date.now() + 60_000 }),
      });
      expect(res.status).toBe(201);
      const { broadcast } = (await res.json()) as { broadcast: { id: string } };
      await waitFor(() => seen.some((m) => m.type === 'broadcast.created' && m.broadcast.id === broadcast.id), { what: "the broadcast on the other instance's dashboard" });
    } finally {
      ws.close();
    }

    await a.close();
    gateways.splice(gateways.indexOf(a), 1);
    await waitFor(() => b.leadership?.leading, { timeoutMs: 3000, what: 'b leading after a stopped' });
    expect(await metric(b, 'gs_cluster_leader ')).toEqual(['gs_cluster_leader 1']);
  });

  it('a SQLite gateway is always the leader', async () => {
    const g = await startTestGateway({ influxUrl: null });
    gateways.push(g);
    expect(g.leadership).toBeUndefined();
    const text = await (await fetch(`${g.httpUrl}/metrics`)).text();
    expect(text).toMatch(/^gs_cluster_leader 1$/m);
  });
});
