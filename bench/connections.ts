/**
 * Connection capacity: how many idle device connections one gateway holds, and what each costs
 * in resident memory. `npm run bench:connections -- --connections 50000`
 *
 * The gateway runs in a child process (bench/gateway-child.ts, InfluxDB off: idle clients send
 * nothing). Raw-socket MQTT clients (keepalive 3600 s, clean session) connect at a bounded rate
 * from 127.0.0.2..127.0.0.(1+sources) (~28k ephemeral ports per source address), spread over as
 * many generator processes as the per-process open-file limit needs. The run stops at the target
 * or at the first failure and says why. RSS is read from /proc/<pid>/status after a forced GC
 * (the child runs with --expose-gc), before and after; bytes per connection = ΔRSS / connections.
 *
 * Open files: every connection is one descriptor in the gateway and one in a generator. The
 * children are started through `bash -c 'ulimit -n <connections+1024> || ulimit -n <hard limit>'`;
 * an unprivileged process cannot go past its hard limit, so the effective limits are read back
 * from /proc/<pid>/limits and reported. The gateway holds at most `gateway.mqtt.maxConnections`
 * (default `auto`: its open-file limit less a reserve; --max-connections sets it), read from
 * /health; by default the run stops there. --no-fd-cap goes past it to show what happens: the
 * gateway refuses the rest (gs_mqtt_connections_refused_total) and /health must still answer.
 */
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LoadDriver } from './lib/driver.js';
import { benchTanks, writeLedger } from './lib/fleet.js';
import {
  cleanupAll,
  gitCommit,
  hardDeadline,
  installExitHandlers,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  readNofile,
  readProc,
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

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '50000' },
    sources: { type: 'string', default: '9' },
    'connect-rate': { type: 'string', default: '2000' },
    'per-generator': { type: 'string', default: '18000' },
    keepalive: { type: 'string', default: '3600' },
    hold: { type: 'string', default: '10' },
    'ledger-devices': { type: 'string' },
    'no-fd-cap': { type: 'boolean', default: false },
    /** gateway.mqtt.maxConnections: 'auto' (default) or a number. */
    'max-connections': { type: 'string', default: 'auto' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const target = parseIntArg(args.connections, 'connections', 1, 1_000_000);
const sourceCount = parseIntArg(args.sources, 'sources', 1, 250);
const connectRate = parseIntArg(args['connect-rate'], 'connect-rate', 1, 100_000);
const perGenerator = parseIntArg(args['per-generator'], 'per-generator', 100, 1_000_000);
const keepaliveSec = parseIntArg(args.keepalive, 'keepalive', 0, 65_535);
const holdSec = parseIntArg(args.hold, 'hold', 0, 600);
const ledgerDevices = parseIntArg(args['ledger-devices'] ?? String(target), 'ledger-devices', 1, 1_000_000);
const maxConnections = args['max-connections'] === 'auto' ? 'auto' : parseIntArg(args['max-connections'], 'max-connections', 1, 100_000_000);
const sources = Array.from({ length: sourceCount }, (_, i) => `127.0.0.${i + 2}`);
const TARGET = { connections: 50_000, rss_mb: 1536 };
const FD_RESERVE = 64; // listening sockets, InfluxDB/HTTP, files, stdio

installExitHandlers();
hardDeadline((300 + holdSec + (3 * target) / connectRate) * 1000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-conn-'));
removeOnExit(tmp);

const ownNofile = readNofile('self') ?? 1024;
if (perGenerator + FD_RESERVE > ownNofile) {
  process.stderr.write(`--per-generator ${perGenerator} is above this process's open-file limit (${ownNofile}); lower it\n`);
  process.exit(2);
}

const { commit, dirty, diffSha } = gitCommit();
const loadAtStart = loadavg()[0];

/** The gateway's /health, or undefined when it does not answer (with every descriptor taken it cannot accept). */
async function health(httpPort: number): Promise<{ mqtt: { clients: number; maxConnections: number | null } } | undefined> {
  try {
    return (await fetch(`http://127.0.0.1:${httpPort}/health`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.json())) as {
      mqtt: { clients: number; maxConnections: number | null };
    };
  } catch (err) {
    process.stderr.write(`[gateway] /health unreachable: ${(err as Error).message}\n`);
    return undefined;
  }
}

async function refusedCount(httpPort: number): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    let sum = 0;
    for (const m of text.matchAll(/^gs_mqtt_connections_refused_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
    return sum;
  } catch {
    return null;
  }
}

async function gcRss(child: ReturnType<typeof spawnTs>, pid: number): Promise<{ rssMb: number; heapUsedMb: number }> {
  const reply = waitForLine(child, 'gateway', (m) => (m.gc !== undefined ? (m as { heapUsedMb: number }) : undefined), 30_000);
  child.stdin?.write('gc\n');
  const { heapUsedMb } = await reply;
  await sleep(1000);
  const p = readProc(pid);
  if (!p) throw new Error('gateway is gone');
  return { rssMb: p.rssKb / 1024, heapUsedMb };
}

try {
  phase('gateway');
  const ledgerFile = join(tmp, 'ledger.csv');
  writeLedger(ledgerFile, benchTanks(ledgerDevices));
  const config = {
    log: { level: args['log-level'] },
    ledger: { file: ledgerFile },
    gateway: {
      mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, maxConnections },
      http: { host: '127.0.0.1', port: 0 },
      influx: { enabled: false },
      dataDir: join(tmp, 'gateway-data'),
    },
  };
  const child = spawnTs(`${REPO}/bench/gateway-child.ts`, {
    nofile: target + 1024,
    nodeFlags: [...GATEWAY_NODE_FLAGS, '--expose-gc'],
    label: 'gateway',
    env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(config) },
  });
  const ready = await waitForLine(
    child,
    'gateway',
    (m) => (m.ready ? (m as { pid: number; mqttPort: number; httpPort: number; nofile: number | null }) : undefined),
    60_000,
  );
  const gatewayNofile = ready.nofile ?? Infinity;
  const gatewayCap = (await health(ready.httpPort))?.mqtt.maxConnections ?? null;
  // Whichever comes first: the gateway's cap, or its descriptors (an explicit cap may be above them).
  const capByGateway = gatewayCap !== null && gatewayCap <= gatewayNofile - FD_RESERVE;
  const capAt = capByGateway ? gatewayCap : gatewayNofile - FD_RESERVE;
  const attempt = args['no-fd-cap'] ? target : Math.min(target, capAt);
  process.stderr.write(
    `[gateway] ready: pid ${ready.pid}, mqtt ${ready.mqttPort}, open-file limit ${ready.nofile}, maxConnections ${gatewayCap ?? 'none'}; ` +
      `attempting ${attempt} of ${target} connections from ${sources[0]}..${sources.at(-1)}\n`,
  );
  let gatewayExit: string | undefined;
  child.once('exit', (code, signal) => {
    const last = stderrTail(child).split('\n').filter((l) => /error|Error|EMFILE/.test(l)).slice(-3).join(' | ');
    gatewayExit = `gateway exited (${signal ?? `code ${code}`})${last ? `: ${last.slice(0, 500)}` : ''}`;
  });

  await sleep(2000);
  const before = await gcRss(child, ready.pid);
  process.stderr.write(`[gateway] idle with ${ledgerDevices} ledger devices: RSS ${before.rssMb.toFixed(0)} MB (after GC)\n`);

  phase('connecting');
  const sampler = new ProcSampler(ready.pid);
  const generators = Math.max(1, Math.ceil(attempt / perGenerator));
  const driver = new LoadDriver({
    label: 'idle',
    mode: 'idle',
    host: '127.0.0.1',
    port: ready.mqttPort,
    sources,
    clients: attempt,
    generators,
    keepaliveSec,
    connectRate,
    maxPendingConnects: 512,
    connectTimeoutMs: 15_000,
    stopOnFirstFailure: true,
    window: 1,
    rate: 0,
    warmupMs: 0,
    measureMs: 0,
    samplesPerSec: 0,
    drainTimeoutMs: 0,
  });
  onCleanup(() => driver.close());
  const curve: Array<[number, number]> = [];
  let nextMark = 5000;
  let stopRequested = false;
  const conn = await driver
    .connect(120_000 + (attempt / connectRate) * 2000, (p) => {
      if (p.connected >= nextMark) {
        const s = sampler.sample();
        if (s) curve.push([p.connected, round(s.rssKb / 1024, 0) ?? 0]);
        nextMark += 5000;
      }
      if (!stopRequested && (p.failed > 0 || gatewayExit)) {
        stopRequested = true;
        driver.stopConnecting();
      }
    })
    .catch((err: Error) => {
      if (!gatewayExit) throw err;
      return { opened: 0, connected: driver.progress.connected, failed: driver.progress.failed, firstFailure: gatewayExit, seconds: NaN };
    });
  process.stderr.write(`[idle] ${conn.connected} connected, ${conn.failed} failed in ${conn.seconds.toFixed(1)} s${conn.firstFailure ? ` (first failure: ${conn.firstFailure})` : ''}\n`);
  const lastSample = sampler.last;

  phase(`holding ${holdSec} s`);
  await sleep(holdSec * 1000);
  let after: { rssMb: number; heapUsedMb: number | null } | undefined;
  let gatewayClients: number | null = null;
  let healthAnswered: boolean | null = null;
  let refused: number | null = null;
  if (!gatewayExit) {
    process.stderr.write('[gateway] forcing a GC, then reading RSS and /health\n');
    after = await gcRss(child, ready.pid);
    const h = await health(ready.httpPort);
    healthAnswered = h !== undefined;
    gatewayClients = h?.mqtt.clients ?? null;
    refused = await refusedCount(ready.httpPort);
  } else if (lastSample) {
    after = { rssMb: lastSample.rssKb / 1024, heapUsedMb: null };
  }
  const stillOpen = driver.progress.connected;
  const hwmMb = readProc(ready.pid)?.hwmKb ?? lastSample?.hwmKb;
  sampler.stop();

  const crashed = gatewayExit; // before we stop it ourselves

  phase('closing');
  await driver.close();
  await stopChild(child, 30_000);

  let stoppedReason: string;
  if (crashed) stoppedReason = crashed;
  else if (conn.firstFailure) {
    const atCap = gatewayCap !== null && conn.connected >= gatewayCap;
    const atLimit = conn.connected + FD_RESERVE >= gatewayNofile;
    stoppedReason =
      `first failure: ${conn.firstFailure}` +
      (atCap
        ? ` (at gateway.mqtt.maxConnections ${gatewayCap}: the gateway closes further connections on arrival and counts them)`
        : atLimit
          ? ` (at the gateway's open-file limit ${ready.nofile}: libuv accepts and at once closes connections it has no descriptor for)`
          : '');
  } else if (attempt < target) {
    stoppedReason =
      capByGateway
        ? `gateway.mqtt.maxConnections ${gatewayCap} (${maxConnections === 'auto' ? `auto: the open-file limit ${ready.nofile} less ${(ready.nofile ?? 0) - gatewayCap} for the API and storage; ` : ''}` +
          `RLIMIT_NOFILE ${ready.nofile} is this VM's hard limit, not raisable without CAP_SYS_RESOURCE)`
        : `gateway open-file limit (RLIMIT_NOFILE ${ready.nofile}, hard limit; not raisable without CAP_SYS_RESOURCE)`;
  } else stoppedReason = 'target reached';

  const open = gatewayClients ?? stillOpen;
  const bytesPer = after && open > 0 ? ((after.rssMb - before.rssMb) * 2 ** 20) / open : null;
  const atTarget = bytesPer !== null ? before.rssMb + (bytesPer * target) / 2 ** 20 : null;
  const misses: string[] = [];
  if (open < TARGET.connections) misses.push(`connections ${open} < ${TARGET.connections}`);
  if (after && open >= TARGET.connections && after.rssMb > TARGET.rss_mb) misses.push(`rss ${Math.round(after.rssMb)} MB > ${TARGET.rss_mb} MB`);

  const result = {
    bench: 'connections',
    commit,
    commit_dirty_paths: dirty,
    worktree_diff_sha256: diffSha,
    target_connections: target,
    attempted: attempt,
    connections_open: open,
    connections_open_loadgen: stillOpen,
    failed: conn.failed,
    stopped_reason: stoppedReason,
    gateway_max_connections: gatewayCap,
    gateway_refused_connections: refused,
    health_answered_after: healthAnswered,
    connect_s: round(conn.seconds, 1),
    connect_rate_per_s: connectRate,
    source_addresses: sources.length,
    generator_processes: generators,
    ledger_devices: ledgerDevices,
    keepalive_s: keepaliveSec,
    gateway_rss_before_mb: round(before.rssMb, 0),
    gateway_rss_after_mb: round(after?.rssMb, 0),
    gateway_rss_hwm_mb: round(hwmMb !== undefined ? hwmMb / 1024 : null, 0),
    gateway_heap_used_before_mb: round(before.heapUsedMb, 0),
    gateway_heap_used_after_mb: round(after?.heapUsedMb, 0),
    bytes_per_connection: round(bytesPer, 0),
    gateway_rss_at_target_extrapolated_mb: attempt < target ? round(atTarget, 0) : null,
    rss_curve_mb: curve,
    gateway_nofile: ready.nofile,
    loadgen_nofile: ownNofile,
    loadavg_1m_at_start: round(loadAtStart, 2),
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
