/**
 * Restart safety with real parts: a gateway stopped while a broadcast waits for an offline pole
 * and another is scheduled; a new gateway on the same operational store (and MQTT port, so the
 * running agent reconnects by itself) resumes both: the waiting pole plays when it is back, the
 * scheduled one runs at its time, and nothing plays twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { BroadcastDelivery, BroadcastJob } from '../../protocol/broadcasts.js';
import { startPoleFleet, type PoleFleet } from '../../simulators/src/voice-pole/simulator.js';
import { CONFIG_DIR, startTestGateway, testAgentConfig, testLogLevel, TEST_USERS, waitFor, type TestGateway } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const [A, B] = ['pole-001', 'pole-002'];

let dir: string;
let fleet: PoleFleet;
let agent: EdgeAgent;
const gateways: TestGateway[] = [];

const gatewayOn = async (mqttPort: number) => {
  const g = await startTestGateway({
    ledger,
    mqtt: { port: mqttPort },
    gateway: {
      store: { file: join(dir, 'store.sqlite') },
      availability: { flapDampingSec: 0 },
      broadcast: { ackTimeoutMs: 1500, retryDelayMs: 500, retryMaxDelayMs: 2000, tickMs: 100, progressIntervalMs: 100 },
    },
  });
  gateways.push(g);
  return g;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-bc-restart-'));
  fleet = await startPoleFleet(ledger.filter((d) => d.id === A || d.id === B), { timeScale: 10 });
});

afterAll(async () => {
  await agent?.stop();
  await fleet?.close();
  for (const g of gateways) await g.close().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const json = { 'content-type': 'application/json' };
async function get(g: TestGateway, id: string) {
  const res = await g.api(`/api/broadcasts/${id}`, { as: 'viewer' });
  return (await res.json()) as { broadcast: BroadcastJob; deliveries: BroadcastDelivery[] };
}

describe('a gateway restart', () => {
  it('resumes waiting and scheduled broadcasts from the store', async () => {
    const first = await gatewayOn(0);
    const config = testAgentConfig({ id: 'agent-chashan', brokerUrl: first.mqttUrl, outboxFile: join(dir, 'outbox.sqlite'), poles: { pollIntervalMs: 200, timeoutMs: 500 } });
    const log = createLogger(testLogLevel());
    const { collectors, devices } = buildCollectors(config, ledger, log, { tankEndpoints: new Map(), poleEndpoints: fleet.endpoints });
    agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
    await agent.start();
    await waitFor(() => first.registry.view(A)?.status === 'online' && first.registry.view(B)?.status === 'online', { what: 'poles online' });
    await new Promise((r) => setTimeout(r, 200));
    await fleet.poles.get(B)!.setFault('offline');
    await waitFor(() => first.registry.view(B)?.status === 'offline', { what: `${B} offline` });

    const create = async (body: unknown) => {
      const res = await first.api('/api/broadcasts', { method: 'POST', headers: json, body: JSON.stringify(body), as: 'duty_officer' });
      expect(res.status).toBe(201);
      return ((await res.json()) as { broadcast: BroadcastJob }).broadcast;
    };
    const waiting = await create({ target: { type: 'poles', poles: [A, B] }, content: { type: 'text', text: '森林防火，人人有责。' }, expiresAt: Date.now() + 60_000 });
    const scheduled = await create({ target: { type: 'poles', poles: [A] }, content: { type: 'clip', clipId: 'test-tone-01' }, schedule: { type: 'at', at: Date.now() + 12_000 } });
    // Far enough ahead that the restart below happens before it on a loaded CI machine (4 s was not:
    // the job had started by the time the second gateway was asked).
    await waitFor(async () => (await get(first, waiting.id)).deliveries[0]!.state === 'done', { what: `${A} played` });
    expect((await get(first, waiting.id)).deliveries[1]).toMatchObject({ pole: B, state: 'queued', sends: 0 });
    const port = first.mqttPort!; // embedded broker: always a port
    await first.close();

    // The new gateway: same store, same MQTT port; the agent reconnects on its own.
    const second = await gatewayOn(port);
    const resumed = await get(second, waiting.id);
    expect(resumed.broadcast).toMatchObject({ status: 'active', counts: { done: 1 } });
    // Nothing has been heard from B by this gateway yet (unknown, not offline): it is tried; its agent will say it is unreachable.
    expect(['queued', 'sent']).toContain(resumed.deliveries[1]!.state);
    expect((await get(second, scheduled.id)).broadcast).toMatchObject({ status: 'scheduled', run: 0 });
    await waitFor(() => agent.stats().connected && second.registry.view(A)?.status === 'online', { what: 'agent back', timeoutMs: 15_000 });
    await fleet.poles.get(B)!.setFault('none');

    const done = await waitFor(async () => ((await get(second, waiting.id)).broadcast.status === 'finished' ? get(second, waiting.id) : undefined), { what: 'waiting job finished', timeoutMs: 30_000 });
    expect(done.deliveries.map((d) => [d.pole, d.state])).toEqual([
      [A, 'done'],
      [B, 'done'],
    ]);
    const ran = await waitFor(async () => ((await get(second, scheduled.id)).broadcast.status === 'finished' ? get(second, scheduled.id) : undefined), { what: 'scheduled job ran', timeoutMs: 25_000 });
    expect(ran.deliveries[0]).toMatchObject({ pole: A, state: 'done' });
    expect(ran.broadcast.runStartedAt! - scheduled.nextRunAt!).toBeLessThan(1000);

    // Each pole played each job once.
    expect(fleet.poles.get(A)!.model.starts).toBe(2);
    expect(fleet.poles.get(B)!.model.starts).toBe(1);
    // The audit log (the same store) has both jobs with their operator.
    const audit = (await (await second.api('/api/audit?action=broadcast.create', { as: 'duty_officer' })).json()) as { entries: Array<{ actor: string; subject: string }> };
    expect(audit.entries.map((e) => [e.subject, e.actor]).sort()).toEqual(
      [
        [waiting.id, TEST_USERS.duty_officer.username],
        [scheduled.id, TEST_USERS.duty_officer.username],
      ].sort(),
    );
  });
});
