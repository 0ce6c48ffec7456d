/**
 * Builds a real gateway for tests: the shipped config schema and ledger, every port 0, a temp
 * data dir, anonymous MQTT unless `mqtt` says otherwise (the credentials file defaults to one
 * in the temp dir, so a developer's config/credentials.yaml never leaks in), logs silent unless
 * GS_TEST_LOG=debug.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { resolveConfig } from '../../config/load.js';
import type { LedgerDevice } from '../../config/ledger.js';
import type { AgentConfig, Config } from '../../config/schema.js';
import { buildGateway, type Gateway, type GatewayOptions } from '../../gateway/src/gateway.js';
import { createLogger } from '../../gateway/src/log.js';
import { hashSecret } from '../../gateway/src/security/secrets.js';

export const REPO = resolve(import.meta.dirname, '../..');
export const CONFIG_DIR = join(REPO, 'config');

export function testLogLevel(): 'silent' | 'debug' | 'info' {
  const l = process.env.GS_TEST_LOG;
  return l === 'debug' || l === 'info' ? l : 'silent';
}

/** One user per role, created in every test gateway; the password is `<username>-password`. */
export const TEST_USERS = {
  admin: { username: 'test-admin', displayName: '管理员', role: 'admin', grids: [] as string[] },
  duty_officer: { username: 'test-duty', displayName: '值班员', role: 'duty_officer', grids: [] as string[] },
  grid_worker: { username: 'test-grid', displayName: '网格员', role: 'grid_worker', grids: ['G01', 'G02'] },
  viewer: { username: 'test-viewer', displayName: '观察员', role: 'viewer', grids: [] as string[] },
} as const;
export type TestRole = keyof typeof TEST_USERS;
export const testPassword = (role: TestRole) => `${TEST_USERS[role].username}-password`;
// Hashed once per test file (scrypt is slow on purpose).
const TEST_USER_CONFIG = await Promise.all(
  (Object.keys(TEST_USERS) as TestRole[]).map(async (role) => ({ ...TEST_USERS[role], grids: [...TEST_USERS[role].grids], passwordHash: await hashSecret(testPassword(role)) })),
);

export interface TestGateway extends Gateway {
  config: Config;
  dataDir: string;
  /** A session token for the test user of this role (signed in once, then cached). */
  tokenFor(role?: TestRole): Promise<string>;
  /** fetch() against the gateway's HTTP API as the test user of a role (default admin). */
  api(path: string, init?: RequestInit & { as?: TestRole }): Promise<Response>;
  /** Stops the gateway and removes its temp dir. */
  close(): Promise<void>;
}

export async function startTestGateway(opts: {
  influxUrl?: string | null;
  database?: string;
  ledger?: readonly LedgerDevice[];
  gateway?: Record<string, unknown>;
  /** Merged over the test defaults of gateway.mqtt (allowAnonymous, credentialsFile, tls, websocketPath). */
  mqtt?: Record<string, unknown>;
  options?: GatewayOptions;
} = {}): Promise<TestGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gs-gateway-'));
  const { config } = resolveConfig(
    {
      log: { level: testLogLevel() },
      gateway: {
        mqtt: { host: '127.0.0.1', port: 0, allowAnonymous: true, credentialsFile: join(dataDir, 'credentials.yaml'), ...opts.mqtt },
        http: { host: '127.0.0.1', port: 0 },
        influx:
          opts.influxUrl === null || opts.influxUrl === undefined
            ? { enabled: false }
            : { url: opts.influxUrl, database: opts.database ?? 'greenshield_test', flushIntervalMs: 100 },
        push: { flushIntervalMs: 50 },
        auth: { users: TEST_USER_CONFIG },
        dataDir,
        ...opts.gateway,
      },
    },
    { source: 'test', baseDir: CONFIG_DIR },
  );
  const gateway = buildGateway(config, {
    log: createLogger(config.log.level),
    ...(opts.ledger ? { ledger: opts.ledger } : {}),
    ...opts.options,
  });
  try {
    await gateway.start();
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const tokens = new Map<TestRole, Promise<string>>();
  const tokenFor = (role: TestRole = 'admin') => {
    let token = tokens.get(role);
    if (!token) {
      token = fetch(`${gateway.httpUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: TEST_USERS[role].username, password: testPassword(role) }),
      }).then(async (res) => {
        if (res.status !== 200) throw new Error(`test login as ${role} failed: ${res.status} ${await res.text()}`);
        return ((await res.json()) as { token: string }).token;
      });
      tokens.set(role, token);
    }
    return token;
  };
  return Object.assign(gateway, {
    config,
    dataDir,
    tokenFor,
    async api(path: string, init: RequestInit & { as?: TestRole } = {}) {
      const { as, ...rest } = init;
      const headers = new Headers(rest.headers);
      headers.set('authorization', `Bearer ${await tokenFor(as ?? 'admin')}`);
      return fetch(`${gateway.httpUrl}${path}`, { ...rest, headers });
    },
    async close() {
      await gateway.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(check: () => T | Promise<T>, opts: { timeoutMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`);
}

/** An agent config from a partial document, with the schema's defaults filled in. */
export function testAgentConfig(doc: { id: string; brokerUrl: string } & Record<string, unknown>): AgentConfig {
  const { config } = resolveConfig({ log: { level: testLogLevel() }, agent: doc }, { source: 'test', baseDir: CONFIG_DIR });
  return config.agent!;
}
