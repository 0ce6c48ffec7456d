/**
 * The gateway and agent as processes: a bad config or ledger fails at start with the path and the
 * reason (exit code 2, no stack trace).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/gateway.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'gs-proc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(entry: string, yaml: string): Promise<{ code: number; stderr: string }> {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  try {
    await run(process.execPath, ['--import', 'tsx', entry, '--config', file], { cwd: REPO, timeout: 30_000 });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe('start-up errors', () => {
  it('the gateway names the bad key and the reason', async () => {
    const { code, stderr } = await start('gateway/src/main.ts', 'gateway:\n  influx:\n    url: "not a url"\n  mqtt:\n    prot: 1883\n');
    expect(code).toBe(2);
    expect(stderr).toContain('gateway.influx.url: must be a URL');
    expect(stderr).toContain('gateway.mqtt.prot: unknown key');
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('the gateway names the ledger line that is wrong', async () => {
    const ledger = join(dir, 'ledger.csv');
    writeFileSync(ledger, 'id,kind,name,lat,lon,grid,community,agent\ncam-1,camera,A,29.4,105.9,G01,c,agent-1\ncam-2,camera,B,29.4,,G01,c,agent-1\n');
    const { code, stderr } = await start('gateway/src/main.ts', `ledger:\n  file: ${ledger}\ngateway:\n  http: { port: 0 }\n  mqtt: { port: 0 }\n`);
    expect(code).toBe(2);
    expect(stderr).toContain('line 3: lon: is required');
  });

  it('the agent refuses a config without its section', async () => {
    const { code, stderr } = await start('edge-agent/src/main.ts', 'gateway: {}\n');
    expect(code).toBe(2);
    expect(stderr).toContain('agent: section is required');
  });
});
