/**
 * Serves the ledger's cameras over RTSP until interrupted (encoders start on demand):
 *   npx tsx simulators/src/rtsp/main.ts [--ledger config/ledger/chashan-zhuhai.csv]
 *     [--host 127.0.0.1] [--port 8554] [--framesize 640x360] [--fps 15] [--idle-stop-ms 5000]
 * then e.g. `ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/cam-0001`.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadLedger } from '../../../config/ledger.js';
import { startRtspServer } from './server.js';

const { values } = parseArgs({
  options: {
    ledger: { type: 'string', default: 'config/ledger/chashan-zhuhai.csv' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8554' },
    framesize: { type: 'string', default: '640x360' },
    fps: { type: 'string', default: '15' },
    'idle-stop-ms': { type: 'string', default: '5000' },
    'ffmpeg-path': { type: 'string', default: '/usr/bin/ffmpeg' },
  },
});
const cameras = new Set(loadLedger(values.ledger).filter((d) => d.kind === 'camera').map((d) => d.id));
const server = await startRtspServer({
  host: values.host,
  port: Number(values.port),
  framesize: values.framesize,
  fps: Number(values.fps),
  idleStopMs: Number(values['idle-stop-ms']),
  ffmpegPath: values['ffmpeg-path'],
  isKnown: (id) => cameras.has(id),
  log: pino({ level: 'info' }).child({ module: 'rtsp' }),
});
const [first] = cameras;
process.stdout.write(`${cameras.size} cameras on RTSP, e.g. ${server.urlFor(first ?? 'cam-0001')}; Ctrl-C stops them\n`);
const stop = () => void server.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
