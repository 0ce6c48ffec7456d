/**
 * The collector's timing and state logic against a scripted client, on fake timers. The same
 * collector is run against real simulators over TCP in test/integration/modbus-collector.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { tankTargetsFromLedger, WaterTankCollector, type WaterTankDevice, type WaterTankTarget } from '../../edge-agent/src/collectors/water-tank.js';
import { ModbusError, type HoldingRegisterReader } from '../../edge-agent/src/modbus/client.js';
import { encodeTankRegisters, TankStatus, type TankRegisterValues } from '../../edge-agent/src/modbus/tank-registers.js';
import { validate } from '../../protocol/validate.js';
import type { LedgerDevice } from '../../config/ledger.js';

function device(id: string, extra: Partial<WaterTankDevice['settings']> = {}): WaterTankDevice {
  return {
    id,
    kind: 'water_tank',
    name: id,
    lat: 29.4,
    lon: 105.9,
    grid: 'G1',
    community: 'c',
    agent: 'agent-test',
    settings: { capacityM3: 50, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1, ...extra },
  };
}

const healthy: TankRegisterValues = {
  levelMm: 1250,
  capacityM3: 50,
  heightMm: 2500,
  temperatureC: 12.4,
  status: 0,
  firmware: '1.2',
  lowAlarmMm: 750,
  loopCurrentMa: 12,
  uptimeS: 100,
};

/** Answers per unit id from a script the test changes as it goes; records when it was asked. */
class ScriptedTanks {
  answer = new Map<number, TankRegisterValues | ModbusError>();
  calls: Array<{ unitId: number; at: number }> = [];
  clients = 0;
  closed = 0;
  connect = (): HoldingRegisterReader => {
    this.clients++;
    return {
      readHoldingRegisters: async (unitId, address, quantity) => {
        this.calls.push({ unitId, at: Date.now() });
        const a = this.answer.get(unitId) ?? new ModbusError('timeout', 'no response within 100 ms');
        if (a instanceof ModbusError) throw a;
        return encodeTankRegisters(a).slice(address, address + quantity);
      },
      close: async () => {
        this.closed++;
      },
    };
  };
}

function harness(targets: WaterTankTarget[], opts: { pollIntervalMs?: number; maxBackoffMs?: number; offlineAfterFailures?: number } = {}) {
  const tanks = new ScriptedTanks();
  const readings: Reading[] = [];
  const logs: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) });
  const collector = new WaterTankCollector(targets, {
    pollIntervalMs: opts.pollIntervalMs ?? 1000,
    timeoutMs: 100,
    connect: tanks.connect,
    ...(opts.maxBackoffMs !== undefined ? { maxBackoffMs: opts.maxBackoffMs } : {}),
    ...(opts.offlineAfterFailures !== undefined ? { offlineAfterFailures: opts.offlineAfterFailures } : {}),
  });
  const ctx = { log, emit: (r: Reading) => void readings.push(r) };
  const of = <C extends Reading['channel']>(channel: C) => readings.filter((r): r is Extract<Reading, { channel: C }> => r.channel === channel);
  type TankTelemetry = Extract<Reading, { channel: 'telemetry'; kind: 'water_tank' }>;
  const tel = () => readings.filter((r): r is TankTelemetry => r.channel === 'telemetry' && r.kind === 'water_tank');
  const warnings = () => logs.filter((l) => l.level === 40).map((l) => l.msg);
  return { tanks, readings, logs, collector, ctx, of, tel, warnings };
}

