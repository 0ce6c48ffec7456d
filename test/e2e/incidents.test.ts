/**
 * Incidents in a real Chromium: a fire seen by three cameras (alarms over MQTT, as the agent
 * sends them) arrives live in the duty officer's inbox with a sound and stays until handled; its
 * card shows where it is and what is near; the grid worker's phone view rings, acknowledges,
 * and the command center sees it at once. A viewer gets no buttons. Screenshots for the README.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { SiteMap } from '../../gateway/src/alerts/site-map.js';
import { topics } from '../../protocol/topics.js';
import { planFire } from '../../simulators/src/scenario/fire.js';
import { launchBrowser, signIn } from '../helpers/browser.js';
import { CONFIG_DIR, REPO, startTestGateway, testPassword, TEST_USERS, waitFor, type TestGateway, type TestRole } from '../helpers/gateway.js';

const SCREENSHOTS = join(REPO, 'docs/img');
const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const siteMap = SiteMap.fromFile(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), ledger);

let gateway: TestGateway;
let browser: Browser;
let client: MqttClient;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  gateway = await startTestGateway({ influxUrl: null });
  client = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'e2e-incidents', reconnectPeriod: 0 });
  browser = await launchBrowser();
  mkdirSync(SCREENSHOTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await Promise.all(contexts.map((c) => c.close()));
  await browser?.close();
  await client?.endAsync();
  await gateway?.close();
});

async function pageAs(role: TestRole, viewport = { width: 1440, height: 860 }, mobile = false): Promise<Page> {
  const context = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile });
  contexts.push(context);
  const page = await context.newPage();
  await signIn(page, TEST_USERS[role].username, testPassword(role), `${gateway.httpUrl}/`);
  return page;
}

let seq = 0;
async function igniteIn(grid: string): Promise<void> {
  const cams = siteMap.devicesInGrid(grid, 'camera');
  const ignition = { lat: cams.reduce((s, c) => s + c.lat, 0) / cams.length, lon: cams.reduce((s, c) => s + c.lon, 0) / cams.length };
  const plan = planFire(ledger, ignition, { seed: 7, maxCameras: 3 });
  for (const d of [...plan.detections].sort((a, b) => a.atMs - b.atMs)) {
    await client.publishAsync(topics.event(d.cameraId), JSON.stringify({ ts: Date.now(), seq: ++seq, type: d.kind, phase: 'start', confidence: 0.9, bearingDeg: d.bearingDeg }), { qos: 1 });
  }
}

describe('the alert inbox and the phone view', () => {
  let duty: Page;
  let incidentId: string;

  it('a new incident arrives live in the inbox, rings, and opens on its card with its location', async () => {
    duty = await pageAs('duty_officer');
    await duty.getByTestId('inbox').waitFor();
    await igniteIn('G01');
    const item = duty.getByTestId('inbox-item').first();
    await item.waitFor({ timeout: 10_000 });
    expect(await item.getAttribute('class')).toContain('unseen');
    incidentId = (await item.getAttribute('data-incident'))!;
    expect(incidentId).toMatch(/^INC-\d{8}-\d{4}$/);
    expect(await duty.evaluate(() => window.__gs?.incidentSounds?.() ?? 0)).toBeGreaterThan(0);
    // The three cameras join one incident: one item.
    await waitFor(async () => (await duty.getByTestId('inbox-item').count()) === 1);

    await item.click();
    const card = duty.getByTestId('incident-card');
    await expect.poll(() => card.getByTestId('incident-where').textContent()).toMatch(/3 台摄像机交叉定位/);
    expect(await card.getByTestId('incident-title').textContent()).toContain('茶山社区第1网格');
    expect(await card.getByTestId('act-acknowledge').isVisible()).toBe(true);
    expect(await card.getByTestId('act-escalate').isVisible()).toBe(true);
    await expect.poll(async () => (await card.getByTestId('incident-timeline').locator('li').count())).toBeGreaterThanOrEqual(3);
    expect(await item.getAttribute('class')).not.toContain('unseen');
    await duty.waitForTimeout(700); // the map flies to the incident
    await duty.screenshot({ path: join(SCREENSHOTS, 'incident-card.png') });
  });

  it('the grid worker acknowledges on the phone and the command center sees it at once', async () => {
    const phone = await pageAs('grid_worker', { width: 390, height: 844 }, true);
    await phone.goto(`${gateway.httpUrl}/#/phone`);
    const item = phone.getByTestId('phone-item').first();
    await item.waitFor();
    expect(await item.getAttribute('data-incident')).toBe(incidentId);
    await item.click();
    const card = phone.getByTestId('incident-card');
    expect(await card.getByTestId('act-navigate').getAttribute('href')).toMatch(/^https:\/\/uri\.amap\.com\/marker\?position=105\.\d+,29\.\d+&coordinate=wgs84/);
    await card.getByTestId('incident-text').fill('收到，正在前往');
    await card.getByTestId('act-acknowledge').click();
    await expect.poll(() => card.getByTestId('incident-status').textContent()).toBe('已确认');
    await phone.screenshot({ path: join(SCREENSHOTS, 'phone.png') });

    // The duty officer's inbox follows, without reloading.
    await expect.poll(() => duty.getByTestId('inbox-item').first().getAttribute('data-status')).toBe('acknowledged');
    await expect.poll(() => duty.getByTestId('incident-card').getByTestId('incident-status').textContent()).toBe('已确认');
    const detail = (await (await gateway.api(`/api/incidents/${incidentId}`)).json()) as { acknowledgedBy: string; timeline: Array<{ action: string; detail: { note?: string } }> };
    expect(detail.acknowledgedBy).toBe('test-grid');
    expect(detail.timeline.find((t) => t.action === 'acknowledged')?.detail.note).toBe('收到，正在前往');

    // A false alarm needs a reason: the form says so instead of sending.
    await card.getByTestId('incident-text').fill('');
    await card.getByTestId('act-false-alarm').click();
    expect(await card.getByTestId('incident-message').getAttribute('data-kind')).toBe('error');
    await card.getByTestId('act-resolve').click();
    await expect.poll(() => card.getByTestId('incident-status').textContent()).toBe('已处置');
    await expect.poll(() => duty.getByTestId('inbox-item').count()).toBe(0);
  });

  it('a viewer sees incidents but no decision buttons', async () => {
    // Another fire: the cameras of the first are still inside their repeat-damping minute.
    await igniteIn('G05');
    const viewer = await pageAs('viewer');
    const item = viewer.getByTestId('inbox-item').first();
    await item.waitFor({ timeout: 10_000 });
    await item.click();
    const card = viewer.getByTestId('incident-card');
    await card.getByTestId('incident-where').waitFor();
    expect(await card.getByTestId('act-acknowledge').count()).toBe(0);
    expect(await card.getByTestId('act-escalate').count()).toBe(0);
    expect(await card.getByTestId('act-show-on-map').count()).toBe(1);
  });

  it('shows the fire danger level set by a duty officer', async () => {
    const res = await gateway.api('/api/fire-danger', { method: 'PUT', as: 'duty_officer', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ level: 4, note: '区气象台' }) });
    expect(res.status).toBe(200);
    await expect.poll(() => duty.getByTestId('fire-danger').getAttribute('data-level')).toBe('4');
    expect(await duty.getByTestId('fire-danger').textContent()).toContain('四级 高火险');
  });
});
