/**
 * Loads a YAML or JSON config file, applies `GS__SECTION__KEY=value` environment overrides,
 * fills defaults from the schema and rejects anything else with `path: reason`.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { DEVICE_KINDS } from '../protocol/payloads.js';
import { Config } from './schema.js';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`invalid config ${source}:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

// ajv-formats is CommonJS; under NodeNext its plugin function is the `.default` of the module.
const addFormats = addFormatsModule.default;
const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: false, strict: true });
addFormats(ajv, ['uri']);
const validateConfig = ajv.compile<Config>(Config);

function errorToProblem(e: ErrorObject): string {
  const path = e.instancePath === '' ? '' : e.instancePath.slice(1).replaceAll('/', '.');
  const at = (p: string) => (p === '' ? '(root)' : p);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      return `${path === '' ? key : `${path}.${key}`}: unknown key`;
    }
    case 'required':
      return `${path === '' ? '' : `${path}.`}${(e.params as { missingProperty: string }).missingProperty}: is required`;
    case 'format':
      return `${at(path)}: must be a URL`;
    case 'pattern':
      return `${at(path)}: has an invalid form (must match ${(e.params as { pattern: string }).pattern})`;
    default:
      return `${at(path)}: ${e.message ?? 'is invalid'}`;
  }
}

/** Turns ajv's errors into one line per problem; anyOf/union noise collapses to its first cause. */
function problemsOf(errors: ErrorObject[]): string[] {
  const out: string[] = [];
  for (const e of errors) {
    if (e.keyword === 'anyOf') continue;
    const line = errorToProblem(e);
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

/** Env spelling to schema key: SILENCE_TIMEOUT_SEC -> silenceTimeoutSec; device kinds keep snake_case. */
function envSegmentToKey(segment: string): string {
  const snake = segment.toLowerCase();
  if ((DEVICE_KINDS as readonly string[]).includes(snake)) return snake;
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** `GS__GATEWAY__HTTP__PORT=9000` sets gateway.http.port; values are parsed as YAML scalars. */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const applied: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('GS__') || raw === undefined) continue;
    const path = name.slice(4).split('__').map(envSegmentToKey);
    let node: Record<string, unknown> = doc;
    for (const [i, key] of path.entries()) {
      if (i === path.length - 1) {
        node[key] = parseYaml(raw) as unknown;
      } else {
        const next = node[key];
        if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
        node = node[key] as Record<string, unknown>;
      }
    }
    applied.push(path.join('.'));
  }
  return applied;
}

/** File paths in the config, resolved against the config file's directory. */
const PATH_KEYS = [
  'site.geojson',
  'ledger.file',
  'gateway.dataDir',
  'gateway.mqtt.credentialsFile',
  'gateway.mqtt.tls.certFile',
  'gateway.mqtt.tls.keyFile',
  'gateway.mqtt.external.passwordFile',
  'gateway.mqtt.external.caFile',
  'gateway.spool.dir',
  'gateway.store.file',
  'gateway.store.postgres.passwordFile',
  'agent.outboxFile',
];

function resolvePaths(config: Record<string, unknown>, baseDir: string): void {
  for (const dotted of PATH_KEYS) {
    const keys = dotted.split('.');
    const last = keys.pop()!;
    let node: unknown = config;
    for (const k of keys) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[k] : undefined;
    if (typeof node !== 'object' || node === null) continue;
    const holder = node as Record<string, unknown>;
    const value = holder[last];
    if (typeof value === 'string' && !isAbsolute(value)) holder[last] = resolve(baseDir, value);
  }
}

export interface LoadedConfig {
  config: Config;
  /** Where the config came from, for messages. */
  source: string;
  envOverrides: string[];
}

/** Validates an already-parsed document (also used by tests and the demo runner). */
export function resolveConfig(doc: unknown, opts: { source: string; baseDir: string; env?: NodeJS.ProcessEnv }): LoadedConfig {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ConfigError(opts.source, ['(root): must be a mapping of sections (site, ledger, gateway, agent, ...)']);
  }
  const copy = structuredClone(doc) as Record<string, unknown>;
  const envOverrides = applyEnvOverrides(copy, opts.env ?? {});
  if (!validateConfig(copy)) throw new ConfigError(opts.source, problemsOf(validateConfig.errors ?? []));
  const config = copy as Config;
  resolvePaths(copy, opts.baseDir);
  if (config.gateway && config.gateway.spool.dir === undefined) config.gateway.spool.dir = join(config.gateway.dataDir, 'spool');
  if (config.gateway && config.gateway.store.file === undefined) config.gateway.store.file = join(config.gateway.dataDir, 'greenshield.sqlite');
  return { config, source: opts.source, envOverrides };
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`(file): cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(file, [`(file): not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`]);
  }
  return resolveConfig(doc ?? {}, { source: file, baseDir: dirname(resolve(file)), env });
}
