/**
 * The command path: gateway -> MQTT (QoS1) -> agent -> the collector that owns the device ->
 * ack readings -> outbox -> gateway bus. Uses a small recording collector; the real voice-pole
 * collector has its own tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import type { Collector, CollectorContext } from '../../edge-agent/src/collectors/collector.js';
import { createLogger } from '../../gateway/src/log.js';
import type { CommandAck, DeviceCommand } from '../../protocol/payloads.js';
import { startTestGateway, testLogLevel, waitFor, type TestGateway, testAgentConfig } from '../helpers/gateway.js';

class RecordingPoleCollector implements Collector {
  readonly name = 'recording-pole';
  readonly commandDevices = ['pole-001', 'pole-002'];
  readonly executed: Array<{ deviceId: string; id: string }> = [];
  #ctx: CollectorContext | undefined;
  async start(ctx: CollectorContext) {
    this.#ctx = ctx;
  }
  async stop() {}
  handleCommand(deviceId: string, command: DeviceCommand) {
    this.executed.push({ deviceId, id: command.id });
    this.#ctx?.emit({ channel: 'ack', deviceId, ts: Date.now(), cmdId: command.id, status: 'accepted' });
    this.#ctx?.emit({ channel: 'ack', deviceId, ts: Date.now() + 1, cmdId: command.id, status: 'done' });
  }
}

let gateway: TestGateway;
let agent: EdgeAgent;
let dir: string;
const collector = new RecordingPoleCollector();
const acks: Array<{ device: string; ack: CommandAck }> = [];

beforeAll(async () => {
  gateway = await startTestGateway();
  gateway.bus.on('ack', ({ device, message }) => acks.push({ device: device.id, ack: message }));
  dir = mkdtempSync(join(tmpdir(), 'gs-cmd-'));
  agent = buildAgent({
    config: testAgentConfig({ id: 'agent-chashan', brokerUrl: gateway.mqttUrl, outboxFile: join(dir, 'o.sqlite'), outboxMaxMessages: 10_000, maxInflight: 20, tanks: { pollIntervalMs: 1000, timeoutMs: 500 } }),
    log: createLogger(testLogLevel()),
    collectors: [collector],
    deviceCount: 2,
  });
  await agent.start();
  await waitFor(() => gateway.registry.view('pole-001') !== undefined && agent.stats().connected, { what: 'agent connected' });
  // The subscription is made right after CONNACK; give it a moment to be in place.
  await new Promise((r) => setTimeout(r, 200));
});

afterAll(async () => {
  await agent?.stop();
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

const command = (id: string, extra: Partial<DeviceCommand> = {}): DeviceCommand => ({
  id,
  ts: Date.now(),
  name: 'broadcast.play',
  params: { text: '森林防火，人人有责', priority: 'routine', volume: 80 },
  ...extra,
});

describe('commands to devices', () => {
  it('reaches the owning collector once, and its acks come back in order', async () => {
    await gateway.sendCommand('pole-001', command('c-1'));
    await gateway.sendCommand('pole-001', command('c-1')); // a retry of the same command
    await waitFor(() => acks.filter((a) => a.ack.cmdId === 'c-1').length >= 2, { what: 'acks for c-1' });
    await new Promise((r) => setTimeout(r, 200));
    expect(collector.executed.filter((e) => e.id === 'c-1')).toEqual([{ deviceId: 'pole-001', id: 'c-1' }]);
    expect(acks.filter((a) => a.ack.cmdId === 'c-1').map((a) => [a.device, a.ack.status])).toEqual([
      ['pole-001', 'accepted'],
      ['pole-001', 'done'],
    ]);
  });

  it('reports a command that arrives after its expiry as expired, without executing it', async () => {
    await gateway.sendCommand('pole-002', command('c-2', { expiresAt: Date.now() - 1000 }));
    await waitFor(() => acks.some((a) => a.ack.cmdId === 'c-2'), { what: 'ack for c-2' });
    expect(acks.find((a) => a.ack.cmdId === 'c-2')?.ack.status).toBe('expired');
    expect(collector.executed.some((e) => e.id === 'c-2')).toBe(false);
  });

  it('refuses to send a command that breaks the contract or names no ledger device', async () => {
    await expect(gateway.sendCommand('pole-001', { ...command('c-3'), name: 'self.destruct' as never })).rejects.toThrow(/invalid command: name/);
    await expect(gateway.sendCommand('pole-999', command('c-4'))).rejects.toThrow(/no device "pole-999"/);
  });
});
