/**
 * Starts a real InfluxDB 1.x (`influxd` from Debian's `influxdb` package) on loopback: for the
 * tests (a temp dir, free ports, removed on stop) and for the demo (a kept data dir, the
 * configured port). `pause()`/`resume()` send SIGSTOP/SIGCONT, the way a stalled database looks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

export interface InfluxdOptions {
  /** Kept data dir (the demo); default a temp dir removed on stop (tests). */
  dataDir?: string;
  /** HTTP port; default a free one. */
  port?: number;
  /**
   * Own process group, so a Ctrl-C meant for the demo does not kill the database before the
   * gateway has flushed into it; the demo stops it last.
   */
  detached?: boolean;
}

export async function startInfluxd(opts: InfluxdOptions = {}): Promise<InfluxServer> {
  const temporary = opts.dataDir === undefined;
  const dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'gs-influxd-'));
  mkdirSync(dir, { recursive: true });
  let lastError: Error | undefined;
  // A free port can be taken between our check and influxd's bind; try a few times.
  for (let attempt = 0; attempt < (opts.port ? 1 : 3); attempt++) {
    const [httpPort, rpcPort] = [opts.port ?? (await freePort()), await freePort()];
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
    const child = spawn(INFLUXD, ['-config', conf], { stdio: ['ignore', 'ignore', 'pipe'], detached: opts.detached ?? false });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const url = `http://127.0.0.1:${httpPort}`;
    try {
      await waitForPing(url, child, () => stderr);
      return makeServer(url, httpPort, child, temporary ? dir : undefined);
    } catch (err) {
      lastError = err as Error;
      child.kill('SIGKILL');
    }
  }
  if (temporary) rmSync(dir, { recursive: true, force: true });
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

function makeServer(url: string, port: number, child: ChildProcess, tempDir: string | undefined): InfluxServer {
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
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        const exited = new Promise((r) => child.once('exit', r));
        // Tests throw their data away, so SIGKILL is fine; a kept data dir gets a clean shutdown.
        child.kill(tempDir ? 'SIGKILL' : 'SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    },
  };
}
