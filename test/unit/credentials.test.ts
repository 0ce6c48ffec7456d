/**
 * The credentials file (scrypt hashes only) and the verifier that keeps scrypt from being paid on
 * every reconnect or from flooding the thread pool.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CredentialsError,
  generateSecret,
  hashSecret,
  loadCredentialsFile,
  parseCredentials,
  parseHash,
  verifySecret,
  writeCredentialsFile,
  type CredentialRecord,
} from '../../gateway/src/broker/credentials.js';
import { FailureLimiter, SecretVerifier } from '../../gateway/src/broker/verifier.js';

const dir = mkdtempSync(join(tmpdir(), 'gs-credentials-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('scrypt hashes', () => {
  it('hashes as scrypt$16384$8$1$salt$key and verifies only the same secret', async () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hash = await hashSecret(secret);
    expect(hash).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    const parsed = parseHash(hash);
    expect(parsed?.salt.length).toBe(16);
    expect(parsed?.key.length).toBe(32);
    expect(hash).not.toContain(secret);
    expect(await verifySecret(Buffer.from(secret), hash)).toBe(true);
    expect(await verifySecret(Buffer.from(`${secret}x`), hash)).toBe(false);
    expect(await verifySecret(Buffer.alloc(0), hash)).toBe(false);
    // A fresh salt each time: the same secret never gives the same string.
    expect(await hashSecret(secret)).not.toBe(hash);
  });

  it('refuses malformed or abusive parameters instead of running them', async () => {
    const good = await hashSecret('s');
    const [, , , , salt, key] = good.split('$');
    for (const bad of [
      'plain-text-password',
      `scrypt$16384$8$1$${salt}`,
      `bcrypt$16384$8$1$${salt}$${key}`,
      `scrypt$10000$8$1$${salt}$${key}`, // N not a power of two
      `scrypt$${1 << 22}$8$1$${salt}$${key}`, // 4 GiB of memory per login
      `scrypt$16384$0$1$${salt}$${key}`,
      `scrypt$16384$8$99$${salt}$${key}`,
      `scrypt$16384$8$1$!!$${key}`,
      `scrypt$16384$8$1$${salt}$AAAA`, // 3-byte key
    ]) {
      expect(parseHash(bad), bad).toBeUndefined();
      expect(await verifySecret(Buffer.from('s'), bad)).toBe(false);
    }
  });
});

describe('credentials file', () => {
  it('round-trips through YAML with mode 0600 and no secret in it', async () => {
    const file = join(dir, 'round-trip.yaml');
    const secret = generateSecret();
    const records: CredentialRecord[] = [
      { username: 'agent-chashan', kind: 'agent', hash: await hashSecret(secret) },
      { username: 'tank-001', kind: 'device', hash: await hashSecret(generateSecret()) },
    ];
    writeCredentialsFile(file, records);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(secret);
    expect(text).toMatch(/^# GreenShield MQTT credentials/);
    const loaded = loadCredentialsFile(file);
    expect(loaded).toEqual(records);
    expect(await verifySecret(Buffer.from(secret), loaded?.[0]?.hash ?? '')).toBe(true);
  });

  it('treats a missing file as no credentials and an empty one as an empty list', () => {
    expect(loadCredentialsFile(join(dir, 'nope.yaml'))).toBeUndefined();
    writeFileSync(join(dir, 'empty.yaml'), '# nothing yet\n');
    expect(loadCredentialsFile(join(dir, 'empty.yaml'))).toEqual([]);
  });

  it('names every problem with its place in the file', async () => {
    const hash = await hashSecret('x');
    const { records, problems } = parseCredentials({
      principals: [
        { username: 'agent-a', kind: 'agent', hash },
        { username: 'agent-a', kind: 'agent', hash },
        { username: 'bad id', kind: 'agent', hash },
        { username: 'cam-1', kind: 'camera', hash },
        { username: 'tank-1', kind: 'device', hash: 'hunter2' },
        { username: 'tank-2', kind: 'device', hash, password: 'x' },
        'agent-z',
      ],
      users: [],
    });
    expect(records.map((r) => r.username)).toEqual(['agent-a']);
    expect(problems).toEqual([
      'users: unknown key',
      'principals[1].username: "agent-a" is already used by principals[0]',
      "principals[2].username: must be an agent or device id (letters, digits, '_', '.', '-'; max 64)",
      'principals[3].kind: must be one of agent, device',
      'principals[4].hash: must be a scrypt$N$r$p$salt$hash string (write it with `npm run credentials`)',
      'principals[5].password: unknown key',
      'principals[6]: must be a mapping with username, kind and hash',
    ]);
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'principals:\n  - username: agent-a\n    kind: robot\n    hash: x\n');
    expect(() => loadCredentialsFile(file)).toThrow(CredentialsError);
    expect(() => loadCredentialsFile(file)).toThrow(/invalid credentials file .*bad\.yaml:\n {2}principals\[0\]\.kind: must be one of agent, device/);
    writeFileSync(file, 'principals: [unclosed\n');
    expect(() => loadCredentialsFile(file)).toThrow(/not valid YAML/);
  });
});

describe('SecretVerifier', () => {
  /** A stand-in for scrypt that counts calls and can be held open. */
  function fakeScrypt() {
    const calls: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const gates: Array<() => void> = [];
    return {
      calls,
      get maxRunning() {
        return maxRunning;
      },
      release: () => gates.splice(0).forEach((open) => open()),
      verify: async (secret: Uint8Array, hash: string) => {
        calls.push(Buffer.from(secret).toString());
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise<void>((resolve) => gates.push(resolve));
        running--;
        return hash === `hash-of-${Buffer.from(secret).toString()}`;
      },
    };
  }
  const settle = () => new Promise((r) => setTimeout(r, 0));
  const record = (username: string, secret: string): CredentialRecord => ({ username, kind: 'agent', hash: `hash-of-${secret}` });

  it('pays scrypt once per principal and secret; later reconnects are a cache hit', async () => {
    const fake = fakeScrypt();
    const methods: string[] = [];
    const v = new SecretVerifier({ verify: fake.verify, onVerify: (m, ok) => methods.push(`${m}:${ok}`) });
    const agent = record('agent-a', 's3cret');
    const first = v.verify(agent, Buffer.from('s3cret'));
    await settle();
    fake.release();
    expect(await first).toBe(true);
    for (let i = 0; i < 100; i++) expect(await v.verify(agent, Buffer.from('s3cret'))).toBe(true);
    expect(fake.calls).toHaveLength(1);
    expect(methods.filter((m) => m === 'cache:true')).toHaveLength(100);

    // A wrong secret is never answered from the cache and never cached.
    const wrong = v.verify(agent, Buffer.from('guess'));
    await settle();
    fake.release();
    expect(await wrong).toBe(false);
    expect(fake.calls).toEqual(['s3cret', 'guess']);
    expect(await v.verify(agent, Buffer.from('s3cret'))).toBe(true);
    expect(fake.calls).toHaveLength(2);
  });

  it('forgets a secret once its hash is rotated or the principal removed', async () => {
    const fake = fakeScrypt();
    const v = new SecretVerifier({ verify: fake.verify });
    const old = record('agent-a', 'old');
    const p = v.verify(old, Buffer.from('old'));
    await settle();
    fake.release();
    expect(await p).toBe(true);
    // Rotated: the old secret against the new hash needs scrypt again, and fails.
    const rotated = record('agent-a', 'new');
    const q = v.verify(rotated, Buffer.from('old'));
    await settle();
    fake.release();
    expect(await q).toBe(false);
    expect(fake.calls).toEqual(['old', 'old']);
    v.retain(new Map());
    expect(v.cached).toBe(0);
  });

  it('runs at most two scrypts at once, shares identical checks, and skips abandoned ones', async () => {
    const fake = fakeScrypt();
    const v = new SecretVerifier({ verify: fake.verify, maxConcurrent: 2 });
    const results = Array.from({ length: 6 }, (_, i) => v.verify(record(`agent-${i}`, `s${i}`), Buffer.from(`s${i}`)));
    // Five clients with the same username and secret at once: one scrypt between them.
    const same = Array.from({ length: 5 }, () => v.verify(record('agent-x', 'sx'), Buffer.from('sx')));
    // Gone before its turn came: never run.
    const gone = v.verify(record('agent-gone', 'sg'), Buffer.from('sg'), () => true);
    for (let i = 0; i < 10; i++) {
      await settle();
      fake.release();
    }
    expect(await Promise.all(results)).toEqual([true, true, true, true, true, true]);
    expect(await Promise.all(same)).toEqual([true, true, true, true, true]);
    expect(await gone).toBe(false);
    expect(fake.maxRunning).toBe(2);
    expect(fake.calls.filter((c) => c === 'sx')).toHaveLength(1);
    expect(fake.calls).not.toContain('sg');
  });

  it('works with real scrypt without blocking the event loop', async () => {
    const hash = await hashSecret('real');
    const v = new SecretVerifier();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const ok = await v.verify({ username: 'agent-r', kind: 'agent', hash }, Buffer.from('real'));
    clearInterval(timer);
    expect(ok).toBe(true);
    expect(ticks).toBeGreaterThan(0); // timers ran while scrypt was working on the thread pool
  });
});

describe('FailureLimiter', () => {
  it('blocks an address after 10 failures in a minute, and lets it go when they age out', () => {
    let now = 1_000_000;
    const limiter = new FailureLimiter({ maxFailures: 10, windowMs: 60_000, now: () => now });
    for (let i = 0; i < 9; i++) {
      limiter.fail('10.0.0.1');
      now += 1000;
    }
    expect(limiter.blocked('10.0.0.1')).toBe(false);
    limiter.fail('10.0.0.1');
    expect(limiter.blocked('10.0.0.1')).toBe(true);
    expect(limiter.blocked('10.0.0.2')).toBe(false);
    now += 51_000; // the first failure is now 60 s old
    expect(limiter.blocked('10.0.0.1')).toBe(false);
    now += 60_000;
    expect(limiter.blocked('10.0.0.1')).toBe(false);
  });
});
