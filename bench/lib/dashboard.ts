/**
 * What the dashboard benchmarks (bench/map.ts, bench/ws-fanout.ts) share: a site-shaped fleet of
 * any size, a gateway child process with a bench user and no InfluxDB, a signed-in session, and a
 * paced MQTT publisher of device status changes. 127.0.0.1 only.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { loadLedger, ledgerToCsv, type LedgerDevice } from '../../config/ledger.js';
import { hashSecret } from '../../gateway/src/security/secrets.js';
import { buildGeography, CHASHAN_FLEET, generateFleet } from '../../simulators/src/fleet/geography.js';
import { topics } from '../../protocol/topics.js';
import { REPO, spawnTs, waitForLine } from './proc.js';

export const BENCH_USER = { username: 'bench-viewer', password: 'bench-viewer-password', role: 'viewer' } as const;
const SHIPPED_LEDGER = join(REPO, 'config/ledger/chashan-zhuhai.csv');
const SEED = 20250401;

/**
 * The shipped Chashan Zhuhai ledger for its own size (1788), otherwise a fleet of `count` devices
 * with the site's mix of kinds (93 % cameras, 4 % poles, 3 % tanks) placed in the shipped grids,
 * so the page draws it over the shipped GeoJSON. Deterministic.
 */
export function siteFleet(count: number): LedgerDevice[] {
  const shipped = CHASHAN_FLEET.cameras + CHASHAN_FLEET.voicePoles + CHASHAN_FLEET.waterTanks;
  if (count === shipped) return loadLedger(SHIPPED_LEDGER);
  const waterTanks = Math.max(1, Math.round((count * CHASHAN_FLEET.waterTanks) / shipped));
  const voicePoles = Math.max(1, Math.round((count * CHASHAN_FLEET.voicePoles) / shipped));
  const cameras = Math.max(0, count - waterTanks - voicePoles);
  return generateFleet(buildGeography(SEED), { cameras, voicePoles, waterTanks }, { seed: SEED, agent: 'bench-agent' });
}

export function writeFleet(file: string, devices: readonly LedgerDevice[]): void {
  writeFileSync(file, ledgerToCsv(devices));
}

export interface BenchGateway {
  child: ChildProcess;
  pid: number;
  httpPort: number;
  mqttPort: number;
  httpUrl: string;
}

/**
 * Starts the gateway (bench/gateway-child.ts): anonymous MQTT on 127.0.0.1, no
 * InfluxDB, no flap damping (every status change the benchmark sends is one the page must draw),
 * the bench user, `push` as given.
 */
export async function startDashboardGateway(opts: {
  dir: string;
  ledgerFile: string;
  logLevel: string;
  push?: Record<string, unknown>;
  nofile?: number;
  nodeFlags?: string[];
  /** The dashboard build to serve (default: dashboard/dist). */
  dashboardDir?: string;
}): Promise<BenchGateway> {
  const config = {
    log: { level: opts.logLevel },
    ledger: { file: opts.ledgerFile },
    gateway: {
      mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(opts.dir, 'credentials.yaml') },
      http: { host: '127.0.0.1', port: 0 },
      influx: { enabled: false },
      availability: { flapDampingSec: 0 },
      ...(opts.push ? { push: opts.push } : {}),
      auth: {
        users: [{ username: BENCH_USER.username, displayName: 'Bench', role: BENCH_USER.role, passwordHash: await hashSecret(BENCH_USER.password) }],
      },
      dataDir: join(opts.dir, 'gateway-data'),
    },
  };
  const child = spawnTs(`${REPO}/bench/gateway-child.ts`, {
    label: 'gateway',
    env: { ...process.env, GS_BENCH_CONFIG: JSON.stringify(config), ...(opts.dashboardDir ? { GS_BENCH_DASHBOARD_DIR: opts.dashboardDir } : {}) },
    ...(opts.nofile !== undefined ? { nofile: opts.nofile } : {}),
    ...(opts.nodeFlags ? { nodeFlags: opts.nodeFlags } : {}),
  });
  const ready = await waitForLine(
    child,
    'gateway',
    (m) => (m.ready ? (m as { pid: number; mqttPort: number; httpPort: number }) : undefined),
    120_000,
  );
  return { child, pid: ready.pid, httpPort: ready.httpPort, mqttPort: ready.mqttPort, httpUrl: `http://127.0.0.1:${ready.httpPort}` };
}