const T0 = Date.UTC(2025, 3, 1, 4, 0, 0);
beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('water-tank collector', () => {
  it('staggers the first polls of many tanks over one interval and keeps the cadence', async () => {
    const targets = Array.from({ length: 58 }, (_, i) => ({ device: device(`tank-${i}`), host: '10.0.0.1', port: 502, unitId: i + 1 }));
    const h = harness(targets, { pollIntervalMs: 5800 });
    for (let i = 1; i <= 58; i++) h.tanks.answer.set(i, healthy);
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(5799);
    expect(h.tanks.calls).toHaveLength(58);
    const times = h.tanks.calls.map((c) => c.at - T0);
    expect(new Set(times).size).toBe(58); // no two in the same millisecond
    expect(times[1]! - times[0]!).toBe(100);
    expect(h.tanks.clients).toBe(1); // one gateway address, one connection
    await vi.advanceTimersByTimeAsync(5800 * 3);
    expect(h.tanks.calls).toHaveLength(58 * 4);
    await h.collector.stop();
    expect(h.tanks.closed).toBe(1);
  });

  it('scales the registers into schema-valid WaterTankValues stamped with the read time', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, { ...healthy, status: TankStatus.LOW_LEVEL_ALARM });
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(0);
    const [state] = h.of('state');
    expect(state).toMatchObject({ deviceId: 'tank-001', status: 'online' });
    const [t] = h.tel();
    expect(t).toEqual({
      channel: 'telemetry',
      kind: 'water_tank',
      deviceId: 'tank-001',
      ts: T0,
      values: { levelMm: 1250, levelPercent: 50, volumeM3: 25, temperatureC: 12.4, sensorStatus: TankStatus.LOW_LEVEL_ALARM },
    });
    expect(validate.telemetry('water_tank', JSON.stringify({ ts: t!.ts, seq: 0, values: t!.values })).ok).toBe(true);
    await h.collector.stop();
  });

  it('clamps a full tank reading a mm or two over height to 100 % and full capacity', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, { ...healthy, levelMm: 2502 });
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.tel()[0]?.values).toMatchObject({ levelMm: 2502, levelPercent: 100, volumeM3: 50 });
    await h.collector.stop();
  });

  it('reports a silent tank offline once, backs off, and online once when it answers', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }], { pollIntervalMs: 1000, maxBackoffMs: 8000 });
    h.tanks.answer.set(1, healthy);
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(2500); // 3 good polls
    h.tanks.answer.set(1, new ModbusError('timeout', 'no response within 100 ms'));
    const before = h.tanks.calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    const failedAt = h.tanks.calls.slice(before).map((c) => c.at - T0);
    // backoff 1 s, 2 s, 4 s, then capped at 8 s
    expect(failedAt.slice(0, 5).map((t, i, a) => (i === 0 ? 0 : t - a[i - 1]!))).toEqual([0, 1000, 2000, 4000, 8000]);
    expect(failedAt.length).toBeLessThan(12);
    const states = h.of('state');
    expect(states.map((s) => s.status)).toEqual(['online', 'offline']);
    expect(states[1]!.reason).toBe('timeout: no response within 100 ms');
    expect(h.warnings()).toEqual(['water tank offline']);

    h.tanks.answer.set(1, { ...healthy, levelMm: 1000 });
    await vi.advanceTimersByTimeAsync(8000);
    expect(h.of('state').map((s) => s.status)).toEqual(['online', 'offline', 'online']);
    const n = h.tanks.calls.length;
    await vi.advanceTimersByTimeAsync(3000);
    expect(h.tanks.calls.length - n).toBe(3); // back to the normal interval
    expect(h.tel().at(-1)?.values.levelMm).toBe(1000);
    expect(h.logs.filter((l) => l.msg === 'water tank back online')).toHaveLength(1);
    await h.collector.stop();
  });

  it('needs offlineAfterFailures failures in a row, so one lost answer is not an outage', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }], { offlineAfterFailures: 2 });
    h.tanks.answer.set(1, healthy);
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(100);
    h.tanks.answer.set(1, new ModbusError('connection_closed', 'closed'));
    await vi.advanceTimersByTimeAsync(1000); // one failure
    h.tanks.answer.set(1, healthy);
    await vi.advanceTimersByTimeAsync(5000);
    expect(h.of('state').map((s) => s.status)).toEqual(['online']);
    await h.collector.stop();
  });

  it('a tank that never answers is reported offline with the connection error', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, new ModbusError('connection_refused', 'connection refused by h:502'));
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(h.of('state')).toEqual([
      { channel: 'state', deviceId: 'tank-001', ts: T0 + 1000, status: 'offline', reason: 'connection_refused: connection refused by h:502' },
    ]);
    await h.collector.stop();
  });

  it('turns status bits and impossible levels into sensor_fault start/end, never into telemetry', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, healthy);
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(100);
    h.tanks.answer.set(1, { ...healthy, levelMm: 0xffff, status: TankStatus.OUT_OF_RANGE });
    await vi.advanceTimersByTimeAsync(3000);
    h.tanks.answer.set(1, { ...healthy, levelMm: 0, status: TankStatus.SENSOR_FAULT }); // still the same fault
    await vi.advanceTimersByTimeAsync(2000);
    h.tanks.answer.set(1, healthy);
    await vi.advanceTimersByTimeAsync(1000);
    h.tanks.answer.set(1, { ...healthy, levelMm: 2600 }); // no bit, but a 2500 mm tank cannot hold it
    await vi.advanceTimersByTimeAsync(1000);

    const events = h.of('event').map((e) => [e.event.type, e.event.phase, e.event.message]);
    expect(events).toEqual([
      ['sensor_fault', 'start', 'level transmitter reports the level out of range'],
      ['sensor_fault', 'end', 'level reading valid again'],
      ['sensor_fault', 'start', 'implausible level 2600 mm for a 2500 mm tank'],
    ]);
    expect(h.tel().every((t) => t.values.levelMm <= 2500)).toBe(true);
    expect(h.tel()).toHaveLength(2);
    expect(h.of('event')[0]!.event.source).toBe('modbus:status=0x0002');
    for (const e of h.of('event')) expect(validate.event(JSON.stringify({ ...e.event, ts: e.ts, seq: 1 })).ok).toBe(true);
    expect(h.of('state').map((s) => s.status)).toEqual(['online']); // a faulty sensor is still online
    await h.collector.stop();
  });

  it('uses the ledger height and capacity, and says once when the transmitter disagrees', async () => {
    const h = harness([{ device: device('tank-001', { heightMm: 3000, capacityM3: 60 }), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, healthy); // configured 2500 mm / 50 m³
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(3000);
    expect(h.tel()[0]?.values).toMatchObject({ levelMm: 1250, levelPercent: 41.7, volumeM3: 25 });
    expect(h.warnings()).toEqual(['transmitter configuration differs from the ledger; the ledger values are used']);
    await h.collector.stop();
  });

  it('keeps polling when emit throws, and emits nothing after stop', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, healthy);
    let calls = 0;
    await h.collector.start({
      log: h.ctx.log,
      emit: () => {
        calls++;
        throw new Error('outbox full');
      },
    });
    await vi.advanceTimersByTimeAsync(3500);
    expect(h.tanks.calls).toHaveLength(4);
    expect(calls).toBeGreaterThanOrEqual(5);
    expect(h.logs.filter((l) => l.msg === 'emit failed; readings are being lost')).toHaveLength(1);
    await h.collector.stop();
    const n = h.tanks.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.tanks.calls).toHaveLength(n);
  });

  it('rejects a non-tank device at construction', () => {
    const camera = { ...device('cam-1'), kind: 'camera', settings: { viewRangeM: 5000 } } as unknown as WaterTankDevice;
    expect(() => new WaterTankCollector([{ device: camera, host: 'h', port: 1, unitId: 1 }], { pollIntervalMs: 1000, timeoutMs: 100 })).toThrow(
      /not a water tank/,
    );
  });
});

describe('tankTargetsFromLedger', () => {
  it('takes Modbus addresses from the ledger and lists tanks without one', () => {
    const devices: LedgerDevice[] = [
      device('tank-1', { modbusHost: '10.1.0.5', modbusPort: 5020, modbusUnit: 3 }),
      device('tank-2', { modbusHost: '10.1.0.6' }),
      device('tank-3'),
      { ...device('tank-4', { modbusHost: 'x' }), agent: 'other' },
    ];
    const { targets, missing } = tankTargetsFromLedger(devices, { agent: 'agent-test' });
    expect(targets.map((t) => [t.device.id, t.host, t.port, t.unitId])).toEqual([
      ['tank-1', '10.1.0.5', 5020, 3],
      ['tank-2', '10.1.0.6', 502, 1],
    ]);
    expect(missing).toEqual(['tank-3']);
  });
});
