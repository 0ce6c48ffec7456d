/**
 * Ingest past one process (issue 9, "Must show"): N simulated water tanks publish QoS1 telemetry
 * to a real Mosquitto 2, and gateway instances in external broker mode take it through one MQTT 5
 * shared subscription into a real InfluxDB. Each phase runs the same load against a fresh broker:
 *
 *   limit   one raw-socket QoS1 consumer on the same $share filter (no processing): what the
 *           broker can hand out on this machine
 *   1, 2 …  that many gateway instances (`--instances 1,2`), each its own process, data dir and
 *           spool, one InfluxDB database per phase
 *
 *   npm run bench:ingest-cluster [-- --devices 10000 --seconds 30 --instances 1,2]
 *
 * In external mode the broker, not the gateway, acknowledges the device: a device's PUBACK says
 * the broker has the message; the gateway acknowledges the broker once the message is in its
 * spool. So the devices' rate is the broker's ingress, and the gateways' rate is what they
 * consumed; when they fall behind, the broker queues (reported as `backlog_at_window_end`).
 *
 * Figures per phase (measured window, warm-up excluded):
 *   msg_per_s                 telemetry the gateway instances took in per second, summed
 *   instance_msg_per_s        per instance (the shares of the subscription)
 *   broker_ingress_msg_per_s  PUBACKs the devices got from the broker per second
 *   sent / stored / lost      every message of the phase vs COUNT(*) in its database, after drain
 *                             (lost is null, and `undrained` says how many were still queued, when
 *                             the instances had not caught up within --drain-timeout-s)
 * And across phases: `ratio_to_one_instance` (each phase over the 1-instance phase) and
 * `ratio_to_limit` (over the raw consumer).
 *
 * `--instance-cpu 0.25` caps each gateway instance at that many cores (a cgroup v1 `cpu` group per
 * instance with a CFS quota; root only): on a 2-core machine whose broker is the limit, it makes
 * each instance the bottleneck, as on a deployment where instances are small next to the broker
 * cluster, so that the 2-instance phase can show what a second instance adds. Progress on stderr; one JSON line last on stdout.
 * Exit 0 even when a target is missed; non-zero only when the benchmark itself failed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startInfluxd, type InfluxServer } from '../scripts/lib/influxd.js';
import { startMosquitto, type MosquittoServer } from '../scripts/lib/mosquitto.js';
import { LoadDriver, type LoadResult } from './lib/driver.js';
import { benchTanks, writeLedger } from './lib/fleet.js';
import {
  cleanupAll,
  gitCommit,
  GATEWAY_NODE_FLAGS,
  hardDeadline,
  installExitHandlers,
  MachineCpu,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  readNofile,
  removeOnExit,
  REPO,
  round,
  sleep,
  spawnTs,
  stderrTail,
  stopChild,
  waitForLine,
} from './lib/proc.js';
import { CountingSubscriber } from './lib/subscriber.js';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
    window: { type: 'string', default: '2' },
    sources: { type: 'string', default: '8' },
    generators: { type: 'string', default: '1' },
    'connect-rate': { type: 'string', default: '2000' },
    /**
     * Offered msg/s over all devices. Not unlimited by default: Mosquitto is one thread, and
     * when devices publish as fast as it acknowledges, its reading starves its delivery (at
     * 10,000 devices it took in 36,000 msg/s and handed out 3,700 to a consumer doing nothing).
     */
    rate: { type: 'string', default: '15000' },
    /** How long to wait after the run for the broker's queue and the spools to empty. */
    'drain-timeout-s': { type: 'string', default: '180' },
    /** Comma-separated instance counts, one phase each. */
    instances: { type: 'string', default: '1,2' },
    'skip-limit': { type: 'boolean', default: false },
    /** JSON merged into each instance's gateway config section. */
    'gateway-config': { type: 'string', default: '{}' },
    /** Cores each gateway instance may use (a CFS quota); unset: no cap. */
    'instance-cpu': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const devices = parseIntArg(args.devices, 'devices', 1, 200_000);
