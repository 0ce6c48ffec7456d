/**
 * Opens the operational store the config names: SQLite (`gateway.store.kind: sqlite`, the
 * default) or PostgreSQL (`postgres`). PostgreSQL settings are checked first, each problem with
 * its key, as a ConfigError (the gateway exits 2 with the list).
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError } from '../../../config/load.js';
import type { GatewayConfig } from '../../../config/schema.js';
import { PostgresStore, type PostgresStoreOptions } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { OperationalStore } from './store.js';

const key = (k: string) => `gateway.store.postgres.${k}`;

/** The PostgreSQL store's options from the config (password read from its file), or a ConfigError. */
export function postgresOptions(config: GatewayConfig): PostgresStoreOptions {
  const pg = config.store.postgres;
  const problems: string[] = [];
  if (pg.url === undefined) {
    problems.push(`${key('url')}: is required when gateway.store.kind is postgres`);
  } else {
    try {
      const u = new URL(pg.url);
      if (u.password) problems.push(`${key('url')}: must not carry the password (the URL is logged); use passwordFile or password`);
    } catch {
      problems.push(`${key('url')}: must be a URL like postgres://greenshield@db.internal:5432/greenshield`);
    }
  }
  if (pg.password !== undefined && pg.passwordFile !== undefined) problems.push(`${key('password')}, ${key('passwordFile')}: set one, not both`);
  let passwordFromFile: string | undefined;
  if (pg.passwordFile !== undefined) {
    try {
      passwordFromFile = readFileSync(pg.passwordFile, 'utf8').split(/\r?\n/)[0];
      if (passwordFromFile === '') problems.push(`${key('passwordFile')}: ${pg.passwordFile} is empty`);
    } catch (err) {
      problems.push(`${key('passwordFile')}: cannot read ${pg.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError('gateway.store.postgres', problems);
  return {
    url: pg.url!,
    password: pg.password ?? passwordFromFile,
    callTimeoutMs: pg.callTimeoutMs,
    connectTimeoutMs: pg.connectTimeoutMs,
    applicationName: pg.applicationName,
  };
}

export function openStore(config: GatewayConfig, log?: Logger): OperationalStore {
  if (config.store.kind === 'postgres') return new PostgresStore({ ...postgresOptions(config), log });
  return new SqliteStore(config.store.file ?? `${config.dataDir}/greenshield.sqlite`);
}
