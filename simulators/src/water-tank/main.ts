/**
 * Runs the ledger's water tanks as Modbus TCP simulators until interrupted:
 *   npx tsx simulators/src/water-tank/main.ts [--ledger config/ledger/chashan-zhuhai.csv]
 *     [--seed 20250401] [--time-scale 60] [--host 127.0.0.1] [--base-port 15020]
 *     [--weather-sensors some|all|none]
 * Prints one line per tank (id, host:port, unit id, firmware, "weather" if it has the sensor),
 * e.g. for mbpoll or a test agent.
 */
import { parseArgs } from 'node:util';
import { loadLedger } from '../../../config/ledger.js';
import { startTankFleet } from './simulator.js';

const SENSOR_CHOICES = ['some', 'all', 'none'] as const;

const { values } = parseArgs({
  options: {
    ledger: { type: 'string', default: 'config/ledger/chashan-zhuhai.csv' },
    seed: { type: 'string', default: '20250401' },
    'time-scale': { type: 'string', default: '60' },
    host: { type: 'string', default: '127.0.0.1' },
    'base-port': { type: 'string', default: '0' },
    'weather-sensors': { type: 'string', default: 'some' },
  },
});
const weatherSensors = SENSOR_CHOICES.find((c) => c === values['weather-sensors']);
if (!weatherSensors) {
  process.stderr.write(`--weather-sensors: must be one of ${SENSOR_CHOICES.join(', ')}\n`);
  process.exit(2);
}
const fleet = await startTankFleet(loadLedger(values.ledger), {
  seed: Number(values.seed),
  timeScale: Number(values['time-scale']),
  host: values.host,
  basePort: Number(values['base-port']),
  weatherSensors,
});
for (const [id, e] of fleet.endpoints) {
  const { model } = fleet.simulators.get(id)!;
  process.stdout.write(`${id}\t${e.host}:${e.port}\tunit ${e.unitId}\tfirmware ${model.firmware}${model.weather ? '\tweather' : ''}\n`);
}
process.stdout.write(`${fleet.endpoints.size} water tanks on Modbus TCP; Ctrl-C stops them\n`);
const stop = () => void fleet.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
