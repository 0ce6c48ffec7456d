/**
 * The water-tank collector against tank simulators over real Modbus TCP, with short intervals:
 * scaling, disconnect → one offline → recovery → one online, out_of_range → sensor_fault, a
 * fleet built from the shipped ledger, and the weather registers: a tank with the sensor, one
 * without, and older transmitters that answer exception 02 or only the registers they have.
 */
import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { Reading } from '../../edge-agent/src/collectors/collector.js';
import { WaterTankCollector, type WaterTankDevice } from '../../edge-agent/src/collectors/water-tank.js';
import { encodeFrame, FunctionCode, MbapFramer } from '../../edge-agent/src/modbus/mbap.js';
import { loadLedger } from '../../config/ledger.js';
import { WaterTankModel } from '../../simulators/src/water-tank/model.js';
import { startTankFleet, startTankSimulator, transmitterFit, type TankSimulator } from '../../simulators/src/water-tank/simulator.js';
import { validate } from '../../protocol/validate.js';

const device: WaterTankDevice = {
  id: 'tank-007',
  kind: 'water_tank',
  name: '测试水池',
  lat: 29.43,
  lon: 105.88,
  grid: 'G29',
  community: '青峰社区',
  agent: 'agent-chashan',
  settings: { capacityM3: 55, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 },
};

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

function collect(targets: ConstructorParameters<typeof WaterTankCollector>[0], opts: { pollIntervalMs?: number } = {}) {
  const readings: Reading[] = [];
  const logs: Array<{ level: number; msg: string; deviceId?: string }> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) });
  const collector = new WaterTankCollector(targets, { pollIntervalMs: opts.pollIntervalMs ?? 40, timeoutMs: 100, maxBackoffMs: 160 });
  cleanup.push(() => collector.stop());
  const of = <C extends Reading['channel']>(channel: C) => readings.filter((r): r is Extract<Reading, { channel: C }> => r.channel === channel);
  type TankTelemetry = Extract<Reading, { channel: 'telemetry'; kind: 'water_tank' }>;
  const tel = () => readings.filter((r): r is TankTelemetry => r.channel === 'telemetry' && r.kind === 'water_tank');
  return { collector, readings, logs, of, tel, start: () => collector.start({ log, emit: (r) => void readings.push(r) }) };
}

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function tankSim(
  opts: { timeScale?: number; firmware?: string; weather?: boolean; startTimeMs?: number } = {},
): Promise<TankSimulator> {
  const sim = await startTankSimulator({
    settings: device.settings,
    seed: 11,
    timeScale: opts.timeScale ?? 0,
    initialLevelPercent: 60,
    ...(opts.firmware !== undefined ? { firmware: opts.firmware } : {}),
    ...(opts.weather ? { weather: { lat: device.lat, lon: device.lon } } : {}),
    ...(opts.startTimeMs !== undefined ? { startTimeMs: opts.startTimeMs } : {}),
  });
  cleanup.push(() => sim.close());
  return sim;
}

/** 2026-01-15 13:00 China Standard Time: the Angström hour, in the fire season. */
const JAN_15_1300 = Date.UTC(2026, 0, 15, 5);

/**
 * An older transmitter behind a gateway that answers a read with the registers it has, however
 * many were asked for (a byte count short of the request). Counts the reads by quantity.
 */
