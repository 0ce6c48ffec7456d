/**
 * A real Mosquitto 2 (Debian's `mosquitto`) on a free loopback port, for external broker mode
 * tests and benchmarks: a temp dir for its config, no persistence, anonymous access unless
 * `extraConfig` says otherwise. `kill()` is SIGKILL (a broker crash), `stop()` also removes the
 * temp dir. `nofile` raises its open-file limit (one descriptor per client) as far as allowed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const MOSQUITTO = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

export interface MosquittoServer {
  url: string;
  port: number;
  pid: number;
  /** The last 4,000 characters Mosquitto wrote to stderr (its log: errors and warnings, and what `extraConfig` adds). */
  log(): string;
  /** SIGKILL, like a crashed broker; the temp dir stays (start() again on the same port is possible). */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function startMosquitto(opts: { port?: number; extraConfig?: string[]; nofile?: number } = {}): Promise<MosquittoServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gs-mosquitto-'));
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < (opts.port ? 1 : 3); attempt++) {
    const port = opts.port ?? (await freePort());
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence false',
        // A gateway instance that is away keeps its share queued: a cap well above any test's
        // traffic, or QoS1 messages past it are dropped (as the generated config, broker-config.ts).
        'max_queued_messages 1000000',
        'set_tcp_nodelay true',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    const stdio: ['ignore', 'ignore', 'pipe'] = ['ignore', 'ignore', 'pipe'];
    // Raise the soft limit as far as asked (or to the hard limit); exec keeps the pid.
    const child =
      opts.nofile === undefined
        ? spawn(MOSQUITTO, ['-c', conf], { stdio })
        : spawn('bash', ['-c', `want=${opts.nofile}; [ "$(ulimit -n)" -lt "$want" ] && { ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }; exec "$0" -c "$1"`, MOSQUITTO, conf], { stdio });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    try {
      await waitForPort(port, child, () => stderr);
      return makeServer(port, child, dir, () => stderr);
    } catch (err) {
      lastError = err as Error;
      child.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error('mosquitto did not start');
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${stderr()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`mosquitto did not listen on ${port} within 10 s: ${stderr()}`);
}

function makeServer(port: number, child: ChildProcess, dir: string, log: () => string): MosquittoServer {
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    log,
    kill,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
