/**
 * gateway.mqtt.mode / gateway.mqtt.external: defaults, readable errors at start, the kept client id.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, resolveConfig } from '../../config/load.js';
import { externalSettings, resolveClientId } from '../../gateway/src/broker/external.js';

const dir = mkdtempSync(join(tmpdir(), 'gs-ext-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function gatewayConfig(mqtt: Record<string, unknown>) {
  return resolveConfig({ gateway: { mqtt } }, { source: 'test.yaml', baseDir: dir }).config.gateway!;
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('external broker config', () => {
  it('defaults to the embedded broker; the external section has its defaults', () => {
    const gw = gatewayConfig({});
    expect(gw.mqtt.mode).toBe('embedded');
    expect(gw.mqtt.external).toMatchObject({ shareGroup: 'greenshield', sessionExpirySec: 3600, receiveMaximum: 1000, fanout: true });
  });

  it('names the key and the reason', () => {
    expect(problems(() => externalSettings(gatewayConfig({ mode: 'external' })))).toEqual(['gateway.mqtt.external.url: is required when gateway.mqtt.mode is external']);
    expect(problems(() => gatewayConfig({ mode: 'external', external: { url: 'http://broker:1883' } }))).toEqual([
      'gateway.mqtt.external.url: has an invalid form (must match ^mqtts?://[^\\s/?#]+/?$)',
    ]);
    expect(problems(() => gatewayConfig({ mode: 'external', external: { url: 'mqtt://b:1883', shareGroup: 'a/b' } }))[0]).toMatch(/^gateway\.mqtt\.external\.shareGroup: has an invalid form/);
    expect(problems(() => gatewayConfig({ mode: 'cluster' }))).toEqual(['gateway.mqtt.mode: must be equal to constant']);
    expect(problems(() => externalSettings(gatewayConfig({ mode: 'external', external: { url: 'mqtt://u:secret@b:1883' } })))).toEqual([
      'gateway.mqtt.external.url: must not carry credentials (it is logged); use username and passwordFile',
    ]);
    expect(problems(() => externalSettings(gatewayConfig({ mode: 'external', external: { url: 'mqtt://b:1883', password: 'x', passwordFile: 'pw' } })))).toEqual([
      'gateway.mqtt.external.password, gateway.mqtt.external.passwordFile: set one, not both',
      `gateway.mqtt.external.passwordFile: cannot read ${join(dir, 'pw')}: ENOENT`,
    ]);
  });

  it('reads the password file relative to the config file', () => {
    writeFileSync(join(dir, 'broker-password'), 's3cret\n');
    const s = externalSettings(gatewayConfig({ mode: 'external', external: { url: 'mqtts://broker.example:8883', username: 'gw', passwordFile: 'broker-password' } }));
    expect(s).toMatchObject({ url: 'mqtts://broker.example:8883', displayUrl: 'mqtts://broker.example:8883', username: 'gw', password: 's3cret' });
  });

  it('keeps a generated client id in the data dir, so a restart resumes the session', () => {
    const dataDir = join(dir, 'data');
    const first = resolveClientId(undefined, dataDir);
    expect(first).toMatch(new RegExp(`^gateway-[A-Za-z0-9_.-]+-${process.pid}$`));
    expect(readFileSync(join(dataDir, 'mqtt-client-id'), 'utf8').trim()).toBe(first);
    writeFileSync(join(dataDir, 'mqtt-client-id'), 'gateway-host-1\n');
    expect(resolveClientId(undefined, dataDir)).toBe('gateway-host-1');
    expect(resolveClientId('gw-east-1', dataDir)).toBe('gw-east-1');
  });
});
