/**
 * Background telemetry the way edge agents send it, in a child process (started by
 * bench/lib/agent-load.ts, driven over IPC): `agents` raw-socket MQTT 3.1.1 connections, each
 * speaking for its share of `devices` water tanks (device i on connection i % agents), QoS1,
 * at most `maxInflight` unacknowledged publishes per connection (the agent's own default is 200).
 *
 * Devices report in round-robin order at `rate` msg/s in all, so each one reports every
 * devices/rate seconds: 20,000 tanks at 10,000 msg/s is one reading per tank every 2 s. A
 * connection at its in-flight cap holds the round (back-pressure): a slow gateway shows up as an
 * achieved rate below the target, not as an unbounded queue here.
 *
 * Protocol with the parent (process.send):
 *   parent -> child: init, go, measure-start, measure-end, stop, close
 *   child -> parent: connected, tick, measured, stopped, fatal
 */
import { connect, type Socket } from 'node:net';
import { topics } from '../../protocol/topics.js';
import { tankId } from './fleet.js';
import { LogHistogram } from './histogram.js';
import { DISCONNECT, PACKET, PacketReader, TelemetryTemplate, encodeConnect } from './mqtt-wire.js';

export interface AgentLoadInit {
  type: 'init';
  host: string;
  port: number;
  agents: number;
  devices: number;
  /** msg/s over all devices. */
  rate: number;
  maxInflight: number;
  connectTimeoutMs: number;
}

export interface AgentLoadMeasured {
  type: 'measured';
  sent: number;
  acked: number;
  ms: number;
  histogram: number[];
  maxLatencyUs: number;
  /** Acks per whole second of the measured span. */
  perSecond: number[];
  /** Rounds that stopped at a connection's in-flight cap. */
  stalls: number;
}

type FromParent = AgentLoadInit | { type: 'go' } | { type: 'measure-start' } | { type: 'measure-end' } | { type: 'stop' } | { type: 'close' };

interface AgentConn {
  index: number;
  socket: Socket;
  reader: PacketReader;
  connected: boolean;
  closed: boolean;
  packetId: number;
  /** packet id -> send time (performance.now). */
  inflight: Map<number, number>;
  out: Buffer[];
}

/** The level of tank i: 45..90 %, steady, so the tank rules never raise anything. */
export function steadyTankValuesJson(i: number): string {
  const levelPercent = 45 + ((i * 37) % 4500) / 100;
  return JSON.stringify({ levelMm: Math.round(levelPercent * 30), levelPercent, volumeM3: Number((levelPercent * 2).toFixed(2)) });
}

function send(msg: unknown): void {
  if (process.connected) process.send?.(msg);
}

let init: AgentLoadInit | undefined;
const conns: AgentConn[] = [];
let templates: TelemetryTemplate[] = [];
let lastTs = new Float64Array(0);
let seqs = new Uint32Array(0);
let next = 0;
let sent = 0;
let acked = 0;
let inflightTotal = 0;
let disconnects = 0;
let firstDisconnect: string | null = null;
let stalls = 0;
let pacer: NodeJS.Timeout | undefined;
let publishing = false;

// measured span
let measuring = false;
let measureStart = 0;
let measureSent = 0;
let measureAcked = 0;
let measureStalls = 0;
let histogram = new LogHistogram();
let perSecond: number[] = [];

