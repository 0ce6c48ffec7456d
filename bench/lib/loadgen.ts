/**
 * The load generator, one child process (started by bench/ingest.ts and bench/connections.ts,
 * driven over IPC). Many raw-socket MQTT 3.1.1 clients, one per simulated device, each bound to
 * one of several loopback source addresses so no single address runs out of ephemeral ports.
 *
 *   mode 'publish': each client publishes QoS1 water_tank telemetry with up to `window`
 *                   unacknowledged messages, paced to `rate` msg/s (0 = as fast as PUBACKs
 *                   return). Every publish->PUBACK latency inside the measured window goes into a
 *                   histogram; `samplesPerSec` publishes per second are reported to the parent,
 *                   which times when they become queryable in InfluxDB.
 *   mode 'idle':    clients only connect and stay (connection capacity).
 *
 * Protocol with the parent (process.send):
 *   parent -> child: init, go, stop-connecting, close
 *   child -> parent: connect-progress, connected, tick, sample, done, fatal
 */
import { connect, type Socket } from 'node:net';
import { tankId, tankValuesJson } from './fleet.js';
import { LogHistogram } from './histogram.js';
import { DISCONNECT, PACKET, PacketReader, TelemetryTemplate, encodeConnect } from './mqtt-wire.js';
import { topics } from '../../protocol/topics.js';

export interface LoadgenInit {
  type: 'init';
  mode: 'publish' | 'idle';
  host: string;
  port: number;
  /** Loopback source addresses; client i binds to sources[i % length]. */
  sources: string[];
  /** Global index of this generator's first client and how many it runs. */
  from: number;
  count: number;
  keepaliveSec: number;
  /** New connections per second (this generator's share) and how many may be half-open at once. */
  connectRate: number;
  maxPendingConnects: number;
  connectTimeoutMs: number;
  /** idle mode: stop opening connections at the first failure. */
  stopOnFirstFailure: boolean;
  window: number;
  /** msg/s for this generator; 0 = unlimited. */
  rate: number;
  warmupMs: number;
  measureMs: number;
  samplesPerSec: number;
  drainTimeoutMs: number;
  /**
   * Connect as this principal (an edge agent speaking for every bench device), client id
   * `<username>:<device id>`; without it, anonymously with the device id as client id.
   */
  auth?: { username: string; password: string };
}

export interface LoadgenDone {
  type: 'done';
  sent: number;
  acked: number;
  sentInWindow: number;
  ackedInWindow: number;
  windowMs: number;
  /** Acks per whole second of the measured window. */
  perSecond: number[];
  histogram: number[];
  maxLatencyUs: number;
  inflightAtEnd: number;
  disconnects: number;
  firstDisconnect: string | null;
  unexpectedAcks: number;
  drainMs: number;
}

type FromParent = LoadgenInit | { type: 'go' } | { type: 'stop-connecting' } | { type: 'close' };

const WINDOW_MAX = 8;
const SLOT = 16; // packet-id ring per connection; ids in flight are consecutive, so id & 15 is unique

interface Client {
  slot: number;
  deviceId: string;
  socket: Socket;
  template: TelemetryTemplate | undefined;
  reader: PacketReader;
  connected: boolean;
  closed: boolean;
  openedAt: number;
  packetId: number;
  seq: number;
  lastTs: number;
  inflight: number;
}

function send(msg: unknown): void {
  if (process.connected) process.send?.(msg);
}

let init: LoadgenInit | undefined;
const clients: Client[] = [];
const pending = new Set<Client>();
let opened = 0;
let connectedCount = 0;
let failed = 0;
let firstFailure: string | null = null;
let stopOpening = false;
let connectStartedAt = 0;
let connectTimer: NodeJS.Timeout | undefined;
let connectReported = false;

// publish state
let sendAt = new Float64Array(0);
let publishing = false;
let goAt = 0;
let windowStart = 0;
let windowEnd = 0;
let sent = 0;
let acked = 0;
let inflight = 0;
let sentInWindow = 0;
let ackedInWindow = 0;
let unexpectedAcks = 0;
let disconnects = 0;
let firstDisconnect: string | null = null;
const histogram = new LogHistogram();
let perSecond: number[] = [];
let nextSampleAt = 0;
let sampleIntervalMs = Infinity;
// pacing: a FIFO of free window slots (client indexes), refilled by PUBACKs
let freeRing = new Int32Array(0);
let ringHead = 0;
let ringLen = 0;

