/**
 * The bare limit: a plain aedes 1.2 broker with the gateway's socket settings (TCP_NODELAY) and
 * nothing else: no authorisation hooks, no ingest, no storage. The benchmark subscribes to all
 * telemetry at QoS1 so that, like the gateway, something consumes every message.
 *
 * stdout: {"ready":true,"pid":…,"mqttPort":…,"nofile":…}. Closing stdin (or SIGTERM) exits.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { Aedes } from 'aedes';
import { readNofile } from './lib/proc.js';

const aedes = await Aedes.createBroker();
const sockets = new Set<Socket>();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  aedes.handle(socket);
});
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', () => resolve());
});
process.stdout.write(
  `${JSON.stringify({ ready: true, pid: process.pid, mqttPort: (server.address() as AddressInfo).port, nofile: readNofile('self') ?? null })}\n`,
);

function shutdown(): void {
  server.close();
  for (const s of sockets) s.destroy();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
}
createInterface({ input: process.stdin }).on('close', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
