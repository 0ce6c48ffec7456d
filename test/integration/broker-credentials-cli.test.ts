/**
 * `npm run credentials` as a real child process against a running gateway: the secret it prints
 * once gets an agent in without a restart, the file holds only hashes, and `remove` closes the
 * agent's open connection and keeps it out.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLedgerCsv } from '../../config/ledger.js';
import { loadCredentialsFile, verifyBrokerSecret, verifySecret } from '../../gateway/src/broker/credentials.js';
import { REPO, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js';

const CLI = join(REPO, 'gateway/src/broker/credentials-cli.ts');
const LEDGER = parseLedgerCsv(
  ['id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm', 'tank-a1,water_tank,A1,29.41,105.85,G1,C1,agent-a,50,2500'].join('\n'),
).devices;

let dir: string;
let file: string;
let gateway: TestGateway;
const clients: MqttClient[] = [];
/** Every line the gateway logs (JSON), to wait for reloads and to check no secret is ever logged. */
const logLines: string[] = [];
const reloads = () => logLines.filter((l) => l.includes('"credentials reloaded"')).length;

/** Runs the CLI the way `npm run credentials` does (tsx), without blocking the gateway in this process. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function tryConnect(username: string, password: string): Promise<MqttClient | number> {
  try {
    const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: username, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
    clients.push(client);
    return client;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-credentials-cli-'));
  file = join(dir, 'credentials.yaml');
  // No credentials file yet: nobody can connect until the CLI writes one.
  const log = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
  gateway = await startTestGateway({ ledger: LEDGER, mqtt: { allowAnonymous: false, credentialsFile: file }, options: { log } });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('npm run credentials', () => {
  it('adds an agent, prints its secret once, stores only a hash, and the running gateway admits it', async () => {
    const added = await cli('add', 'agent-a', '--file', file);
    expect(added.code).toBe(0);
    const secret = added.stdout.trim();
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(added.stderr).toContain('shown this once only');
    expect(added.stderr).not.toContain(secret);

    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(secret);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const [record] = loadCredentialsFile(file) ?? [];
    expect(record).toMatchObject({ username: 'agent-a', kind: 'agent' });
    expect(await verifySecret(Buffer.from(secret), record?.hash ?? '')).toBe(true);
    // The same secret hashed for an external broker (Mosquitto, EMQX: npm run broker-config).
    expect(record?.brokerHash).toMatch(/^pbkdf2-sha512\$4096\$[A-Za-z0-9_-]{12}\$/);
    expect(await verifyBrokerSecret(Buffer.from(secret), record?.brokerHash ?? '')).toBe(true);

    // The gateway notices the new file (polled every 2 s) without a restart.
    await waitFor(() => reloads() >= 1, { what: 'credentials reloaded' });
    const agent = await tryConnect('agent-a', secret);
    expect(typeof agent === 'number' ? agent : agent.connected).toBe(true);

    const device = await cli('add', 'tank-a1', '--kind', 'device', '--file', file);
    expect(device.code).toBe(0);
    const list = await cli('list', '--file', file);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n').map((l) => l.trim().split(/\s+/).join(' '))).toEqual(['username kind', 'agent-a agent', 'tank-a1 device', '']);
    expect(list.stdout).not.toContain('scrypt');
  });

  it('refuses what it cannot do, with a reason and exit code 1', async () => {
    const [again, badId, badKind, nobody] = await Promise.all([
      cli('add', 'agent-a', '--file', file),
      cli('add', 'bad id', '--file', file),
      cli('add', 'agent-z', '--kind', 'camera', '--file', file),
      cli('remove', 'nobody', '--file', file),
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists.*--replace/);
    expect(again.stdout).toBe('');
    expect(badId.code).toBe(1);
    expect(badKind).toMatchObject({ code: 1, stderr: expect.stringMatching(/--kind must be one of agent, device/) });
    expect(nobody).toMatchObject({ code: 1, stderr: expect.stringMatching(/"nobody" is not in/) });
  });

  it('removes an agent: its open connection is closed and it cannot come back', async () => {
    const before = reloads();
    const secret = (await cli('add', 'agent-a', '--replace', '--file', file)).stdout.trim();
    await waitFor(() => reloads() > before, { what: 'credentials reloaded' });
    const agent = await tryConnect('agent-a', secret);
    if (typeof agent === 'number') throw new Error(`refused with ${agent}`);
    const closed = new Promise<void>((resolve) => agent.once('close', () => resolve()));

    const removed = await cli('remove', 'agent-a', '--file', file);
    expect(removed.code).toBe(0);
    await closed;
    expect(loadCredentialsFile(file)?.map((r) => r.username)).toEqual(['tank-a1']);
    expect(await tryConnect('agent-a', secret)).toBe(4);
    expect(logLines.some((l) => l.includes('its credentials were removed or replaced') && l.includes('"principal":"agent-a"'))).toBe(true);
    // Refusals and reloads were logged; a secret never was.
    expect(logLines.some((l) => l.includes('"MQTT connection refused"'))).toBe(true);
    expect(logLines.filter((l) => l.includes(secret))).toEqual([]);
  });
});
