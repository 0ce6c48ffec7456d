/**
 * Broadcast benchmark: one emergency broadcast to every pole, and the time until every online
 * pole has acked `playing`, with each pole's delivery state checked against the pole's own.
 *   npm run bench:broadcast [-- --poles 10000 --offline-percent 1 --agents 20 --time-scale 10]
 *     [--skip-site] [--skip-fleet] [--profile DIR (a V8 CPU profile of each gateway)]
 *
 * Two runs, each against the gateway in its own process (bench/gateway-child.ts; embedded broker,
 * store on disk, no InfluxDB), on 127.0.0.1 only:
 *   site   the 73 poles of the Chashan Zhuhai ledger, each a pole simulator (HTTP), behind the
 *          real edge agent (voice-pole collector, outbox, MQTT uplink). Target ≤ 1 s.
 *   fleet  `--poles` (10,000) simulated poles behind `--agents` MQTT connections that answer with
 *          the simulator's PoleModel (bench/lib/pole-fleet.ts: no HTTP hop per pole; the ack
 *          sequence and payloads are the collector's). `--offline-percent` of them are reported
 *          offline: they must stay queued and receive nothing. Target ≤ 10 s.
 * Pole playback runs `--time-scale` times fast (default 10: the terminal's 0.8 s from accepting a
 * job to sound becomes 80 ms), so the figures are the gateway's and the path's, not amplifier
 * warm-up. Each run ends by cancelling the job (broadcast.stop to every pole) and timing that too.
 *
 * Figures (per run):
 *   all_playing_ms    API call → the gateway has recorded `playing` for every online pole (max playingAt)
 *   p50_ms / p99_ms   API call → each pole's `playing` as recorded by the gateway
 *   all_accepted_ms   API call → every online pole `accepted` (no pole start delay in it)
 *   ws_all_playing_ms API call → a dashboard WebSocket shows every online pole playing (coalesced progress)
 *   lost              online poles without `playing` by the deadline
 *   mismatches        poles whose delivery state (gateway) differs from the pole's own state, or an
 *                     offline pole not `queued`, still so a second later
 *   ratio_to_limit    all_playing_ms / the target
 * Progress on stderr; one JSON line last on stdout. Exit 0 even when a target is missed (the JSON
 * says so); non-zero only when the benchmark itself failed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import WebSocket from 'ws';
import { ledgerToCsv, loadLedger, type LedgerDevice } from '../config/ledger.js';
import { resolveConfig } from '../config/load.js';
import { buildAgent, type EdgeAgent } from '../edge-agent/src/agent.js';
import { buildCollectors } from '../edge-agent/src/collectors/index.js';
import { hashSecret } from '../gateway/src/security/secrets.js';
import type { BroadcastDelivery, BroadcastJob, BroadcastServerMessage, DeliveryState } from '../protocol/broadcasts.js';
import { startPoleFleet, type PoleFleet } from '../simulators/src/voice-pole/simulator.js';
import type { JobState } from '../simulators/src/voice-pole/model.js';
import { percentile } from './lib/histogram.js';
import { SimulatedPoleFleet } from './lib/pole-fleet.js';
import {
  cleanupAll,
  gitCommit,
  hardDeadline,
  installExitHandlers,
  MachineCpu,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  removeOnExit,
  REPO,
  round,
  sleep,
  spawnTs,
  stopChild,
  waitForLine,
} from './lib/proc.js';

const { values: args } = parseArgs({
  options: {
    poles: { type: 'string', default: '10000' },
    agents: { type: 'string', default: '20' },
    'offline-percent': { type: 'string', default: '1' },
    'time-scale': { type: 'string', default: '10' },
    'skip-site': { type: 'boolean', default: false },
    'skip-fleet': { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'warn' },
    /** Write a V8 CPU profile of each gateway child into this directory. */
    profile: { type: 'string' },
  },
});
const fleetPoles = parseIntArg(args.poles, 'poles', 1, 100_000);
const agentCount = parseIntArg(args.agents, 'agents', 1, 1000);
const offlinePercent = parseIntArg(args['offline-percent'], 'offline-percent', 0, 50);
const timeScale = parseIntArg(args['time-scale'], 'time-scale', 1, 100);
const TARGET = { site_all_playing_ms: 1000, fleet_all_playing_ms: 10_000, lost: 0, mismatches: 0 };
const PLAYING_DEADLINE_MS = 60_000;
const USER = { username: 'bench-duty', password: 'bench-duty-password' };

