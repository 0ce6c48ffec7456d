/**
 * WebSocket fan-out: 500 signed-in dashboard clients on `/ws` receiving live device updates, and
 * one client that stops reading. `npm run bench:ws-fanout [-- --clients 500 --rate 1000 --seconds 20]`
 *
 * The gateway runs in its own process (bench/gateway-child.ts: the site's 1,788 devices, no
 * InfluxDB); the clients in `--processes` worker processes (bench/lib/ws-clients-child.ts), so
 * that parsing 500 clients' JSON does not become the bottleneck being measured. Updates are MQTT
 * telemetry messages whose `ts` is the publisher's send time; the gateway pushes it as the
 * update's `valuesTs`, and each client records receive time − valuesTs (same machine clock).
 *
 * Phases:
 *   fan-out, once per `--flush-ms` value ("default" = the config's push.flushIntervalMs, 50 ms
 *     since issue #7; it was 250 ms):
 *     the hub coalesces updates and sends once per interval, so the interval is a floor under
 *     the latency (uniform 0..interval) and the 100 ms target needs an interval well below it.
 *   slow client: `--slow-others` clients keep reading; one more pauses its socket (stops reading)
 *     while `--slow-rate` updates/s stream in. With `--slow-cap-mb` as push.maxBufferedBytes, the
 *     hub must stop sending to it once that many bytes wait, so the gateway's RSS stops growing;
 *     when it reads again it gets a fresh snapshot.
 *
 * Figures: p50_ms / p99_ms / max_ms (source → client), delivered_ratio (updates received ÷
 * updates sent × clients), gateway_rss_mb / gateway_cpu_percent; for the slow client:
 * slow_stale_after_s, rss growth over the stall and over its last 10 s, slow_resnapshot_ms.
 * Progress on stderr; one JSON line last on stdout; exit 0 even when a target is missed.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { resolveConfig } from '../config/load.js';
import { signInToken, siteFleet, startDashboardGateway, StatusStream, TreeCpu, writeFleet, type BenchGateway } from './lib/dashboard.js';
import { LogHistogram } from './lib/histogram.js';
import {
  cleanupAll,
  command,
  gitCommit,
  hardDeadline,
  installExitHandlers,
  MachineCpu,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  readProc,
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
    clients: { type: 'string', default: '500' },
    processes: { type: 'string', default: '4' },
    devices: { type: 'string', default: '1788' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    /** The default interval and, for comparison, the one it replaced. */
    'flush-ms': { type: 'string', default: 'default,250' },
    'slow-seconds': { type: 'string', default: '30' },
    'slow-cap-mb': { type: 'string', default: '1' },
    /**
     * The slow phase needs more bytes per second than the fan-out: loopback TCP buffers hold
     * ~4 MB before the gateway's own send queue grows at all. Fewer readers keep the machine's
     * two cores for the gateway.
     */
    'slow-rate': { type: 'string', default: '4000' },
    'slow-others': { type: 'string', default: '50' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const clients = parseIntArg(args.clients, 'clients', 1, 20_000);
const processes = parseIntArg(args.processes, 'processes', 1, 32);
const devices = parseIntArg(args.devices, 'devices', 1, 500_000);
const rate = parseIntArg(args.rate, 'rate', 1, 100_000);
const seconds = parseIntArg(args.seconds, 'seconds', 1, 600);
const warmup = parseIntArg(args.warmup, 'warmup', 0, 60);
const flushes = args['flush-ms'].split(',').map((f) => (f.trim() === 'default' ? null : parseIntArg(f.trim(), 'flush-ms', 16, 10_000)));
const slowSeconds = parseIntArg(args['slow-seconds'], 'slow-seconds', 0, 600);
const slowCapMb = Number(args['slow-cap-mb']);
const slowRate = parseIntArg(args['slow-rate'], 'slow-rate', 1, 100_000);
const slowOthers = parseIntArg(args['slow-others'], 'slow-others', 0, 20_000);
if (!(slowCapMb >= 0)) throw new Error('--slow-cap-mb: expected a number of MB (0 = the config default)');
const TARGET = { p99_ms: 100, clients: 500 };
/** The gateway's own defaults (config/schema.ts), so "default" means what a deployment gets. */
const CONFIG_DEFAULT = resolveConfig({ gateway: {} }, { source: 'config defaults', baseDir: REPO }).config.gateway!.push;
const CONTROL_SECONDS = 10;

installExitHandlers();
hardDeadline((300 + flushes.length * (90 + warmup + seconds) + slowSeconds + 160) * 1000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-ws-'));
removeOnExit(tmp);
const fleet = siteFleet(devices);
const ledgerFile = join(tmp, 'ledger.csv');
writeFleet(ledgerFile, fleet);

interface ClientReport {
  histogram: number[];
  maxUs: number;
  messages: number;
  updates: number;
  stamped: number;
  bytes: number;
  snapshots: number;
  closed: number;
  errors: number;
  open: number;
  cpuPercent: number | null;
}

/** The client worker processes, `clients` spread over them. */
async function startClients(gw: BenchGateway, token: string, count: number): Promise<ChildProcess[]> {
  const children: ChildProcess[] = [];
  const per = Math.ceil(count / processes);
  for (let i = 0, left = count; left > 0; i++, left -= per) {
    const label = `clients-${i}`;
    const child = spawnTs(`${REPO}/bench/lib/ws-clients-child.ts`, {
      label,
      nofile: per + 256,
      env: { ...process.env, GS_WS_CLIENTS: JSON.stringify({ port: gw.httpPort, token, clients: Math.min(per, left), label }) },
    });
    onCleanup(() => stopChild(child, 5000));
    children.push(child);
  }
  const ready = await Promise.all(
    children.map((c, i) => waitForLine(c, `clients-${i}`, (m) => (m.ready ? (m as { connected: number; failed: number; firstError: string | null }) : undefined), 120_000)),
  );
  const connected = ready.reduce((a, r) => a + r.connected, 0);
  const failed = ready.reduce((a, r) => a + r.failed, 0);
  process.stderr.write(`[clients] ${connected} connected, ${failed} failed${failed ? ` (first: ${ready.find((r) => r.firstError)?.firstError})` : ''}\n`);
  if (connected < count) throw new Error(`only ${connected} of ${count} clients got a snapshot`);
  return children;
}

async function report(children: ChildProcess[]): Promise<{ histogram: LogHistogram; reports: ClientReport[] }> {
  const reports = await Promise.all(
    children.map((c, i) => {
      const p = waitForLine(c, `clients-${i}`, (m) => (m.report ? (m as unknown as ClientReport) : undefined), 30_000);
      command(c, 'report');
      return p;
    }),
  );
  const histogram = new LogHistogram();
  for (const r of reports) {
    histogram.merge(r.histogram);
    histogram.maxUs = Math.max(histogram.maxUs, r.maxUs);
  }
  return { histogram, reports };
}

const sum = (reports: ClientReport[], key: 'messages' | 'updates' | 'stamped' | 'bytes' | 'snapshots' | 'errors' | 'closed' | 'open') =>
  reports.reduce((a, r) => a + r[key], 0);

async function gatewayWithClients(push: Record<string, unknown>, label: string, clientCount = clients) {
  phase(`${label}: gateway (${devices} devices), every device online, ${clientCount} clients`);
  const gw = await startDashboardGateway({
    dir: mkdtempSync(join(tmp, 'gw-')),
    ledgerFile,
    logLevel: args['log-level'],
    push,
    nofile: clients + 1024,
    nodeFlags: ['--expose-gc'],
  });
  onCleanup(() => stopChild(gw.child, 5000));
  const stream = new StatusStream(fleet);
  onCleanup(() => stream.close());
  await stream.connect(gw.mqttPort);
  await stream.allOnline();
  const token = await signInToken(gw.httpUrl);
  const children = clientCount > 0 ? await startClients(gw, token, clientCount) : [];
  return { gw, stream, token, children };
}

async function teardown(gw: BenchGateway, stream: StatusStream, children: ChildProcess[]): Promise<void> {
  stream.stop();
  await Promise.all(children.map((c) => stopChild(c, 5000)));
  await stream.close();
  await stopChild(gw.child, 10_000);
}

async function runFanout(flushMs: number | null) {
  const label = `fan-out, flush ${flushMs ?? `${CONFIG_DEFAULT.flushIntervalMs} (default)`} ms`;
  const { gw, stream, children } = await gatewayWithClients(flushMs === null ? {} : { flushIntervalMs: flushMs }, label);
  const sampler = new ProcSampler(gw.pid);
  const machine = new MachineCpu();
  const ours = new TreeCpu();
  phase(`${label}: ${rate} stamped updates/s for ${warmup}+${seconds} s`);
  stream.start(rate, 'stamped');
  await sleep(warmup * 1000);
  for (const c of children) command(c, 'reset');
  const sentBefore = stream.sent;
  sampler.markStart();
  machine.markStart();
  ours.markStart();
  const started = performance.now();
  for (let s = 0; s < seconds; s++) {
    await sleep(1000);
    process.stderr.write(`[${label}] ${s + 1}/${seconds} s, gateway rss ${round((sampler.last?.rssKb ?? 0) / 1024, 0)} MB\n`);
  }
  const sent = stream.sent - sentBefore;
  const windowSec = (performance.now() - started) / 1000;
  sampler.markEnd();
  ours.markEnd();
  machine.markEnd();
  // In flight at the end: a flush interval and the transit, then read the clients.
  stream.stop();
  await sleep(Math.max(500, 2 * (flushMs ?? CONFIG_DEFAULT.flushIntervalMs)));
  const { histogram, reports } = await report(children);
  sampler.stop();
  const clientCpu = reports.reduce((a, r) => a + (r.cpuPercent ?? 0), 0);
  await teardown(gw, stream, children);
  const result = {
    flush_ms: flushMs ?? CONFIG_DEFAULT.flushIntervalMs,
    p50_ms: round(histogram.percentileMs(50), 1),
    p99_ms: round(histogram.percentileMs(99), 1),
    max_ms: round(histogram.maxUs / 1000, 1),
    updates_sent_per_s: round(sent / windowSec, 0),
    updates_received: sum(reports, 'stamped'),
    delivered_ratio: round(sum(reports, 'stamped') / (sent * clients), 3),
    messages_per_client_per_s: round(sum(reports, 'messages') / clients / windowSec, 1),
    mb_per_s_out: round(sum(reports, 'bytes') / 2 ** 20 / windowSec, 1),
    client_errors: sum(reports, 'errors'),
    clients_open_at_end: sum(reports, 'open'),
    snapshots_during_window: sum(reports, 'snapshots'),
    gateway_rss_mb: round(sampler.peakRssMb, 0),
    gateway_cpu_percent: round(sampler.cpuPercent, 0),
    clients_cpu_percent: round(clientCpu, 0),
    machine_cpu_percent: round(machine.busyPercent, 0),
    other_cpu_percent: round((machine.busyPercent ?? NaN) - (ours.percent ?? NaN), 0),
  };
  process.stderr.write(`[${label}] ${JSON.stringify(result)}\n`);
  return result;
}

/** The gateway's heap after a full GC (MB): what it holds, without V8's lazily grown slack. */
async function heapAfterGc(gw: BenchGateway): Promise<number | null> {
  const p = waitForLine(gw.child, 'gateway', (m) => (m.gc === true ? (m as { heapUsedMb: number }) : undefined), 30_000);
  command(gw.child, 'gc');
  return (await p.catch(() => null))?.heapUsedMb ?? null;
}

/** Watches the gateway's log for the hub pausing a client (push/hub.ts). */
function watchStale(child: ChildProcess): { at: number | null; count: number } {
  const seen = { at: null as number | null, count: 0 };
  if (child.stderr) {
    createInterface({ input: child.stderr }).on('line', (line) => {
      if (!line.includes('not keeping up')) return;
      seen.count++;
      seen.at ??= performance.now();
    });
  }
  return seen;
}

async function runSlowClient() {
  const capBytes = slowCapMb > 0 ? Math.round(slowCapMb * 2 ** 20) : CONFIG_DEFAULT.maxBufferedBytes;
  const label = `slow client, cap ${round(capBytes / 2 ** 20, 1)} MB`;
  const { gw, stream, token, children } = await gatewayWithClients(slowCapMb > 0 ? { maxBufferedBytes: capBytes } : {}, label, slowOthers);
  const stale = watchStale(gw.child);
  // The client that stops reading: it takes its snapshot, then its socket is paused, so the
  // kernel buffers fill and then the gateway's send queue for it.
  let slowSnapshots = 0;
  let lastSnapshotAt = 0;
  const slow = await new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/ws`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    ws.on('message', (data: Buffer) => {
      if (data.toString('utf8', 0, 40).includes('"devices.snapshot"')) {
        slowSnapshots++;
        lastSnapshotAt = performance.now();
        if (slowSnapshots === 1) resolve(ws);
      }
    });
    ws.on('error', reject);
  });
  onCleanup(() => slow.terminate());
  const socket = (slow as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  phase(`${label}: one client stops reading; ${slowRate} updates/s for ${slowSeconds} s`);
  const sampler = new ProcSampler(gw.pid);
  stream.start(slowRate, 'stamped');
  await sleep(warmup * 1000);
  // Control: the same load with every client reading, to tell the gateway's own heap growth at
  // this rate from what the stalled client costs.
  const control: number[] = [];
  const heapAtControl = await heapAfterGc(gw);
  for (let s = 0; s < CONTROL_SECONDS; s++) {
    await sleep(1000);
    control.push(readProc(gw.pid)?.rssKb ?? 0);
  }
  process.stderr.write(`[${label}] control (all reading): rss ${round(control[0]! / 1024, 0)} -> ${round(control.at(-1)! / 1024, 0)} MB in ${CONTROL_SECONDS} s\n`);
  for (const c of children) command(c, 'reset');
  const heapAtPause = await heapAfterGc(gw);
  const rssAtStart = readProc(gw.pid)?.rssKb ?? 0;
  socket.pause();
  const pausedAt = performance.now();
  sampler.markStart();
  const rss: Array<{ at: number; kb: number }> = [];
  let heapAtStale: number | null = null;
  for (let s = 0; s < slowSeconds; s++) {
    await sleep(1000);
    if (stale.at !== null && heapAtStale === null) heapAtStale = await heapAfterGc(gw);
    const kb = readProc(gw.pid)?.rssKb ?? 0;
    rss.push({ at: performance.now(), kb });
    process.stderr.write(`[${label}] ${s + 1}/${slowSeconds} s, gateway rss ${round(kb / 1024, 0)} MB${stale.at ? ', the hub paused the slow client' : ''}\n`);
  }
  sampler.markEnd();
  const heapAtEnd = await heapAfterGc(gw);
  const endedAt = performance.now();
  const { histogram, reports } = await report(children);
  // Reading again: the hub should send a fresh snapshot once the backlog drains.
  const snapshotsBefore = slowSnapshots;
  const resumedAt = performance.now();
  socket.resume();
  const deadline = resumedAt + 30_000;
  while (slowSnapshots === snapshotsBefore && performance.now() < deadline) await sleep(50);
  const resnapshotMs = slowSnapshots > snapshotsBefore ? lastSnapshotAt - resumedAt : null;
  stream.stop();
  slow.terminate();
  sampler.stop();
  await teardown(gw, stream, children);
  const mb = (kb: number) => kb / 1024;
  const perTenSeconds = (series: number[]) => (series.length > 1 ? (mb(series.at(-1)! - series[0]!) * 10) / (series.length - 1) : null);
  const afterStale = stale.at === null ? [] : rss.filter((r) => r.at >= stale.at!).map((r) => r.kb);
  const result = {
    slow_cap_mb: round(capBytes / 2 ** 20, 1),
    slow_rate_per_s: slowRate,
    slow_others: slowOthers,
    slow_stale_after_s: stale.at !== null ? round((stale.at - pausedAt) / 1000, 1) : null,
    slow_stale_events: stale.count,
    slow_rss_mb_at_pause: round(mb(rssAtStart), 0),
    slow_rss_mb_peak: round(sampler.peakRssMb, 0),
    slow_rss_growth_mb: round(mb(Math.max(...rss.map((r) => r.kb)) - rssAtStart), 1),
    control_rss_growth_mb_per_10s: round(perTenSeconds(control), 1),
    slow_rss_growth_mb_per_10s_before_pause_ended: round(perTenSeconds(rss.map((r) => r.kb)), 1),
    slow_rss_growth_mb_per_10s_after_stale: round(perTenSeconds(afterStale), 1),
    // After a full GC: what the gateway really holds, with every client reading (control) and with
    // one stalled: at the pause, when the hub paused that client, at the end.
    control_heap_growth_mb_per_10s: heapAtControl !== null && heapAtPause !== null ? round(((heapAtPause - heapAtControl) * 10) / CONTROL_SECONDS, 1) : null,
    slow_heap_mb_after_gc_at_pause: round(heapAtPause, 1),
    slow_heap_mb_after_gc_at_stale: round(heapAtStale, 1),
    slow_heap_mb_after_gc_at_end: round(heapAtEnd, 1),
    slow_heap_growth_mb_per_10s_after_stale:
      heapAtStale !== null && heapAtEnd !== null && stale.at !== null && endedAt > stale.at ? round(((heapAtEnd - heapAtStale) * 10_000) / (endedAt - stale.at), 1) : null,
    slow_resnapshot_ms: round(resnapshotMs, 0),
    others_p99_ms_during_stall: round(histogram.percentileMs(99), 1),
    others_delivered_updates: sum(reports, 'stamped'),
    others_errors: sum(reports, 'errors'),
  };
  process.stderr.write(`[${label}] ${JSON.stringify(result)}\n`);
  return result;
}

const { commit, dirty, diffSha } = gitCommit();
const loadAtStart = loadavg()[0];
process.stderr.write(
  `ws-fanout bench: ${clients} clients in ${processes} processes, ${devices} devices, ${rate} updates/s, ${seconds} s per flush interval ` +
    `(${flushes.map((f) => f ?? 'default').join(', ')}), slow client ${slowSeconds} s; commit ${commit}${dirty.length ? ' (dirty)' : ''}\n`,
);

try {
  const runs: Array<Awaited<ReturnType<typeof runFanout>>> = [];
  for (const f of flushes) runs.push(await runFanout(f));
  const slow = slowSeconds > 0 ? await runSlowClient() : null;

  const misses: string[] = [];
  const defaultRun = runs.find((r) => r.flush_ms === CONFIG_DEFAULT.flushIntervalMs);
  const best = runs.reduce((a, r) => ((r.p99_ms ?? Infinity) < (a.p99_ms ?? Infinity) ? r : a), runs[0]!);
  if (clients < TARGET.clients) misses.push(`clients ${clients} < ${TARGET.clients}`);
  // The target is the shipped configuration's: other intervals are run for comparison and listed apart.
  const overTarget = (r: (typeof runs)[number]): boolean => r.p99_ms === null || r.p99_ms > TARGET.p99_ms;
  if (!defaultRun) misses.push(`no run at the default flush interval (${CONFIG_DEFAULT.flushIntervalMs} ms)`);
  else if (overTarget(defaultRun)) misses.push(`flush ${defaultRun.flush_ms} ms (default): p99_ms ${defaultRun.p99_ms} > ${TARGET.p99_ms}`);
  const comparisonsOverTarget = runs.filter((r) => r !== defaultRun && overTarget(r)).map((r) => `flush ${r.flush_ms} ms: p99_ms ${r.p99_ms} > ${TARGET.p99_ms}`);
  if (slow) {
    if (slow.slow_stale_after_s === null) misses.push('the hub never paused the client that stopped reading');
    // Bounded: once the hub paused the client, what the gateway holds (heap after GC) grows no
    // faster than with every client reading (the control), give or take 2 MB per 10 s of noise.
    const after = slow.slow_heap_growth_mb_per_10s_after_stale;
    const control = slow.control_heap_growth_mb_per_10s ?? 0;
    if (after !== null && after > Math.max(0, control) + 2) {
      misses.push(`gateway heap (after GC) grew ${after} MB/10 s after the hub paused the slow client (control ${control} MB/10 s)`);
    }
    if (slow.slow_resnapshot_ms === null) misses.push('the slow client got no fresh snapshot after reading again');
  }
  const result: Record<string, unknown> = {
    bench: 'ws-fanout',
    commit,
    commit_dirty_paths: dirty,
    worktree_diff_sha256: diffSha,
    clients,
    client_processes: processes,
    devices,
    rate_per_s: rate,
    seconds,
    loadavg_1m_at_start: round(loadAtStart, 2),
  };
  for (const r of runs) for (const [k, v] of Object.entries(r)) if (k !== 'flush_ms') result[`flush${r.flush_ms}_${k}`] = v;
  if (slow) Object.assign(result, slow);
  Object.assign(result, {
    default_flush_ms: CONFIG_DEFAULT.flushIntervalMs,
    p99_ms: defaultRun?.p99_ms ?? null,
    best_p99_ms: best?.p99_ms ?? null,
    best_flush_ms: best?.flush_ms ?? null,
    ratio_to_limit: defaultRun?.p99_ms != null ? round(defaultRun.p99_ms / TARGET.p99_ms, 2) : null,
    best_ratio_to_limit: best?.p99_ms != null ? round(best.p99_ms / TARGET.p99_ms, 2) : null,
    targets: TARGET,
    target_met: misses.length === 0,
    target_misses: misses,
    comparison_runs_over_target: comparisonsOverTarget,
  });
  await cleanupAll();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await cleanupAll();
  process.exit(1);
}
