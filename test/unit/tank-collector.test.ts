/**
 * The collector's timing and state logic against a scripted client, on fake timers. The same
 * collector is run against real simulators over TCP in test/integration/modbus-collector.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { tankTargetsFromLedger, WaterTankCollector, type WaterTankDevice, type WaterTankTarget } from '../../edge-agent/src/collectors/water-tank.js';
import { ModbusError, type HoldingRegisterReader } from '../../edge-agent/src/modbus/client.js';
import { encodeTankRegisters, TANK_BASE_REGISTER_COUNT, TankStatus, type TankRegisterValues } from '../../edge-agent/src/modbus/tank-registers.js';
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

/**
 * How a transmitter without the weather registers (firmware before 1.3) answers a read past
 * register 9: exception 02, exception 03, or only the registers it has (which the real client
 * turns into a 'protocol' error).
 */
type OldMap = 'exception02' | 'exception03' | 'short';

/** Answers per unit id from a script the test changes as it goes; records when it was asked. */
class ScriptedTanks {
  answer = new Map<number, TankRegisterValues | ModbusError>();
  /** units with an older register map (0..9); the others have the whole map */
  oldMap = new Map<number, OldMap>();
  calls: Array<{ unitId: number; at: number; quantity: number }> = [];
  clients = 0;
  closed = 0;
  connect = (): HoldingRegisterReader => {
    this.clients++;
    return {
      readHoldingRegisters: async (unitId, address, quantity) => {
        this.calls.push({ unitId, at: Date.now(), quantity });
        const a = this.answer.get(unitId) ?? new ModbusError('timeout', 'no response within 100 ms');
        if (a instanceof ModbusError) throw a;
        const old = this.oldMap.get(unitId);
        if (old && address + quantity > TANK_BASE_REGISTER_COUNT) {
          if (old === 'short') throw new ModbusError('protocol', `read registers: malformed response (22 bytes for ${quantity} registers)`);
          const code = old === 'exception02' ? 2 : 3;
          throw new ModbusError('exception', `modbus exception 0x0${code}`, { exceptionCode: code });
        }
        return encodeTankRegisters(a).slice(address, address + quantity);
      },
      close: async () => {
        this.closed++;
      },
    };
  };
}

