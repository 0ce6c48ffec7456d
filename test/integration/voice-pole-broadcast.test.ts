/**
 * The broadcast path end to end: gateway.sendCommand → MQTT → edge agent → voice-pole collector →
 * pole simulator (HTTP) → acks and status telemetry back through the outbox to the gateway's bus
 * and registry. Pole playback runs 10× fast, so a 4 s announcement takes 0.4 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { CommandAck, DeviceCommand, DeviceState, VoicePoleValues } from '../../protocol/payloads.js';
import { startPoleFleet, type PoleFleet } from '../../simulators/src/voice-pole/simulator.js';
import { CONFIG_DIR, startTestGateway, testAgentConfig, testLogLevel, waitFor, type TestGateway } from '../helpers/gateway.js';

const POLES = ['pole-001', 'pole-002', 'pole-003', 'pole-004'];
const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));

let gateway: TestGateway;
let agent: EdgeAgent;
let fleet: PoleFleet;
let dir: string;
let polled: string[] = [];
const acks: Array<{ device: string; ack: CommandAck }> = [];
const telemetry: Array<{ device: string; values: VoicePoleValues }> = [];
const states: Array<{ device: string; state: DeviceState }> = [];

beforeAll(async () => {
  // No flap damping: the offline test wants the registry to follow at once.
  gateway = await startTestGateway({ ledger, gateway: { availability: { flapDampingSec: 0 } } });
  gateway.bus.on('ack', ({ device, message }) => acks.push({ device: device.id, ack: message }));
  gateway.bus.on('telemetry', ({ device, message }) => {
    if (device.kind === 'voice_pole') telemetry.push({ device: device.id, values: message.values as VoicePoleValues });
  });
  gateway.bus.on('state', ({ device, message }) => states.push({ device: device.id, state: message }));
  fleet = await startPoleFleet(
    ledger.filter((d) => POLES.includes(d.id)),
    { timeScale: 10 },
  );
  dir = mkdtempSync(join(tmpdir(), 'gs-pole-'));
  const config = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(dir, 'outbox.sqlite'),
    poles: { pollIntervalMs: 200, timeoutMs: 500 },
  });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(config, ledger, log, { tankEndpoints: new Map(), poleEndpoints: fleet.endpoints });
  polled = devices.map((d) => d.id);
  agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
  await agent.start();
  await waitFor(() => agent.stats().connected && POLES.every((id) => gateway.registry.view(id)?.status === 'online'), { what: 'poles online' });
  // The command subscription is made right after CONNACK; give it a moment to be in place.
  await new Promise((r) => setTimeout(r, 200));
});

afterAll(async () => {
  await agent?.stop();
  await fleet?.close();
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const play = (id: string, params: DeviceCommand['params'], extra: Partial<DeviceCommand> = {}): DeviceCommand => ({
  id,
  ts: Date.now(),
  name: 'broadcast.play',
  params,
  expiresAt: Date.now() + 60_000,
  ...extra,
});
const acksOf = (cmdId: string) => acks.filter((a) => a.ack.cmdId === cmdId);
const ended = (cmdId: string) => acksOf(cmdId).some((a) => ['done', 'failed', 'rejected', 'preempted', 'expired'].includes(a.ack.status));

describe('voice broadcast through the gateway', () => {
  it('the agent polls exactly the poles it was given simulators for', () => {
    expect(polled).toEqual(POLES);
  });

  it('a broadcast.play is acked accepted → playing → done, and status telemetry reaches the registry', async () => {
    await gateway.sendCommand('pole-001', play('bc-1', { text: '森林防火，人人有责。进山不带火种。', priority: 'warning', volume: 85, repeat: 3 }));
    await waitFor(() => ended('bc-1'), { what: 'bc-1 ends' });
    expect(acksOf('bc-1').map((a) => [a.device, a.ack.status])).toEqual([
      ['pole-001', 'accepted'],
      ['pole-001', 'playing'],
      ['pole-001', 'done'],
    ]);
    expect(fleet.poles.get('pole-001')!.model.job('bc-1')).toMatchObject({ state: 'done', priority: 'warning', volume: 85, repeat: 3 });
    expect(telemetry).toContainEqual({ device: 'pole-001', values: { playback: 'playing', volume: 85, currentCommandId: 'bc-1' } });
    await waitFor(() => gateway.registry.view('pole-001')?.values.playback === 'idle', { what: 'registry shows idle' });
    expect(gateway.registry.view('pole-001')).toMatchObject({ status: 'online', values: { playback: 'idle', volume: 70 } });
  });

  it('an emergency pre-empts a routine broadcast: routine ends preempted, emergency plays to the end', async () => {
    await gateway.sendCommand('pole-002', play('bc-r', { clipId: 'fire-warning-01', priority: 'routine', repeat: 3 }));
    await waitFor(() => acksOf('bc-r').some((a) => a.ack.status === 'playing'), { what: 'routine playing' });
    await waitFor(() => gateway.registry.view('pole-002')?.values.currentCommandId === 'bc-r', { what: 'registry shows the routine job' });
    await gateway.sendCommand('pole-002', play('bc-e', { text: '紧急通知：山火逼近，请立即撤离。', priority: 'emergency', volume: 100 }));
    await waitFor(() => ended('bc-e') && ended('bc-r'), { what: 'both end' });
    expect(acksOf('bc-r').map((a) => a.ack.status)).toEqual(['accepted', 'playing', 'preempted']);
    expect(acksOf('bc-r')[2]!.ack.reason).toBe('pre-empted by emergency broadcast bc-e');
    expect(acksOf('bc-e').map((a) => a.ack.status)).toEqual(['accepted', 'playing', 'done']);
    const pole = fleet.poles.get('pole-002')!.model;
    expect(pole.job('bc-r')).toMatchObject({ state: 'preempted', preemptedBy: 'bc-e' });
    expect(pole.job('bc-e')?.state).toBe('done');
    expect(pole.status().state).toBe('idle'); // the routine clip did not resume
  });

  it('a re-sent command id is played once', async () => {
    const command = play('bc-3', { text: '今日森林火险等级四级，严禁野外用火。', repeat: 2 });
    await gateway.sendCommand('pole-003', command);
    await gateway.sendCommand('pole-003', command);
    await waitFor(() => ended('bc-3'), { what: 'bc-3 ends' });
    await new Promise((r) => setTimeout(r, 300));
    await gateway.sendCommand('pole-003', command); // a late retry, after the job ended
    await new Promise((r) => setTimeout(r, 500));
    expect(acksOf('bc-3').map((a) => a.ack.status)).toEqual(['accepted', 'playing', 'done']);
    const pole = fleet.poles.get('pole-003')!;
    expect(pole.model.jobs().filter((j) => j.jobId === 'bc-3')).toHaveLength(1);
    expect(pole.model.starts).toBe(1);
    expect(pole.requests.filter((r) => r.jobId === 'bc-3')).toHaveLength(1);
  });

  it('a pole that is offline fails the command with "pole offline", and the registry shows it offline', async () => {
    await fleet.poles.get('pole-004')!.setFault('offline');
    await waitFor(() => states.some((s) => s.device === 'pole-004' && s.state.status === 'offline'), { what: 'pole-004 offline state' });
    await waitFor(() => gateway.registry.view('pole-004')?.status === 'offline', { what: 'registry shows pole-004 offline' });
    await gateway.sendCommand('pole-004', play('bc-4', { clipId: 'evacuation-01', priority: 'emergency' }));
    await waitFor(() => ended('bc-4'), { what: 'bc-4 answer' });
    expect(acksOf('bc-4').map((a) => [a.ack.status, a.ack.reason])).toEqual([['failed', 'pole offline: connection refused']]);
    expect(states.find((s) => s.device === 'pole-004' && s.state.status === 'offline')?.state.reason).toBe('connection refused');

    await fleet.poles.get('pole-004')!.setFault('none');
    await waitFor(() => gateway.registry.view('pole-004')?.status === 'online', { what: 'pole-004 back online', timeoutMs: 15_000 });
  });

  it('broadcast.stop ends a play early; both commands are acked', async () => {
    await gateway.sendCommand('pole-001', play('bc-5', { clipId: 'fire-warning-01', repeat: 3 }));
    await waitFor(() => acksOf('bc-5').some((a) => a.ack.status === 'playing'), { what: 'bc-5 playing' });
    await gateway.sendCommand('pole-001', { id: 'st-5', ts: Date.now(), name: 'broadcast.stop', params: { cmdId: 'bc-5' } });
    await waitFor(() => ended('bc-5') && acksOf('st-5').length >= 2, { what: 'stopped' });
    expect(acksOf('st-5').map((a) => a.ack.status)).toEqual(['accepted', 'done']);
    expect(acksOf('bc-5').map((a) => [a.ack.status, a.ack.reason])).toEqual([
      ['accepted', undefined],
      ['playing', undefined],
      ['done', 'stopped before the end'],
    ]);
  });
});