async function shortAnsweringTransmitter(): Promise<{ port: number; model: WaterTankModel; quantities: number[] }> {
  const model = new WaterTankModel({ ...device.settings, seed: 3, initialLevelPercent: 40, firmware: '1.2' });
  const quantities: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const framer = new MbapFramer();
    socket.on('data', (chunk: Buffer) => {
      for (const frame of framer.push(chunk)) {
        if (frame.pdu.readUInt8(0) !== FunctionCode.READ_HOLDING_REGISTERS) continue;
        const address = frame.pdu.readUInt16BE(1);
        const quantity = frame.pdu.readUInt16BE(3);
        quantities.push(quantity);
        const values = model.registers().slice(address, address + quantity);
        const pdu = Buffer.alloc(2 + 2 * values.length);
        pdu.writeUInt8(FunctionCode.READ_HOLDING_REGISTERS, 0);
        pdu.writeUInt8(2 * values.length, 1);
        values.forEach((v, i) => pdu.writeUInt16BE(v, 2 + 2 * i));
        socket.write(encodeFrame(frame.transactionId, frame.unitId, pdu));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as { port: number }).port, model, quantities };
}

describe('water-tank collector ↔ simulator over Modbus TCP', () => {
  it('delivers schema-valid readings with the documented scaling, stamped at read time', async () => {
    const sim = await tankSim();
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    const before = Date.now();
    await h.start();
    await until(() => h.tel().length >= 3, 'three readings');
    const [state] = h.of('state');
    expect(state).toMatchObject({ deviceId: 'tank-007', status: 'online' });
    const t = h.tel()[0]!;
    expect(t.ts).toBeGreaterThanOrEqual(before);
    expect(t.ts).toBeLessThanOrEqual(Date.now());
    const regs = sim.model.registers();
    const level = regs[0]!;
    expect(Math.abs(level - 1500)).toBeLessThanOrEqual(2); // 60 % of 2500 mm
    expect(t.values).toEqual({
      levelMm: level,
      levelPercent: Math.round((level / 2500) * 1000) / 10,
      volumeM3: Math.round((level / 2500) * 55 * 100) / 100,
      temperatureC: regs[3]! / 10,
      sensorStatus: 0,
    });
    for (const r of h.tel()) {
      expect(validate.telemetry('water_tank', JSON.stringify({ ts: r.ts, seq: 1, values: r.values })).ok).toBe(true);
    }
  });

  it('follows the level as simulated time runs (a draw under way)', async () => {
    const sim = await tankSim({ timeScale: 600 }); // 10 simulated minutes per real second
    sim.model.startDraw(30, 60); // 30 m³/h: ~23 mm per simulated minute
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 20, 'readings');
    const levels = h.tel().map((t) => t.values.levelMm);
    expect(levels[0]! - levels.at(-1)!).toBeGreaterThan(50);
  });

  it('a disconnected tank goes offline once, with a reason, and online once when it is back', async () => {
    const sim = await tankSim();
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 2, 'first readings');

    sim.setFault('disconnected');
    await until(() => h.of('state').length >= 2, 'offline');
    const offlineAt = h.readings.length;
    await new Promise((r) => setTimeout(r, 600)); // several more failed polls
    const afterOffline = h.readings.slice(offlineAt);
    expect(afterOffline).toEqual([]); // no further states, no telemetry
    const offline = h.of('state')[1]!;
    expect(offline.status).toBe('offline');
    expect(offline.reason).toMatch(/^connection_closed: /);
    expect(validate.state(JSON.stringify({ ts: offline.ts, seq: 2, status: offline.status, reason: offline.reason })).ok).toBe(true);

    sim.setFault('none');
    await until(() => h.of('state').length >= 3, 'online again');
    await until(() => h.readings.slice(offlineAt).some((r) => r.channel === 'telemetry'), 'readings again');
    expect(h.of('state').map((s) => s.status)).toEqual(['online', 'offline', 'online']);
    expect(h.logs.filter((l) => l.msg === 'water tank offline')).toHaveLength(1);
    expect(h.logs.filter((l) => l.msg === 'water tank back online')).toHaveLength(1);
  });

  it('a tank that stops answering (no_response) times out into offline', async () => {
    const sim = await tankSim();
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 1, 'first reading');
    sim.setFault('no_response');
    await until(() => h.of('state').length >= 2, 'offline');
    expect(h.of('state')[1]).toMatchObject({ status: 'offline', reason: 'timeout: no response within 100 ms' });
    sim.setFault('none');
    await until(() => h.of('state').length >= 3, 'online again');
  });

  it('out_of_range opens a sensor_fault event, suppresses the impossible level, and closes it on recovery', async () => {
    const sim = await tankSim();
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 1, 'first reading');
    sim.setFault('out_of_range');
    await until(() => h.of('event').length >= 1, 'sensor_fault start');
    const telemetryDuringFault = h.tel().length;
    await new Promise((r) => setTimeout(r, 300));
    expect(h.tel()).toHaveLength(telemetryDuringFault);
    expect(h.of('event')).toHaveLength(1);
    sim.setFault('none');
    await until(() => h.of('event').length >= 2, 'sensor_fault end');
    const events = h.of('event').map((e) => ({ type: e.event.type, phase: e.event.phase }));
    expect(events).toEqual([
      { type: 'sensor_fault', phase: 'start' },
      { type: 'sensor_fault', phase: 'end' },
    ]);
    expect(h.tel().every((t) => t.values.levelMm <= 2502)).toBe(true);
    expect(h.of('state').map((s) => s.status)).toEqual(['online']);
  });

  it('polls a fleet started from the shipped ledger, one server per tank', async () => {
    const tanks = loadLedger(new URL('../../config/ledger/chashan-zhuhai.csv', import.meta.url).pathname)
      .filter((d): d is WaterTankDevice => d.kind === 'water_tank')
      .slice(0, 12);
    const fleet = await startTankFleet(tanks, { seed: 20250401, timeScale: 60 });
    cleanup.push(() => fleet.close());
    expect(fleet.endpoints.size).toBe(12);
    expect(new Set([...fleet.endpoints.values()].map((e) => e.port)).size).toBe(12);
    const h = collect(
      tanks.map((d) => ({ device: d, ...fleet.endpoints.get(d.id)! })),
      { pollIntervalMs: 100 },
    );
    await h.start();
    await until(() => new Set(h.tel().map((t) => t.deviceId)).size === 12, 'a reading from every tank');
    for (const d of tanks) {
      const t = h.tel().find((r) => r.deviceId === d.id)!;
      const truth = fleet.simulators.get(d.id)!.model;
      expect(Math.abs(t.values.levelMm - truth.trueLevelMm)).toBeLessThan(5);
      expect(t.values.volumeM3).toBeLessThanOrEqual(d.settings.capacityM3);
    }
    // different seeds per tank: not all at the same level
    expect(new Set(tanks.map((d) => Math.round(fleet.simulators.get(d.id)!.model.trueLevelMm))).size).toBeGreaterThan(6);
  });
});

