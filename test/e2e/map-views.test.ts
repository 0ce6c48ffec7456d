/**
 * The command-center views in a real Chromium against a real gateway (and a real InfluxDB for the
 * charts): the map's filters and search, device names shown as text, the one-screen overview
 * (一屏统揽) with its counts live, and a device's time-series chart. Device state is driven the way
 * devices drive it, by MQTT `state` and `telemetry` messages. Screenshots of the map and the
 * overview are written to docs/img/ (linked from the README).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import { topics } from '../../protocol/topics.js';
import { startInfluxd, type InfluxServer } from '../../scripts/lib/influxd.js';
import { launchBrowser, signIn } from '../helpers/browser.js';
import { CONFIG_DIR, REPO, startTestGateway, testPassword, TEST_USERS, waitFor, type TestGateway } from '../helpers/gateway.js';

const DOCS_IMG = join(REPO, 'docs/img');
const XSS_NAME = '<img src=x onerror="window.__gsXss=1">消防水池';

// The shipped site, plus: one tank with its own thresholds (low 50 %, critical 25 %) and one
// whose name is an HTML injection attempt.
const shipped = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
const ledger: LedgerDevice[] = shipped.map((d) =>
  d.id === 'tank-001' && d.kind === 'water_tank' ? { ...d, settings: { ...d.settings, lowPercent: 50, criticalPercent: 25 } } : d,
);
const tank2 = shipped.find((d) => d.id === 'tank-002')!;
ledger.push({ ...(tank2 as Extract<LedgerDevice, { kind: 'water_tank' }>), id: 'tank-xss', name: XSS_NAME });
const count = (pred: (d: LedgerDevice) => boolean) => ledger.filter(pred).length;

let influx: InfluxServer;
let gateway: TestGateway;
let browser: Browser;
let page: Page;
let client: MqttClient;
const seqs = new Map<string, number>();

async function publish(topic: string, deviceId: string, body: Record<string, unknown>): Promise<void> {
  const seq = (seqs.get(deviceId) ?? 0) + 1;
  seqs.set(deviceId, seq);
  await client.publishAsync(topic, JSON.stringify({ ts: Date.now(), seq, ...body }), { qos: 1 });
}
const setStatus = (id: string, status: 'online' | 'offline') => publish(topics.state(id), id, { status });
function tankLevel(id: string, levelPercent: number, ts = Date.now()): Promise<void> {
  const seq = (seqs.get(id) ?? 0) + 1;
  seqs.set(id, seq);
  const values = { levelPercent, levelMm: Math.round(levelPercent * 25), volumeM3: Number((levelPercent / 2).toFixed(2)) };
  return client.publishAsync(topics.telemetry(id), JSON.stringify({ ts, seq, values }), { qos: 1 }).then(() => undefined);
}

type Hooks = {
  deviceCount(): number;
  selectDevice(id: string): void;
  mapStats(): { visible: number; drawn: number; devices: number; renderer: string } | null;
  devicePoint(id: string): { x: number; y: number } | null;
  deviceAt(x: number, y: number): string | null;
  mapView(): { lat: number; lng: number; zoom: number } | null;
  plugOverview(values: Record<string, unknown>): void;
  fitSite(): void;
};
const gs = <T>(fn: (hooks: Hooks) => T) =>
  page.evaluate(`(${fn.toString()})(window.__gs)`) as Promise<Awaited<T>>;
const visible = () => gs((h) => h.mapStats()?.visible ?? -1);

beforeAll(async () => {
  influx = await startInfluxd();
  gateway = await startTestGateway({
    influxUrl: influx.url,
    database: 'gs_e2e_views',
    ledger,
    // Every state message is shown at once: the test flips statuses faster than a real link flaps.
    gateway: { availability: { flapDampingSec: 0 } },
  });
  client = mqtt.connect(gateway.mqttUrl, { clientId: 'e2e-views', reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  // A known starting point: everything online, tanks at a comfortable level.
  for (const d of ledger) await setStatus(d.id, 'online');
  for (const d of ledger.filter((t) => t.kind === 'water_tank')) await tankLevel(d.id, 80);
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await signIn(page, TEST_USERS.viewer.username, testPassword('viewer'), `${gateway.httpUrl}/`);
  await page.waitForSelector('[data-testid="conn-state"][data-state="live"]');
  await waitFor(() => gs((h) => h.mapStats()?.drawn === h.deviceCount() && h.deviceCount() > 0), { what: 'the map drawn', timeoutMs: 20_000 });
  mkdirSync(DOCS_IMG, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await client?.endAsync();
  await gateway?.close();
  await influx?.stop();
});

describe('map filters and search', () => {
  it('filters by kind, status and grid; the hit test and the count follow the filter', async () => {
    expect(await gs((h) => h.deviceCount())).toBe(ledger.length);
    expect(await visible()).toBe(ledger.length);
    const shown = page.getByTestId('filter-shown');
    expect(await shown.getAttribute('data-visible')).toBe(String(ledger.length));

    // Kind: cameras off.
    const camera = ledger.find((d) => d.kind === 'camera')!;
    await page.getByTestId('filter-kind-camera').click();
    await expect.poll(visible).toBe(count((d) => d.kind !== 'camera'));
    expect(await shown.getAttribute('data-visible')).toBe(String(count((d) => d.kind !== 'camera')));
    expect(await page.getByTestId('filter-kind-camera').getAttribute('aria-pressed')).toBe('false');
    // A hidden camera cannot be clicked: the hit test skips it.
    const hidden = await page.evaluate((id) => {
      const h = (window as unknown as { __gs: Hooks }).__gs;
      const p = h.devicePoint(id)!;
      return h.deviceAt(p.x, p.y);
    }, camera.id);
    expect(hidden).not.toBe(camera.id);
    await page.getByTestId('filter-kind-camera').click();
    await expect.poll(visible).toBe(ledger.length);

    // Status: only what is offline, and it follows live changes.
    const goesOffline = ledger.filter((d) => d.kind === 'voice_pole').slice(0, 2);
    await page.getByTestId('filter-status-online').click();
    await page.getByTestId('filter-status-unknown').click();
    await expect.poll(visible).toBe(0);
    for (const d of goesOffline) await setStatus(d.id, 'offline');
    await expect.poll(visible, { timeout: 10_000 }).toBe(goesOffline.length);
    await setStatus(goesOffline[0]!.id, 'online');
    await expect.poll(visible, { timeout: 10_000 }).toBe(1);
    await page.getByTestId('filter-reset').click();
    await expect.poll(visible).toBe(ledger.length);

    // Grid: one grid's devices.
    const grid = camera.grid;
    await page.getByTestId('filter-grid').selectOption(grid);
    await expect.poll(visible).toBe(count((d) => d.grid === grid));
    await page.getByTestId('filter-reset').click();
    await expect.poll(visible).toBe(ledger.length);
    await setStatus(goesOffline[1]!.id, 'online');
  });

  it('searches by id or name; a result flies to the device and opens its card', async () => {
    const search = page.getByTestId('device-search');
    const target = ledger.find((d) => d.kind === 'voice_pole' && d.id === 'pole-042')!;
    await search.fill(target.name);
    const results = page.getByTestId('search-results');
    await expect.poll(() => results.locator('[data-device-id]').count()).toBeGreaterThan(0);
    expect(await results.locator('[data-device-id]').first().getAttribute('data-device-id')).toBe(target.id);
    await results.locator(`[data-device-id="${target.id}"]`).click();
    await expect.poll(() => page.getByTestId('device-card').getAttribute('data-device-id')).toBe(target.id);
    expect(await page.locator('.card-name').textContent()).toBe(target.name);
    // The map flew there, at street level.
    await expect
      .poll(async () => {
        const v = await gs((h) => h.mapView());
        return v !== null && v.zoom >= 16 && Math.abs(v.lat - target.lat) < 0.002 && Math.abs(v.lng - target.lon) < 0.002;
      }, { timeout: 10_000 })
      .toBe(true);

    // By id, with the keyboard: the list is ordered exact id first.
    await search.fill('cam-0012');
    await expect.poll(() => results.locator('[data-device-id]').first().getAttribute('data-device-id')).toBe('cam-0012');
    expect(await page.getByTestId('search-note').textContent()).toMatch(/\d/);
    await search.press('Enter');
    await expect.poll(() => page.getByTestId('device-card').getAttribute('data-device-id')).toBe('cam-0012');

    // Nothing found says so.
    await search.fill('没有这个设备');
    await expect.poll(() => page.getByTestId('search-note').textContent()).toBe('没有匹配的设备');
    await search.fill('');
  });

  it('a click on a marker opens its card (through the grid hit test)', async () => {
    const tank = ledger.find((d) => d.id === 'tank-003')!;
    // Search flies there: the tank is then mid-map, clear of the tools over the map's corner.
    await page.getByTestId('device-search').fill('tank-003');
    await page.getByTestId('device-search').press('Enter');
    await expect.poll(() => page.getByTestId('device-card').getAttribute('data-device-id')).toBe(tank.id);
    await page.keyboard.press('Escape');
    await waitFor(async () => (await page.getByTestId('device-card').count()) === 0, { what: 'the card closed' });
    await page.waitForTimeout(1500); // the flight ends and the picture is redrawn
    const box = (await page.getByTestId('map').boundingBox())!;
    const p = (await page.evaluate((id) => (window as unknown as { __gs: Hooks }).__gs.devicePoint(id), tank.id))!;
    await page.mouse.move(box.x + p.x, box.y + p.y);
    await expect.poll(() => page.locator('[data-testid="device-tip"] strong').textContent(), { timeout: 5000 }).toBe(tank.name);
    await page.mouse.click(box.x + p.x, box.y + p.y);
    await expect.poll(() => page.getByTestId('device-card').getAttribute('data-device-id')).toBe(tank.id);
    await page.keyboard.press('Escape');
  });
});

describe('device names are text, never HTML', () => {
  it('an injected name shows literally in search, card, tooltip and low-tank list, and runs nothing', async () => {
    await tankLevel('tank-xss', 8);
    await page.getByTestId('device-search').fill('onerror');
    const result = page.locator('[data-testid="search-results"] [data-device-id="tank-xss"]');
    await result.waitFor();
    expect(await result.locator('.result-name').textContent()).toBe(XSS_NAME);
    await result.click();
    await expect.poll(() => page.locator('.card-name').textContent()).toBe(XSS_NAME);
    await expect.poll(() => page.locator('[data-testid="low-tanks"] [data-device-id="tank-xss"] .low-tank-name').textContent(), { timeout: 10_000 }).toBe(XSS_NAME);
    // Hover it on the map (the search flew there).
    await page.waitForTimeout(1500);
    const box = (await page.getByTestId('map').boundingBox())!;
    const p = (await page.evaluate(() => (window as unknown as { __gs: Hooks }).__gs.devicePoint('tank-xss')))!;
    await page.mouse.move(box.x + p.x, box.y + p.y);
    await expect.poll(() => page.locator('[data-testid="device-tip"] strong').textContent(), { timeout: 5000 }).toBe(XSS_NAME);
    // Anywhere on the page (the incident this low tank raises shows its name too): say where.
    const injected = await page.evaluate(() =>
      [...document.querySelectorAll('img[src="x"]')].map((img) => `${img.parentElement?.tagName}.${img.parentElement?.className}`),
    );
    expect(injected, `the name was parsed as HTML inside: ${injected.join(', ')}`).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { __gsXss?: number }).__gsXss)).toBeUndefined();
    await page.keyboard.press('Escape');
    await page.getByTestId('device-search').fill('');
  });

});

describe('one-screen overview (一屏统揽)', () => {
  const tile = (id: string) => page.getByTestId(id);
  const attr = async (id: string, name: string) => Number(await tile(id).getAttribute(`data-${name}`));

  it('shows the gateway’s counts, tanks below their own thresholds, open incidents, and a dash where a source has nothing', async () => {
    // tank-001's own low threshold is 50 %: 40 % is low for it (30 % would be the default).
    await tankLevel('tank-001', 40);
    await tankLevel('tank-002', 10);
    await page.getByTestId('nav-overview').click();
    await page.getByTestId('overview-view').waitFor();
    const byKind = async () =>
      ((await (await gateway.api('/health')).json()) as { devices: { byKind: Record<string, { online: number; offline: number; unknown: number }> } }).devices.byKind;
    await expect
      .poll(async () => {
        const api = await byKind();
        for (const kind of ['camera', 'voice_pole', 'water_tank']) {
          const c = api[kind]!;
          if ((await attr(`ov-kind-${kind}`, 'online')) !== c.online || (await attr(`ov-kind-${kind}`, 'offline')) !== c.offline) return false;
        }
        return true;
      }, { timeout: 10_000 })
      .toBe(true);
    expect(await attr('ov-all', 'total')).toBe(ledger.length);
    // tank-xss (8 %) and tank-002 (10 %) are critical; tank-001 (40 % < its 50 %) is low.
    await expect.poll(() => attr('ov-tanks', 'critical'), { timeout: 10_000 }).toBe(2);
    expect(await attr('ov-tanks', 'low')).toBe(1);
    // The thresholds come from the ledger through /api/devices.
    const api = (await (await gateway.api('/api/devices?kind=water_tank')).json()) as { tankThresholds: Record<string, { lowPercent: number }> };
    expect(api.tankThresholds['tank-001']?.lowPercent).toBe(50);
    // The incident view plugs its open incidents in (OverviewSources): the tile shows the gateway's.
    const openIncidents = async () => ((await (await gateway.api('/api/incidents?status=open', { as: 'viewer' })).json()) as { total: number }).total;
    await expect
      .poll(async () => (await tile('ov-incidents').getAttribute('data-state')) === 'ready' && Number(await tile('ov-incidents').getAttribute('data-open')) === (await openIncidents()), {
        timeout: 10_000,
      })
      .toBe(true);
    // No fire danger rating exists in this gateway (no weather readings, none set): a dash, not a number.
    expect(await tile('ov-fire-danger').getAttribute('data-state')).toBe('pending');
    expect(await tile('ov-fire-danger').locator('.ov-big').textContent()).toBe('—');
  });

  it('keeps up with a status change, and shows what a plugged-in source provides', async () => {
    const before = await attr('ov-kind-camera', 'offline');
    await setStatus('cam-0100', 'offline');
    await expect.poll(() => attr('ov-kind-camera', 'offline'), { timeout: 10_000 }).toBe(before + 1);
    await setStatus('cam-0100', 'online');
    await expect.poll(() => attr('ov-kind-camera', 'offline'), { timeout: 10_000 }).toBe(before);

    await gs((h) => h.plugOverview({ incidents: { new: 2, acknowledged: 1 }, fireDanger: { level: 4, source: 'manual' }, broadcasts: { jobs: 1, polesPlaying: 12 } }));
    await expect.poll(() => tile('ov-incidents').getAttribute('data-open')).toBe('3');
    expect(await tile('ov-fire-danger').getAttribute('data-level')).toBe('4');
    expect(await tile('ov-fire-danger').locator('.ov-big').textContent()).toBe('四级 高');
    expect(await tile('ov-broadcasts').getAttribute('data-jobs')).toBe('1');
  });

  it('has a wall-screen mode (?wall=1): the overview alone, full window', async () => {
    const wall = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
    await signIn(wall, TEST_USERS.viewer.username, testPassword('viewer'), `${gateway.httpUrl}/?wall=1`);
    await wall.getByTestId('overview-view').waitFor();
    expect(await wall.evaluate(() => document.body.dataset.wall)).toBe('1');
    expect(await wall.locator('.topbar').isHidden()).toBe(true);
    expect(await wall.getByTestId('ov-exit-wall').isVisible()).toBe(true);
    await expect.poll(async () => Number(await wall.getByTestId('ov-all').getAttribute('data-total'))).toBe(ledger.length);
    await wall.getByTestId('ov-conn').and(wall.locator('[data-state="live"]')).waitFor();
    await wall.screenshot({ path: join(DOCS_IMG, 'overview.png') });
    await wall.close();
  });
});

describe('device chart (uPlot, from InfluxDB)', () => {
  it('draws the stored points with range buttons, units and the tank’s thresholds', async () => {
    const id = 'tank-004';
    // 30 readings over the last hour, 2 minutes apart, stored through the gateway into InfluxDB.
    const now = Date.now();
    for (let k = 29; k >= 0; k--) await tankLevel(id, 60 - k, now - k * 120_000);
    await waitFor(
      async () => {
        const res = await influx.query('gs_e2e_views', `SELECT COUNT("levelPercent") FROM "water_tank" WHERE "device" = '${id}' AND time > now() - 2h`);
        return Number(res.results[0]?.series?.[0]?.values[0]?.[1] ?? 0) >= 30;
      },
      { what: 'the readings in InfluxDB', timeoutMs: 15_000 },
    );
    await page.getByTestId('nav-map').click();
    await gs((h) => h.selectDevice('tank-004'));
    const chart = page.getByTestId('device-chart');
    await chart.waitFor();
    expect(await chart.getAttribute('data-range')).toBe('24h');
    await expect.poll(() => chart.getAttribute('data-state'), { timeout: 10_000 }).toBe('ready');
    // 24 h at ~340 points: averaged into 255 s windows, so fewer than 30 but more than a few.
    expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(10);
    expect(await chart.getAttribute('data-thresholds')).toBe('30,15');
    expect(await chart.locator('canvas').count()).toBeGreaterThan(0);
    expect(await chart.locator('.u-legend').textContent()).toContain('%');

    await chart.locator('button[data-range="7d"]').click();
    await expect.poll(() => chart.getAttribute('data-range')).toBe('7d');
    await expect.poll(() => chart.getAttribute('data-state')).toBe('ready');
    expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(1);

    // The last hour: every reading its own point. 31: the 30 above and beforeAll's 80 %.
    await chart.locator('button[data-range="1h"]').click();
    await expect.poll(() => chart.getAttribute('data-range')).toBe('1h');
    await expect.poll(() => chart.getAttribute('data-state')).toBe('ready');
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBe(31);

    await chart.locator('button[data-field="volumeM3"]').click();
    await expect.poll(() => chart.getAttribute('data-field')).toBe('volumeM3');
    await expect.poll(() => chart.getAttribute('data-state')).toBe('ready');
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBe(31);
    expect(await chart.getAttribute('data-thresholds')).toBeNull();
    expect(await chart.locator('.u-legend').textContent()).toContain('m³');

    // The README's map screenshot: the whole site, this tank's card and level chart.
    await chart.locator('button[data-field="levelPercent"]').click();
    await expect.poll(() => chart.getAttribute('data-state')).toBe('ready');
    await gs((h) => h.fitSite());
    await page.mouse.move(5, 5);
    await page.waitForTimeout(1000);
    await page.screenshot({ path: join(DOCS_IMG, 'map.png') });

    // A tank with its own thresholds draws those.
    await gs((h) => h.selectDevice('tank-001'));
    await expect.poll(() => page.getByTestId('device-chart').getAttribute('data-thresholds')).toBe('50,25');
  });
});