function openAll(): void {
  const cfg = init!;
  const started = performance.now();
  let settled = 0;
  const settle = () => {
    if (++settled < cfg.agents) return;
    const connected = conns.filter((c) => c.connected).length;
    send({ type: 'connected', connected, failed: cfg.agents - connected, firstFailure: firstDisconnect, ms: performance.now() - started });
  };
  for (let a = 0; a < cfg.agents; a++) {
    const socket = connect({ host: cfg.host, port: cfg.port, noDelay: true });
    const c: AgentConn = { index: a, socket, reader: new PacketReader(), connected: false, closed: false, packetId: 0, inflight: new Map(), out: [] };
    conns.push(c);
    let settledHere = false;
    const once = () => {
      if (settledHere) return;
      settledHere = true;
      settle();
    };
    const timer = setTimeout(() => {
      fail(c, `no CONNACK within ${cfg.connectTimeoutMs} ms`);
      once();
    }, cfg.connectTimeoutMs);
    socket.on('connect', () => socket.write(encodeConnect(`bench-agent-${String(a).padStart(4, '0')}`, 0)));
    socket.on('data', (chunk: Buffer) => {
      try {
        c.reader.push(chunk, (type, _flags, body) => {
          if (type === PACKET.PUBACK) onPuback(c, body.readUInt16BE(0));
          else if (type === PACKET.CONNACK) {
            clearTimeout(timer);
            if (body[1] !== 0) fail(c, `CONNACK return code ${body[1]}`);
            else c.connected = true;
            once();
          }
        });
      } catch (err) {
        fail(c, `protocol: ${(err as Error).message}`);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(c, `${err.code ?? 'error'}: ${err.message}`);
      once();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      fail(c, c.connected ? 'closed by the broker' : 'closed before CONNACK');
      once();
    });
  }
}

function fail(c: AgentConn, reason: string): void {
  if (c.closed) return;
  c.closed = true;
  if (c.connected) {
    disconnects++;
    inflightTotal -= c.inflight.size;
  }
  firstDisconnect ??= reason;
  c.socket.destroy();
}

function onPuback(c: AgentConn, packetId: number): void {
  const t0 = c.inflight.get(packetId);
  if (t0 === undefined) return;
  c.inflight.delete(packetId);
  inflightTotal--;
  acked++;
  if (!measuring) return;
  const now = performance.now();
  measureAcked++;
  histogram.record((now - t0) * 1000);
  const s = Math.floor((now - measureStart) / 1000);
  perSecond[s] = (perSecond[s] ?? 0) + 1;
}

function go(): void {
  const cfg = init!;
  templates = Array.from({ length: cfg.devices }, (_, i) => new TelemetryTemplate(topics.telemetry(tankId(i)), steadyTankValuesJson(i)));
  lastTs = new Float64Array(cfg.devices);
  seqs = new Uint32Array(cfg.devices);
  publishing = true;
  let credit = 0;
  let last = performance.now();
  let lastTick = last;
  let lastAcked = 0;
  pacer = setInterval(() => {
    const now = performance.now();
    if (publishing) {
      // Token bucket with at most 100 ms of catch-up: a stalled generator does not burst later.
      credit = Math.min(credit + ((now - last) / 1000) * cfg.rate, cfg.rate * 0.1 + 1);
      const wall = Date.now();
      while (credit >= 1) {
        const device = next;
        const c = conns[device % cfg.agents]!;
        if (c.closed || !c.connected) {
          next = (next + 1) % cfg.devices;
          credit--;
          continue;
        }
        if (c.inflight.size >= cfg.maxInflight) {
          stalls++;
          if (measuring) measureStalls++;
          break;
        }
        next = (next + 1) % cfg.devices;
        credit--;
        c.packetId = c.packetId === 65535 ? 1 : c.packetId + 1;
        // Unique per device (one InfluxDB point each), even if it reports twice in a millisecond.
        const ts = Math.max(wall, lastTs[device]! + 1);
        lastTs[device] = ts;
        c.inflight.set(c.packetId, now);
        inflightTotal++;
        sent++;
        if (measuring) measureSent++;
        c.out.push(templates[device]!.packet(c.packetId, ts, seqs[device]!++));
      }
      for (const c of conns) {
        if (c.out.length === 0) continue;
        c.socket.write(c.out.length === 1 ? c.out[0]! : Buffer.concat(c.out));
        c.out = [];
      }
    }
    last = now;
    if (now - lastTick >= 1000) {
      send({ type: 'tick', sent, acked, inflight: inflightTotal, ackedPerSec: ((acked - lastAcked) * 1000) / (now - lastTick), disconnects, firstDisconnect });
      lastTick = now;
      lastAcked = acked;
    }
  }, 5);
}

function stop(): void {
  publishing = false;
  const started = performance.now();
  const wait = setInterval(() => {
    if (inflightTotal > 0 && performance.now() - started < 30_000) return;
    clearInterval(wait);
    clearInterval(pacer);
    send({ type: 'stopped', sent, acked, inflight: inflightTotal, disconnects, firstDisconnect });
  }, 20);
}

function closeAll(): void {
  clearInterval(pacer);
  let open = 0;
  for (const c of conns) {
    if (c.closed) continue;
    open++;
    c.closed = true;
    c.socket.once('close', () => {
      if (--open === 0) process.exit(0);
    });
    c.socket.end(DISCONNECT);
  }
  if (open === 0) process.exit(0);
  setTimeout(() => process.exit(0), 5000).unref();
}

process.on('message', (raw) => {
  const msg = raw as FromParent;
  switch (msg.type) {
    case 'init':
      init = msg;
      openAll();
      break;
    case 'go':
      go();
      break;
    case 'measure-start':
      measuring = true;
      measureStart = performance.now();
      measureSent = 0;
      measureAcked = 0;
      measureStalls = 0;
      histogram = new LogHistogram();
      perSecond = [];
      break;
    case 'measure-end': {
      measuring = false;
      const ms = performance.now() - measureStart;
      const done: AgentLoadMeasured = {
        type: 'measured',
        sent: measureSent,
        acked: measureAcked,
        ms,
        histogram: histogram.toArray(),
        maxLatencyUs: histogram.maxUs,
        perSecond: Array.from({ length: Math.floor(ms / 1000) }, (_, i) => perSecond[i] ?? 0),
        stalls: measureStalls,
      };
      send(done);
      break;
    }
    case 'stop':
      stop();
      break;
    case 'close':
      closeAll();
      break;
  }
});
// The parent is gone (killed, crashed): do not linger with sockets open.
process.on('disconnect', () => process.exit(0));
