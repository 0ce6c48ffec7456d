/**
 * A real Mosquitto 2 (Debian's `mosquitto`) on a free loopback port, for external broker mode
 * tests: a temp dir for its config, no persistence, anonymous access unless `extraConfig` says
 * otherwise. `kill()` is SIGKILL (a broker crash), `stop()` also removes the temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../scripts/lib/ports.js';

export const MOSQUITTO = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

export interface MosquittoServer {
  url: string;
  port: number;
  /** SIGKILL, like a crashed broker; the temp dir stays (start() again on the same port is possible). */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function startMosquitto(opts: { port?: number; extraConfig?: string[] } = {}): Promise<MosquittoServer> {
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
        // A gateway instance that is away keeps its share queued: no cap, or QoS1 messages past it are dropped.
        'max_queued_messages 0',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    try {
      await waitForPort(port, child, () => stderr);
      return makeServer(port, child, dir);
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

function makeServer(port: number, child: ChildProcess, dir: string): MosquittoServer {
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    kill,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
