/**
 * Runs the ledger's cameras as simulated ONVIF devices on one HTTP server until interrupted:
 *   npx tsx simulators/src/camera/main.ts [--ledger config/ledger/chashan-zhuhai.csv]
 *     [--host 127.0.0.1] [--port 8899] [--username admin] [--password ...]
 *     [--vendor generic|hikvision-like|dahua-like] [--rtsp-base rtsp://127.0.0.1:8554]
 *     [--discovery-port 3702] [--multicast] [--profile-t]
 * Prints one line per camera (id, device service URL), then a summary line.
 */
import { parseArgs } from 'node:util';
import { loadLedger } from '../../../config/ledger.js';
import { cameraSpecsFromLedger, startCameraFleet } from './fleet.js';
import { isCameraVendor } from './vendors.js';

const { values } = parseArgs({
  options: {
    ledger: { type: 'string', default: 'config/ledger/chashan-zhuhai.csv' },
    seed: { type: 'string', default: '20250401' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8899' },
    username: { type: 'string', default: 'admin' },
    password: { type: 'string', default: 'greenshield' },
    vendor: { type: 'string', default: 'generic' },
    'rtsp-base': { type: 'string', default: 'rtsp://127.0.0.1:8554' },
    'discovery-port': { type: 'string' },
    multicast: { type: 'boolean', default: false },
    'profile-t': { type: 'boolean', default: false },
  },
});
if (!isCameraVendor(values.vendor)) throw new Error(`--vendor: unknown vendor ${values.vendor}`);
const rtspBase = values['rtsp-base'].replace(/\/+$/, '');
const fleet = await startCameraFleet(cameraSpecsFromLedger(loadLedger(values.ledger)), {
  seed: Number(values.seed),
  host: values.host,
  port: Number(values.port),
  username: values.username,
  password: values.password,
  vendor: values.vendor,
  profileT: values['profile-t'],
  streamUrlFor: (id) => `${rtspBase}/${encodeURIComponent(id)}`,
  ...(values['discovery-port'] !== undefined
    ? { discovery: { port: Number(values['discovery-port']), multicast: values.multicast } }
    : {}),
});
for (const id of fleet.ids) process.stdout.write(`${id}\t${fleet.deviceServiceUrl(id)}\n`);
process.stdout.write(
  `${fleet.ids.length} ONVIF cameras on ${fleet.host}:${fleet.port}` +
    (fleet.discoveryPort !== undefined ? `, WS-Discovery on udp/${fleet.discoveryPort}` : '') +
    '; Ctrl-C stops them\n',
);
const stop = () => void fleet.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