installExitHandlers();
hardDeadline(10 * 60_000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-broadcast-'));
removeOnExit(tmp);
const log = (line: string) => process.stderr.write(`${line}\n`);

// ---- the gateway under test ---------------------------------------------------------------------

interface GatewayChild {
  http: string;
  mqttUrl: string;
  sampler: ProcSampler;
  stop(): Promise<void>;
}

async function startGateway(label: string, ledgerFile: string): Promise<GatewayChild> {
  const config = {
    log: { level: args['log-level'] },
    ledger: { file: ledgerFile },
    gateway: {
      mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(tmp, 'credentials.yaml'), websocketPath: null },
      http: { host: '127.0.0.1', port: 0 },
      influx: { enabled: false },
      auth: { users: [{ username: USER.username, displayName: '基准值班员', role: 'duty_officer', grids: [], passwordHash: await hashSecret(USER.password) }] },
      availability: { flapDampingSec: 0 },
      dataDir: join(tmp, `${label}-gateway`),
    },
  };
  resolveConfig(config, { source: 'bench', baseDir: `${REPO}/config` }); // fail here, readably, on a bad document
  const child = spawnTs(`${REPO}/bench/gateway-child.ts`, {
    label: `${label}:gateway`,
    env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(config) },
    ...(args.profile ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${args.profile}/${label}`] } : {}),
  });
  const ready = await waitForLine(child, `${label}:gateway`, (m) => (m.ready ? (m as { pid: number; mqttPort: number; httpPort: number }) : undefined), 60_000);
  log(`[${label}] gateway ready: pid ${ready.pid}, mqtt ${ready.mqttPort}, http ${ready.httpPort}`);
  const sampler = new ProcSampler(ready.pid);
  return {
    http: `http://127.0.0.1:${ready.httpPort}`,
    mqttUrl: `mqtt://127.0.0.1:${ready.mqttPort}`,
    sampler,
    async stop() {
      sampler.stop();
      await stopChild(child, 20_000);
    },
  };
}

async function login(http: string): Promise<string> {
  const res = await fetch(`${http}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(USER) });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

async function api<T>(http: string, token: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(`${http}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${token}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** A dashboard: the /ws WebSocket, keeping the broadcast messages with their arrival time. */
async function dashboard(http: string, token: string) {
  const messages: Array<{ at: number; m: BroadcastServerMessage }> = [];
  const socket = new WebSocket(`${http.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${token}` }, maxPayload: 256 * 2 ** 20 });
  socket.on('message', (data) => {
    const m = JSON.parse(String(data)) as { type: string };
    if (m.type.startsWith('broadcast')) messages.push({ at: Date.now(), m: m as BroadcastServerMessage });
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  onCleanup(() => socket.close());
  return { messages, close: () => socket.close() };
}

async function waitUntil<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, every = 25): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    await sleep(every);
  }
  log(`  (gave up waiting for ${what} after ${Math.round(timeoutMs / 1000)} s)`);
  return undefined;
}

// ---- one measured broadcast ---------------------------------------------------------------------

/** What a pole's own job state means as a delivery state. */
const POLE_TO_DELIVERY: Record<JobState, DeliveryState> = { accepted: 'accepted', playing: 'playing', done: 'done', stopped: 'done', preempted: 'preempted', failed: 'failed' };

interface Truth {
  /** The pole's own state of the job (undefined: the pole never got it). */
  stateOf(pole: string, cmdId: string | null): JobState | undefined;
  starts(pole: string): number;
}

