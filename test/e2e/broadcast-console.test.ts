/**
 * The broadcast console (广播喊话) in Debian's Chromium, against a real gateway, a real edge agent
 * and pole simulators (playback 10× fast), so every pole really takes, plays and finishes what it
 * is sent. The console is mounted by a test-only harness page (test/e2e/harness/) bundled here
 * with esbuild, as the app will mount it: the real site map, the live `/ws` feed.
 *
 *  - a duty officer picks grid G08 from the list, sends a text broadcast and watches n/m reach
 *    4/4 live, each pole's row and map marker moving through its states to done;
 *  - an emergency without a reason is refused by the form (nothing reaches the gateway); with a
 *    reason the confirmation says emergency; a scheduled broadcast is cancelled from its page;
 *  - a polygon drawn with clicks and a double-click selects exactly the poles inside it: the same
 *    as resolve-targets for the clicked ring, and as a point-in-polygon test of the ledger;
 *  - a viewer sees jobs and progress, and no form, no send, no cancel.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as esbuild from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { BroadcastDelivery, BroadcastJob, ResolvedPole } from '../../protocol/broadcasts.js';
import type { Incident } from '../../protocol/incidents.js';
import { startPoleFleet, type PoleFleet } from '../../simulators/src/voice-pole/simulator.js';
import { ARTIFACTS, launchBrowser } from '../helpers/browser.js';
import { CONFIG_DIR, REPO, startTestGateway, testAgentConfig, testLogLevel, testPassword, TEST_USERS, waitFor, type TestGateway, type TestRole } from '../helpers/gateway.js';
import type { HarnessState } from './harness/broadcast-console-harness.js';

const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const voicePoles = ledger.filter((d) => d.kind === 'voice_pole');
const G08 = voicePoles.filter((d) => d.grid === 'G08').map((d) => d.id).sort();
const SCREENSHOT = join(REPO, 'docs/img/broadcast-console.png');

let gateway: TestGateway;
let agent: EdgeAgent;
let fleet: PoleFleet;
let browser: Browser;
let dir: string;

/** The harness page: the console bundle, Leaflet's and the dashboard's CSS, a map beside a side panel. */
async function buildHarness(out: string): Promise<void> {
  mkdirSync(out, { recursive: true });
  const leafletDist = dirname(createRequire(import.meta.url).resolve('leaflet/dist/leaflet.css'));
  await esbuild.build({
    entryPoints: [join(import.meta.dirname, 'harness/broadcast-console-harness.ts')],
    outfile: join(out, 'harness.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    alias: { leaflet: join(leafletDist, 'leaflet-src.esm.js') },
    logLevel: 'silent',
  });
  copyFileSync(join(leafletDist, 'leaflet.css'), join(out, 'leaflet.css'));
  copyFileSync(join(REPO, 'dashboard/src/styles.css'), join(out, 'styles.css'));
  writeFileSync(
    join(out, 'index.html'),
    `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>broadcast console harness</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="leaflet.css"><link rel="stylesheet" href="harness.css"><link rel="stylesheet" href="styles.css">
<style>.harness { flex: 1; display: flex; min-height: 0; } .harness .map-wrap { flex: 1; position: relative; } #console { flex: 0 0 440px; min-height: 0; border-left: 1px solid var(--line); }</style>
<script type="module" src="harness.js"></script></head>
<body data-auth="signed-in"><div class="harness"><div class="map-wrap"><div id="map" class="map"></div></div><aside id="console"></aside></div></body></html>`,
  );
}

beforeAll(async () => {
  expect(G08).toHaveLength(4);
  dir = mkdtempSync(join(tmpdir(), 'gs-bc-console-'));
  const page = join(dir, 'page');
  await buildHarness(page);
  gateway = await startTestGateway({
    ledger,
    gateway: { availability: { flapDampingSec: 0 }, broadcast: { ackTimeoutMs: 1500, maxResends: 2, retryDelayMs: 500, tickMs: 100, progressIntervalMs: 100 } },
    options: { dashboardDir: page },
  });
  fleet = await startPoleFleet(
    voicePoles.filter((d) => G08.includes(d.id)),
    { timeScale: 10 },
  );
  const config = testAgentConfig({ id: 'agent-chashan', brokerUrl: gateway.mqttUrl, outboxFile: join(dir, 'outbox.sqlite'), poles: { pollIntervalMs: 200, timeoutMs: 500 } });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(config, ledger, log, { tankEndpoints: new Map(), poleEndpoints: fleet.endpoints });
  agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
  [browser] = await Promise.all([launchBrowser(), agent.start()]);
  await waitFor(() => agent.stats().connected && G08.every((id) => gateway.registry.view(id)?.status === 'online'), { what: 'G08 poles online' });
  // The agent subscribes to commands right after CONNACK; give it a moment.
  await new Promise((r) => setTimeout(r, 200));
  mkdirSync(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
  await fleet?.close();
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function harnessPage(role: TestRole): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'zh-CN' })).newPage();
  page.on('pageerror', (err) => console.error(`page error (${role}):`, err));
  await page.goto(`${gateway.httpUrl}/`);
  await page.evaluate(([u, p]) => window.startHarness(u, p), [TEST_USERS[role].username, testPassword(role)] as const);
  await page.waitForFunction(() => window.__bc?.ready === true);
  return page;
}

