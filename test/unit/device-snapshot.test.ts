/**
 * The `/ws` device snapshot in columns: the gateway's encoder and the dashboard's decoder must
 * give back exactly the DeviceViews that went in, row for row; a snapshot whose columns do not
 * line up is refused whole; the hub sends it as one binary frame of UTF-8 JSON and counts its
 * size in the slow-client cap.
 */
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { resolveConfig } from '../../config/load.js';
import { parseLedgerCsv } from '../../config/ledger.js';
import { decodeDeviceSnapshot } from '../../dashboard/src/device-snapshot.js';
import { frameText, parseServerMessage } from '../../dashboard/src/api.js';
import { binaryFrame, packSnapshotColumns } from '../../dashboard/src/feed-connection.js';
import { Bus } from '../../gateway/src/bus.js';
import { createMetrics } from '../../gateway/src/metrics.js';
import { deviceSnapshot, DeviceSnapshotEncoder } from '../../gateway/src/push/device-snapshot.js';
import { PushHub, type HubContext } from '../../gateway/src/push/hub.js';
import { DeviceRegistry } from '../../gateway/src/registry/registry.js';
import type { SeriesWriter } from '../../gateway/src/storage/types.js';
import type { User } from '../../gateway/src/store/store.js';
import { prng } from '../../simulators/src/fleet/geography.js';
import type { DecimalColumn, DeviceView } from '../../protocol/ws.js';

const KINDS = ['camera', 'voice_pole', 'water_tank'] as const;
const STATUSES = ['online', 'offline', 'unknown'] as const;

/**
 * Devices whose every field differs from its neighbours' (so a column shifted by one row cannot
 * decode to the same thing), with sparse telemetry: each field is held by some devices only.
 */
function fleet(count: number, seed = 7): DeviceView[] {
  const rand = prng(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
  const t0 = Date.UTC(2026, 3, 1, 8);
  return Array.from({ length: count }, (_, i) => {
    const kind = pick(KINDS);
    const heard = rand() < 0.8;
    const values: DeviceView['values'] = {};
    if (kind === 'water_tank' && rand() < 0.9) Object.assign(values, { levelMm: Math.round(rand() * 2500), levelPercent: Math.round(rand() * 1000) / 10 });
    if (kind === 'camera' && rand() < 0.5) values.panDeg = Math.round(rand() * 3600) / 10;
    if (kind === 'camera' && rand() < 0.3) values.streamOk = rand() < 0.5;
    if (kind === 'voice_pole' && rand() < 0.7) values.playback = pick(['idle', 'playing', 'fault']);
    return {
      id: `dev-${i}`,
      kind,
      name: `${pick(['青峰', '竹海', '观音岩'])}社区设备${i}号`,
      // Six decimals, as ledgers have them.
      lat: Math.round((29.4 + rand() / 10) * 1e6) / 1e6,
      lon: Math.round((105.8 + rand() / 10) * 1e6) / 1e6,
      grid: `G${1 + Math.floor(rand() * 60)}`,
      community: pick(['青峰社区', '竹海社区', '观音岩社区']),
      agent: `agent-${Math.floor(rand() * 4)}`,
      status: heard ? pick(STATUSES) : 'unknown',
      lastSeen: heard ? t0 + Math.floor(rand() * 86_400_000) : null,
      values,
      valuesTs: Object.keys(values).length > 0 ? t0 - Math.floor(rand() * 3_600_000) : null,
    };
  });
}

/** A frame as the page's WebSocket (binaryType 'arraybuffer') hands it over, through the page's parser. */
function pageReads(frame: string | Buffer): ReturnType<typeof parseServerMessage> {
  const data = typeof frame === 'string' ? frame : frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length);
  return parseServerMessage(frameText(data)!);
}

function roundTrip(rows: DeviceView[], encoder = new DeviceSnapshotEncoder()): DeviceView[] | undefined {
  const msg = pageReads(encoder.encode(rows));
  return msg?.type === 'devices.snapshot' ? msg.devices : undefined;
}