async function measure(label: string, gw: GatewayChild, online: readonly string[], offline: readonly string[], truth: Truth, limitMs: number) {
  const token = await login(gw.http);
  const ws = await dashboard(gw.http, token);
  const onlineSet = new Set(online);
  // Warm-up (JIT, prepared statements, connections): a short routine broadcast to a few poles, waited out.
  const warm = await api<{ broadcast: BroadcastJob }>(gw.http, token, '/api/broadcasts', {
    method: 'POST',
    body: { target: { type: 'poles', poles: online.slice(0, 10) }, content: { type: 'clip', clipId: 'test-tone-01' } },
  });
  if (warm.status !== 201) throw new Error(`warm-up answered ${warm.status}: ${JSON.stringify(warm.body)}`);
  await waitUntil(
    'the warm-up broadcast to finish',
    async () => ((await api<{ broadcast: BroadcastJob }>(gw.http, token, `/api/broadcasts/${warm.body.broadcast.id}`)).body.broadcast.status === 'finished' ? true : undefined),
    30_000,
    100,
  );
  const startsBefore = new Map(online.map((p) => [p, truth.starts(p)]));
  await sleep(500);
  const body = { target: { type: 'all' }, content: { type: 'clip', clipId: 'fire-warning-01' }, priority: 'emergency', reason: '基准测试：全域紧急广播', repeat: 3 };
  const machine = new MachineCpu();
  gw.sampler.markStart();
  machine.markStart();
  const t0 = Date.now();
  const created = await api<{ broadcast: BroadcastJob }>(gw.http, token, '/api/broadcasts', { method: 'POST', body });
  const apiMs = Date.now() - t0;
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.broadcast.id;
  log(`[${label}] job ${id} to ${created.body.broadcast.poleCount} poles created in ${apiMs} ms`);
  const progress = () => ws.messages.filter((x) => x.m.type === 'broadcast.progress' && x.m.id === id) as Array<{ at: number; m: Extract<BroadcastServerMessage, { type: 'broadcast.progress' }> }>;
  let lastPrint = 0;
  const wsAll = await waitUntil(
    'every online pole playing on the WebSocket',
    () => {
      const last = progress().at(-1);
      if (last && Date.now() - lastPrint > 1000) {
        lastPrint = Date.now();
        const c = last.m.counts;
        log(`[${label}] +${((Date.now() - t0) / 1000).toFixed(1)} s: queued ${c.queued} sent ${c.sent} accepted ${c.accepted} playing ${c.playing} done ${c.done} failed ${c.failed}`);
      }
      const hit = progress().find((x) => x.m.counts.playing + x.m.counts.done >= online.length);
      return hit ? hit.at - t0 : undefined;
    },
    PLAYING_DEADLINE_MS,
  );
  gw.sampler.markEnd();
  machine.markEnd();
  await sleep(300);
  const read = async () => (await api<{ broadcast: BroadcastJob; deliveries: BroadcastDelivery[] }>(gw.http, token, `/api/broadcasts/${id}`)).body;
  const { deliveries } = await read();
  const playing = deliveries.filter((d) => onlineSet.has(d.pole) && d.playingAt !== null).map((d) => d.playingAt! - t0);
  const accepted = deliveries.filter((d) => onlineSet.has(d.pole) && d.acceptedAt !== null).map((d) => d.acceptedAt! - t0);
  const lost = online.length - playing.length;

  // Per-pole: the gateway's record against the pole's own state (re-checked once: an ack may be in flight).
  const wrong = (d: BroadcastDelivery) => {
    if (!onlineSet.has(d.pole)) return d.state !== 'queued' || d.sends !== 0 || truth.stateOf(d.pole, d.cmdId) !== undefined;
    const own = truth.stateOf(d.pole, d.cmdId);
    return own === undefined || POLE_TO_DELIVERY[own] !== d.state;
  };
  let suspects = new Set(deliveries.filter(wrong).map((d) => d.pole));
  const missing = [...online, ...offline].filter((p) => !deliveries.some((d) => d.pole === p)).length;
  if (suspects.size > 0) {
    await sleep(1000);
    suspects = new Set((await read()).deliveries.filter((d) => suspects.has(d.pole) && wrong(d)).map((d) => d.pole));
  }
  const mismatches = suspects.size + missing + (deliveries.length - online.length - offline.length > 0 ? deliveries.length - online.length - offline.length : 0);
  if (mismatches > 0) log(`[${label}] ${mismatches} poles mismatch, e.g. ${[...suspects].slice(0, 5).join(', ')}`);
  const duplicatePlays = online.reduce((n, p) => n + Math.max(0, truth.starts(p) - startsBefore.get(p)! - 1), 0);

  // Cancel: broadcast.stop to every pole that has it.
  const t1 = Date.now();
  const cancelled = await api<{ broadcast: BroadcastJob }>(gw.http, token, `/api/broadcasts/${id}/cancel`, { method: 'POST', body: { reason: '基准测试结束' } });
  if (cancelled.status !== 200) throw new Error(`cancel answered ${cancelled.status}`);
  // Only what was still going at the cancel is stopped; a pole that had finished stays done.
  const going = new Map(deliveries.filter((d) => onlineSet.has(d.pole) && ['sent', 'accepted', 'playing'].includes(d.state)).map((d) => [d.pole, d.cmdId]));
  const stoppedMs = await waitUntil('every pole stopped', () => ([...going].every(([p, cmdId]) => truth.stateOf(p, cmdId) === 'stopped') ? Date.now() - t1 : undefined), 60_000);
  const after = (await read()).deliveries;
  const notCancelled = after.filter((d) => (going.has(d.pole) || !onlineSet.has(d.pole)) && d.state !== 'cancelled').length;
  ws.close();

  const allPlaying = lost === 0 ? Math.max(...playing) : null;
  const figures = {
    poles: online.length + offline.length,
    online: online.length,
    offline: offline.length,
    api_ms: apiMs,
    p50_ms: round(percentile(playing, 50), 0),
    p99_ms: round(percentile(playing, 99), 0),
    all_accepted_ms: accepted.length === online.length ? Math.max(...accepted) : null,
    all_playing_ms: allPlaying,
    ws_all_playing_ms: wsAll ?? null,
    lost,
    mismatches,
    duplicate_plays: duplicatePlays,
    cancel_all_stopped_ms: stoppedMs ?? null,
    cancel_poles_playing: going.size,
    not_cancelled_after_cancel: notCancelled,
    gateway_cpu_percent: round(gw.sampler.cpuPercent, 0),
    gateway_rss_mb: round(gw.sampler.peakRssMb, 0),
    /** The benchmark process: the WebSocket client, and the agent with its pole simulators or the simulated fleet. */
    bench_process_cpu_percent: round(machine.selfPercent, 0),
    machine_cpu_percent: round(machine.busyPercent, 0),
    other_cpu_percent: round(machine.otherPercent([gw.sampler.cpuPercent]), 0),
    limit_ms: limitMs,
    ratio_to_limit: allPlaying === null ? null : round(allPlaying / limitMs, 2),
  };
  log(`[${label}] ${JSON.stringify(figures)}`);
  return figures;
}

