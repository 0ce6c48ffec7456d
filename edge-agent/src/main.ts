/**
 * Edge agent process: `npm run agent -- --config config/agent.yaml`. A bad config or ledger
 * exits 2 with the reason; SIGINT/SIGTERM stop it cleanly (the outbox keeps what was not sent).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../config/load.js';
import { LedgerError, loadLedger } from '../../config/ledger.js';
import { createLogger } from '../../gateway/src/log.js';
import { buildAgent } from './agent.js';
import { buildCollectors } from './collectors/index.js';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c', default: 'config/agent.yaml' } } });

try {
  const { config, source } = loadConfig(values.config);
  if (!config.agent) throw new ConfigError(source, ['agent: section is required to run an edge agent']);
  const log = createLogger(config.log.level, { pretty: process.stdout.isTTY });
  const ledger = loadLedger(config.ledger.file);
  const { collectors, devices } = buildCollectors(config.agent, ledger, log);
  const agent = buildAgent({ config: config.agent, log, collectors, deviceCount: devices.length });
  await agent.start();
  const shutdown = () => {
    agent.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
} catch (err) {
  if (err instanceof ConfigError || err instanceof LedgerError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