type Snapshot = ReturnType<typeof deviceSnapshot>;
const wire = (rows: DeviceView[]) => JSON.parse(JSON.stringify(deviceSnapshot(rows))) as Snapshot;

describe('device snapshot columns', () => {
  it('decode to the same DeviceViews, row for row, values included', () => {
    const rows = fleet(2000);
    expect(rows.some((d) => d.lastSeen === null) && rows.some((d) => Object.keys(d.values).length === 0)).toBe(true);
    expect(roundTrip(rows)).toEqual(rows);
  });

  it('decode the same after the feed worker packs their number columns into Float64Arrays', () => {
    const rows = fleet(3000);
    const bytes = new DeviceSnapshotEncoder().encode(rows);
    const frame = binaryFrame(new Uint8Array(bytes).buffer);
    if (frame.kind !== 'json') throw new Error(`snapshot frame read as ${frame.kind}`);
    const moved = packSnapshotColumns(frame.value);
    // Number columns went into buffers that move to the page instead of being copied.
    expect(moved.length).toBeGreaterThan(3);
    const packed = (v: unknown): boolean => v instanceof Float64Array || (typeof v === 'object' && v !== null && Object.values(v).some(packed));
    expect(packed(frame.value)).toBe(true);
    expect(decodeDeviceSnapshot(frame.value)).toEqual(rows);
    // A small fleet is left as it came (not worth the packing).
    const small = binaryFrame(new Uint8Array(new DeviceSnapshotEncoder().encode(fleet(10))).buffer);
    if (small.kind !== 'json') throw new Error('small snapshot not read as JSON');
    expect(packSnapshotColumns(small.value)).toEqual([]);
  });

  it('are the text of the documented message shape, and smaller than one object per device', () => {
    const rows = fleet(500);
    const bytes = new DeviceSnapshotEncoder().encode(rows);
    expect(JSON.parse(bytes.toString('utf8'))).toEqual(deviceSnapshot(rows));
    expect(bytes.toString('utf8').startsWith('{"type":"devices.snapshot",')).toBe(true);
    expect(bytes.length).toBeLessThan(Buffer.byteLength(JSON.stringify({ type: 'devices.snapshot', devices: rows })) / 2);
  });

  it('keep the ledger part across snapshots but always send the current live state', () => {
    const rows = fleet(300);
    const encoder = new DeviceSnapshotEncoder();
    expect(roundTrip(rows, encoder)).toEqual(rows);
    rows[5]!.status = rows[5]!.status === 'online' ? 'offline' : 'online';
    rows[6]!.lastSeen = 1_800_000_000_000;
    rows[7]!.values = { ...rows[7]!.values, fps: 25 };
    rows[7]!.valuesTs = 1_800_000_000_001;
    expect(roundTrip(rows, encoder)).toEqual(rows);
    // Other devices (a new ledger): the ledger part is rebuilt.
    const other = fleet(299, 8);
    expect(roundTrip(other, encoder)).toEqual(other);
  });

  it('give back ids and names exactly, whatever their numbers look like', () => {
    const names = ['cam-00012', 'cam-12', 'cam-0', 'cam-00', 'pole', '', '7', '竹海社区第12网格监控3号', '竹海社区第12网格监控03号', 'a1b2c', 'x-1234567890123456789', 'x-123456789012345', '号0', 'tank-001', 'tank-1001'];
    const rows = fleet(names.length).map((d, i) => ({ ...d, id: names[i]!.replace(/[^A-Za-z0-9-]/g, 'z') || `id${i}`, name: names[i]! }));
    expect(roundTrip(rows)).toEqual(rows);
    const { name } = deviceSnapshot(rows).ledger;
    // Numbered names share a pattern: cam-00012 and cam-00 are padded (width 5, 2), cam-12 and cam-0 are not.
    expect(name.patterns[name.codes[0]!]).toEqual(['cam-', '', 5]);
    expect(name.codes[1]).toBe(name.codes[2]);
    expect(name.numbers.slice(0, 4)).toEqual([12, 12, 0, 0]);
  });

  it('give back coordinates exactly: as integers where six decimals say it all, as plain numbers otherwise', () => {
    const rows = fleet(100);
    const { lat, lon } = deviceSnapshot(rows).ledger;
    expect(lat).toMatchObject({ decimals: 6 });
    expect(lon).toMatchObject({ decimals: 6 });
    const whole = rows.map((d, i) => ({ ...d, lat: 29 + (i % 3), lon: 105 }));
    expect(deviceSnapshot(whole).ledger.lat).toMatchObject({ decimals: 0, base: 29, offsets: whole.map((_, i) => i % 3) });
    expect(roundTrip(whole)).toEqual(whole);
    const precise = rows.map((d, i) => ({ ...d, lat: d.lat + i * 1e-9 + Math.PI * 1e-11, lon: -d.lon / 3 }));
    expect(Array.isArray(deviceSnapshot(precise).ledger.lat)).toBe(true);
    expect(roundTrip(precise)).toEqual(precise);
    const cut = wire(precise);
    (cut.ledger.lon as number[]).pop();
    expect(decodeDeviceSnapshot(cut as unknown as Record<string, unknown>)).toBeNull();
  });

  it('decode an empty fleet', () => {
    expect(roundTrip([])).toEqual([]);
  });

  it('refuse a snapshot whose columns do not line up, or of another format', () => {
    const rows = fleet(50);
    const cut = (edit: (s: Snapshot) => void) => {
      const s = wire(rows);
      edit(s);
      return decodeDeviceSnapshot(s as unknown as Record<string, unknown>);
    };
    expect(cut(() => undefined)).toEqual(rows);
    expect(cut((s) => s.ledger.id.codes.pop())).toBeNull();
    expect(cut((s) => s.ledger.id.numbers.pop())).toBeNull();
    expect(cut((s) => s.ledger.name.codes.shift())).toBeNull();
    expect(cut((s) => s.ledger.name.numbers.shift())).toBeNull();
    expect(cut((s) => (s.ledger.lat as DecimalColumn).offsets.push(1))).toBeNull();
    expect(cut((s) => (s.ledger.lon as DecimalColumn).offsets.pop())).toBeNull();
    expect(cut((s) => s.ledger.kind.codes.pop())).toBeNull();
    expect(cut((s) => s.ledger.grid.codes.pop())).toBeNull();
    expect(cut((s) => s.ledger.community.codes.pop())).toBeNull();
    expect(cut((s) => s.ledger.agent.codes.pop())).toBeNull();
    expect(cut((s) => s.live.status.codes.pop())).toBeNull();
    expect(cut((s) => s.live.lastSeen.offsets.pop())).toBeNull();
    expect(cut((s) => s.live.valuesTs.offsets.pop())).toBeNull();
    expect(cut((s) => (s.count = 49))).toBeNull();
    // A value column pointing past the last row, rows not ascending, or values without rows.
    expect(cut((s) => s.live.values[0]!.rowGaps.push(50))).toBeNull();
    expect(cut((s) => s.live.values[0]!.rowGaps.push(0))).toBeNull();
    expect(cut((s) => s.live.values[0]!.values.pop())).toBeNull();
    expect(cut((s) => ((s as { format: string }).format = 'columns/2'))).toBeNull();
  });

  it('drop only the rows with a bad value', () => {
    const rows = fleet(20);
    const s = wire(rows) as unknown as { ledger: { lat: { offsets: unknown[] }; kind: { table: string[]; codes: number[] } }; live: { status: { codes: number[] } } };
    s.ledger.lat.offsets[3] = 'north';
    s.live.status.codes[4] = 99;
    s.ledger.kind.table.push('drone');
    s.ledger.kind.codes[5] = s.ledger.kind.table.length - 1;
    const decoded = decodeDeviceSnapshot(s as unknown as Record<string, unknown>);
    expect(decoded).toEqual(rows.filter((_, i) => i < 3 || i > 5));
  });
});

