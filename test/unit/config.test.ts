import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, resolveConfig } from '../../config/load.js';

function problemsOf(doc: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    resolveConfig(doc, { source: 'test.yaml', baseDir: '/etc/gs', env });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config', () => {
  it('fills defaults from the schema and resolves paths against the config file', () => {
    const { config } = resolveConfig({ gateway: {} }, { source: 't', baseDir: '/etc/gs' });
    expect(config.gateway?.mqtt.port).toBe(1883);
    expect(config.gateway?.influx.batchSize).toBe(5000);
    expect(config.gateway?.availability.silenceTimeoutSec.water_tank).toBe(900);
    expect(config.ledger.file).toBe('/etc/gs/ledger/chashan-zhuhai.csv');
    expect(config.gateway?.dataDir).toBe('/etc/.data/gateway');
  });

  it('names the key and the reason for each problem', () => {
    expect(problemsOf({ gateway: { influx: { url: 'not a url' } } })).toEqual(['gateway.influx.url: must be a URL']);
    expect(problemsOf({ gateway: { mqtt: { prot: 1883 } } })).toEqual(['gateway.mqtt.prot: unknown key']);
    expect(problemsOf({ gateway: { http: { port: 70000 } } })).toEqual(['gateway.http.port: must be <= 65535']);
    expect(problemsOf({ agent: { brokerUrl: 'mqtt://x:1883' } })).toEqual(['agent.id: is required']);
    expect(problemsOf({ nonsense: true })).toEqual(['nonsense: unknown key']);
    expect(problemsOf(['a'])).toEqual(['(root): must be a mapping of sections (site, ledger, gateway, agent, ...)']);
  });

  it('applies GS__ environment overrides, parsed as YAML scalars, and validates them too', () => {
    const env = { GS__GATEWAY__HTTP__PORT: '9090', GS__GATEWAY__AVAILABILITY__SILENCE_TIMEOUT_SEC__VOICE_POLE: '60', GS__GATEWAY__INFLUX__ENABLED: 'false' };
    const { config, envOverrides } = resolveConfig({ gateway: {} }, { source: 't', baseDir: '/', env });
    expect(config.gateway?.http.port).toBe(9090);
    expect(config.gateway?.availability.silenceTimeoutSec.voice_pole).toBe(60);
    expect(config.gateway?.influx.enabled).toBe(false);
    expect(envOverrides).toContain('gateway.http.port');
    expect(problemsOf({ gateway: {} }, { GS__GATEWAY__HTTP__PORT: 'eighty' })).toEqual(['gateway.http.port: must be integer']);
  });

  it('reports unreadable and unparsable files with the file as the path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gs-config-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'gateway:\n  mqtt: [unclosed\n');
    expect(() => loadConfig(bad, {})).toThrow(/bad\.yaml:\n  \(file\): not valid YAML/);
    expect(() => loadConfig(join(dir, 'missing.yaml'), {})).toThrow(/\(file\): cannot read: ENOENT/);
  });

  it('accepts the shipped configs', () => {
    for (const f of ['demo.yaml', 'gateway.example.yaml', 'agent.example.yaml']) {
      expect(() => loadConfig(join(import.meta.dirname, '../../config', f), {})).not.toThrow();
    }
  });
});