function harness(
  targets: WaterTankTarget[],
  opts: { pollIntervalMs?: number; maxBackoffMs?: number; offlineAfterFailures?: number; weatherProbeIntervalMs?: number } = {},
) {
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
    ...(opts.weatherProbeIntervalMs !== undefined ? { weatherProbeIntervalMs: opts.weatherProbeIntervalMs } : {}),
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

describe('water-tank collector: weather registers', () => {
  const weather = { airTemperatureC: -2.5, humidityPercent: 41.5, rainTodayMm: 3.2 };

  it('publishes air temperature, humidity and rain from one read of the whole map', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, { ...healthy, firmware: '1.3', ...weather });
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(2500);
    expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 13, 13]);
    const [t] = h.tel();
    expect(t!.values).toEqual({ levelMm: 1250, levelPercent: 50, volumeM3: 25, temperatureC: 12.4, sensorStatus: 0, ...weather });
    expect(validate.telemetry('water_tank', JSON.stringify({ ts: t!.ts, seq: 0, values: t!.values })).ok).toBe(true);
    await h.collector.stop();
  });

  it('leaves out what the transmitter has no data for (0x8000), and values outside the schema range', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, { ...healthy, firmware: '1.3' }); // no sensor: all three NO_DATA
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(0);
    expect(Object.keys(h.tel()[0]!.values).sort()).toEqual(['levelMm', 'levelPercent', 'sensorStatus', 'temperatureC', 'volumeM3']);
    h.tanks.answer.set(1, { ...healthy, firmware: '1.3', airTemperatureC: 85, humidityPercent: 250, rainTodayMm: 2 });
    await vi.advanceTimersByTimeAsync(1000);
    const values = h.tel()[1]!.values;
    expect(values.airTemperatureC).toBeUndefined();
    expect(values.humidityPercent).toBeUndefined();
    expect(values.rainTodayMm).toBe(2);
    expect(validate.telemetry('water_tank', JSON.stringify({ ts: 1775010600000, seq: 0, values })).ok).toBe(true);
    await h.collector.stop();
  });

  it.each(['exception02', 'exception03', 'short'] as const)(
    'an older transmitter (%s past register 9) still works: read 0–9 in the same poll, then 0–9 only, no weather',
    async (old) => {
      const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
      h.tanks.answer.set(1, { ...healthy, ...weather }); // the values would be there, the map is not
      h.tanks.oldMap.set(1, old);
      await h.collector.start(h.ctx);
      await vi.advanceTimersByTimeAsync(0);
      expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 10]);
      expect(h.of('state').map((s) => s.status)).toEqual(['online']);
      expect(h.tel()).toHaveLength(1);
      expect(h.tel()[0]!.values).toEqual({ levelMm: 1250, levelPercent: 50, volumeM3: 25, temperatureC: 12.4, sensorStatus: 0 });
      await vi.advanceTimersByTimeAsync(3000);
      expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 10, 10, 10, 10]); // one request per poll
      expect(h.tel()).toHaveLength(4);
      expect(h.logs.filter((l) => l.msg.startsWith('transmitter has no weather registers'))).toHaveLength(1);
      expect(h.of('event')).toEqual([]);
      await h.collector.stop();
    },
  );

  it('looks for the weather registers again after the transmitter restarts (a firmware update)', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, { ...healthy, uptimeS: 5000 });
    h.tanks.oldMap.set(1, 'exception02');
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(1500);
    h.tanks.oldMap.delete(1); // updated to 1.3 with a sensor, and rebooted
    h.tanks.answer.set(1, { ...healthy, firmware: '1.3', uptimeS: 3, ...weather });
    await vi.advanceTimersByTimeAsync(1000); // this poll sees the uptime fall
    await vi.advanceTimersByTimeAsync(1000); // this one reads the whole map
    expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 10, 10, 10, 13]);
    expect(h.tel().at(-1)!.values).toMatchObject(weather);
    await h.collector.stop();
  });

  it('tries the whole map again every weatherProbeIntervalMs: one garbled answer does not cost the weather for good', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }], { weatherProbeIntervalMs: 3000 });
    h.tanks.answer.set(1, { ...healthy, firmware: '1.3', ...weather });
    h.tanks.oldMap.set(1, 'short'); // looks like an older map once…
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(0);
    h.tanks.oldMap.delete(1); // …but it was a garbled answer
    await vi.advanceTimersByTimeAsync(2000); // still on the old map: no second probe yet
    await vi.advanceTimersByTimeAsync(2000);
    expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 10, 10, 10, 13, 13]);
    expect(h.tel().at(-1)!.values).toMatchObject(weather);
    expect(h.logs.map((l) => l.msg).filter((m) => m.startsWith('transmitter'))).toEqual([
      'transmitter has no weather registers (older firmware); reading registers 0–9',
      'transmitter now has weather registers; reading registers 0–12',
    ]);
    await h.collector.stop();
  });

  it('an older transmitter costs one extra request per probe interval, and is logged once', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }], { weatherProbeIntervalMs: 3000 });
    h.tanks.answer.set(1, healthy);
    h.tanks.oldMap.set(1, 'exception02');
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(6500);
    expect(h.tanks.calls.map((c) => c.quantity)).toEqual([13, 10, 10, 10, 13, 10, 10, 10, 13, 10]);
    expect(h.tel()).toHaveLength(7);
    expect(h.logs.filter((l) => l.msg.startsWith('transmitter'))).toHaveLength(1);
    await h.collector.stop();
  });

  it('a timeout on the whole-map read is an outage, not an older map', async () => {
    const h = harness([{ device: device('tank-001'), host: 'h', port: 502, unitId: 1 }]);
    h.tanks.answer.set(1, new ModbusError('timeout', 'no response within 100 ms'));
    await h.collector.start(h.ctx);
    await vi.advanceTimersByTimeAsync(2500);
    expect(h.tanks.calls.every((c) => c.quantity === 13)).toBe(true);
    expect(h.of('state').map((s) => s.status)).toEqual(['offline']);
    await h.collector.stop();
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