describe('weather registers over Modbus TCP', () => {
  it('a tank with a weather sensor publishes air temperature, humidity and rain as its registers say', async () => {
    const sim = await tankSim({ weather: true, startTimeMs: JAN_15_1300 });
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 2, 'readings');
    const regs = sim.model.registers();
    expect(regs).toHaveLength(13);
    const w = sim.model.measure().weather!;
    const t = h.tel()[0]!;
    expect(t.values).toMatchObject({ airTemperatureC: w.airTemperatureC, humidityPercent: w.humidityPercent, rainTodayMm: w.rainTodayMm });
    expect(t.values.airTemperatureC).toBe((regs[10]! >= 0x8000 ? regs[10]! - 0x10000 : regs[10]!) / 10);
    expect(t.values.humidityPercent).toBe(regs[11]! / 10);
    expect(t.values.rainTodayMm).toBe(regs[12]! / 10);
    // A January afternoon in Yongchuan.
    expect(t.values.airTemperatureC).toBeGreaterThan(0);
    expect(t.values.airTemperatureC).toBeLessThan(25);
    expect(validate.telemetry('water_tank', JSON.stringify({ ts: t.ts, seq: 1, values: t.values })).ok).toBe(true);
  });

  it('a tank without the sensor (firmware 1.3, registers at 0x8000) publishes no weather', async () => {
    const sim = await tankSim({ firmware: '1.3' });
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 2, 'readings');
    expect(sim.model.registers().slice(10)).toEqual([0x8000, 0x8000, 0x8000]);
    for (const t of h.tel()) expect(Object.keys(t.values).sort()).toEqual(['levelMm', 'levelPercent', 'sensorStatus', 'temperatureC', 'volumeM3']);
  });

  it('an older transmitter (firmware 1.2, exception 02 past register 9) keeps working without weather', async () => {
    const sim = await tankSim(); // firmware 1.2
    const h = collect([{ device, host: sim.host, port: sim.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 5, 'readings');
    expect(h.of('state').map((s) => s.status)).toEqual(['online']);
    expect(h.of('event')).toEqual([]);
    expect(h.tel()[0]!.values.levelMm).toBe(sim.model.registers()[0]);
    for (const t of h.tel()) expect(t.values.airTemperatureC).toBeUndefined();
    const notes = h.logs.filter((l) => l.msg.startsWith('transmitter has no weather registers'));
    expect(notes).toHaveLength(1);
    expect(JSON.stringify(notes[0])).toContain('exception: modbus exception 0x02');
  });

  it('an older transmitter that answers only the registers it has keeps working, one read per poll', async () => {
    const tx = await shortAnsweringTransmitter();
    const h = collect([{ device, host: '127.0.0.1', port: tx.port, unitId: 1 }]);
    await h.start();
    await until(() => h.tel().length >= 4, 'readings');
    expect(tx.quantities.slice(0, 4)).toEqual([13, 10, 10, 10]);
    expect(h.of('state').map((s) => s.status)).toEqual(['online']);
    const level = h.tel()[0]!.values.levelMm;
    expect(Math.abs(level - 1000)).toBeLessThanOrEqual(2); // 40 % of 2500 mm
    for (const t of h.tel()) expect(t.values.humidityPercent).toBeUndefined();
    expect(JSON.stringify(h.logs.find((l) => l.msg.startsWith('transmitter has no weather registers')))).toContain('protocol: read registers: malformed response');
  });

  it('a fleet from the shipped ledger: weather from exactly the tanks that have a sensor, one site weather', async () => {
    const all = loadLedger(new URL('../../config/ledger/chashan-zhuhai.csv', import.meta.url).pathname).filter(
      (d): d is WaterTankDevice => d.kind === 'water_tank',
    );
    const fits = all.map((d) => transmitterFit(d.id));
    expect(fits.filter((f) => f.weatherSensor).length).toBeGreaterThanOrEqual(8); // about one in four of 58
    expect(fits.filter((f) => f.weatherSensor).length).toBeLessThanOrEqual(20);
    expect(fits.filter((f) => f.firmware === '1.2').length).toBeGreaterThanOrEqual(8); // older transmitters too
    const tanks = all.slice(0, 24); // enough of each kind, without loading a 2-core machine
    expect(tanks.filter((d) => transmitterFit(d.id).weatherSensor).length).toBeGreaterThanOrEqual(3);
    const fleet = await startTankFleet(tanks, { seed: 20250401, timeScale: 0, startTimeMs: JAN_15_1300 });
    cleanup.push(() => fleet.close());
    const h = collect(
      tanks.map((d) => ({ device: d, ...fleet.endpoints.get(d.id)! })),
      { pollIntervalMs: 500 },
    );
    await h.start();
    await until(() => new Set(h.tel().map((t) => t.deviceId)).size === tanks.length, 'a reading from every tank', 5000);
    await h.collector.stop();
    const airC: number[] = [];
    for (const d of tanks) {
      const t = h.tel().find((r) => r.deviceId === d.id)!;
      const sim = fleet.simulators.get(d.id)!;
      if (transmitterFit(d.id).weatherSensor) {
        expect(sim.model.weather, d.id).toBeDefined();
        expect(t.values, d.id).toMatchObject(sim.model.measure().weather!);
        airC.push(t.values.airTemperatureC!);
      } else {
        expect(t.values.airTemperatureC, d.id).toBeUndefined();
        expect(t.values.humidityPercent, d.id).toBeUndefined();
        expect(t.values.rainTodayMm, d.id).toBeUndefined();
      }
    }
    // Stations a few km apart on one site: the same weather, give or take terrain and siting.
    expect(Math.max(...airC) - Math.min(...airC)).toBeLessThan(4);
  });
});
