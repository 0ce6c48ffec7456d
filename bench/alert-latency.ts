/**
 * Alert latency (issue 5, "Latency and scale"): camera fire/smoke alarms published at the device
 * edge while background telemetry runs at 10,000 msg/s; each alarm is timed from its publish to
 * the `incident` message (`isNew: true`) on a signed-in dashboard WebSocket.
 *   npm run bench:alert-latency [-- --seconds 60 --rate 10000 --fire-rate 5]
 *
 * Processes: the gateway (bench/gateway-child.ts, real InfluxDB unless --no-influx), the
 * background generator (bench/lib/agent-loadgen.ts: `--agents` connections, each an edge agent
 * for its share of `--devices` water tanks, QoS1), and this process: the camera agent's MQTT
 * connection (mqtt.js) that publishes the alarms and the WebSockets that receive the incidents,
 * so publish and arrival are read from one clock. Anonymous MQTT (bench config); the WebSockets
 * sign in as a duty officer (sees every incident) and a grid worker covering every grid.
 *
 * Every alarm is meant to be its own incident: its camera is farther from the camera of every
 * incident still open than the sum of their view ranges (no bearing crossing can lie within both
 * views, so correlation must not join them), and is not reused within the repeat-damping window.
 * Around it, on the same camera: exact duplicates (same seq/ts, a few ms later: ingest dedupe),
 * repeats (same kind, new seq, inside the damping window: damped by the rules) and joins (the
 * other kind, same bearing: correlation joins the open incident). None of them may make a new
 * incident. Each incident is resolved over the API (as the duty officer) `--resolve-after-ms`
 * after it arrived, so the number of open incidents stays what a staffed command centre has.
 *
 * Progress on stderr; one JSON line last on stdout. Exit 0 even when the target is missed (the
 * JSON says so); non-zero only when the benchmark itself failed.
 *
 *   p50/p99/p999/max_ms   alarm publish -> `incident` isNew on the duty officer's socket
 *   lost                  expected incidents not on the socket within --loss-timeout-ms
 *   duplicated            extra `isNew` for an alarm, or an `isNew` nobody expected
 *   to_ingest_*_ms        publish -> the gateway's receipt (incident.firstSignalAt; wall clock, 1 ms)
 *   ingest_to_ws_*_ms     the gateway's receipt -> arrival on the socket (wall clock, 1 ms)
 *   background_msg_per_s  background PUBACKs per second over the alarm window
 *   background_lost       background messages the gateway acknowledged and InfluxDB does not hold
 *                         (counted after the gateway's buffer drained; null with --no-influx)
 *   gateway_runqueue_wait_percent  wall time the gateway's main thread was runnable but had no
 *                         CPU (/proc/<pid>/schedstat): what other processes cost it
 *   spool_commits_per_s   the gateway's spool group commits per second over the window
 *   gateway_pinned_cpu    with --pin-gateway the gateway's CPU (the first this process may use, '0'
 *                         on a whole machine), alone; else null
 *
 * `--series-out FILE` adds a time series (JSON lines); `--gateway-cpu-prof DIR` a V8 profile.
 * Figures and how to read them: docs/BENCHMARKS.md, "Alert latency".
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { resolveConfig } from '../config/load.js';
import { loadLedger, type LedgerDevice } from '../config/ledger.js';
import { distanceM } from '../gateway/src/alerts/geo.js';
import { hashSecret } from '../gateway/src/security/secrets.js';
import type { Incident } from '../protocol/incidents.js';
import { topics } from '../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../scripts/lib/influxd.js';
import { AgentLoad } from './lib/agent-load.js';
import { benchTanks, writeLedger } from './lib/fleet.js';
import { percentile } from './lib/histogram.js';
import {
  cleanupAll,
  findChildren,
  gitCommit,
  hardDeadline,
  installExitHandlers,
  allowedCpus,
  MachineCpu,
  MainThreadSched,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  removeOnExit,
  REPO,
  round,
  sleep,
  GATEWAY_NODE_FLAGS,
  spawnTs,
  stderrTail,
  stopChild,
  waitForLine,
} from './lib/proc.js';
import { prng } from '../simulators/src/fleet/geography.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.GS_BENCH_SECONDS ?? '60' },
    warmup: { type: 'string', default: '10' },
    /** Background telemetry, msg/s over all devices. */
    rate: { type: 'string', default: '10000' },
    devices: { type: 'string', default: '20000' },
    agents: { type: 'string', default: '100' },
    'max-inflight': { type: 'string', default: '200' },
    /** New incidents per second (alarms on distinct cameras). */
    'fire-rate': { type: 'string', default: '5' },
    /** Shares of alarms followed by a duplicate / a repeat / a join (percent). */
    'duplicate-pct': { type: 'string', default: '20' },
    'repeat-pct': { type: 'string', default: '30' },
    'join-pct': { type: 'string', default: '20' },
    'loss-timeout-ms': { type: 'string', default: '5000' },
    'resolve-after-ms': { type: 'string', default: '1000' },
    'no-influx': { type: 'boolean', default: false },
    /**
     * Give the gateway a core of its own: all its threads on CPU 0, this process, the load generator
     * and InfluxDB on the others (util-linux taskset). The shape of a deployment whose devices and
     * dashboards are on other machines; without it all of them share every core.
     */
    'pin-gateway': { type: 'boolean', default: false },
    /** JSON merged into the gateway config section, e.g. '{"push":{"flushIntervalMs":100}}'. */
    'gateway-config': { type: 'string', default: '{}' },
    /** Write a V8 CPU profile of the gateway into this directory (node --cpu-prof). */
    'gateway-cpu-prof': { type: 'string' },
    /** Also write a time series (JSON lines: alarms, background, event-loop lag) to this file. */
    'series-out': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
    seed: { type: 'string', default: '7' },
  },
});

