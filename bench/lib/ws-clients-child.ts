/**
 * A process holding many signed-in `/ws` dashboard clients for bench/ws-fanout.ts. Each client
 * reads every message; for every device update carrying `valuesTs` (the publisher's send time,
 * stamped at the source) it records now − valuesTs in a log histogram. Config in GS_WS_CLIENTS
 * (JSON: { port, token, clients, label }). stdout carries JSON lines only:
 *
 *   {"ready":true,"connected":n,"failed":n,"firstError":…}     once every client has its snapshot
 *   {"report":true,"histogram":[…],"messages":…,"updates":…,…}  after a "report" command
 *
 * Commands on stdin, one per line: "reset" (start a new measuring window), "report". Closing
 * stdin closes the clients and exits.
 */
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { LogHistogram } from './histogram.js';

interface Config {
  port: number;
  token: string;
  clients: number;
  label: string;
}

const raw = process.env.GS_WS_CLIENTS;
if (!raw) {
  process.stderr.write('GS_WS_CLIENTS (JSON config) is required\n');
  process.exit(2);
}
const config = JSON.parse(raw) as Config;

let histogram = new LogHistogram();
let messages = 0;
let updates = 0;
let stamped = 0;
let bytes = 0;
let snapshots = 0;
let closed = 0;
let errors = 0;
let firstError: string | null = null;
let cpuAtReset = process.cpuUsage();
let wallAtReset = performance.now();

const VALUES_TS = /"valuesTs":(\d+)/g;

/**
 * Reads the stamps with a regular expression rather than JSON.parse: 500 clients at 1,000
 * updates/s are ~50 MB/s of JSON, and parsing it all would make the clients, not the gateway,
 * what is measured on two cores. A dashboard would parse; the gateway's side is the same.
 */
function onMessage(data: WebSocket.RawData, onSnapshot: () => void): void {
  const now = Date.now();
  const text = data.toString();
  bytes += text.length;
  messages++;
  const head = text.slice(0, 40);
  if (head.includes('"devices.snapshot"')) {
    snapshots++;
    onSnapshot();
    return;
  }
  if (!head.includes('"devices.update"')) return;
  VALUES_TS.lastIndex = 0;
  for (let m = VALUES_TS.exec(text); m; m = VALUES_TS.exec(text)) {
    updates++;
    stamped++;
    histogram.record(Math.max(0, now - Number(m[1])) * 1000);
  }
}

function connect(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${config.port}/ws`, { headers: { authorization: `Bearer ${config.token}` }, perMessageDeflate: false });
    let greeted = false;
    const timer = setTimeout(() => reject(new Error('no snapshot within 60 s')), 60_000);
    ws.on('message', (data) =>
      onMessage(data, () => {
        if (greeted) return;
        greeted = true;
        clearTimeout(timer);
        resolve(ws);
      }),
    );
    ws.on('error', (err) => {
      errors++;
      firstError ??= err.message;
      clearTimeout(timer);
      if (!greeted) reject(err);
    });
    ws.on('close', () => {
      closed++;
    });
  });
}

const sockets: WebSocket[] = [];
let failed = 0;
// A bounded number of handshakes at once: 500 upgrades at the same instant would measure the burst.
const CONCURRENCY = 25;
let next = 0;
async function worker(): Promise<void> {
  while (next < config.clients) {
    next++;
    try {
      sockets.push(await connect());
    } catch (err) {
      failed++;
      firstError ??= (err as Error).message;
    }
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, () => worker()));
process.stdout.write(`${JSON.stringify({ ready: true, connected: sockets.length, failed, firstError })}\n`);

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'reset') {
      histogram = new LogHistogram();
      messages = updates = stamped = bytes = snapshots = errors = 0;
      cpuAtReset = process.cpuUsage();
      wallAtReset = performance.now();
    } else if (cmd === 'report') {
      const cpu = process.cpuUsage(cpuAtReset);
      const wallSec = (performance.now() - wallAtReset) / 1000;
      process.stdout.write(
        `${JSON.stringify({
          report: true,
          label: config.label,
          histogram: histogram.toArray(),
          maxUs: histogram.maxUs,
          messages,
          updates,
          stamped,
          bytes,
          snapshots,
          closed,
          errors,
          open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length,
          cpuPercent: wallSec > 0 ? (100 * (cpu.user + cpu.system)) / 1e6 / wallSec : null,
        })}\n`,
      );
    }
  })
  .on('close', () => {
    for (const s of sockets) s.terminate();
    process.exit(0);
  });