// ---- site: 73 pole simulators behind the real agent ---------------------------------------------

async function runSite() {
  phase('site: 73 pole simulators (HTTP) behind the real edge agent');
  const ledgerFile = join(REPO, 'config/ledger/chashan-zhuhai.csv');
  const ledger = loadLedger(ledgerFile);
  const poles = ledger.filter((d) => d.kind === 'voice_pole');
  const gw = await startGateway('site', ledgerFile);
  const sims: PoleFleet = await startPoleFleet(poles, { timeScale });
  onCleanup(() => sims.close());
  const config = resolveConfig(
    { log: { level: 'silent' }, agent: { id: 'agent-chashan', brokerUrl: gw.mqttUrl, outboxFile: join(tmp, 'site-outbox.sqlite'), poles: { pollIntervalMs: 200 } } },
    { source: 'bench', baseDir: `${REPO}/config` },
  ).config.agent!;
  // Logs on stderr: stdout carries the result line only.
  const agentLog = pino({ level: args['log-level'] }, pino.destination(2));
  const { collectors, devices } = buildCollectors(config, ledger, agentLog, { tankEndpoints: new Map(), poleEndpoints: sims.endpoints });
  const agent: EdgeAgent = buildAgent({ config, log: agentLog, collectors, deviceCount: devices.length });
  await agent.start();
  onCleanup(() => agent.stop());
  const token = await login(gw.http);
  await waitUntil(
    'the 73 poles online',
    async () => {
      const { body } = await api<{ devices: Array<{ status: string }> }>(gw.http, token, '/api/devices?kind=voice_pole&status=online');
      return body.devices.length === poles.length ? true : undefined;
    },
    60_000,
    200,
  );
  const figures = await measure(
    'site',
    gw,
    poles.map((p) => p.id),
    [],
    {
      stateOf: (pole, cmdId) => (cmdId ? sims.poles.get(pole)?.model.job(cmdId)?.state : undefined),
      starts: (pole) => sims.poles.get(pole)?.model.starts ?? 0,
    },
    TARGET.site_all_playing_ms,
  );
  await agent.stop();
  await sims.close();
  await gw.stop();
  return { ...figures, path: 'HTTP pole simulators + real edge agent (collector poll 200 ms)' };
}

