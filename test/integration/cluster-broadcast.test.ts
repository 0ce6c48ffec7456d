/**
 * Broadcast jobs under the lease: two gateway processes on Mosquitto ($share) and one PostgreSQL,
 * voice poles simulated by an MQTT client that answers each `broadcast.play` as a pole's agent
 * does (accepted, playing, done). The broker splits the poles' acks between the instances.
 *
 * - A broadcast created through the FOLLOWER's API is run by the leader: every pole gets one
 *   command (none re-sent: the acks the follower ingests reach the leader through the cluster
 *   queue), the job completes, and both instances' dashboards see each pole's progress.
 * - A pole offline when a broadcast starts gets it when it is heard online again, whichever
 *   instance's share of the broker brought its state (a peer's status change reaches the leader).
 * - A broadcast scheduled on the leader, which is then killed with SIGKILL before the run, is run
 *   by the new leader at its time, once.
 * - While nobody leads (the test holds the lease), a broadcast asked of an instance is answered
 *   503 NO_LEADER with Retry-After, and not created later.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../gateway/src/security/secrets.js';
import { PostgresStore } from '../../gateway/src/store/postgres.js';
import type { BroadcastDelivery, BroadcastJob } from '../../protocol/broadcasts.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import { topics } from '../../protocol/topics.js';
import type { ServerMessage } from '../../protocol/ws.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { isLeader, leaderOf, liveDashboard, signIn } from '../helpers/cluster.js';
import { waitFor } from '../helpers/gateway.js';
import { startMosquitto, type MosquittoServer } from '../helpers/mosquitto.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const POLES = ['pole-001', 'pole-002', 'pole-003'];
const LEASE_KEY = 0x47534342;
const OFFICER = { username: 'cb-officer', displayName: '值班员', role: 'duty_officer', grids: [] as string[], password: 'cb-officer-password' };

let pgServer: PostgresServer;
let broker: MosquittoServer;
let url: string;
let dir: string;
let passwordFile: string;
let configUsers: Array<Record<string, unknown>>;
let holder: pg.Client;
const processes: GatewayProcess[] = [];
const sockets: WebSocket[] = [];
let poles: MqttClient;
/** Every broadcast.play a pole received, in order: [pole, command id]. */
const plays: Array<[string, string]> = [];

const configDoc = (name: string) => ({
  log: { level: 'warn' },
  gateway: {
    // sessionExpirySec 0: a killed instance's share of the acks is not kept for it.
    mqtt: { mode: 'external', external: { url: broker.url, clientId: name, shareGroup: 'gs-cb', sessionExpirySec: 0, reconnectMinMs: 100, reconnectMaxMs: 1000 } },
    http: { host: '127.0.0.1', port: 0 },
    influx: { enabled: false },
    push: { flushIntervalMs: 50 },
    availability: { flapDampingSec: 0 },
    dataDir: join(dir, name),
    store: { kind: 'postgres', postgres: { url, passwordFile, callTimeoutMs: 2000, applicationName: name } },
    cluster: { leaseKey: LEASE_KEY, leaseIntervalMs: 250, leaseTtlMs: 5000, actionTimeoutMs: 2000, queuePollMs: 500 },
    auth: { users: configUsers },
    // No resend within a run here: a pole answers at once, so one command per pole is all it takes.
    broadcast: { ackTimeoutMs: 8000, tickMs: 100, progressIntervalMs: 100 },
  },
});

async function start(name: string): Promise<GatewayProcess> {
  const p = await spawnGateway(configDoc(name));
  processes.push(p);
  return p;
}

