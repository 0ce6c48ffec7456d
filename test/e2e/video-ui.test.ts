/**
 * The dashboard's video UI in Debian's Chromium, against a real gateway relaying simulated cameras
 * (real RTSP from ffmpeg encoders, real ONVIF) with a real edge agent for PTZ and alarms. The
 * player, the snapshot strip and the wall are mounted by a test-only harness page
 * (test/e2e/harness/video-harness.ts) bundled here with esbuild and served by the gateway itself,
 * so the session cookie is same-origin, as in the app.
 *
 *  - a viewer's player reaches `live` and its media clock advances; no PTZ controls for a viewer;
 *    the camera's stream dies → `reconnecting` → live again; the page's own socket drops → the
 *    player re-opens it; stop() closes the socket and detaches the media;
 *  - a duty officer lists presets, goes to one (the simulated camera turns there), nudges, and
 *    sees a refusal translated;
 *  - the wall with four cameras (three set, one picked by name) streams four: four relay ffmpegs,
 *    four viewers in /metrics; one more camera is refused (the cap) and says so; hide() stops all;
 *  - a fire on a camera stores a snapshot, which the strip shows and enlarges.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as esbuild from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDevice } from '../../config/ledger.js';
import { buildAgent, type EdgeAgent } from '../../edge-agent/src/agent.js';
import { buildCollectors } from '../../edge-agent/src/collectors/index.js';
import { createLogger } from '../../gateway/src/log.js';
import type { Incident } from '../../protocol/incidents.js';
import type { IncidentSnapshotsResponse } from '../../protocol/video.js';
import { ARTIFACTS, launchBrowser } from '../helpers/browser.js';
import { REPO, startTestGateway, testAgentConfig, testLogLevel, testPassword, TEST_USERS, waitFor, type TestGateway, type TestRole } from '../helpers/gateway.js';
import { relayProcesses, startVideoFleet, until, type CameraDevice, type VideoFleet } from '../helpers/video-ws.js';
import type { VideoHarness } from './harness/video-harness.js';

const SCREENSHOT = join(REPO, 'docs/img/video-wall.png');
const LINGER_MS = 1000;

let fleet: VideoFleet;
let gateway: TestGateway;
let agent: EdgeAgent;
let browser: Browser;
let dir: string;
let cams: CameraDevice[];
/** A camera in the ledger with a stream URL nobody serves: only ever refused by the cap here. */
let extra: CameraDevice;

async function buildHarness(out: string): Promise<void> {
  mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [join(import.meta.dirname, 'harness/video-harness.ts')],
    outfile: join(out, 'harness.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'silent',
  });
  copyFileSync(join(REPO, 'dashboard/src/styles.css'), join(out, 'styles.css'));
  writeFileSync(
    join(out, 'index.html'),
    `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>video harness</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="styles.css"><link rel="stylesheet" href="harness.css">
<style>#stage { display: flex; gap: 16px; padding: 12px; } #player { width: 560px; flex: none; } #strip { flex: 1; min-width: 0; } #wall { flex: 1; min-height: 0; }</style>
<script type="module" src="harness.js"></script></head>
<body data-auth="signed-in"><div id="stage"><div id="player"></div><div id="strip"></div></div><div id="wall" hidden></div></body></html>`,
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-video-ui-'));
  const page = join(dir, 'page');
  const [videoFleet] = await Promise.all([startVideoFleet(4), buildHarness(page)]);
  fleet = videoFleet;
  const all = fleet.ledger.filter((d): d is CameraDevice => d.kind === 'camera');
  cams = fleet.ids.map((id) => all.find((d) => d.id === id)!);
  extra = all.find((d) => !fleet.ids.includes(d.id))!;
  const ledger: LedgerDevice[] = fleet.ledger.map((d) => (d.id === extra.id ? { ...extra, settings: { ...extra.settings, rtspUrl: 'rtsp://127.0.0.1:9/none' } } : d));
  gateway = await startTestGateway({
    ledger,
    gateway: {
      availability: { flapDampingSec: 0 },
      video: {
        maxStreams: 4,
        lingerMs: LINGER_MS,
        retryInitialMs: 200,
        retryMaxMs: 1000,
        prewarmOnAlarmSec: 0,
        snapshots: { minIntervalSec: 2 },
        ptz: { ackTimeoutMs: 3000 },
      },
    },
    options: { dashboardDir: page },
  });
  const config = testAgentConfig({
    id: 'agent-chashan',
    brokerUrl: gateway.mqttUrl,
    outboxFile: join(dir, 'outbox.sqlite'),
    cameras: { ptzStatusIntervalMs: 1000, streamCheckIntervalMs: 600_000, maxBackoffMs: 2000 },
  });
  const log = createLogger(testLogLevel());
  const { collectors, devices } = buildCollectors(config, fleet.ledger, log, {
    tankEndpoints: new Map(),
    poleEndpoints: new Map(),
    cameraEndpoints: new Map(cams.map((c) => [c.id, c.settings.onvifUrl!])),
  });
  agent = buildAgent({ config, log, collectors, deviceCount: devices.length });
  [browser] = await Promise.all([launchBrowser(), agent.start()]);
  await waitFor(() => agent.stats().connected && fleet.ids.every((id) => gateway.registry.view(id)?.status === 'online'), { what: 'cameras online', timeoutMs: 20_000 });
  mkdirSync(ARTIFACTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
  await gateway?.close();
  await fleet?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // every ffmpeg the relay started went with the gateway
  expect(relayProcesses()).toEqual([]);
});