const seconds = parseIntArg(args.seconds, 'seconds', 1, 3600);
const warmup = parseIntArg(args.warmup, 'warmup', 0, 600);
const rate = parseIntArg(args.rate, 'rate', 0, 200_000);
const deviceCount = parseIntArg(args.devices, 'devices', 1, 200_000);
const agents = parseIntArg(args.agents, 'agents', 1, 10_000);
const maxInflight = parseIntArg(args['max-inflight'], 'max-inflight', 1, 65_000);
const fireRate = parseIntArg(args['fire-rate'], 'fire-rate', 1, 50);
const duplicatePct = parseIntArg(args['duplicate-pct'], 'duplicate-pct', 0, 100);
const repeatPct = parseIntArg(args['repeat-pct'], 'repeat-pct', 0, 100);
const joinPct = parseIntArg(args['join-pct'], 'join-pct', 0, 100);
const lossTimeoutMs = parseIntArg(args['loss-timeout-ms'], 'loss-timeout-ms', 100, 120_000);
const resolveAfterMs = parseIntArg(args['resolve-after-ms'], 'resolve-after-ms', 0, 60_000);
const seed = parseIntArg(args.seed, 'seed', 0, 2 ** 31 - 1);
const useInflux = !args['no-influx'];
const pinGateway = args['pin-gateway'];
const cpus = allowedCpus();
if (pinGateway && cpus.length < 2) throw new Error(`--pin-gateway needs at least 2 CPUs (this process may use ${cpus.join(',')})`);
/** When pinned: the gateway's CPU (the first this process may use), and the rest for everything else. */
const gatewayCpu = String(cpus[0]);
const otherCpus = cpus.slice(1).join(',');

/** Sets the CPU affinity of every thread of a process (taskset -a -p -c). */
function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}
const gatewayOverrides = JSON.parse(args['gateway-config']) as Record<string, unknown>;

const INFLUX_DB = 'gs_bench_alerts';
const TARGET = { p99_ms: 50, p999_ms: 250, lost: 0, duplicated: 0, background_msg_per_s: 10_000, seconds: 60 };
/** Two cameras farther apart than their view ranges plus this cannot see one fire. */
const SEPARATION_MARGIN_M = 200;

installExitHandlers();
hardDeadline((300 + 2 * (warmup + seconds) + lossTimeoutMs / 1000) * 1000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-alerts-'));
removeOnExit(tmp);

const random = prng(seed);

// ---- the site: the shipped ledger's cameras plus the background tanks ---------------------------

const shipped = loadLedger(join(REPO, 'config/ledger/chashan-zhuhai.csv'));
type Camera = Extract<LedgerDevice, { kind: 'camera' }>;
const cameras = shipped.filter((d): d is Camera => d.kind === 'camera');
const shippedGrids = [...new Set(shipped.map((d) => d.grid))].sort();
const ledgerFile = join(tmp, 'ledger.csv');
writeLedger(ledgerFile, [...shipped, ...benchTanks(deviceCount)]);

const USERS = {
  duty: { username: 'bench-duty', password: 'bench-duty-password', role: 'duty_officer' as const, grids: [] as string[] },
  worker: { username: 'bench-grid', password: 'bench-grid-password', role: 'grid_worker' as const, grids: shippedGrids },
};

const configDoc = {
  log: { level: args['log-level'] },
  ledger: { file: ledgerFile },
  gateway: {
    ...gatewayOverrides,
    mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(tmp, 'credentials.yaml'), ...(gatewayOverrides.mqtt as object | undefined) },
    http: { host: '127.0.0.1', port: 0 },
    influx: { enabled: false, ...(gatewayOverrides.influx as object | undefined) } as Record<string, unknown>,
    auth: {
      users: await Promise.all(
        Object.values(USERS).map(async (u) => ({ username: u.username, displayName: u.username, role: u.role, grids: u.grids, passwordHash: await hashSecret(u.password) })),
      ),
    },
    dataDir: join(tmp, 'gateway-data'),
  },
};
// Fails here, with the path and reason, before anything starts; and gives the effective settings.
const effective = resolveConfig(configDoc, { source: 'bench', baseDir: join(REPO, 'config') }).config.gateway!;
const repeatWindowMs = effective.alerts.camera.repeatWindowSec * 1000;
/** A camera is reused only after the rules have forgotten its last alarm of either kind. */
const cameraCooldownMs = repeatWindowMs + 10_000;

