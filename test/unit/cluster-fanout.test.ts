/**
 * Cluster fan-out without a broker: two instances' registries and fan-outs joined by an in-memory
 * link. Peer updates reach the registry and the dashboards, never the bus (so they are not stored
 * or re-sent); snapshots fill only what an instance never heard; bad messages are dropped.
 */
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../config/load.js';
import { parseLedgerCsv } from '../../config/ledger.js';
import { clusterTopics, type ClusterLink } from '../../gateway/src/broker/types.js';
import { Bus } from '../../gateway/src/bus.js';
import { ClusterFanout } from '../../gateway/src/cluster/fanout.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import type { DeviceUpdate, ServerMessage } from '../../protocol/ws.js';

const { devices: ledger } = parseLedgerCsv(
  'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm\n' + 'tank-1,water_tank,A,29.4,105.9,G01,c,agent-a,50,2500\n' + 'tank-2,water_tank,B,29.4,105.9,G01,c,agent-a,50,2500\n',
);
const { config } = resolveConfig({ gateway: { push: { flushIntervalMs: 50 } } }, { source: 't', baseDir: '/' });
const gw = config.gateway!;

/** An in-memory broker for cluster topics: delivers to every other link (No Local). */
class Wire {
  readonly links: Array<{ id: string; listeners: Set<(topic: string, payload: Buffer) => void>; connected: Set<() => void> }> = [];
  link(id: string): ClusterLink {
    const me = { id, listeners: new Set<(topic: string, payload: Buffer) => void>(), connected: new Set<() => void>() };
    this.links.push(me);
    return {
      instanceId: id,
      connected: true,
      onConnected: (l) => (me.connected.add(l), () => me.connected.delete(l)),
      onClusterMessage: (l) => (me.listeners.add(l), () => me.listeners.delete(l)),
      publish: async (topic, payload) => {
        for (const other of this.links) if (other !== me) for (const l of other.listeners) l(topic, Buffer.from(payload));
      },
    };
  }
  /** A message from outside (a misbehaving client with access to the cluster topics). */
  inject(topic: string, payload: string): void {
    for (const link of this.links) for (const l of link.listeners) l(topic, Buffer.from(payload));
  }
}

function instance(wire: Wire, id: string) {
  const log = pino({ level: 'silent' });
  const bus = new Bus(log);
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: gw, log, bus, metrics, ledger });
  const onBus: DeviceUpdate[] = [];
  bus.on('deviceUpdate', (u) => onBus.push(u));
  const pushed: ServerMessage[] = [];
  const fanout = new ClusterFanout({ config: gw, log, bus, metrics, registry, hub: { publish: (m) => (pushed.push(m), 1) }, link: wire.link(id) });
  registry.start();
  return { bus, registry, fanout, onBus, pushed, metrics };
}

const telemetry = (levelMm: number, ts: number, seq: number) => ({ ts, seq, values: { levelMm, levelPercent: 40, volumeM3: 20 } });

describe('cluster fan-out', () => {
  beforeEach(() => vi.useFakeTimers({ now: Date.UTC(2026, 10, 26, 12) }));
  afterEach(() => vi.useRealTimers());

  it('shows what another instance ingested, without putting it on the bus', async () => {
    const wire = new Wire();
    const a = instance(wire, 'gw-a');
    const b = instance(wire, 'gw-b');
    a.fanout.start();
    b.fanout.start();
    const device = ledger[0]!;
    b.bus.emit('telemetry', { device, message: telemetry(1234, Date.now(), 1), receivedAt: Date.now() });
    await vi.advanceTimersByTimeAsync(120);
    expect(a.registry.view('tank-1')).toMatchObject({ status: 'online', values: { levelMm: 1234 } });
    expect(a.pushed).toContainEqual({ type: 'devices.update', updates: [expect.objectContaining({ id: 'tank-1', status: 'online', values: expect.objectContaining({ levelMm: 1234 }) })] });
    // Not on A's bus: A's storage, alerts and fan-out never see it (no re-store, no echo back).
    expect(a.onBus).toEqual([]);
    // An older reading from a peer does not undo a newer one here.
    a.bus.emit('telemetry', { device, message: telemetry(1300, Date.now() + 10, 2), receivedAt: Date.now() });
    b.bus.emit('telemetry', { device, message: telemetry(1250, Date.now() + 5, 3), receivedAt: Date.now() });
    await vi.advanceTimersByTimeAsync(120);
    expect(a.registry.view('tank-1')?.values.levelMm).toBe(1300);
    expect(b.registry.view('tank-1')?.values.levelMm).toBe(1300);
    a.fanout.stop();
    b.fanout.stop();
  });

  it('brings a late instance up to date with a snapshot, which fills only what it never heard', async () => {
    const wire = new Wire();
    const a = instance(wire, 'gw-a');
    a.fanout.start();
    a.bus.emit('state', { device: ledger[0]!, message: { ts: Date.now(), seq: 1, status: 'offline' }, receivedAt: Date.now() });
    a.bus.emit('telemetry', { device: ledger[1]!, message: telemetry(900, Date.now(), 1), receivedAt: Date.now() });
    await vi.advanceTimersByTimeAsync(120);
    // C joins after that; it has heard tank-2 itself, online.
    const c = instance(wire, 'gw-c');
    c.bus.emit('telemetry', { device: ledger[1]!, message: telemetry(950, Date.now() + 1, 2), receivedAt: Date.now() });
    c.fanout.start(); // says hello; A answers with its snapshot
    await vi.advanceTimersByTimeAsync(700);
    expect(c.registry.view('tank-1')?.status).toBe('offline');
    expect(c.registry.view('tank-2')).toMatchObject({ status: 'online', values: { levelMm: 950 } });
    expect((await c.metrics.clusterMessages.get()).values).toContainEqual(expect.objectContaining({ labels: { direction: 'received', kind: 'snapshot' } }));
    a.fanout.stop();
    c.fanout.stop();
  });

  it('drops a malformed or forged message and counts it', async () => {
    const wire = new Wire();
    const a = instance(wire, 'gw-a');
    a.fanout.start();
    wire.inject(clusterTopics.devices('gw-x'), '{not json');
    wire.inject(clusterTopics.devices('gw-x'), JSON.stringify({ v: 1, from: 'gw-y', kind: 'delta', updates: [{ id: 'tank-1', status: 'offline' }] }));
    wire.inject(clusterTopics.devices('gw-x'), '{"v":1,"from":"gw-x","kind":"delta","updates":[{"id":"tank-1","status":"online","values":{"__proto__":1}}]}');
    expect(a.registry.view('tank-1')?.status).toBe('unknown');
    expect((await a.metrics.clusterMessages.get()).values).toContainEqual(expect.objectContaining({ labels: { direction: 'rejected', kind: 'invalid' }, value: 3 }));
    a.fanout.stop();
  });
});