const seconds = parseIntArg(args.seconds, 'seconds', 1, 3600);
const warmup = parseIntArg(args.warmup, 'warmup', 0, 600);
const window = parseIntArg(args.window, 'window', 1, 8);
const sourceCount = parseIntArg(args.sources, 'sources', 1, 250);
const generators = parseIntArg(args.generators, 'generators', 1, 8);
const connectRate = parseIntArg(args['connect-rate'], 'connect-rate', 1, 100_000);
const rate = parseIntArg(args.rate, 'rate', 0, 10_000_000);
const drainTimeoutMs = parseIntArg(args['drain-timeout-s'], 'drain-timeout-s', 5, 3600) * 1000;
const phases = args.instances.split(',').map((s) => parseIntArg(s.trim(), 'instances', 1, 8));
const gatewayOverrides = JSON.parse(args['gateway-config']) as Record<string, unknown>;
const instanceCpu = args['instance-cpu'] === undefined ? null : Number(args['instance-cpu']);
if (instanceCpu !== null && !(instanceCpu >= 0.05 && instanceCpu <= 64)) {
  process.stderr.write(`--instance-cpu must be a number of cores between 0.05 and 64, not ${args['instance-cpu']}\n`);
  process.exit(2);
}
const CPU_CGROUP_ROOT = '/sys/fs/cgroup/cpu';

/**
 * Puts a process (all its threads) in a cgroup v1 `cpu` group of its own, capped at `cores`;
 * returns the group's directory (removed by the caller once the process has exited).
 */
function capCpu(pid: number, label: string, cores: number): string {
  if (!existsSync(`${CPU_CGROUP_ROOT}/cpu.cfs_quota_us`)) {
    throw new Error(`--instance-cpu needs the cgroup v1 cpu controller at ${CPU_CGROUP_ROOT} (not found)`);
  }
  const dir = `${CPU_CGROUP_ROOT}/gs-bench-${process.pid}-${label}`;
  try {
    mkdirSync(dir);
    const periodUs = 100_000;
    writeFileSync(`${dir}/cpu.cfs_period_us`, String(periodUs));
    writeFileSync(`${dir}/cpu.cfs_quota_us`, String(Math.round(cores * periodUs)));
    writeFileSync(`${dir}/cgroup.procs`, String(pid));
  } catch (err) {
    throw new Error(`--instance-cpu: could not set up ${dir} (${(err as Error).message}; it needs root)`);
  }
  return dir;
}
const sources = Array.from({ length: sourceCount }, (_, i) => `127.0.0.${i + 2}`);
const SHARE_GROUP = 'greenshield';
const FILTER = `$share/${SHARE_GROUP}/gs/v1/devices/+/telemetry`;
/**
 * On top of scripts/lib/mosquitto.ts (TCP_NODELAY and the queue cap of the generated production
 * config, gateway/src/broker/broker-config.ts): no connection cap. The limit phase also gives
 * MQTT 3.1.1 subscribers (the raw consumer) a QoS1 window of 1000, as the gateways ask for with
 * Receive Maximum; the gateway phases run the generated config's settings.
 */
const BROKER_CONFIG = ['max_connections -1'];
const LIMIT_BROKER_CONFIG = [...BROKER_CONFIG, 'max_inflight_messages 1000'];
const NODE_FLAGS = [...GATEWAY_NODE_FLAGS, ...(process.env.GS_BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [])];
/** What issue 9 asks to see: two instances take more than one; nothing lost. */
const TARGET = { lost: 0, ratio_two_to_one_above: 1 };

