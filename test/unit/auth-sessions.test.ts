/**
 * Sessions do not pile up: every sign-in leaves a row that outlives its expiry, so the gateway
 * deletes expired ones at start and on the first sign-in of each hour (a real SQLite store).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../gateway/src/auth/auth.js';
import { hashSecret } from '../../gateway/src/security/secrets.js';
import { SqliteStore } from '../../gateway/src/store/sqlite.js';

const HOUR = 3600_000;
const T0 = Date.UTC(2026, 10, 26, 8);
const tokenHash = (token: string) => createHash('sha256').update(token).digest('base64url');

let dir: string;
let store: SqliteStore;
let now: number;
let auth: AuthService;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-auth-sessions-'));
  store = new SqliteStore(join(dir, 'store.sqlite'));
  now = T0;
  const passwordHash = await hashSecret('duty-password-1');
  auth = new AuthService({
    config: { sessionHours: 1, users: [{ username: 'duty', displayName: '值班员', role: 'duty_officer', grids: [], passwordHash }] },
    store,
    log: pino({ level: 'silent' }),
    now: () => now,
  });
  auth.seed();
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function signIn(): Promise<string> {
  const result = await auth.login('duty', 'duty-password-1', '127.0.0.1');
  if (typeof result === 'string') throw new Error(`sign-in refused: ${result}`);
  return result.token;
}

/** Whether the session's row is still stored (asked as of T0, before any of them expired). */
const stored = (token: string) => store.findSession(tokenHash(token), T0) !== undefined;

describe('expired sessions', () => {
  it('are deleted by the first sign-in after an hour, and only the expired ones', async () => {
    const first = await signIn();
    now = T0 + 30 * 60_000;
    const second = await signIn();
    // 61 minutes on: the first has expired (1 h sessions), the second has not.
    now = T0 + 61 * 60_000;
    expect(auth.authenticate(first)).toBeUndefined();
    expect(stored(first)).toBe(true);
    const third = await signIn();
    expect(stored(first)).toBe(false);
    expect(stored(second)).toBe(true);
    expect(auth.authenticate(second)?.user.username).toBe('duty');
    expect(auth.authenticate(third)?.user.username).toBe('duty');
  });

  it('are not looked for at every sign-in: at most once an hour', async () => {
    await signIn(); // T0: the start's purge was just now, none here
    now = T0 + 30 * 60_000;
    const b = await signIn(); // expires at T0 + 90 min
    now = T0 + 61 * 60_000;
    await signIn(); // an hour since the last: purges
    now = T0 + 100 * 60_000;
    expect(auth.authenticate(b)).toBeUndefined();
    await signIn(); // 39 min since the last purge: `b` has expired but stays for now
    expect(stored(b)).toBe(true);
    now = T0 + 122 * 60_000;
    await signIn();
    expect(stored(b)).toBe(false);
  });

  it('are deleted when the gateway starts', async () => {
    const first = await signIn();
    now = T0 + 2 * HOUR;
    expect(stored(first)).toBe(true);
    const passwordHash = await hashSecret('duty-password-1');
    const restarted = new AuthService({
      config: { sessionHours: 1, users: [{ username: 'duty', displayName: '值班员', role: 'duty_officer', grids: [], passwordHash }] },
      store,
      log: pino({ level: 'silent' }),
      now: () => now,
    });
    restarted.seed();
    expect(stored(first)).toBe(false);
  });
});