// ---- the hub sends it ---------------------------------------------------------------------------

class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly frames: Array<{ data: string | Buffer; binary: boolean | undefined }> = [];
  send(data: string | Buffer, opts?: { binary?: boolean }): void {
    this.frames.push({ data, binary: opts?.binary });
  }
  close(): void {
    this.readyState = 3;
  }
}

function hubSetup() {
  const { devices: ledger } = parseLedgerCsv(
    'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm\n' +
      'tank-1,water_tank,青峰社区消防水池1号,29.447761,105.830746,G37,青峰社区,agent-a,50,2500\n' +
      'cam-1,camera,竹海社区监控1号,29.419525,105.900059,G25,竹海社区,agent-a,,\n' +
      'pole-1,voice_pole,观音岩社区广播1号,29.43,105.92,G36,观音岩社区,agent-b,,\n',
  );
  const maxBufferedBytes = 65_536;
  const { config } = resolveConfig({ gateway: { push: { maxBufferedBytes } } }, { source: 't', baseDir: '/' });
  const log = pino({ level: 'silent' });
  const bus = new Bus(log);
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: config.gateway!, log, bus, metrics, ledger });
  registry.start();
  const writer = { status: { state: 'disabled', url: null, message: null } } as unknown as SeriesWriter;
  const ctx: HubContext = { config: config.gateway!, siteId: 'test-site', log, bus, metrics, registry, writer };
  const hub = new PushHub(ctx);
  hub.start();
  const user = { id: 1, username: 'v', displayName: 'V', role: 'viewer', grids: [], disabled: false, createdAt: 0 } as unknown as User;
  return { hub, registry, bus, ledger, user, maxBufferedBytes, stop: () => (hub.stop(), registry.stop()) };
}