// ---- episodes: one expected incident each ---------------------------------------------------------

type AlarmKind = 'fire' | 'smoke';
interface Episode {
  n: number;
  camera: Camera;
  kind: AlarmKind;
  bearingDeg: number;
  publishedAt: number;
  publishedWall: number;
  arrivedAt?: number;
  incidentId?: string;
  /** Gateway receipt of the alarm (incident.firstSignalAt). */
  receivedAt?: number;
  /** The grid worker's `incident.dispatch`. */
  dispatchedAt?: number;
  isNewCount: number;
  late: boolean;
  lost: boolean;
  joinPlanned: boolean;
  joinAcked: boolean;
  joinSeen: boolean;
  resolving: boolean;
  resolved: boolean;
}

const episodes: Episode[] = [];
const byCamera = new Map<string, Episode>();
const byIncident = new Map<string, Episode>();
/** Episodes whose incident may still be open (lost ones stay here: their camera is never near another alarm). */
const occupied = new Set<Episode>();
const lastUsed = new Map<string, number>();
const counts = { duplicatesSent: 0, repeatsSent: 0, joinsSent: 0, unexpectedNew: 0, extraNew: 0, pickerSkips: 0, resolveErrors: 0, publishErrors: 0 };
let firstResolveError: string | null = null;

// Cameras in a fixed shuffled order; the picker walks it round-robin.
const order = cameras.map((c) => ({ c, k: random() })).sort((a, b) => a.k - b.k).map((x) => x.c);
let cursor = 0;
function pickCamera(now: number): Camera | undefined {
  for (let tried = 0; tried < order.length; tried++) {
    const c = order[cursor]!;
    cursor = (cursor + 1) % order.length;
    if (now - (lastUsed.get(c.id) ?? -Infinity) < cameraCooldownMs) continue;
    let clear = true;
    for (const e of occupied) {
      if (distanceM(c, e.camera) <= c.settings.viewRangeM + e.camera.settings.viewRangeM + SEPARATION_MARGIN_M) {
        clear = false;
        break;
      }
    }
    if (clear) return c;
  }
  return undefined;
}

// ---- main ------------------------------------------------------------------------------------------

const { commit, dirty, diffSha } = gitCommit();
const loadAtStart = loadavg()[0];
process.stderr.write(
  `alert-latency bench: background ${rate} msg/s from ${deviceCount} tanks over ${agents} agent connections (each tank every ` +
    `${rate > 0 ? round(deviceCount / rate, 2) : '-'} s), alarms ${fireRate}/s on ${cameras.length} cameras, ${warmup}+${seconds} s, ` +
    `InfluxDB ${useInflux ? 'on' : 'off'}; commit ${commit}${dirty.length ? ' (dirty)' : ''}; load ${loadAtStart?.toFixed(2)}\n`,
);

