/**
 * A person's view of the thin slice: a simulated water tank (Modbus TCP) -> edge agent -> MQTT ->
 * gateway -> WebSocket -> the dashboard in a real Chromium, where the tank's level changes live.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import { startTankFleet, type TankFleet } from '../../simulators/src/water-tank/simulator.js';
import { ARTIFACTS, launchBrowser, signIn } from '../helpers/browser.js';
import { CONFIG_DIR, startTestGateway, testLogLevel, testPassword, TEST_USERS, waitFor, type TestGateway, testAgentConfig } from '../helpers/gateway.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const tanks = ledger.filter((d) => d.kind === 'water_tank').slice(0, 3);

let gateway: TestGateway;
let fleet: TankFleet;
let agent: EdgeAgent;
let browser: Browser;
let page: Page;
let agentDir: string;

beforeAll(async () => {
  // Storage off on purpose: the page must still run, and say that readings are not stored.
  gateway = await startTestGateway({ influxUrl: null });
  // 600 simulated seconds per real second: a visible change within a couple of polls.
  fleet = await startTankFleet(tanks, { seed: 7, timeScale: 600, host: '127.0.0.1' });
  agentDir = mkdtempSync(join(tmpdir(), 'gs-agent-'));
  const agentConfig = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(agentDir, 'outbox.sqlite'),
    outboxMaxMessages: 10_000,
    maxInflight: 50,
    tanks: { pollIntervalMs: 300, timeoutMs: 1000 },
  });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(agentConfig, ledger, log, { tankEndpoints: fleet.endpoints });
  agent = buildAgent({ config: agentConfig, log, collectors, deviceCount: devices.length });
  await agent.start();
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
  await fleet?.close();
  await gateway?.close();
  rmSync(agentDir, { recursive: true, force: true });
});

describe('dashboard', () => {
  it('shows the whole ledger on the map and a tank level changing live', async () => {
    // The page needs a session: it opens on the sign-in screen, and a viewer may see the map.
    await signIn(page, TEST_USERS.viewer.username, testPassword('viewer'), `${gateway.httpUrl}/`);
    expect(await page.evaluate(() => document.body.dataset.role)).toBe('viewer');
    await page.waitForSelector('[data-testid="conn-state"][data-state="live"]');
    expect(await page.evaluate(() => (window as unknown as { __gs: { deviceCount(): number } }).__gs.deviceCount())).toBe(1788);
    // Storage is off in this test and the page says so.
    await page.waitForSelector('[data-testid="storage-banner"][data-state="disabled"]');

    const tankId = tanks[0]!.id;
    await waitFor(async () => (await gateway.api(`/api/devices/${tankId}`).then((r) => r.json()) as { status: string }).status === 'online', {
      what: 'the tank online',
    });
    await page.evaluate((id) => (window as unknown as { __gs: { selectDevice(id: string): void } }).__gs.selectDevice(id), tankId);
    const level = page.getByTestId('tank-level');
    await expect.poll(async () => (await level.textContent()) ?? '', { timeout: 10_000 }).toMatch(/^\d+(\.\d)? ?%$/);
    const first = await level.textContent();
    await expect.poll(async () => await level.textContent(), { timeout: 15_000 }).not.toBe(first);
    // What the page shows is what the gateway holds.
    const shown = Number.parseFloat((await level.textContent()) ?? '');
    const api = (await gateway.api(`/api/devices/${tankId}`).then((r) => r.json())) as { values: { levelPercent: number } };
    expect(Math.abs(shown - api.values.levelPercent)).toBeLessThan(5);

    await expect.poll(async () => Number(await page.getByTestId('count-water_tank').getAttribute('data-online')), { timeout: 10_000 }).toBe(tanks.length);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-tank.png') });
  });
});