installExitHandlers();
hardDeadline((900 + phases.length * 3 * (warmup + seconds) + (12 * devices) / connectRate) * 1000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-cluster-'));
removeOnExit(tmp);
const ledgerFile = join(tmp, 'ledger.csv');
writeLedger(ledgerFile, benchTanks(devices));

function driverFor(port: number, label: string): LoadDriver {
  return new LoadDriver({
    label,
    mode: 'publish',
    host: '127.0.0.1',
    port,
    sources,
    clients: devices,
    generators,
    keepaliveSec: 0,
    connectRate,
    maxPendingConnects: 256,
    connectTimeoutMs: 15_000,
    stopOnFirstFailure: false,
    window,
    rate,
    warmupMs: warmup * 1000,
    measureMs: seconds * 1000,
    samplesPerSec: 0,
    drainTimeoutMs: 30_000,
  });
}

async function broker(label: string, extraConfig = BROKER_CONFIG): Promise<{ mq: MosquittoServer; sampler: ProcSampler }> {
  phase(`${label}: Mosquitto`);
  const mq = await startMosquitto({ nofile: devices + 1024, extraConfig });
  onCleanup(() => mq.stop());
  return { mq, sampler: new ProcSampler(mq.pid) };
}

async function connectAll(driver: LoadDriver, label: string): Promise<void> {
  const c = await driver.connect(60_000 + (devices / connectRate) * 3000);
  if (c.connected !== devices) throw new Error(`${label}: only ${c.connected}/${devices} clients connected (${c.failed} failed; first: ${c.firstFailure})`);
  process.stderr.write(`[${label}] ${c.connected} clients connected to the broker in ${c.seconds.toFixed(1)} s\n`);
}

const deviceRate = (r: LoadResult) => r.ackedInWindow / r.windowSec;

// ---- the limit: a consumer that does nothing ---------------------------------------------------

async function runLimit() {
  const label = 'limit';
  const { mq, sampler } = await broker(label, LIMIT_BROKER_CONFIG);
  const consumer = new CountingSubscriber();
  await consumer.start(mq.port, FILTER);
  const machine = new MachineCpu();
  const driver = driverFor(mq.port, label);
  onCleanup(() => driver.close());
  await connectAll(driver, label);
  let atStart = 0;
  let atEnd = 0;
  let t0 = 0;
  let t1 = 0;
  const r = await driver.run((warmup + seconds) * 1000 + 120_000, {
    windowStart: () => {
      atStart = consumer.received;
      t0 = performance.now();
      sampler.markStart();
      machine.markStart();
    },
    windowEnd: () => {
      atEnd = consumer.received;
      t1 = performance.now();
      sampler.markEnd();
      machine.markEnd();
    },
    progress: () => `, consumer got ${consumer.received}`,
  });
  const deadline = performance.now() + 60_000;
  while (consumer.received < r.acked && performance.now() < deadline) await sleep(100);
  await driver.close();
  consumer.close();
  sampler.stop();
  await mq.stop();
  return {
    msgPerSec: (atEnd - atStart) / ((t1 - t0) / 1000),
    brokerIngress: deviceRate(r),
    sent: r.sent,
    delivered: consumer.received,
    brokerCpu: sampler.cpuPercent,
    // otherPercent takes this process (the consumer) off by itself.
    otherCpu: machine.otherPercent([sampler.cpuPercent, r.loadgenCpuPercent]),
  };
}

// ---- gateway instances ----------------------------------------------------------------------------

interface Instance {
  label: string;
  httpPort: number;
  sampler: ProcSampler;
  crashed: () => string | null;
  stop: () => Promise<void>;
}

async function received(i: Instance): Promise<number | undefined> {
  const h = await fetch(`http://127.0.0.1:${i.httpPort}/health`, { signal: AbortSignal.timeout(30_000) })
    .then((r) => r.json() as Promise<{ ingest: { received: number }; storage: { bufferedPoints: number } }>)
    .catch(() => undefined);
  return h?.ingest.received;
}

/** QoS1 messages the broker handed this instance that it has not acknowledged yet. */
async function brokerInflight(i: Instance): Promise<number | null> {
  const text = await fetch(`http://127.0.0.1:${i.httpPort}/metrics`, { signal: AbortSignal.timeout(30_000) })
    .then((r) => r.text())
    .catch(() => '');
  const v = Number(/^gs_mqtt_broker_inflight (\S+)$/m.exec(text)?.[1] ?? NaN);
  return Number.isFinite(v) ? v : null;
}

async function buffered(i: Instance): Promise<number> {
  const h = await fetch(`http://127.0.0.1:${i.httpPort}/health`, { signal: AbortSignal.timeout(30_000) })
    .then((r) => r.json() as Promise<{ storage: { bufferedPoints: number } }>)
    .catch(() => undefined);
  return h?.storage.bufferedPoints ?? 0;
}

async function startInstance(n: number, index: number, mq: MosquittoServer, influx: InfluxServer, db: string): Promise<Instance> {
  const label = `gw${n}.${index + 1}`;
  const config = {
    log: { level: args['log-level'] },
    ledger: { file: ledgerFile },
    gateway: {
      ...gatewayOverrides,
      mqtt: {
        mode: 'external',
        external: { url: mq.url, clientId: `bench-${label}`, shareGroup: SHARE_GROUP },
        ...(gatewayOverrides.mqtt as object | undefined),
      },
      http: { host: '127.0.0.1', port: 0 },
      influx: { url: influx.url, database: db, ...(gatewayOverrides.influx as object | undefined) },
      dataDir: join(tmp, `data-${label}`),
    },
  };
  const child = spawnTs(`${REPO}/bench/gateway-child.ts`, {
    label,
    nodeFlags: NODE_FLAGS,
    env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(config) },
  });
  const ready = await waitForLine(child, label, (m) => (m.ready ? (m as { pid: number; httpPort: number }) : undefined), 60_000);
  let crashed: string | null = null;
  child.once('exit', (code, signal) => {
    crashed = `exited (${signal ?? `code ${code}`}): ${stderrTail(child).split('\n').slice(-3).join(' | ').slice(0, 300)}`;
  });
  // Ready = connected and subscribed to the shared subscription (GET /ready).
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const ok = await fetch(`http://127.0.0.1:${ready.httpPort}/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    await sleep(100);
  }
  const cgroup = instanceCpu === null ? null : capCpu(ready.pid, label, instanceCpu);
  process.stderr.write(`[${label}] ready: pid ${ready.pid}, http ${ready.httpPort}${cgroup ? `, capped at ${instanceCpu} cores (${cgroup})` : ''}\n`);
  const stop = async () => {
    await stopChild(child, 30_000);
    if (cgroup) {
      try {
        rmdirSync(cgroup);
      } catch (err) {
        process.stderr.write(`[${label}] could not remove ${cgroup}: ${(err as Error).message}\n`);
      }
    }
  };
  return { label, httpPort: ready.httpPort, sampler: new ProcSampler(ready.pid), crashed: () => crashed, stop };
}

async function countStored(influx: InfluxServer, db: string): Promise<number> {
  const res = await influx.query(db, 'SELECT COUNT("levelMm") FROM "water_tank"');
  return Number(res.results[0]?.series?.[0]?.values[0]?.[1] ?? 0);
}

async function runInstances(n: number, influx: InfluxServer) {
  const label = `${n} instance${n > 1 ? 's' : ''}`;
  const db = `gs_bench_cluster_${n}`;
  const { mq, sampler: brokerSampler } = await broker(label);
  phase(`${label}: gateway instances`);
  const instances: Instance[] = [];
  for (let i = 0; i < n; i++) instances.push(await startInstance(n, i, mq, influx, db));
  const machine = new MachineCpu();
  const driver = driverFor(mq.port, label);
  onCleanup(() => driver.close());
  await connectAll(driver, label);
  let atStart: Array<number | undefined> = [];
  let atEnd: Array<number | undefined> = [];
  let t0 = 0;
  let t1 = 0;
  const pending: Array<Promise<void>> = [];
  const r = await driver.run((warmup + seconds) * 1000 + 120_000, {
    windowStart: () => {
      t0 = performance.now();
      for (const i of instances) i.sampler.markStart();
      brokerSampler.markStart();
      machine.markStart();
      pending.push(Promise.all(instances.map(received)).then((v) => void (atStart = v)));
    },
    windowEnd: () => {
      t1 = performance.now();
      for (const i of instances) i.sampler.markEnd();
      brokerSampler.markEnd();
      machine.markEnd();
      pending.push(Promise.all(instances.map(received)).then((v) => void (atEnd = v)));
    },
    progress: () => `, gateways rss ${instances.map((i) => round((i.sampler.last?.rssKb ?? 0) / 1024, 0)).join('/')} MB`,
  });
  await Promise.all(pending);
  const windowSec = (t1 - t0) / 1000;
  const perInstance = instances.map((_, k) => ((atEnd[k] ?? NaN) - (atStart[k] ?? NaN)) / windowSec);
  const consumedAtEnd = atEnd.reduce<number>((a, b) => a + (b ?? 0), 0);

  phase(`${label}: drain (the broker's queue, then the spools), then counting`);
  const drainStart = performance.now();
  let got = 0;
  for (;;) {
    got = (await Promise.all(instances.map(received))).reduce<number>((a, b) => a + (b ?? 0), 0);
    const left = (await Promise.all(instances.map(buffered))).reduce((a, b) => a + b, 0);
    if ((got >= r.sent && left === 0) || performance.now() - drainStart > drainTimeoutMs || instances.some((i) => i.crashed())) break;
    await sleep(500);
  }
  // Not drained: what is still queued at the broker is neither stored nor lost yet.
  const drained = got >= r.sent;
  const inflightAtEnd = await Promise.all(instances.map(brokerInflight));
  const receivedAtEnd = await Promise.all(instances.map(received));
  if (!drained) process.stderr.write(`[${label}] not drained: received per instance ${receivedAtEnd.join('/')}, unacknowledged to the broker ${inflightAtEnd.join('/')}\n`);
  let stored = await countStored(influx, db);
  let stableSince = performance.now();
  while (drained && stored < r.sent && performance.now() - stableSince < 5000 && performance.now() - drainStart < drainTimeoutMs + 60_000) {
    await sleep(1000);
    const s = await countStored(influx, db);
    if (s !== stored) stableSince = performance.now();
    stored = s;
  }
  const drainSec = (performance.now() - drainStart) / 1000;
  process.stderr.write(`[${label}] stored ${stored} of ${r.sent} sent (drain ${drainSec.toFixed(1)} s${drained ? '' : `, not drained: ${r.sent - got} still queued`})\n`);
  const crashed = instances.map((i) => i.crashed()).filter((c): c is string => c !== null);
  await driver.close();
  phase(`${label}: stopping`);
  for (const i of instances) {
    i.sampler.stop();
    await i.stop();
  }
  brokerSampler.stop();
  await mq.stop();
  const gatewayCpu = instances.map((i) => i.sampler.cpuPercent);
  return {
    instances: n,
    msgPerSec: perInstance.reduce((a, b) => a + b, 0),
    perInstance,
    brokerIngress: deviceRate(r),
    backlogAtWindowEnd: r.acked - consumedAtEnd,
    sent: r.sent,
    stored,
    lost: drained ? r.sent - stored : null,
    undrained: drained ? 0 : r.sent - got,
    inflightAtEnd,
    receivedAtEnd,
    drainSec,
    gatewayCpu,
    gatewayRss: instances.map((i) => i.sampler.peakRssMb),
    brokerCpu: brokerSampler.cpuPercent,
    loadgenCpu: r.loadgenCpuPercent,
    otherCpu: machine.otherPercent([...gatewayCpu, brokerSampler.cpuPercent, r.loadgenCpuPercent]),
    crashed,
  };
}

// ---- main ---------------------------------------------------------------------------------------

const ownNofile = readNofile('self') ?? 1024;
if (Math.ceil(devices / generators) + 64 > ownNofile) {
  process.stderr.write(`--devices ${devices} over ${generators} generator(s) needs more than this process's open-file limit (${ownNofile}); add --generators\n`);
  process.exit(2);
}
const { commit, dirty, diffSha } = gitCommit();
const loadAtStart = loadavg()[0] ?? 0;
process.stderr.write(
  `ingest-cluster bench: ${devices} devices, ${warmup}+${seconds} s a phase, phases: ${args['skip-limit'] ? '' : 'limit, '}` +
    `${phases.join(', ')} instance(s); commit ${commit}${dirty.length ? ' (dirty)' : ''}; load ${loadAtStart.toFixed(2)}\n`,
);

try {
  const limit = args['skip-limit'] ? undefined : await runLimit();
  phase('starting InfluxDB');
  const influx = await startInfluxd();
  let influxStopped: Promise<void> | undefined;
  const stopInflux = () => (influxStopped ??= influx.stop());
  onCleanup(stopInflux);
  const results = [];
  for (const n of phases) results.push(await runInstances(n, influx));
  await stopInflux();

  const one = results.find((p) => p.instances === 1);
  const two = results.find((p) => p.instances === 2);
  const ratioTwoToOne = one && two ? two.msgPerSec / one.msgPerSec : null;
  const misses: string[] = [];
  for (const p of results) {
    if (p.lost === null) misses.push(`${p.instances} instance(s): not drained within ${drainTimeoutMs / 1000} s (${p.undrained} queued): loss not counted`);
    else if (p.lost !== 0) misses.push(`${p.instances} instance(s): lost ${p.lost}`);
    if (p.crashed.length > 0) misses.push(`${p.instances} instance(s): ${p.crashed.join('; ')}`);
    if (p.perInstance.some((v) => !(v > 0))) misses.push(`${p.instances} instance(s): an instance took no share`);
  }
  // Scaling shows only when one instance cannot take all the broker hands out.
  const oneKeptUp = one ? one.msgPerSec >= 0.95 * one.brokerIngress : false;
  if (ratioTwoToOne === null) misses.push('ratio_two_to_one not measured (needs --instances with 1 and 2)');
  else if (oneKeptUp) misses.push(`one instance kept up with all ${Math.round(one!.brokerIngress)} msg/s the broker took in: scaling not measurable at this rate (raise --rate; here the broker is the limit)`);
  else if (ratioTwoToOne <= TARGET.ratio_two_to_one_above) misses.push(`ratio_two_to_one ${ratioTwoToOne.toFixed(2)} <= 1`);

  const result = {
    bench: 'ingest-cluster',
    commit,
    commit_dirty_paths: dirty,
    worktree_diff_sha256: diffSha,
    broker: 'mosquitto',
    devices,
    seconds,
    warmup_s: warmup,
    window_per_connection: window,
    rate_target_msg_per_s: rate === 0 ? null : rate,
    instance_cpu_cap_cores: instanceCpu,
    limit_msg_per_s: limit ? round(limit.msgPerSec, 0) : null,
    limit_broker_ingress_msg_per_s: limit ? round(limit.brokerIngress, 0) : null,
    limit_broker_cpu_percent: limit ? round(limit.brokerCpu, 0) : null,
    limit_lost: limit ? limit.sent - limit.delivered : null,
    limit_other_cpu_percent: limit ? round(limit.otherCpu, 0) : null,
    phases: results.map((p) => ({
      instances: p.instances,
      msg_per_s: round(p.msgPerSec, 0),
      instance_msg_per_s: p.perInstance.map((v) => round(v, 0)),
      broker_ingress_msg_per_s: round(p.brokerIngress, 0),
      backlog_at_window_end: p.backlogAtWindowEnd,
      ratio_to_one_instance: one ? round(p.msgPerSec / one.msgPerSec, 2) : null,
      ratio_to_limit: limit ? round(p.msgPerSec / limit.msgPerSec, 2) : null,
      sent: p.sent,
      stored: p.stored,
      lost: p.lost,
      undrained: p.undrained,
      instance_received_at_end: p.receivedAtEnd,
      instance_unacked_to_broker_at_end: p.inflightAtEnd,
      drain_s: round(p.drainSec, 1),
      gateway_cpu_percent: p.gatewayCpu.map((v) => round(v, 0)),
      // CPU time of all instances per message: what each message costs, however it is split.
      gateway_cpu_us_per_msg: round((p.gatewayCpu.reduce<number>((a, v) => a + (v ?? NaN), 0) * 10_000) / p.msgPerSec, 1),
      gateway_rss_mb: p.gatewayRss.map((v) => round(v, 0)),
      broker_cpu_percent: round(p.brokerCpu, 0),
      loadgen_cpu_percent: round(p.loadgenCpu, 0),
      other_cpu_percent: round(p.otherCpu, 0),
      crashed: p.crashed,
    })),
    msg_per_s: two ? round(two.msgPerSec, 0) : one ? round(one.msgPerSec, 0) : null,
    ratio_two_to_one: round(ratioTwoToOne, 2),
    one_instance_kept_up: oneKeptUp,
    ratio_to_limit: limit && two ? round(two.msgPerSec / limit.msgPerSec, 2) : null,
    lost: results.some((p) => p.lost === null) ? null : results.reduce((a, p) => a + (p.lost ?? 0), 0),
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