// ---- fleet: 10,000 simulated poles --------------------------------------------------------------

async function runFleet() {
  phase(`fleet: ${fleetPoles} simulated poles behind ${agentCount} MQTT agents`);
  const devices: LedgerDevice[] = [];
  const byAgent = new Map<string, string[]>();
  const perAgent = Math.ceil(fleetPoles / agentCount);
  for (let i = 0; i < fleetPoles; i++) {
    const id = `bench-pole-${String(i).padStart(6, '0')}`;
    const agent = `bench-agent-${String(Math.floor(i / perAgent)).padStart(3, '0')}`;
    const grid = Math.floor(i / 100);
    devices.push({
      id,
      kind: 'voice_pole',
      name: `基准广播杆 ${i}`,
      lat: Number((29.38 + ((i * 7919) % 10_000) / 100_000).toFixed(6)),
      lon: Number((105.82 + ((i * 104_729) % 13_000) / 100_000).toFixed(6)),
      grid: `bench-grid-${String(grid).padStart(4, '0')}`,
      community: `基准社区 ${Math.floor(grid / 10)}`,
      agent,
      settings: {},
    });
    byAgent.set(agent, [...(byAgent.get(agent) ?? []), id]);
  }
  const offline = new Set(offlinePercent === 0 ? [] : devices.filter((_, i) => i % Math.round(100 / offlinePercent) === 7).map((d) => d.id));
  const ledgerFile = join(tmp, 'fleet-ledger.csv');
  writeFileSync(ledgerFile, ledgerToCsv(devices));
  const gw = await startGateway('fleet', ledgerFile);
  const fleet = new SimulatedPoleFleet({ byAgent, offline, timeScale });
  onCleanup(() => fleet.stop());
  const started = Date.now();
  await fleet.start(gw.mqttUrl);
  const token = await login(gw.http);
  const online = devices.filter((d) => !offline.has(d.id)).map((d) => d.id);
  await waitUntil(
    'the fleet online',
    async () => {
      const { body } = await api<{ devices: { byKind: Record<string, { online: number; offline: number }> } }>(gw.http, token, '/health');
      const c = body.devices.byKind.voice_pole;
      return c && c.online === online.length && c.offline === offline.size ? true : undefined;
    },
    120_000,
    250,
  );
  log(`[fleet] ${online.length} poles online, ${offline.size} offline, after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const figures = await measure(
    'fleet',
    gw,
    online,
    [...offline],
    {
      stateOf: (pole, cmdId) => (cmdId ? fleet.pole(pole)?.model.job(cmdId)?.state : undefined),
      starts: (pole) => fleet.pole(pole)?.model.starts ?? 0,
    },
    TARGET.fleet_all_playing_ms,
  );
  await fleet.stop();
  await gw.stop();
  return {
    ...figures,
    agents: agentCount,
    commands_to_offline_poles: fleet.stats.toOfflinePoles,
    duplicate_commands: fleet.stats.duplicates,
    acks_sent: fleet.stats.acksSent,
    path: 'MQTT agents answering with PoleModel (no HTTP hop per pole)',
  };
}

try {
  const loadAtStart = loadavg()[0];
  const site = args['skip-site'] ? null : await runSite();
  const fleet = args['skip-fleet'] ? null : await runFleet();
  const misses: string[] = [];
  const check = (name: string, f: { all_playing_ms: number | null; lost: number; mismatches: number } | null, limit: number) => {
    if (!f) return;
    if (f.all_playing_ms === null || f.all_playing_ms > limit) misses.push(`${name}.all_playing_ms ${f.all_playing_ms ?? 'n/a'} > ${limit}`);
    if (f.lost > 0) misses.push(`${name}.lost ${f.lost}`);
    if (f.mismatches > 0) misses.push(`${name}.mismatches ${f.mismatches}`);
  };
  check('site', site, TARGET.site_all_playing_ms);
  check('fleet', fleet, TARGET.fleet_all_playing_ms);
  const result = {
    bench: 'broadcast',
    ...gitCommit(),
    cpus: cpus().length,
    loadavg_1m_at_start: round(loadAtStart, 2),
    time_scale: timeScale,
    pole_start_delay_ms: 800 / timeScale,
    site,
    fleet,
    targets: TARGET,
    target_met: misses.length === 0,
    target_misses: misses,
  };
  await cleanupAll();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await cleanupAll();
  process.exit(1);
}
