/**
 * Starts a real InfluxDB 1.x (`influxd` from Debian's `influxdb` package) in a temp dir on free
 * loopback ports, for integration tests; `stop()` kills it and removes the dir. `pause()` and
 * `resume()` send SIGSTOP/SIGCONT, the way a stalled database looks from the outside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface InfluxServer {
  url: string;
  port: number;
  /** Runs an InfluxQL query against `db` and returns the raw JSON response. */
  query(db: string, q: string): Promise<InfluxQueryResponse>;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}
export interface InfluxQueryResponse {
  results: Array<{ series?: Array<{ name: string; columns: string[]; values: unknown[][] }>; error?: string }>;
}

export const INFLUXD = process.env.INFLUXD_BIN ?? '/usr/bin/influxd';

export async function startInfluxd(): Promise<InfluxServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gs-influxd-'));
  let lastError: Error | undefined;
  // A free port can be taken between our check and influxd's bind; try a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const [httpPort, rpcPort] = [await freePort(), await freePort()];
    const conf = join(dir, 'influxd.conf');
    writeFileSync(
      conf,
      [
        'reporting-disabled = true',
        `bind-address = "127.0.0.1:${rpcPort}"`,
        '[meta]',
        `  dir = "${join(dir, 'meta')}"`,
        '[data]',
        `  dir = "${join(dir, 'data')}"`,
        `  wal-dir = "${join(dir, 'wal')}"`,
        '  query-log-enabled = false',
        '  wal-fsync-delay = "0s"',
        '[http]',
        `  bind-address = "127.0.0.1:${httpPort}"`,
        '  log-enabled = false',
        '[monitor]',
        '  store-enabled = false',
        '[continuous_queries]',
        '  enabled = false',
        '[logging]',
        '  level = "warn"',
        '',
      ].join('\n'),
    );
    const child = spawn(INFLUXD, ['-config', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const url = `http://127.0.0.1:${httpPort}`;
    try {
      await waitForPing(url, child, () => stderr);
      return makeServer(url, httpPort, child, dir);
    } catch (err) {
      lastError = err as Error;
      child.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error('influxd did not start');
}

async function waitForPing(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`influxd exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(`${url}/ping`);
      if (res.status === 204) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`influxd did not answer /ping within 20 s: ${stderr()}`);
}

function makeServer(url: string, port: number, child: ChildProcess, dir: string): InfluxServer {
  return {
    url,
    port,
    async query(db, q) {
      const res = await fetch(`${url}/query?db=${encodeURIComponent(db)}&epoch=ms&q=${encodeURIComponent(q)}`);
      return (await res.json()) as InfluxQueryResponse;
    },
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGCONT');
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
