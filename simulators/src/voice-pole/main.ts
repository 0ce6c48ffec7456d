/**
 * Runs the ledger's voice poles as HTTP broadcast terminals until interrupted:
 *   npx tsx simulators/src/voice-pole/main.ts [--ledger config/ledger/chashan-zhuhai.csv]
 *     [--time-scale 1] [--host 127.0.0.1] [--base-port 0] [--username admin] [--password pole-sim]
 * Prints one line per pole (id and base URL, credentials included) for the agent or for curl.
 */
import { parseArgs } from 'node:util';
import { loadLedger } from '../../../config/ledger.js';
import { startPoleFleet } from './simulator.js';

const { values } = parseArgs({
  options: {
    ledger: { type: 'string', default: 'config/ledger/chashan-zhuhai.csv' },
    'time-scale': { type: 'string', default: '1' },
    host: { type: 'string', default: '127.0.0.1' },
    'base-port': { type: 'string', default: '0' },
    username: { type: 'string', default: 'admin' },
    password: { type: 'string', default: 'pole-sim' },
  },
});
const fleet = await startPoleFleet(loadLedger(values.ledger), {
  timeScale: Number(values['time-scale']),
  host: values.host,
  basePort: Number(values['base-port']),
  auth: { username: values.username, password: values.password },
});
for (const [id, url] of fleet.endpoints) process.stdout.write(`${id}\t${url}\n`);
process.stdout.write(`${fleet.endpoints.size} voice poles on HTTP; Ctrl-C stops them\n`);
const stop = () => void fleet.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