describe('push hub and the device snapshot', () => {
  it('sends hello, then the snapshot as one binary frame of JSON that decodes to the registry', () => {
    const t = hubSetup();
    t.bus.emit('telemetry', { device: t.ledger[0]!, message: { ts: 1_775_010_600_000, seq: 0, values: { levelMm: 1751, levelPercent: 70, volumeM3: 38.5 } }, receivedAt: 1_775_010_600_131 });
    const socket = new FakeSocket();
    t.hub.attach(socket as unknown as WebSocket, t.user);
    expect(socket.frames).toHaveLength(2);
    const [hello, snapshot] = socket.frames;
    expect(hello!.binary).toBe(false);
    expect(pageReads(hello!.data)?.type).toBe('hello');
    expect(snapshot!.binary).toBe(true);
    const msg = pageReads(snapshot!.data);
    expect(msg).toEqual({ type: 'devices.snapshot', devices: t.registry.views() });
    expect(msg?.type === 'devices.snapshot' && msg.devices[0]).toMatchObject({ id: 'tank-1', status: 'online', values: { levelPercent: 70 } });
    t.stop();
  });

  it('pauses a client only once its backlog passes the cap plus its own snapshot', () => {
    const t = hubSetup();
    const socket = new FakeSocket();
    t.hub.attach(socket as unknown as WebSocket, t.user);
    const snapshotBytes = (socket.frames[1]!.data as Buffer).length;
    expect(snapshotBytes).toBeGreaterThan(0);
    const update = () => {
      t.bus.emit('state', { device: t.ledger[1]!, message: { ts: Date.now(), seq: 0, status: 'online' }, receivedAt: Date.now() });
      t.hub.flush();
    };
    // Still reading its snapshot: not behind.
    socket.bufferedAmount = t.maxBufferedBytes + snapshotBytes;
    update();
    expect(pageReads(socket.frames.at(-1)!.data)?.type).toBe('devices.update');
    // Past it: paused (nothing sent) until it drains below a quarter of the cap, then a fresh snapshot.
    const sent = socket.frames.length;
    socket.bufferedAmount = t.maxBufferedBytes + snapshotBytes + 1;
    update();
    expect(socket.frames).toHaveLength(sent);
    socket.bufferedAmount = 0;
    t.hub.flush();
    expect(pageReads(socket.frames[sent]!.data)?.type).toBe('devices.snapshot');
    t.stop();
  });
});
