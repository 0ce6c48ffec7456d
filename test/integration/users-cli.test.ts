/**
 * `npm run users` as a real child process against the store its config names: with
 * `gateway.store.kind: postgres` users are added, listed and given new passwords in PostgreSQL
 * (where every gateway of the site reads them), not in a SQLite file beside the config. A
 * database that cannot be reached is a clear error and exit code 2.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySecret } from '../../gateway/src/security/secrets.js';
import { REPO } from '../helpers/gateway.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

const CLI = join(REPO, 'gateway/src/auth/users-cli.ts');

let server: PostgresServer;
let dir: string;
let configFile: string;
let db: pg.Client;

/** Runs the CLI the way `npm run users` does (tsx). */
async function users(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, ...args, '--config', configFile], { cwd: REPO });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const passwordOf = (stdout: string) => /shown once: (\S+)/.exec(stdout)?.[1] ?? '';
const hashOf = async (username: string) => ((await db.query('SELECT password_hash FROM users WHERE username = $1', [username])).rows[0] as { password_hash: string } | undefined)?.password_hash;

beforeAll(async () => {
  server = await startPostgres();
  const url = await server.createDatabase();
  dir = mkdtempSync(join(tmpdir(), 'gs-users-cli-'));
  writeFileSync(join(dir, 'postgres-password'), `${server.password}\n`, { mode: 0o600 });
  configFile = join(dir, 'gateway.yaml');
  writeFileSync(
    configFile,
    [
      'gateway:',
      `  dataDir: ${join(dir, 'data')}`,
      '  store:',
      '    kind: postgres',
      '    postgres:',
      `      url: ${url}`,
      '      passwordFile: postgres-password',
      '      callTimeoutMs: 2000',
      '',
    ].join('\n'),
  );
  // An empty database: the CLI's first run creates the tables.
  db = await server.connect(url);
  db.on('error', () => undefined); // the outage case stops the server under it
}, 60_000);

afterAll(async () => {
  await db?.end().catch(() => undefined);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('npm run users on a PostgreSQL store', () => {
  it('adds a user to PostgreSQL, with a password that works, and audits it', async () => {
    const added = await users('add', 'pg-cli-li', '--role', 'duty_officer', '--name', '李值班', '--grids', 'G01,G02');
    expect(added).toMatchObject({ code: 0, stdout: expect.stringMatching(/^created pg-cli-li \(duty_officer\); password, shown once: \S{20}\n$/) });
    const row = (await db.query('SELECT username, display_name, role, grids FROM users WHERE username = $1', ['pg-cli-li'])).rows[0] as Record<string, unknown>;
    expect(row).toMatchObject({ username: 'pg-cli-li', display_name: '李值班', role: 'duty_officer' });
    expect(row.grids).toEqual(['G01', 'G02']);
    expect(await verifySecret(Buffer.from(passwordOf(added.stdout)), (await hashOf('pg-cli-li'))!)).toBe(true);
    expect((await db.query("SELECT actor, subject FROM audit WHERE action = 'user.create'")).rows).toEqual([{ actor: 'cli', subject: 'pg-cli-li' }]);
    expect(existsSync(join(dir, 'data', 'greenshield.sqlite'))).toBe(false); // no SQLite file on the side
  }, 120_000);

  it('lists the users, refuses a second add of the same name, and sets a new password', async () => {
    const list = await users('list');
    expect(list.code).toBe(0);
    expect(list.stdout).toBe('pg-cli-li\tduty_officer\t李值班\tG01,G02\n');

    const again = await users('add', 'pg-cli-li', '--role', 'viewer');
    expect(again.code).toBe(2);
    expect(again.stderr).toBe('user "pg-cli-li" exists (use passwd to change the password)\n');

    const before = await hashOf('pg-cli-li');
    const changed = await users('passwd', 'pg-cli-li');
    expect(changed.code).toBe(0);
    const after = (await hashOf('pg-cli-li'))!;
    expect(after).not.toBe(before);
    expect(await verifySecret(Buffer.from(passwordOf(changed.stdout)), after)).toBe(true);
  }, 120_000);

  it('says so, with exit code 2, when the database cannot be reached', async () => {
    await server.halt();
    try {
      const down = await users('list');
      expect(down.code).toBe(2);
      expect(down.stderr).toMatch(/^the operational store at postgres:\/\/127\.0\.0\.1:\d+\/\S+: .*ECONNREFUSED/);
    } finally {
      await server.resume();
    }
  }, 120_000);
});