/** Signs the bench user in; the token works as `Authorization: Bearer` and as the gs_session cookie. */
export async function signInToken(httpUrl: string): Promise<string> {
  const res = await fetch(`${httpUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: BENCH_USER.username, password: BENCH_USER.password }),
    signal: AbortSignal.timeout(30_000),
  });
  if (res.status !== 200) throw new Error(`bench sign-in failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/**
 * Publishes device status changes at a steady rate: each one flips a device between online and
 * offline (a `state` message), or, for one in ten, gives a water tank a new level (telemetry,
 * which also says the tank is online). Every payload's `ts` is the send time, so a receiver can
 * measure delivery from it. Paced in 20 ms slices; QoS0, the publisher is not what is measured.
 */
export class StatusStream {
  readonly #devices: readonly LedgerDevice[];
  readonly #tanks: readonly LedgerDevice[];
  readonly #online = new Map<string, boolean>();
  readonly #seq = new Map<string, number>();
  #client: MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #cursor = 0;
  sent = 0;

  constructor(devices: readonly LedgerDevice[]) {
    this.#devices = devices;
    this.#tanks = devices.filter((d) => d.kind === 'water_tank');
  }

  async connect(mqttPort: number): Promise<void> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: `bench-status-${process.pid}`, reconnectPeriod: 0, keepalive: 60 });
    this.#client = client;
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
  }

  /** Every device online once (one `state` each), so later changes are flips, not first sightings. */
  async allOnline(): Promise<void> {
    for (const d of this.#devices) this.#publishState(d, true);
    await this.#drain();
  }

  /**
   * 'status': state flips (and one tank level in ten), what the map draws. 'stamped': telemetry
   * only, for every kind, so every update the gateway pushes carries the send time as `valuesTs`.
   */
  start(ratePerSec: number, mode: 'status' | 'stamped' = 'status'): void {
    const sliceMs = 20;
    let due = 0;
    const started = performance.now();
    this.#timer = setInterval(() => {
      const target = Math.floor(((performance.now() - started) / 1000) * ratePerSec);
      for (; due < target; due++) {
        if (mode === 'stamped') this.#nextStamped();
        else this.#next();
      }
    }, sliceMs);
  }

  #nextStamped(): void {
    const d = this.#devices[(this.#cursor * 7919) % this.#devices.length]!;
    this.#cursor++;
    if (d.kind === 'water_tank') {
      this.#publishTank(d, true);
      return;
    }
    // Values that pass the contract for the kind; what matters is the stamp.
    const values = d.kind === 'camera' ? { fps: 25 } : { volume: 60 };
    const payload = JSON.stringify({ ts: Date.now(), seq: this.#nextSeq(d.id), values });
    this.#client?.publish(topics.telemetry(d.id), payload, { qos: 0 });
    this.sent++;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async close(): Promise<void> {
    this.stop();
    await this.#client?.endAsync();
  }

  #next(): void {
    // A stride through the fleet (coprime with most sizes) rather than random picks: every
    // change is to a different device than the last few thousand, so none is coalesced away.
    if (this.#tanks.length > 0 && this.sent % 10 === 9) {
      const tank = this.#tanks[(this.#cursor * 7) % this.#tanks.length]!;
      this.#publishTank(tank);
    } else {
      const d = this.#devices[(this.#cursor * 7919) % this.#devices.length]!;
      this.#publishState(d, !(this.#online.get(d.id) ?? false));
    }
    this.#cursor++;
  }

  #nextSeq(id: string): number {
    const seq = (this.#seq.get(id) ?? 0) + 1;
    this.#seq.set(id, seq);
    return seq;
  }

  #publishState(d: LedgerDevice, online: boolean): void {
    this.#online.set(d.id, online);
    const payload = JSON.stringify({ ts: Date.now(), seq: this.#nextSeq(d.id), status: online ? 'online' : 'offline' });
    this.#client?.publish(topics.state(d.id), payload, { qos: 0 });
    this.sent++;
  }

  #publishTank(d: LedgerDevice, safe = false): void {
    this.#online.set(d.id, true);
    // 'status' sweeps 5..95 %, so tanks cross the low and critical bands and change colour on the
    // map (and raise water incidents); 'stamped' stays within 40..95 %, so the gateway pushes
    // device updates only.
    const levelPercent = safe ? 40 + ((this.sent * 13) % 550) / 10 : 5 + ((this.sent * 13) % 900) / 10;
    const values = { levelPercent, levelMm: Math.round(levelPercent * 25), volumeM3: Number((levelPercent / 2).toFixed(2)) };
    const payload = JSON.stringify({ ts: Date.now(), seq: this.#nextSeq(d.id), values });
    this.#client?.publish(topics.telemetry(d.id), payload, { qos: 0 });
    this.sent++;
  }

  async #drain(): Promise<void> {
    // A QoS1 round trip after QoS0 publishes: the broker has taken everything before it.
    await this.#client?.publishAsync('bench/fence', '', { qos: 1 });
  }
}

/**
 * CPU of this process and every process under it (the gateway child, Chromium and its renderer
 * and GPU processes, client workers), from /proc, over a window. With MachineCpu it gives the
 * share of the machine other sessions took during the run (`other_cpu_percent`).
 */
export class TreeCpu {
  #start: { at: number; sec: number } | undefined;
  #end: { at: number; sec: number } | undefined;

  static #treeSec(): number {
    const parent = new Map<number, number>();
    const cpu = new Map<number, number>();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        parent.set(Number(name), Number(f[1]));
        cpu.set(Number(name), (Number(f[11]) + Number(f[12])) / 100);
      } catch {
        // exited meanwhile
      }
    }
    let sec = 0;
    for (const [pid, s] of cpu) {
      for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) {
        if (p === process.pid) {
          sec += s;
          break;
        }
      }
    }
    return sec;
  }

  markStart(): void {
    this.#start = { at: performance.now(), sec: TreeCpu.#treeSec() };
  }

  markEnd(): void {
    this.#end = { at: performance.now(), sec: TreeCpu.#treeSec() };
  }

  /** Percent of one core (200 % = both cores of this machine). */
  get percent(): number | null {
    if (!this.#start || !this.#end) return null;
    return (100 * (this.#end.sec - this.#start.sec)) / ((this.#end.at - this.#start.at) / 1000);
  }
}