async function harnessPage(role: TestRole, viewport = { width: 1280, height: 720 }): Promise<Page> {
  const page = await (await browser.newContext({ viewport, locale: 'zh-CN' })).newPage();
  page.on('pageerror', (err) => console.error(`page error (${role}):`, err));
  await page.goto(`${gateway.httpUrl}/`);
  await page.evaluate(([u, p]) => window.startHarness(u, p), [TEST_USERS[role].username, testPassword(role)] as const);
  await page.waitForFunction(() => window.__vh?.ready === true);
  return page;
}

const vh = <T>(page: Page, fn: (h: VideoHarness) => T) => page.evaluate(`(${fn.toString()})(window.__vh)`) as Promise<Awaited<T>>;
const stageState = (page: Page) => page.locator('#player [data-testid="video-player"]').getAttribute('data-state');
const clock = async (page: Page) => (await vh(page, (h) => h.playback())).currentTime;

/** Waits until the stage player's media clock moves by `seconds`. */
async function advances(page: Page, seconds: number, timeoutMs = 10_000): Promise<void> {
  const t0 = await clock(page);
  await expect.poll(() => clock(page), { timeout: timeoutMs, interval: 100 }).toBeGreaterThan(t0 + seconds);
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

const viewersOf = (cameraId: string) => gateway.video.relay.streams().find((s) => s.cameraId === cameraId)?.viewers ?? 0;

describe('video UI in Chromium', () => {
  it('a viewer plays a camera: live, the clock advances, no PTZ; the stream dies and recovers; a dropped socket is re-opened; stop() lets go', async () => {
    const cam = cams[0]!.id;
    const page = await harnessPage('viewer');
    await page.evaluate((id) => window.__vh.openPlayer(id, { ptz: true }), cam);
    await page.waitForSelector('#player [data-testid="video-player"][data-state="live"]', { timeout: 15_000 });
    await advances(page, 0.8);
    expect(await page.locator('#player [data-testid="video-overlay"]').isHidden()).toBe(true);
    expect(await page.locator('#player [data-testid="video-badge"]').textContent()).toBe('直播');
    // ptz was asked for, but a viewer may not turn cameras
    expect(await page.getByTestId('ptz-controls').count()).toBe(0);
    expect((await vh(page, (h) => h.states))[cam]!.slice(0, 2)).toEqual(['connecting', 'live']);
    expect(viewersOf(cam)).toBe(1);

    // The camera's stream dies and comes back (the gateway re-opens it): reconnecting, then live again.
    await fleet.rtsp.stopStream(cam, { refuseMs: 800 });
    await expect.poll(async () => (await vh(page, (h) => h.states))[cam]!.includes('reconnecting'), { timeout: 15_000 }).toBe(true);
    expect(await page.locator('#player [data-testid="video-state"]').textContent()).toMatch(/重连|离线/);
    await expect.poll(async () => (await vh(page, (h) => h.states))[cam]!.at(-1), { timeout: 20_000 }).toBe('live');
    await advances(page, 0.8);

    // The page's own socket drops (not by the player): it says so and re-opens it with back-off.
    const before = await vh(page, (h) => h.socketsOpened);
    const seenBefore = (await vh(page, (h) => h.states))[cam]!.length;
    expect(await vh(page, (h) => h.dropSockets())).toBe(1);
    await expect.poll(async () => (await vh(page, (h) => h.states))[cam]!.slice(seenBefore), { timeout: 10_000 }).toEqual(['reconnecting', 'live']);
    expect(await vh(page, (h) => h.socketsOpened)).toBe(before + 1);
    await advances(page, 0.8);
    await page.screenshot({ path: join(ARTIFACTS, 'video-ui-player.png') });

    // stop(): the socket closes, the media is detached, the gateway sees no viewer.
    await vh(page, (h) => h.stopPlayer());
    expect(await stageState(page)).toBe('idle');
    expect(await vh(page, (h) => h.openSockets())).toBe(0);
    expect((await vh(page, (h) => h.playback())).hasSrc).toBe(false);
    await until(() => viewersOf(cam) === 0, 'the gateway to see the viewer leave', 5000);
    await page.context().close();
  });

  it('a duty officer lists presets, goes to one (the camera turns there), nudges, and sees a refusal in words', async () => {
    const cam = cams[1]!;
    const page = await harnessPage('duty_officer');
    await page.evaluate((id) => window.__vh.openPlayer(id, { ptz: true }), cam.id);
    await page.waitForSelector('[data-testid="ptz-controls"][data-presets="4"]', { timeout: 10_000 });
    const options = await page.locator('[data-testid="ptz-presets"] option').allTextContents();
    expect(options.map((o) => o.replace(/（.*$/, ''))).toEqual(['北', '东', '南', '西']);
    const east = await page.locator('[data-testid="ptz-presets"] option', { hasText: '东' }).getAttribute('value');
    await page.getByTestId('ptz-presets').selectOption(east!);
    await page.getByTestId('ptz-go').click();
    await page.waitForSelector('[data-testid="ptz-status"][data-result="ok"]', { timeout: 10_000 });
    expect(await page.getByTestId('ptz-status').textContent()).toBe('摄像头已执行：转到预置位 东');
    // The simulated camera's presets are the compass points: 东 is a bearing of 90°.
    await expect.poll(() => fleet.cameras.camera(cam.id).panBearingDeg, { timeout: 10_000 }).toBeCloseTo(90, 0);

    await page.getByTestId('ptz-right').click();
    await expect.poll(() => page.getByTestId('ptz-status').textContent()).toBe('摄像头已执行：转动 500 毫秒后自动停止');
    await page.waitForSelector('#player [data-testid="video-player"][data-state="live"]', { timeout: 15_000 });

    // A preset the camera does not have: the agent's refusal (409), translated, with its code.
    await page.getByTestId('ptz-presets').evaluate((s: HTMLSelectElement) => {
      s.append(new Option('nowhere', 'nowhere'));
      s.value = 'nowhere';
    });
    await page.getByTestId('ptz-go').click();
    await page.waitForSelector('[data-testid="ptz-status"][data-result="error"]', { timeout: 10_000 });
    const refused = (await page.getByTestId('ptz-status').textContent())!;
    expect(refused).toContain('摄像头拒绝了指令');
    expect(refused).toContain('no preset "nowhere"');
    expect(refused).toContain('PTZ_REJECTED');
    await vh(page, (h) => h.stopPlayer());
    await page.context().close();
  });

  it('the wall streams four cameras (four relay ffmpegs, four viewers), refuses a fifth with the cap’s message, and hide() stops them', async () => {
    const page = await harnessPage('viewer', { width: 1280, height: 760 });
    await vh(page, (h) => h.only('wall'));
    const [a, b, c, d] = cams;
    await page.evaluate((ids) => window.__vh.wall.setCameras(ids), [a!.id, b!.id, c!.id]);
    await vh(page, (h) => h.wall.show());
    // The fourth from the picker, found by its name.
    await page.getByTestId('vw-pick').click();
    await page.getByTestId('vw-search').fill(d!.name);
    const option = page.locator(`[data-testid="vw-option"][data-camera="${d!.id}"] input`);
    await option.check();
    await page.getByTestId('vw-done').click();
    expect(await page.getByTestId('vw-grid').getAttribute('data-layout')).toBe('4');
    expect(await page.getByTestId('vw-tile').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.camera))).toEqual(fleet.ids);

    await expect.poll(() => page.locator('[data-testid="vw-tile"] [data-testid="video-player"][data-state="live"]').count(), { timeout: 20_000 }).toBe(4);
    const t0 = await vh(page, (h) => h.wallPlayback());
    await expect
      .poll(async () => {
        const t1 = await vh(page, (h) => h.wallPlayback());
        return fleet.ids.filter((id) => t1[id]! > t0[id]! + 0.5).length;
      }, { timeout: 10_000 })
      .toBe(4);
    expect(relayProcesses().map((p) => p.cameraId).sort()).toEqual([...fleet.ids].sort());
    expect(await metric('gs_video_streams', 'format="fmp4",state="live"')).toBe(4);
    expect(await metric('gs_video_viewers', 'format="fmp4"')).toBe(4);
    expect(JSON.parse((await page.evaluate(() => localStorage.getItem('greenshield.videoWall')))!)).toEqual({ layout: 4, ids: fleet.ids });
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.mouse.move(1270, 8); // no tile hovered (its remove button shows on hover)
    await page.screenshot({ path: SCREENSHOT });
    copyFileSync(SCREENSHOT, join(ARTIFACTS, 'video-wall.png'));
    // Switching the language rewrites the wall and the players in place (nothing reconnects).
    const opened = await vh(page, (h) => h.socketsOpened);
    await vh(page, (h) => h.setLang('en'));
    expect(await page.getByTestId('vw-layout-4').textContent()).toBe('4 views');
    expect(await page.locator('[data-testid="vw-tile"] [data-testid="video-badge"]').allTextContents()).toEqual(['Live', 'Live', 'Live', 'Live']);
    await vh(page, (h) => h.setLang('zh-CN'));
    expect(await vh(page, (h) => h.socketsOpened)).toBe(opened);

    // One more camera while four are watched: the cap (maxStreams 4) refuses it, and the player says so.
    await vh(page, (h) => h.only('stage'));
    await page.evaluate((id) => window.__vh.openPlayer(id), extra.id);
    await page.waitForSelector('#player [data-testid="video-player"][data-state="limit"]', { timeout: 10_000 });
    expect(await page.locator('#player [data-testid="video-state"]').textContent()).toBe('视频路数已达上限');
    expect(await page.locator('#player [data-testid="video-retry"]').isVisible()).toBe(true);
    await page.waitForTimeout(800); // a refusal is not retried on its own (a retry would come after 0.4–0.6 s)
    expect((await vh(page, (h) => h.states))[extra.id]).toEqual(['connecting', 'limit']);
    await vh(page, (h) => h.stopPlayer());

    await vh(page, (h) => h.wall.hide());
    expect(await page.getByTestId('vw-tile').count()).toBe(0);
    expect(await vh(page, (h) => h.openSockets())).toBe(0);
    await expect.poll(() => metric('gs_video_viewers', 'format="fmp4"'), { timeout: 5000 }).toBe(0);
    await until(() => relayProcesses().length === 0, 'the relay ffmpegs to stop after the linger', 10_000);
    await page.context().close();
  });

  it('a fire on a camera stores a snapshot: the strip shows it with the camera, time and bearing, and enlarges it', async () => {
    const cam = cams[2]!;
    fleet.cameras.camera(cam.id).raiseFire({ kind: 'fire', bearingDeg: 123.4, confidence: 0.9 });
    const incident = await waitFor(
      async () => ((await (await gateway.api('/api/incidents?status=open&category=fire')).json()) as { incidents: Incident[] }).incidents.find((i) => i.devices.includes(cam.id)),
      { what: 'the incident', timeoutMs: 15_000 },
    );
    await waitFor(async () => ((await (await gateway.api(`/api/incidents/${incident.id}/snapshots`)).json()) as IncidentSnapshotsResponse).snapshots[0], { what: 'the snapshot', timeoutMs: 15_000 });
    fleet.cameras.camera(cam.id).clearFire();

    const page = await harnessPage('viewer');
    await page.evaluate((id) => window.__vh.strip(id), incident.id);
    const strip = page.getByTestId('snapshot-strip');
    expect(Number(await strip.getAttribute('data-count'))).toBeGreaterThanOrEqual(1);
    const thumb = page.locator(`[data-testid="snapshot"][data-camera="${cam.id}"]`).first();
    const caption = (await thumb.textContent())!;
    expect(caption).toContain(cam.name);
    expect(caption).toContain('方位 123.4°');
    await expect.poll(() => thumb.locator('img').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth), { timeout: 5000 }).toBeGreaterThan(100);
    await thumb.click();
    const dialog = page.getByTestId('snapshot-dialog');
    expect(await dialog.evaluate((d: HTMLDialogElement) => d.open)).toBe(true);
    await expect.poll(() => dialog.locator('img').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth), { timeout: 5000 }).toBeGreaterThan(100);
    await page.screenshot({ path: join(ARTIFACTS, 'video-ui-snapshot.png') });
    await page.getByTestId('snapshot-close').click();
    expect(await dialog.evaluate((d: HTMLDialogElement) => d.open)).toBe(false);
    await page.context().close();
  });
});
