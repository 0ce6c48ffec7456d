/**
 * A real PostgreSQL (Debian's `postgresql`, any version under /usr/lib/postgresql/<ver>/bin) on a
 * free loopback port, for the PostgreSQL operational store's tests: a cluster initialised in a
 * temp dir (no fsync: test data), its unix socket in that dir, password (scram) auth over TCP.
 * PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user (or
 * `nobody`) and every server process runs as that user; as anyone else, as oneself.
 *
 * `halt()` stops the server and keeps its files, `resume()` starts it again on the same port
 * (an outage); `stop()` stops it and removes the dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../scripts/lib/ports.js';

const run = promisify(execFile);

export interface PostgresServer {
  port: number;
  /** The superuser, `postgres`, and its password (TCP connections need it). */
  user: string;
  password: string;
  /** postgres://postgres@127.0.0.1:<port>/<database>, without the password. */
  urlOf(database: string): string;
  /**
   * Creates an empty database and returns its URL (without the password). The cluster's locale is
   * C; `icuLocale` (e.g. zh-CN) gives the database a language's collation instead, as production
   * databases often have.
   */
  createDatabase(opts?: { name?: string; icuLocale?: string }): Promise<string>;
  /** A connected superuser client of a database (by its URL); end() it. */
  connect(url: string): Promise<pg.Client>;
  /** Stops the server (fast shutdown), keeping its files. */
  halt(): Promise<void>;
  /** Starts a halted server again on the same port. */
  resume(): Promise<void>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

/** The newest PostgreSQL binaries: PG_BIN, else /usr/lib/postgresql/<highest version>/bin. */
export function postgresBinDir(): string {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv) return fromEnv;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'postgres')) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${root}/<version>/bin: run scripts/ensure-system-deps.sh (Debian package postgresql)`);
  return join(root, versions[0]!, 'bin');
}

/** As root, the unprivileged account the cluster runs as. */
function serverAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const fields = passwd.find((l) => l.startsWith(`${name}:`))?.split(':');
    if (fields) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error('running as root, but there is neither a postgres nor a nobody account to run PostgreSQL as');
}

let databases = 0;

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const account = serverAccount();
  const dir = mkdtempSync(join(tmpdir(), 'gs-postgres-'));
  const data = join(dir, 'data');
  const password = 'gs-test-superuser';
  const asAccount = account ? { uid: account.uid, gid: account.gid } : {};
  if (account) chownSync(dir, account.uid, account.gid);
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (account) chownSync(pwfile, account.uid, account.gid);
  try {
    await run(
      join(bin, 'initdb'),
      ['--no-sync', '-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C'],
      { ...asAccount, cwd: dir, env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }

  let port = 0;
  let child: ChildProcess | undefined;
  let stderr = '';
  const launch = async (): Promise<void> => {
    const proc = spawn(
      join(bin, 'postgres'),
      ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
      { ...asAccount, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = proc;
    proc.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`postgres exited with ${proc.exitCode}: ${stderr}`);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.end();
        return;
      } catch (err) {
        await client.end().catch(() => {});
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections on ${port} within 15 s: ${(err as Error).message}; ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const halt = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGINT'); // fast shutdown: roll back open transactions, disconnect clients
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    port = await freePort();
    try {
      await launch();
      lastError = undefined;
      break;
    } catch (err) {
      lastError = err as Error;
      await halt();
    }
  }
  if (lastError) {
    rmSync(dir, { recursive: true, force: true });
    throw lastError;
  }

  const urlOf = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    user: 'postgres',
    password,
    urlOf,
    async createDatabase(opts = {}) {
      const name = opts.name ?? `gs_test_${process.pid}_${++databases}`;
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
      await client.connect();
      try {
        const locale = opts.icuLocale ? ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${opts.icuLocale}' LOCALE 'C'` : '';
        await client.query(`CREATE DATABASE "${name}"${locale}`);
      } finally {
        await client.end();
      }
      return urlOf(name);
    },
    async connect(url: string) {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: new URL(url).pathname.slice(1) });
      await client.connect();
      return client;
    },
    halt,
    resume: launch,
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
