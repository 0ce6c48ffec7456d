/**
 * A gateway in its own process, for fault tests that kill it. The config document comes as JSON
 * in argv[2] (resolved against config/); when ready it prints one JSON line with its ports.
 */
import { resolveConfig } from '../../config/load.js';
import { buildGateway } from '../../gateway/src/gateway.js';
import { createLogger } from '../../gateway/src/log.js';
import { CONFIG_DIR } from './gateway.js';

const { config } = resolveConfig(JSON.parse(process.argv[2] ?? '{}') as unknown, { source: 'argv', baseDir: CONFIG_DIR });
const gateway = buildGateway(config, { log: createLogger(config.log.level) });
await gateway.start();
process.stdout.write(`${JSON.stringify({ mqttPort: gateway.mqttPort, httpPort: gateway.httpPort, mqttUrl: gateway.mqttUrl, pid: process.pid })}\n`);
process.on('SIGTERM', () => void gateway.stop().then(() => process.exit(0)));