try {
  // Before InfluxDB and the load generator start, so that they inherit it.
  if (pinGateway) pin(process.pid, otherCpus);
  let influx: InfluxServer | undefined;
  if (useInflux) {
    phase('starting InfluxDB');
    const server = await startInfluxd();
    influx = server;
    let stopped: Promise<void> | undefined;
    onCleanup(() => (stopped ??= server.stop()));
    configDoc.gateway.influx = { url: server.url, database: INFLUX_DB, ...(gatewayOverrides.influx as object | undefined) };
  }

  phase('gateway');
  const profDir = args['gateway-cpu-prof'];
  const child = spawnTs(`${REPO}/bench/gateway-child.ts`, {
    // GS_BENCH_NODE_FLAGS: extra node/V8 flags for the gateway (after the defaults, so they win).
    nodeFlags: [
      ...GATEWAY_NODE_FLAGS,
      ...(process.env.GS_BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
      ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
    ],
    nofile: agents + 4096,
    label: 'gateway',
    env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(configDoc) },
  });
  const ready = await waitForLine(child, 'gateway', (m) => (m.ready ? (m as { pid: number; mqttPort: number; httpPort: number }) : undefined), 120_000);
  process.stderr.write(`[gateway] ready: pid ${ready.pid}, mqtt ${ready.mqttPort}, http ${ready.httpPort}\n`);
  if (pinGateway) {
    pin(ready.pid, gatewayCpu);
    process.stderr.write(`[gateway] pinned to CPU ${gatewayCpu}; this process, the load generator and InfluxDB to CPU ${otherCpus}\n`);
  }
  let crashed: string | null = null;
  child.once('exit', (code, signal) => {
    crashed = `exited (${signal ?? `code ${code}`}) during the run: ${stderrTail(child).split('\n').slice(-3).join(' | ').slice(0, 300)}`;
  });
  const http = `http://127.0.0.1:${ready.httpPort}`;
  const gatewaySampler = new ProcSampler(ready.pid);
  const influxPid = useInflux ? findChildren(process.pid, 'influxd')[0] : undefined;
  const influxSampler = influxPid ? new ProcSampler(influxPid) : undefined;
  const machine = new MachineCpu();
  const gatewayWait = new MainThreadSched(ready.pid);
  const selfWait = new MainThreadSched('self');
  const seriesFile = args['series-out'];
  if (seriesFile) writeFileSync(seriesFile, '');
  const series = (row: Record<string, unknown>) => {
    if (seriesFile) appendFileSync(seriesFile, `${JSON.stringify({ t: round(performance.now() / 1000, 3), ...row })}\n`);
  };

  const login = async (u: { username: string; password: string }) => {
    const res = await fetch(`${http}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: u.username, password: u.password }),
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200) throw new Error(`login as ${u.username}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  };
  const dutyToken = await login(USERS.duty);
  const workerToken = await login(USERS.worker);

  // ---- the dashboards ---------------------------------------------------------------------------
  let wsDropped: string | null = null;
  let closingSockets = false;
  const openSocket = (token: string, label: string, onIncidentMessage: (text: string, at: number) => void) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${ready.httpPort}/ws`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
      let snapshot = false;
      ws.on('message', (data: Buffer) => {
        const at = performance.now();
        // Device updates (most of the traffic) are not parsed: only messages about incidents.
        if (data.toString('latin1', 0, 17) !== '{"type":"incident') return;
        const text = data.toString('utf8');
        if (!snapshot && text.startsWith('{"type":"incidents.snapshot"')) {
          snapshot = true;
          resolve(ws);
          return;
        }
        onIncidentMessage(text, at);
      });
      ws.once('error', reject);
      ws.once('close', (code, reason) => {
        if (!closingSockets) wsDropped ??= `${label} socket closed by the gateway (${code} ${reason.toString()})`;
      });
      setTimeout(() => reject(new Error(`${label}: no incidents.snapshot within 60 s`)), 60_000).unref();
    });

  const duty = await openSocket(dutyToken, 'duty officer', (text, at) => {
    const msg = JSON.parse(text) as { type: string; incident?: Incident; isNew?: boolean };
    if (msg.type !== 'incident' || !msg.incident) return;
    const incident = msg.incident;
    const cameraId = incident.devices[0];
    if (msg.isNew) {
      const e = cameraId ? byCamera.get(cameraId) : undefined;
      if (!e || incident.category !== 'fire') {
        counts.unexpectedNew++;
        process.stderr.write(`unexpected new incident ${incident.id} (${incident.kind}, ${incident.devices.join(',')})\n`);
        return;
      }
      e.isNewCount++;
      if (e.isNewCount > 1) {
        counts.extraNew++;
        process.stderr.write(`a second new incident for alarm ${e.n} (camera ${e.camera.id}): ${incident.id}\n`);
        return;
      }
      e.arrivedAt = at;
      e.incidentId = incident.id;
      e.receivedAt = incident.firstSignalAt;
      e.late = at - e.publishedAt > lossTimeoutMs;
      byIncident.set(incident.id, e);
      series({ kind: 'alarm', n: e.n, published_s: round(e.publishedAt / 1000, 3), latency_ms: round(at - e.publishedAt, 1), to_ingest_ms: incident.firstSignalAt - e.publishedWall });
    } else {
      const e = byIncident.get(incident.id);
      if (e && e.joinPlanned && incident.signalCount > 1) e.joinSeen = true;
    }
  });
  const worker = await openSocket(workerToken, 'grid worker', (text, at) => {
    const msg = JSON.parse(text) as { type: string; incidentId?: string; level?: string };
    if (msg.type !== 'incident.dispatch' || msg.level !== 'grid' || !msg.incidentId) return;
    const e = byIncident.get(msg.incidentId);
    if (e && e.dispatchedAt === undefined) e.dispatchedAt = at;
  });
  onCleanup(() => {
    closingSockets = true;
    duty.terminate();
    worker.terminate();
  });

  // ---- the camera agent -------------------------------------------------------------------------
  const cameraAgent = await mqtt.connectAsync(`mqtt://127.0.0.1:${ready.mqttPort}`, { clientId: 'agent-chashan', reconnectPeriod: 0, connectTimeout: 30_000 });
  onCleanup(() => cameraAgent.endAsync(true));
  let seq = 0;
  const alarmPayload = (kind: AlarmKind, bearingDeg: number) =>
    JSON.stringify({ ts: Date.now(), seq: ++seq, type: kind, phase: 'start', severity: 'critical', confidence: 0.9, bearingDeg });
  const publish = (cameraId: string, payload: string, onAck?: () => void) =>
    cameraAgent.publish(topics.event(cameraId), payload, { qos: 1 }, (err) => {
      if (err) counts.publishErrors++;
      else onAck?.();
    });

  // ---- background -------------------------------------------------------------------------------
  phase(`background: ${agents} agent connections`);
  const load = new AgentLoad({ host: '127.0.0.1', port: ready.mqttPort, agents, devices: deviceCount, rate, maxInflight, connectTimeoutMs: 30_000 });
  onCleanup(() => load.close());
  const conn = await load.connect(120_000);
  process.stderr.write(`[agents] ${agents} connected in ${(conn.ms / 1000).toFixed(1)} s\n`);
  load.go();

  // /metrics: event-loop lag (prom-client resets its histogram at each scrape: each covers the
  // time since the previous one), the gateway's own receipt->push histogram, rule outcomes.
  const scrape = async () => {
    const text = await fetch(`${http}/metrics`, { signal: AbortSignal.timeout(10_000) })
      .then((r) => r.text())
      .catch(() => '');
    const one = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const labelled = (name: string) =>
      [...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))].map((m) => ({ labels: m[1]!, value: Number(m[2]) }));
    return { one, labelled };
  };
  const lagP99s: number[] = [];
  let lagMax = 0;
  const scrapeLag = () =>
    void scrape().then((m) => {
      const p99 = m.one('gs_nodejs_eventloop_lag_p99_seconds');
      const max = m.one('gs_nodejs_eventloop_lag_max_seconds');
      if (Number.isFinite(p99)) lagP99s.push(p99 * 1000);
      if (Number.isFinite(max)) lagMax = Math.max(lagMax, max * 1000);
      // The ingest thread's V8 heap (prom-client's default metric), beside RSS: a leak shows in both.
      const heapUsed = m.one('gs_nodejs_heap_size_used_bytes');
      series({
        kind: 'lag',
        p99_ms: round(p99 * 1000, 1),
        max_ms: round(max * 1000, 1),
        rss_mb: round((gatewaySampler.last?.rssKb ?? 0) / 1024, 0),
        heap_used_mb: Number.isFinite(heapUsed) ? round(heapUsed / 2 ** 20, 0) : null,
      });
    });
  let lagTimer: NodeJS.Timeout | undefined;
  const bgTimer = seriesFile ? setInterval(() => series({ kind: 'background', acked_per_s: Math.round(load.tick.ackedPerSec), inflight: load.tick.inflight }), 1000) : undefined;
  onCleanup(() => clearInterval(bgTimer));
  onCleanup(() => clearInterval(lagTimer));

  const progress = setInterval(() => {
    const t = load.tick;
    const arrived = episodes.filter((e) => e.arrivedAt !== undefined).length;
    process.stderr.write(
      `[bench] background ${Math.round(t.ackedPerSec)} msg/s acked (in flight ${t.inflight}); alarms ${episodes.length}, incidents ${arrived}, open ${occupied.size}; ` +
        `gateway rss ${round((gatewaySampler.last?.rssKb ?? 0) / 1024, 0)} MB\n`,
    );
  }, 5000);
  onCleanup(() => clearInterval(progress));

  phase(`warm-up ${warmup} s`);
  const warmupEnd = performance.now() + warmup * 1000;
  while (performance.now() < warmupEnd) {
    load.check();
    await sleep(100);
  }

  // ---- the measured window: alarms on distinct cameras, with their follow-ups -------------------
  phase(`measuring ${seconds} s: ${fireRate} alarms/s`);
  const before = await scrape();
  gatewaySampler.markStart();
  influxSampler?.markStart();
  machine.markStart();
  gatewayWait.markStart();
  selfWait.markStart();
  load.measureStart();
  const windowStart = performance.now();
  const windowEnd = windowStart + seconds * 1000;
  const intervalMs = 1000 / fireRate;
  // Every 10 s (a whole number of alarm intervals), half-way between two alarms: the bench's own
  // scrape never sits right in front of an alarm (Prometheus would scrape every 15-60 s).
  const lagStart = setTimeout(() => {
    scrapeLag();
    lagTimer = setInterval(scrapeLag, 10_000);
  }, 5000 + intervalMs / 2);
  onCleanup(() => clearTimeout(lagStart));

  // Follow-ups still pending when the run stops are cancelled (the camera agent is gone by then).
  const followTimers = new Set<NodeJS.Timeout>();
  const follow = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      followTimers.delete(timer);
      fn();
    }, ms);
    followTimers.add(timer);
  };
  const raise = (n: number) => {
    const now = performance.now();
    const camera = pickCamera(now);
    if (!camera) {
      counts.pickerSkips++;
      return;
    }
    const kind: AlarmKind = random() < 0.5 ? 'fire' : 'smoke';
    const bearingDeg = Math.round(random() * 3599) / 10;
    const payload = alarmPayload(kind, bearingDeg);
    const e: Episode = {
      n,
      camera,
      kind,
      bearingDeg,
      publishedAt: 0,
      publishedWall: 0,
      isNewCount: 0,
      late: false,
      lost: false,
      joinPlanned: random() * 100 < joinPct,
      joinAcked: false,
      joinSeen: false,
      resolving: false,
      resolved: false,
    };
    episodes.push(e);
    byCamera.set(camera.id, e);
    occupied.add(e);
    lastUsed.set(camera.id, now);
    e.publishedWall = Date.now();
    e.publishedAt = performance.now();
    publish(camera.id, payload);
    // The same message again a few ms later (an agent's outbox replay): ingest drops it.
    if (random() * 100 < duplicatePct) {
      counts.duplicatesSent++;
      follow(2 + random() * 18, () => publish(camera.id, payload));
    }
    // The other kind on the same bearing: the same fire, joins the incident.
    if (e.joinPlanned) {
      counts.joinsSent++;
      follow(100 + random() * 300, () => {
        lastUsed.set(camera.id, performance.now());
        publish(camera.id, alarmPayload(kind === 'fire' ? 'smoke' : 'fire', Math.min(360, bearingDeg + 0.5)), () => (e.joinAcked = true));
      });
    }
    // The same kind again inside the damping window: counted by the rules, no new signal.
    if (random() * 100 < repeatPct) {
      counts.repeatsSent++;
      follow(200 + random() * 2800, () => publish(camera.id, alarmPayload(kind, Math.min(360, bearingDeg + 0.3))));
    }
  };

  // The duty officer closes each incident once it has been seen (and its join is in): the number
  // of open incidents stays small and cameras can be used again.
  const resolve = async (e: Episode) => {
    e.resolving = true;
    try {
      const res = await fetch(`${http}/api/incidents/${e.incidentId}/resolve`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dutyToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ note: 'bench' }),
        signal: AbortSignal.timeout(30_000),
      });
      if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
      e.resolved = true;
      occupied.delete(e);
    } catch (err) {
      counts.resolveErrors++;
      firstResolveError ??= (err as Error).message;
    }
  };
  const housekeeping = setInterval(() => {
    const now = performance.now();
    for (const e of occupied) {
      if (e.resolving) continue;
      if (e.arrivedAt === undefined) {
        if (now - e.publishedAt > lossTimeoutMs) e.lost = true; // stays occupied
        continue;
      }
      if (e.joinPlanned && !e.joinAcked) continue;
      if (now - e.arrivedAt >= resolveAfterMs) void resolve(e);
    }
  }, 50);
  onCleanup(() => clearInterval(housekeeping));

  for (let n = 0; ; n++) {
    const at = windowStart + n * intervalMs;
    if (at >= windowEnd) break;
    const wait = at - performance.now();
    if (wait > 0) await sleep(wait);
    load.check();
    if (crashed) throw new Error(`gateway ${crashed}`);
    raise(n);
  }
  while (performance.now() < windowEnd) await sleep(10);
  clearTimeout(lagStart);
  clearInterval(lagTimer);
  const bg = await load.measureEnd();
  gatewaySampler.markEnd();
  influxSampler?.markEnd();
  machine.markEnd();
  gatewayWait.markEnd();
  selfWait.markEnd();
  const after = await scrape();
  const windowSeconds = (performance.now() - windowStart) / 1000;
  const lastLagP99 = after.one('gs_nodejs_eventloop_lag_p99_seconds');
  if (Number.isFinite(lastLagP99)) lagP99s.push(lastLagP99 * 1000);
  lagMax = Math.max(lagMax, (after.one('gs_nodejs_eventloop_lag_max_seconds') || 0) * 1000);

  phase('settling: waiting for outstanding incidents, then for stray duplicates');
  const settleDeadline = performance.now() + lossTimeoutMs + 1000;
  while (performance.now() < settleDeadline && episodes.some((e) => e.arrivedAt === undefined && performance.now() - e.publishedAt <= lossTimeoutMs)) await sleep(50);
  await sleep(2000);
  clearInterval(housekeeping);
  for (const e of episodes) if (e.arrivedAt === undefined || e.late) e.lost = true;
  const stopped = await load.stop();
  // Nothing the gateway acknowledged may be missing from InfluxDB: wait for its buffer to drain,
  // then count until the count stops changing.
  let stored: number | null = null;
  if (influx) {
    phase('counting the background telemetry in InfluxDB');
    const db = influx;
    const buffered = async () => (await scrape()).one('gs_influx_buffered_points');
    const drainDeadline = performance.now() + 120_000;
    while (performance.now() < drainDeadline && (await buffered()) > 0) await sleep(500);
    const count = async () => {
      const res = await db.query(INFLUX_DB, 'SELECT COUNT("levelMm") FROM "water_tank"').catch(() => undefined);
      return Number(res?.results[0]?.series?.[0]?.values[0]?.[1] ?? 0);
    };
    stored = await count();
    let stableSince = performance.now();
    while (stored < stopped.acked && performance.now() - stableSince < 5000 && performance.now() < drainDeadline + 60_000) {
      await sleep(1000);
      const n = await count();
      if (n !== stored) stableSince = performance.now();
      stored = n;
    }
  }
  const backgroundLost = stored === null ? null : Math.max(0, stopped.acked - stored);
  const incidentsInStore = await fetch(`${http}/api/incidents?category=fire&limit=1`, { headers: { authorization: `Bearer ${dutyToken}` } })
    .then((r) => r.json() as Promise<{ total: number }>)
    .then((r) => r.total)
    .catch(() => null);
  const final = await scrape();
  const crashReason: string | null = crashed;

  phase('stopping');
  clearInterval(progress);
  clearInterval(bgTimer);
  for (const timer of followTimers) clearTimeout(timer);
  closingSockets = true;
  duty.terminate();
  worker.terminate();
  await cameraAgent.endAsync(true).catch(() => undefined);
  await load.close();
  gatewaySampler.stop();
  influxSampler?.stop();
  await stopChild(child, 30_000);

  // ---- figures ----------------------------------------------------------------------------------
  const arrived = episodes.filter((e) => e.arrivedAt !== undefined && !e.late);
  const latencies = arrived.map((e) => e.arrivedAt! - e.publishedAt);
  const toIngest = arrived.filter((e) => e.receivedAt !== undefined).map((e) => e.receivedAt! - e.publishedWall);
  const ingestToWs = arrived.filter((e) => e.receivedAt !== undefined).map((e) => performance.timeOrigin + e.arrivedAt! - e.receivedAt!);
  const dispatch = arrived.filter((e) => e.dispatchedAt !== undefined).map((e) => e.dispatchedAt! - e.publishedAt);
  const lost = episodes.filter((e) => e.lost).length;
  const late = episodes.filter((e) => e.late).length;
  const duplicated = counts.extraNew + counts.unexpectedNew;
  const joinsPlanned = episodes.filter((e) => e.joinPlanned);

  const signals = (m: Awaited<ReturnType<typeof scrape>>, outcome: string) =>
    m.labelled('gs_alert_signals_total').filter((s) => /kind="camera_(fire|smoke)"/.test(s.labels) && s.labels.includes(`outcome="${outcome}"`)).reduce((a, s) => a + s.value, 0);
  /** The gateway's own receipt -> push histogram over the window: the bucket holding the percentile. */
  const gatewayBucket = (p: number) => {
    const b0 = before.labelled('gs_alert_latency_seconds_bucket');
    const b1 = after.labelled('gs_alert_latency_seconds_bucket');
    const rows = b1.map((b) => ({ le: b.labels.replace(/.*le="([^"]+)".*/, '$1'), n: b.value - (b0.find((x) => x.labels === b.labels)?.value ?? 0) }));
    const total = rows.find((r) => r.le === '+Inf')?.n ?? 0;
    if (total === 0) return null;
    const hit = rows.find((r) => r.n >= (p / 100) * total);
    return hit ? (hit.le === '+Inf' ? Infinity : Number(hit.le) * 1000) : null;
  };
  const p99 = percentile(latencies, 99);
  const p999 = percentile(latencies, 99.9);
  const misses: string[] = [];
  if (seconds < TARGET.seconds) misses.push(`seconds ${seconds} < ${TARGET.seconds}`);
  if (p99 === null || p99 > TARGET.p99_ms) misses.push(`p99 ${round(p99, 1)} ms > ${TARGET.p99_ms} ms`);
  if (p999 === null || p999 > TARGET.p999_ms) misses.push(`p99.9 ${round(p999, 1)} ms > ${TARGET.p999_ms} ms`);
  if (lost > 0) misses.push(`lost ${lost}`);
  if (backgroundLost) misses.push(`background telemetry lost ${backgroundLost} (acknowledged ${stopped.acked}, stored ${stored})`);
  if (duplicated > 0) misses.push(`duplicated ${duplicated}`);
  if (bg.ackedPerSec < TARGET.background_msg_per_s * 0.98) misses.push(`background ${Math.round(bg.ackedPerSec)} msg/s < ${TARGET.background_msg_per_s}`);
  if (crashReason) misses.push(`gateway ${crashReason}`);
  if (wsDropped) misses.push(wsDropped);

  const result = {
    bench: 'alert-latency',
    commit,
    commit_dirty_paths: dirty,
    worktree_diff_sha256: diffSha,
    seconds,
    warmup_s: warmup,
    influx: useInflux,
    fire_rate_per_s: fireRate,
    background_target_msg_per_s: rate,
    background_devices: deviceCount,
    background_agents: agents,
    background_device_period_s: rate > 0 ? round(deviceCount / rate, 2) : null,
    incidents_expected: episodes.length,
    incidents_arrived: arrived.length,
    samples: latencies.length,
    p50_ms: round(percentile(latencies, 50), 1),
    p90_ms: round(percentile(latencies, 90), 1),
    p99_ms: round(p99, 1),
    p999_ms: round(p999, 1),
    max_ms: round(latencies.length ? Math.max(...latencies) : null, 1),
    lost,
    late,
    duplicated,
    duplicated_extra_new: counts.extraNew,
    duplicated_unexpected_new: counts.unexpectedNew,
    incidents_in_store: incidentsInStore,
    to_ingest_p50_ms: percentile(toIngest, 50),
    to_ingest_p99_ms: percentile(toIngest, 99),
    to_ingest_max_ms: toIngest.length ? Math.max(...toIngest) : null,
    ingest_to_ws_p50_ms: round(percentile(ingestToWs, 50), 0),
    ingest_to_ws_p99_ms: round(percentile(ingestToWs, 99), 0),
    ingest_to_ws_max_ms: round(ingestToWs.length ? Math.max(...ingestToWs) : null, 0),
    gateway_alert_latency_p50_bucket_ms: gatewayBucket(50),
    gateway_alert_latency_p99_bucket_ms: gatewayBucket(99),
    dispatch_p50_ms: round(percentile(dispatch, 50), 1),
    dispatch_p99_ms: round(percentile(dispatch, 99), 1),
    dispatch_samples: dispatch.length,
    duplicates_sent: counts.duplicatesSent,
    repeats_sent: counts.repeatsSent,
    joins_sent: counts.joinsSent,
    joins_seen: joinsPlanned.filter((e) => e.joinSeen).length,
    gateway_new_incident_signals: signals(final, 'new_incident') - signals(before, 'new_incident'),
    gateway_repeat_signals: signals(final, 'repeat') - signals(before, 'repeat'),
    gateway_joined_signals: signals(final, 'joined') - signals(before, 'joined'),
    gateway_duplicates_dropped: final.one('gs_mqtt_messages_duplicate_total') - before.one('gs_mqtt_messages_duplicate_total'),
    picker_skips: counts.pickerSkips,
    resolve_errors: counts.resolveErrors,
    first_resolve_error: firstResolveError,
    publish_errors: counts.publishErrors,
    background_msg_per_s: round(bg.ackedPerSec, 0),
    background_msg_per_s_min_1s: bg.minPerSec,
    background_puback_p50_ms: round(bg.histogram.percentileMs(50), 1),
    background_puback_p99_ms: round(bg.histogram.percentileMs(99), 1),
    background_stalls_at_inflight_cap: bg.stalls,
    background_disconnects: stopped.disconnects,
    background_sent: stopped.sent,
    background_acked: stopped.acked,
    background_stored: stored,
    background_lost: backgroundLost,
    gateway_eventloop_lag_p99_ms_median_10s: round(percentile(lagP99s, 50), 1),
    gateway_eventloop_lag_p99_ms_worst_10s: round(lagP99s.length ? Math.max(...lagP99s) : null, 1),
    gateway_eventloop_lag_max_ms: round(lagMax, 1),
    gateway_cpu_percent: round(gatewaySampler.cpuPercent, 0),
    gateway_cpu_us_per_msg: round(gatewaySampler.cpuPercent === null || bg.ackedPerSec <= 0 ? null : (gatewaySampler.cpuPercent * 1e4) / bg.ackedPerSec, 1),
    gateway_runqueue_wait_percent: round(gatewayWait.waitPercent, 1),
    spool_commits_per_s: round((after.one('gs_spool_commit_seconds_count') - before.one('gs_spool_commit_seconds_count')) / windowSeconds, 0),
    bench_main_runqueue_wait_percent: round(selfWait.waitPercent, 1),
    rss_mb: round(gatewaySampler.peakRssMb, 0),
    influxd_cpu_percent: round(influxSampler?.cpuPercent, 0),
    loadgen_cpu_percent: round(load.cpuPercent, 0),
    bench_main_cpu_percent: round(machine.selfPercent, 0),
    machine_cpu_percent: round(machine.busyPercent, 0),
    other_cpu_percent: round(machine.otherPercent([gatewaySampler.cpuPercent, influxSampler?.cpuPercent, load.cpuPercent]), 0),
    loadavg_1m_at_start: round(loadAtStart, 2),
    gateway_crashed: crashReason,
    gateway_pinned_cpu: pinGateway ? gatewayCpu : null,
    ratio_to_limit: round(p99 === null ? null : p99 / TARGET.p99_ms, 2),
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