async function metric(p: GatewayProcess, pattern: RegExp): Promise<number> {
  const m = pattern.exec(await (await fetch(`${p.httpUrl}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

async function token(p: GatewayProcess): Promise<string> {
  return signIn(p, OFFICER.username, OFFICER.password);
}

async function api(p: GatewayProcess, path: string, body?: unknown): Promise<Response> {
  return fetch(`${p.httpUrl}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${await token(p)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function job(p: GatewayProcess, id: string): Promise<{ broadcast: BroadcastJob; deliveries: BroadcastDelivery[] }> {
  const res = await api(p, `/api/broadcasts/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as { broadcast: BroadcastJob; deliveries: BroadcastDelivery[] };
}

/** A signed-in dashboard on one instance: every message it was sent. */
async function dashboard(p: GatewayProcess): Promise<ServerMessage[]> {
  return liveDashboard(p, await token(p), 'broadcasts.snapshot', sockets);
}

/** The last state each pole reached in a job's progress messages on one dashboard. */
function progressSeen(messages: ServerMessage[], id: string): Map<string, string> {
  const seen = new Map<string, string>();
  for (const m of messages) if (m.type === 'broadcast.progress' && m.id === id) for (const [pole, state] of m.changes) seen.set(pole, state);
  return seen;
}

const playsOf = (id: string) => plays.filter(([, cmdId]) => cmdId.startsWith(`${id}-`));

/** Poles online on one instance, as its registry (its own or its peers' messages) has them. */
async function polesOnline(p: GatewayProcess): Promise<number> {
  const res = await api(p, '/api/broadcasts/resolve-targets', { target: { type: 'poles', poles: POLES } });
  return ((await res.json()) as { byStatus: { online: number } }).byStatus.online;
}

async function poleState(pole: string, status: 'online' | 'offline'): Promise<void> {
  await poles.publishAsync(topics.state(pole), JSON.stringify({ ts: Date.now(), seq: ++poleSeq, status }), { qos: 1 });
}

let poleSeq = 0;

/** The poles' agent: each broadcast.play is answered accepted, playing, done (a repeated command id too, as it is the same broadcast). */
async function startPoles(): Promise<MqttClient> {
  const client = await mqtt.connectAsync(broker.url, { clientId: 'cb-pole-agent', reconnectPeriod: 0 });
  client.on('message', (topic, payload) => {
    const pole = POLES.find((p) => topic === topics.cmd(p));
    if (!pole) return;
    const command = JSON.parse(payload.toString()) as DeviceCommand;
    if (command.name !== 'broadcast.play') return;
    plays.push([pole, command.id]);
    const statuses = ['accepted', 'playing', 'done'] as const;
    statuses.forEach((status, i) => {
      setTimeout(() => {
        const ack = { ts: Date.now(), seq: ++poleSeq, cmdId: command.id, status };
        void client.publishAsync(topics.ack(pole), JSON.stringify(ack), { qos: 1 });
      }, 30 * (i + 1));
    });
  });
  await client.subscribeAsync(POLES.map((p) => topics.cmd(p)), { qos: 1 });
  return client;
}

beforeAll(async () => {
  [pgServer, broker] = await Promise.all([startPostgres(), startMosquitto()]);
  url = await pgServer.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-cluster-broadcast-'));
  passwordFile = join(dir, 'pg-password');
  writeFileSync(passwordFile, `${pgServer.password}\n`, { mode: 0o600 });
  const { password, ...user } = OFFICER;
  configUsers = [{ ...user, passwordHash: await hashSecret(password) }];
  new PostgresStore({ url, password: pgServer.password }).close(); // the schema, once
  poles = await startPoles();
  holder = await pgServer.connect(url);
}, 60_000);

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  await poles?.endAsync();
  await holder?.end();
  for (const p of processes) await p.kill('SIGKILL');
  await Promise.all([pgServer?.stop(), broker?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('broadcast jobs on two gateways on Mosquitto and PostgreSQL', () => {
  it('run on the leader: a follower’s broadcast reaches each pole once; a pole back online gets what waited; a scheduled one survives its leader’s SIGKILL, run once; none without a leader', async () => {
    const [a, b] = await Promise.all([start('gw-one'), start('gw-two')]);
    const { leader, follower } = await leaderOf(a, b);
    const [onLeader, onFollower] = await Promise.all([dashboard(leader), dashboard(follower)]);
    // The poles' agent says they are online (each instance hears it from its own share or its peer's).
    for (const pole of POLES) await poleState(pole, 'online');
    for (const p of [leader, follower]) await waitFor(async () => (await polesOnline(p)) === POLES.length, { what: 'the poles online on every instance' });

    // Created through the follower: the answer is the job as today (running, every pole queued).
    const created = await api(follower, '/api/broadcasts', { target: { type: 'poles', poles: POLES }, content: { type: 'text', text: '森林防火，人人有责。' }, expiresAt: Date.now() + 60_000 });
    expect(created.status).toBe(201);
    const immediate = ((await created.json()) as { broadcast: BroadcastJob }).broadcast;
    expect(immediate).toMatchObject({ status: 'active', run: 1, poleCount: POLES.length, createdBy: OFFICER.username, counts: { queued: POLES.length } });

    const finished = await waitFor(async () => ((await job(follower, immediate.id)).broadcast.status === 'finished' ? job(follower, immediate.id) : undefined), { timeoutMs: 15_000, what: 'the broadcast finished' });
    expect(finished.deliveries.map((d) => [d.pole, d.state, d.sends])).toEqual(POLES.map((p) => [p, 'done', 1]));
    expect(finished.broadcast.counts.done).toBe(POLES.length);
    // One command per pole: none re-sent for an ack that went to the follower.
    expect(playsOf(immediate.id).map(([pole]) => pole).sort()).toEqual(POLES);
    // Some acks were taken by the follower's share of the broker and handed to the leader.
    expect(await metric(follower, /^gs_cluster_queue_total\{kind="ack",outcome="queued"\} (\d+)/m)).toBeGreaterThan(0);
    expect(await metric(follower, /^gs_cluster_queue_total\{kind="broadcast",outcome="queued"\} (\d+)/m)).toBe(1);
    // Both dashboards saw every pole's progress and the end.
    for (const [messages, where] of [[onLeader, 'leader'], [onFollower, 'follower']] as const) {
      await waitFor(() => messages.some((m) => m.type === 'broadcast.finished' && m.broadcast.id === immediate.id), { what: `the end on the ${where}'s dashboard` });
      expect(Object.fromEntries(progressSeen(messages, immediate.id)), `progress on the ${where}'s dashboard`).toEqual(Object.fromEntries(POLES.map((p) => [p, 'done'])));
    }
    // A cancellation through the follower is applied by the leader; a second one is refused with the leader's answer.
    const cancel = await api(follower, `/api/broadcasts/${immediate.id}/cancel`, {});
    expect(cancel.status).toBe(409);
    expect(((await cancel.json()) as { code: string }).code).toBe('BROADCAST_ENDED');

    // A pole offline at the start is sent the broadcast when it is heard online again, by either instance.
    const [dark] = POLES.slice(-1) as [string];
    await poleState(dark, 'offline');
    for (const p of [leader, follower]) await waitFor(async () => (await polesOnline(p)) === POLES.length - 1, { what: `${dark} offline on every instance` });
    const waitingRes = await api(follower, '/api/broadcasts', { target: { type: 'poles', poles: [dark] }, content: { type: 'text', text: '请注意防火' }, expiresAt: Date.now() + 60_000 });
    expect(waitingRes.status).toBe(201);
    const waiting = ((await waitingRes.json()) as { broadcast: BroadcastJob }).broadcast;
    await new Promise((r) => setTimeout(r, 500));
    expect(playsOf(waiting.id)).toEqual([]);
    expect((await job(leader, waiting.id)).deliveries[0]).toMatchObject({ state: 'queued', sends: 0 });
    await poleState(dark, 'online');
    await waitFor(async () => (await job(follower, waiting.id)).broadcast.status === 'finished', { timeoutMs: 10_000, what: `the broadcast to ${dark} once it is back` });
    expect(playsOf(waiting.id)).toEqual([[dark, `${waiting.id}-1-0`]]);

    // Scheduled on the leader, which dies before the run: the survivor takes it over and runs it at its time, once.
    const at = Date.now() + 5000;
    const scheduledRes = await api(leader, '/api/broadcasts', { target: { type: 'poles', poles: POLES.slice(0, 2) }, content: { type: 'clip', clipId: 'test-tone-01' }, schedule: { type: 'at', at } });
    expect(scheduledRes.status).toBe(201);
    const scheduled = ((await scheduledRes.json()) as { broadcast: BroadcastJob }).broadcast;
    expect(scheduled).toMatchObject({ status: 'scheduled', run: 0, nextRunAt: at });
    await leader.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => isLeader(follower), { timeoutMs: 5000, what: 'the survivor leading' });
    console.info(`[cluster-broadcast] survivor leads ${Date.now() - killedAt} ms after the SIGKILL, ${at - Date.now()} ms before the scheduled run`);
    expect(Date.now()).toBeLessThan(at); // the run is still ahead

    const ran = await waitFor(async () => ((await job(follower, scheduled.id)).broadcast.status === 'finished' ? job(follower, scheduled.id) : undefined), { timeoutMs: 20_000, what: 'the scheduled broadcast run' });
    expect(ran.broadcast.run).toBe(1);
    expect(ran.broadcast.runStartedAt! - at).toBeLessThan(1500);
    expect(ran.deliveries.map((d) => [d.pole, d.state])).toEqual(POLES.slice(0, 2).map((p) => [p, 'done']));
    await new Promise((r) => setTimeout(r, 1000)); // and nothing more comes
    expect(playsOf(scheduled.id).map(([pole]) => pole).sort()).toEqual(POLES.slice(0, 2));
    await waitFor(() => onFollower.some((m) => m.type === 'broadcast.finished' && m.broadcast.id === scheduled.id), { what: "the scheduled run's end on the survivor's dashboard" });

    // Nobody leads: the survivor's lease session is ended and the test takes the lock first.
    await waitFor(
      async () => {
        await holder.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gw-two-lease' OR application_name = 'gw-one-lease'");
        return (await holder.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [LEASE_KEY])).rows[0].ok === true;
      },
      { timeoutMs: 5000, what: 'the test holding the lease' },
    );
    await waitFor(async () => !(await isLeader(follower)), { what: 'the survivor no longer leading' });
    const refused = await api(follower, '/api/broadcasts', { target: { type: 'poles', poles: POLES }, content: { type: 'text', text: '无人值守' } });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(((await refused.json()) as { code: string }).code).toBe('NO_LEADER');
    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [LEASE_KEY]);
    await waitFor(() => isLeader(follower), { timeoutMs: 5000, what: 'the survivor leading again' });
    await new Promise((r) => setTimeout(r, 1000)); // its queue drained: the refused broadcast is not created
    const all = (await (await api(follower, '/api/broadcasts')).json()) as { broadcasts: BroadcastJob[] };
    expect(all.broadcasts.map((j) => j.id).sort()).toEqual([immediate.id, waiting.id, scheduled.id].sort());
    expect(plays).toHaveLength(POLES.length + 1 + 2);
  }, 60_000);
});
