/**
 * Gateway process: `npm run gateway -- --config config/gateway.yaml`. Reads config, starts,
 * and stops cleanly on SIGINT/SIGTERM. A bad config or ledger exits 2 with the reason, no stack.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../config/load.js';
import { LedgerError } from '../../config/ledger.js';
import { buildGateway } from './gateway.js';
import { createLogger } from './log.js';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c', default: 'config/gateway.yaml' } } });

try {
  const { config, source } = loadConfig(values.config);
  if (!config.gateway) throw new ConfigError(source, ['gateway: section is required to run a gateway']);
  const log = createLogger(config.log.level, { pretty: process.stdout.isTTY });
  const gateway = buildGateway(config, { log });
  await gateway.start();
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    gateway.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
} catch (err) {
  if (err instanceof ConfigError || err instanceof LedgerError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