function ringPush(slot: number): void {
  freeRing[(ringHead + ringLen) % freeRing.length] = slot;
  ringLen++;
}
function ringShift(): number {
  const v = freeRing[ringHead]!;
  ringHead = (ringHead + 1) % freeRing.length;
  ringLen--;
  return v;
}

function fail(c: Client, reason: string): void {
  if (c.closed) return;
  c.closed = true;
  if (pending.delete(c)) {
    failed++;
    firstFailure ??= reason;
    if (init?.stopOnFirstFailure) stopOpening = true;
  } else if (c.connected) {
    disconnects++;
    firstDisconnect ??= reason;
    inflight -= c.inflight;
    c.inflight = 0;
    connectedCount--;
  }
  c.socket.destroy();
}

function openClient(index: number): void {
  const cfg = init!;
  const global = cfg.from + index;
  const deviceId = cfg.mode === 'publish' ? tankId(global) : `bench-idle-${global}`;
  const localAddress = cfg.sources[global % cfg.sources.length]!;
  const socket = connect({ host: cfg.host, port: cfg.port, localAddress, noDelay: true });
  const c: Client = {
    slot: index,
    deviceId,
    socket,
    template: cfg.mode === 'publish' ? new TelemetryTemplate(topics.telemetry(deviceId), tankValuesJson(global)) : undefined,
    reader: new PacketReader(),
    connected: false,
    closed: false,
    openedAt: performance.now(),
    packetId: 0,
    seq: 0,
    lastTs: 0,
    inflight: 0,
  };
  clients[index] = c;
  pending.add(c);
  socket.on('connect', () => {
    socket.setNoDelay(true);
    socket.write(cfg.auth ? encodeConnect(`${cfg.auth.username}:${deviceId}`, cfg.keepaliveSec, cfg.auth) : encodeConnect(deviceId, cfg.keepaliveSec));
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      c.reader.push(chunk, (type, _flags, body) => onPacket(c, type, body));
    } catch (err) {
      fail(c, `protocol: ${(err as Error).message}`);
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => fail(c, `${err.code ?? 'error'} (${localAddress}): ${err.message}`));
  socket.on('close', () => fail(c, c.connected ? 'closed by the broker' : 'closed before CONNACK'));
}

function onPacket(c: Client, type: number, body: Buffer): void {
  if (type === PACKET.PUBACK) {
    onPuback(c, body.readUInt16BE(0));
  } else if (type === PACKET.CONNACK) {
    const rc = body[1];
    if (rc !== 0) return fail(c, `CONNACK return code ${rc}`);
    pending.delete(c);
    c.connected = true;
    connectedCount++;
  }
}

function onPuback(c: Client, packetId: number): void {
  const k = c.slot * SLOT + (packetId & (SLOT - 1));
  const t0 = sendAt[k]!;
  if (t0 === 0) {
    unexpectedAcks++;
    return;
  }
  sendAt[k] = 0;
  c.inflight--;
  inflight--;
  acked++;
  const now = performance.now();
  if (now >= windowStart && now < windowEnd) {
    ackedInWindow++;
    histogram.record((now - t0) * 1000);
    const s = Math.floor((now - windowStart) / 1000);
    perSecond[s] = (perSecond[s] ?? 0) + 1;
  }
  if (!publishing) return;
  if (init!.rate === 0) publish(c, now);
  else ringPush(c.slot);
}

function publish(c: Client, now: number): void {
  c.packetId = c.packetId === 65535 ? 1 : c.packetId + 1;
  const ts = Math.max(Date.now(), c.lastTs + 1); // unique per device: one InfluxDB point each
  c.lastTs = ts;
  const seq = c.seq++;
  sendAt[c.slot * SLOT + (c.packetId & (SLOT - 1))] = now;
  c.inflight++;
  inflight++;
  sent++;
  if (now >= windowStart && now < windowEnd) {
    sentInWindow++;
    if (now >= nextSampleAt) {
      nextSampleAt += sampleIntervalMs;
      send({ type: 'sample', device: c.deviceId, ts, sentAtMs: performance.timeOrigin + now });
    }
  }
  c.socket.write(c.template!.packet(c.packetId, ts, seq));
}

function startConnecting(): void {
  const cfg = init!;
  connectStartedAt = performance.now();
  let lastProgress = connectStartedAt;
  connectTimer = setInterval(() => {
    const now = performance.now();
    const allowed = Math.floor((cfg.connectRate * (now - connectStartedAt)) / 1000);
    while (!stopOpening && opened < cfg.count && opened < allowed && pending.size < cfg.maxPendingConnects) {
      try {
        openClient(opened++);
      } catch (err) {
        failed++;
        firstFailure ??= (err as Error).message;
        stopOpening = true;
      }
    }
    for (const c of pending) if (now - c.openedAt > cfg.connectTimeoutMs) fail(c, `no CONNACK within ${cfg.connectTimeoutMs} ms`);
    if (now - lastProgress >= 1000) {
      lastProgress = now;
      send({ type: 'connect-progress', opened, connected: connectedCount, failed, firstFailure });
    }
    const finished = pending.size === 0 && (opened >= cfg.count || stopOpening);
    if (finished && !connectReported) {
      connectReported = true;
      clearInterval(connectTimer);
      send({ type: 'connected', opened, connected: connectedCount, failed, firstFailure, ms: now - connectStartedAt });
    }
  }, 5);
}

function go(): void {
  const cfg = init!;
  goAt = performance.now();
  windowStart = goAt + cfg.warmupMs;
  windowEnd = windowStart + cfg.measureMs;
  nextSampleAt = windowStart;
  sampleIntervalMs = cfg.samplesPerSec > 0 ? 1000 / cfg.samplesPerSec : Infinity;
  perSecond = new Array<number>(Math.ceil(cfg.measureMs / 1000)).fill(0);
  publishing = true;
  const live = clients.filter((c) => c && c.connected && !c.closed);
  if (cfg.rate === 0) {
    // Fill every window at once; after that each PUBACK sends the next message.
    for (let w = 0; w < cfg.window; w++) for (const c of live) publish(c, performance.now());
  } else {
    freeRing = new Int32Array(clients.length * cfg.window + 1);
    for (let w = 0; w < cfg.window; w++) for (const c of live) ringPush(c.slot);
  }
  let credit = 0;
  let last = goAt;
  let lastTick = goAt;
  let lastAcked = 0;
  const pacer = setInterval(() => {
    const now = performance.now();
    if (cfg.rate > 0 && publishing) {
      // Token bucket, at most 100 ms of catch-up burst when the generator fell behind.
      credit = Math.min(credit + ((now - last) / 1000) * cfg.rate, cfg.rate * 0.1 + 1);
      while (credit >= 1 && ringLen > 0) {
        const c = clients[ringShift()]!;
        if (c.closed) continue;
        publish(c, now);
        credit--;
      }
    }
    last = now;
    if (now - lastTick >= 1000) {
      send({ type: 'tick', sent, acked, inflight, ackedPerSec: ((acked - lastAcked) * 1000) / (now - lastTick) });
      lastTick = now;
      lastAcked = acked;
    }
    if (publishing && now >= windowEnd) {
      publishing = false;
      const drainStart = now;
      const drain = setInterval(() => {
        const t = performance.now();
        if (inflight > 0 && t - drainStart < cfg.drainTimeoutMs) return;
        clearInterval(drain);
        clearInterval(pacer);
        const done: LoadgenDone = {
          type: 'done',
          sent,
          acked,
          sentInWindow,
          ackedInWindow,
          windowMs: cfg.measureMs,
          perSecond: perSecond.slice(0, Math.floor(cfg.measureMs / 1000)),
          histogram: histogram.toArray(),
          maxLatencyUs: histogram.maxUs,
          inflightAtEnd: inflight,
          disconnects,
          firstDisconnect,
          unexpectedAcks,
          drainMs: t - drainStart,
        };
        send(done);
      }, 20);
    }
  }, cfg.rate > 0 ? 2 : 100);
}

function closeAll(): void {
  stopOpening = true;
  clearInterval(connectTimer);
  let open = 0;
  for (const c of clients) {
    if (!c || c.closed) continue;
    open++;
    c.closed = true;
    c.socket.once('close', () => {
      if (--open === 0) process.exit(0);
    });
    if (c.connected) c.socket.end(DISCONNECT);
    else c.socket.destroy();
  }
  if (open === 0) process.exit(0);
  setTimeout(() => process.exit(0), 5000).unref();
}

process.on('message', (raw) => {
  const msg = raw as FromParent;
  switch (msg.type) {
    case 'init':
      init = msg;
      if (msg.window < 1 || msg.window > WINDOW_MAX) {
        send({ type: 'fatal', reason: `window must be 1..${WINDOW_MAX}` });
        return;
      }
      sendAt = new Float64Array(msg.count * SLOT);
      startConnecting();
      break;
    case 'go':
      go();
      break;
    case 'stop-connecting':
      stopOpening = true;
      break;
    case 'close':
      closeAll();
      break;
  }
});
// The parent is gone (killed, crashed): do not linger with thousands of sockets open.
process.on('disconnect', () => process.exit(0));