const harness = (page: Page) => page.evaluate(() => JSON.parse(JSON.stringify(window.__bc)) as Omit<HarnessState, 'pixel' | 'at' | 'fit' | 'prefill'>);
const previewIds = async (page: Page) => (await page.locator('[data-testid="bc-preview-pole"]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.pole!))).sort();
const jobTotal = async () => ((await (await gateway.api('/api/broadcasts?limit=1', { as: 'viewer' })).json()) as { total: number }).total;

/** Even-odd ray casting on a [lon, lat] ring, written here independently of the dashboard's. */
function inside(ring: Array<[number, number]>, lat: number, lon: number): boolean {
  let yes = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i]!;
    const [xj, yj] = ring[j]!;
    if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) yes = !yes;
  }
  return yes;
}

let sentJobId = '';

describe('broadcast console in Chromium', () => {
  let duty: Page;

  it('a duty officer sends a text broadcast to grid G08 and watches every pole reach done live', async () => {
    duty = await harnessPage('duty_officer');
    await expect.poll(() => duty.getByTestId('bc-tab-compose').getAttribute('aria-selected')).toBe('true');

    await duty.getByTestId('bc-target-grids').click();
    expect(await duty.getByTestId('bc-target-grids').getAttribute('aria-pressed')).toBe('true');
    await duty.locator('[data-testid="bc-grid-option"][data-grid="G08"] input').check();
    await duty.waitForSelector('[data-testid="bc-preview-count"][data-count="4"]');
    expect(await previewIds(duty)).toEqual(G08);
    // Highlighted on the map by the console's own layer, the grid outlined.
    await expect.poll(() => duty.locator('path.bc-selected').count()).toBe(4);
    expect(await duty.locator('path.bc-shape-area').count()).toBe(1);

    await duty.getByTestId('bc-content-text').click();
    const text = '森林防火，人人有责。进山请勿携带火种。';
    await duty.getByTestId('bc-text').fill(text);
    await duty.getByTestId('bc-preview-send').click();
    const summary = duty.getByTestId('bc-confirm-summary');
    await summary.waitFor();
    expect(await summary.getAttribute('data-poles')).toBe('4');
    expect(await summary.getAttribute('data-offline')).toBe('0');
    expect(await duty.getByTestId('bc-confirm-priority').textContent()).toBe('常规');
    const before = await jobTotal();
    expect(before).toBe(0); // the dry run stored nothing

    await duty.getByTestId('bc-confirm-send').click();
    await duty.getByTestId('bc-detail').waitFor();
    sentJobId = (await duty.getByTestId('bc-detail').getAttribute('data-job'))!;
    expect(sentJobId).toBeTruthy();
    await duty.waitForSelector('[data-testid="bc-job-progress"][data-done="4"][data-total="4"]', { timeout: 20_000 });
    await expect.poll(() => duty.locator('[data-testid="bc-delivery"][data-state="done"]').count()).toBe(4);
    expect(await duty.getByTestId('bc-detail-status').textContent()).toBe('已结束');
    expect(await duty.locator('[data-testid="bc-state-count"][data-state="done"]').getAttribute('data-count')).toBe('4');

    // Live, not just right at the end: n/m went up step by step, rows moved through their states.
    const seen = await harness(duty);
    expect(seen.messages['broadcast.progress']).toBeGreaterThanOrEqual(2);
    const progress = seen.progress[sentJobId]!;
    expect(progress[0]).toBeLessThan(4);
    expect(progress.at(-1)).toBe(4);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const rows = seen.rowStates[sentJobId]!;
    expect(Object.keys(rows).sort()).toEqual(G08);
    for (const states of Object.values(rows)) {
      expect(states.at(-1)).toBe('done');
      expect(states.length).toBeGreaterThanOrEqual(2);
    }
    expect(Object.values(rows).some((s) => s.includes('playing'))).toBe(true);
    // The poles on the map are coloured by their state.
    await expect.poll(() => duty.locator('path.bc-delivery-marker.bc-state-done').count()).toBe(4);

    // What the page says is what the gateway recorded, and each pole played it.
    const detail = (await (await gateway.api(`/api/broadcasts/${sentJobId}`, { as: 'viewer' })).json()) as { broadcast: BroadcastJob; deliveries: BroadcastDelivery[] };
    expect(detail.broadcast).toMatchObject({ status: 'finished', text, priority: 'routine', createdBy: TEST_USERS.duty_officer.username, target: { type: 'grids', grids: ['G08'] } });
    expect(detail.deliveries.map((d) => d.pole).sort()).toEqual(G08);
    for (const d of detail.deliveries) expect(fleet.poles.get(d.pole)!.model.job(d.cmdId!)).toMatchObject({ state: 'done', text });

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await duty.screenshot({ path: SCREENSHOT });
    copyFileSync(SCREENSHOT, join(ARTIFACTS, 'broadcast-console.png'));
  });

  it('an emergency needs a reason: the form refuses without one; a scheduled broadcast is cancelled from its page', async () => {
    await duty.getByTestId('bc-tab-compose').click();
    // The form kept grid G08 and the text.
    await duty.waitForSelector('[data-testid="bc-preview-count"][data-count="4"]');
    await duty.getByTestId('bc-priority').selectOption('emergency');
    await duty.getByTestId('bc-reason').fill('');
    const before = await jobTotal();
    await duty.getByTestId('bc-preview-send').click();
    const error = duty.getByTestId('bc-form-error');
    await error.waitFor();
    expect(await error.textContent()).toContain('紧急广播必须填写原因');
    expect(await duty.getByTestId('bc-reason').getAttribute('aria-invalid')).toBe('true');
    expect(await duty.getByTestId('bc-confirm').isHidden()).toBe(true);
    expect(await jobTotal()).toBe(before);

    await duty.getByTestId('bc-reason').fill('凤凰湖北坡山火，两台摄像机交叉定位');
    expect(await duty.getByTestId('bc-reason').getAttribute('aria-invalid')).toBeNull();
    await duty.getByTestId('bc-preview-send').click();
    await duty.getByTestId('bc-confirm-summary').waitFor();
    expect(await duty.getByTestId('bc-confirm-priority').textContent()).toBe('紧急');
    await duty.getByTestId('bc-confirm-back').click();
    expect(await jobTotal()).toBe(before);

    // A routine broadcast an hour from now: scheduled, then cancelled by the officer.
    await duty.getByTestId('bc-priority').selectOption('routine');
    await duty.getByTestId('bc-schedule-at').click();
    const inAnHour = await duty.evaluate(() => {
      const d = new Date(Date.now() + 3_600_000);
      const pad = (n: number) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    });
    await duty.getByTestId('bc-at').fill(inAnHour);
    await duty.getByTestId('bc-preview-send').click();
    await duty.getByTestId('bc-confirm-send').click();
    await duty.waitForSelector('[data-testid="bc-detail"][data-status="scheduled"]');
    await duty.getByTestId('bc-cancel').click();
    await duty.getByTestId('bc-cancel-reason').fill('时间有误');
    await duty.getByTestId('bc-cancel-confirm').click();
    await duty.waitForSelector('[data-testid="bc-detail"][data-status="cancelled"]');
    expect(await duty.getByTestId('bc-cancel').count()).toBe(0);
    const id = (await duty.getByTestId('bc-detail').getAttribute('data-job'))!;
    const job = ((await (await gateway.api(`/api/broadcasts/${id}`, { as: 'viewer' })).json()) as { broadcast: BroadcastJob }).broadcast;
    expect(job).toMatchObject({ status: 'cancelled', cancelledBy: TEST_USERS.duty_officer.username, cancelReason: '时间有误', schedule: { type: 'at' } });
  });

  it('a polygon drawn on the map selects exactly the poles inside it', async () => {
    await duty.getByTestId('bc-tab-compose').click();
    await duty.getByTestId('bc-target-polygon').click();
    expect(await duty.getByTestId('bc-target-polygon').getAttribute('aria-pressed')).toBe('true');
    expect(await duty.getByTestId('bc-target-grids').getAttribute('aria-pressed')).toBe('false');
    const g08 = voicePoles.filter((d) => G08.includes(d.id));
    await duty.evaluate((points) => window.__bc.fit(points, 160), g08.map((d) => ({ lat: d.lat, lon: d.lon })));
    const px = await Promise.all(g08.map((d) => duty.evaluate(([lat, lon]) => window.__bc.pixel(lat, lon), [d.lat, d.lon] as const)));
    const pad = 40;
    const [x0, x1] = [Math.min(...px.map((p) => p.x)) - pad, Math.max(...px.map((p) => p.x)) + pad];
    const [y0, y1] = [Math.min(...px.map((p) => p.y)) - pad, Math.max(...px.map((p) => p.y)) + pad];
    // A pentagon around the four poles; the last corner is a double-click, which ends the polygon.
    const corners = [
      { x: x0, y: y0 },
      { x: (x0 + x1) / 2, y: y0 - pad },
      { x: x1, y: y0 },
      { x: x1, y: y1 },
      { x: x0, y: y1 },
    ];
    const zoomBefore = await duty.evaluate(() => window.__bc.at(0, 0));
    for (const c of corners.slice(0, -1)) {
      await duty.mouse.click(c.x, c.y);
      await duty.waitForTimeout(350); // not a double-click
    }
    const last = corners.at(-1)!;
    await duty.mouse.dblclick(last.x, last.y);
    await expect.poll(() => duty.getByTestId('bc-polygon-state').textContent()).toContain('已绘制多边形（5 个顶点）');
    // The double-click ended the polygon and did not zoom the map.
    expect(await duty.evaluate(() => window.__bc.at(0, 0))).toEqual(zoomBefore);
    await duty.waitForSelector('[data-testid="bc-preview"][data-state="ready"]');
    const shown = await previewIds(duty);

    const ring = await Promise.all(corners.map((c) => duty.evaluate(([x, y]) => window.__bc.at(x, y), [c.x, c.y] as const)));
    const res = await gateway.api('/api/broadcasts/resolve-targets', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: { type: 'polygon', ring: ring.map((p) => [p.lon, p.lat]) } }),
      as: 'viewer',
    });
    expect(res.status).toBe(200);
    const resolved = ((await res.json()) as { poles: ResolvedPole[] }).poles.map((p) => p.id).sort();
    const byLedger = voicePoles.filter((d) => inside(ring.map((p) => [p.lon, p.lat]), d.lat, d.lon)).map((d) => d.id).sort();
    expect(shown).toEqual(resolved);
    expect(shown).toEqual(byLedger);
    for (const id of G08) expect(shown).toContain(id);
    await expect.poll(() => duty.locator('path.bc-selected').count()).toBe(shown.length);
    expect(await duty.locator('path.bc-shape-polygon').count()).toBe(1);
    await duty.screenshot({ path: join(ARTIFACTS, 'broadcast-console-polygon.png') });

    // Esc drops a polygon being drawn; the finished one stays.
    await duty.mouse.click(x0 - 60, y0 - 60);
    await expect.poll(() => duty.getByTestId('bc-polygon-state').textContent()).toContain('正在绘制');
    await duty.keyboard.press('Escape');
    await expect.poll(() => duty.getByTestId('bc-polygon-state').textContent()).toContain('已绘制多边形（5 个顶点）');
    expect(await previewIds(duty)).toEqual(shown);
  });

  it('"warn nearby poles" from an incident fills the form: 3 km around it, the evacuation template, warning, the incident linked', async () => {
    const g08 = voicePoles.filter((d) => G08.includes(d.id));
    const at = { lat: g08.reduce((s, d) => s + d.lat, 0) / g08.length, lon: g08.reduce((s, d) => s + d.lon, 0) / g08.length };
    const incident: Incident = {
      id: 'INC-TEST-0001',
      category: 'fire',
      kind: 'camera_fire',
      severity: 'critical',
      status: 'new',
      title: '竹海社区疑似山火',
      createdAt: Date.now(),
      updatedAt: Date.now(),
      firstSignalAt: Date.now(),
      lastSignalAt: Date.now(),
      signalCount: 2,
      devices: [],
      cameras: [],
      location: { method: 'triangulated', lat: at.lat, lon: at.lon, uncertaintyM: 40, residualM: 5, cameras: [] },
      grid: 'G08',
      gridName: '竹海社区第2网格',
      community: '竹海社区',
      nearestTanks: [],
      nearestPoles: [],
      level: 'grid',
      escalateAt: null,
      acknowledgedAt: null,
      acknowledgedBy: null,
      closedAt: null,
      closedBy: null,
      closeReason: null,
    };
    await duty.evaluate((i) => window.__bc.prefill(i), incident);
    expect(await duty.getByTestId('bc-target-radius').getAttribute('aria-pressed')).toBe('true');
    expect(await duty.getByTestId('bc-radius').inputValue()).toBe('3000');
    expect(await duty.getByTestId('bc-priority').inputValue()).toBe('warning');
    expect(await duty.getByTestId('bc-reason').inputValue()).toBe(incident.title);
    expect(await duty.getByTestId('bc-incident').textContent()).toContain('INC-TEST-0001');
    expect(await duty.getByTestId('bc-template').inputValue()).toBe('evacuation-order');
    expect(await duty.getByTestId('bc-template-text').textContent()).toContain('竹海社区第2网格发生山火');
    await duty.waitForSelector('[data-testid="bc-preview"][data-state="ready"]');
    const res = await gateway.api('/api/broadcasts/resolve-targets', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: { type: 'radius', center: { lat: Math.round(at.lat * 1e6) / 1e6, lon: Math.round(at.lon * 1e6) / 1e6 }, radiusM: 3000 } }),
      as: 'viewer',
    });
    const expected = ((await res.json()) as { poles: ResolvedPole[] }).poles.map((p) => p.id).sort();
    expect(expected.length).toBeGreaterThan(4);
    expect(await previewIds(duty)).toEqual(expected);
    expect(await duty.locator('path.bc-shape-circle').count()).toBe(1);
    await duty.getByTestId('bc-preview-send').click();
    await duty.getByTestId('bc-confirm-summary').waitFor();
    expect(await duty.getByTestId('bc-confirm-summary').getAttribute('data-poles')).toBe(String(expected.length));
    expect(await duty.getByTestId('bc-confirm-priority').textContent()).toBe('预警');
    expect(await duty.getByTestId('bc-confirm-incident').textContent()).toBe('INC-TEST-0001');
    await duty.getByTestId('bc-confirm-back').click();
    await duty.context().close();
  });

  it('a viewer sees jobs and live progress, and no form, no send, no cancel', async () => {
    const viewer = await harnessPage('viewer');
    expect(await viewer.getByTestId('bc-tab-compose').count()).toBe(0);
    expect(await viewer.getByTestId('bc-compose').count()).toBe(0);
    expect(await viewer.getByTestId('bc-preview-send').count()).toBe(0);
    expect(await viewer.getByTestId('bc-tab-jobs').getAttribute('aria-selected')).toBe('true');
    // The job sent above is in the recent list (from the /ws snapshot).
    const row = viewer.locator(`[data-testid="bc-recent-jobs"] [data-testid="bc-job"][data-job="${sentJobId}"]`);
    await row.waitFor();
    expect(await row.getByTestId('bc-job-row-progress').textContent()).toBe('4/4 完成');
    await row.click();
    await viewer.waitForSelector('[data-testid="bc-job-progress"][data-done="4"][data-total="4"]');
    expect(await viewer.locator('[data-testid="bc-delivery"][data-state="done"]').count()).toBe(4);
    expect(await viewer.getByTestId('bc-cancel').count()).toBe(0);
    expect(await viewer.getByTestId('bc-retry').count()).toBe(0);
    // History from the API: both jobs of this run, newest first.
    await viewer.getByTestId('bc-tab-history').click();
    await viewer.waitForSelector('[data-testid="bc-history-list"][data-loading="false"] [data-testid="bc-job"]');
    const listed = await viewer.locator('[data-testid="bc-history-list"] [data-testid="bc-job"]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.status));
    expect(listed).toEqual(['cancelled', 'finished']);
    await viewer.getByTestId('bc-history-status').selectOption('finished');
    await expect.poll(() => viewer.locator('[data-testid="bc-history-list"] [data-testid="bc-job"]').count()).toBe(1);
    await viewer.context().close();
  });
});
