/**
 * Live video in a real browser (Debian's Chromium): a minimal MSE player page served by the
 * gateway (test/helpers/video-player.ts) signs in, opens a simulated camera and plays it. The
 * browser decodes frames (requestVideoFrameCallback), the playback time advances, and the
 * camera's drawn clock changes between two grabs of the picture; when the camera's stream dies
 * the player is told `reconnecting` and plays again when it returns; without a session the
 * socket is refused.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, launchBrowser } from '../helpers/browser.js';
import { startTestGateway, testPassword, TEST_USERS, type TestGateway } from '../helpers/gateway.js';
import { writePlayerDir } from '../helpers/video-player.js';
import { relayProcesses, startVideoFleet, until, type VideoFleet } from '../helpers/video-ws.js';

interface Seen {
  states: string[];
  codecs: Array<{ codec: string; epoch: number }>;
  errors: Array<{ code: string }>;
  frames: number;
  firstFrameMs: number | null;
  mediaTimes: number[];
  closed: { code: number; reason: string } | null;
}

let fleet: VideoFleet;
let gateway: TestGateway;
let browser: Browser;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gs-video-e2e-'));
  fleet = await startVideoFleet(1);
  gateway = await startTestGateway({
    ledger: fleet.ledger,
    gateway: { video: { lingerMs: 500, retryInitialMs: 200, retryMaxMs: 1000 } },
    options: { dashboardDir: writePlayerDir(join(dir, 'page')) },
  });
  browser = await launchBrowser();
  mkdirSync(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
  await fleet?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function playerPage(signedIn: boolean): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 660, height: 380 } })).newPage();
  await page.goto(`${gateway.httpUrl}/`);
  if (signedIn) {
    const status = await page.evaluate(
      async ([username, password]) =>
        (await fetch('/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) })).status,
      [TEST_USERS.viewer.username, testPassword('viewer')] as const,
    );
    expect(status).toBe(200);
  }
  return page;
}

const seen = (page: Page) => page.evaluate(() => (window as unknown as { __video: Seen }).__video);

/** The camera's clock line (drawn by the simulator's encoder, bottom left of the 640x360 picture). */
const clockRegion = (page: Page) => page.evaluate(() => (window as unknown as { __grab: (x: number, y: number, w: number, h: number) => number[] }).__grab(12, 322, 300, 28));

describe('live video in Chromium (MSE)', () => {
  it('plays a simulated camera: frames decode, playback advances, the drawn clock changes; reconnecting and back when the stream dies', async () => {
    const cam = fleet.ids[0]!;
    const page = await playerPage(true);
    await page.evaluate((id) => (window as unknown as { startPlayer: (id: string) => void }).startPlayer(id), cam);
    await page.waitForFunction(() => (window as unknown as { __video: Seen }).__video.frames >= 10, undefined, { timeout: 20_000 });
    const first = await seen(page);
    expect(first.errors).toEqual([]);
    expect(first.codecs[0]!.codec).toMatch(/^avc1\./);
    expect(first.states).toContain('live');
    expect(first.firstFrameMs).toBeGreaterThan(0);
    const t1 = first.mediaTimes.at(-1)!;
    const clock1 = await clockRegion(page);
    // the clock line has text in it (white on the black box)
    expect(clock1.filter((v, i) => i % 4 === 0 && v > 200).length).toBeGreaterThan(50);
    await page.waitForTimeout(1300);
    const later = await seen(page);
    expect(later.frames).toBeGreaterThan(first.frames + 8);
    expect(later.mediaTimes.at(-1)!).toBeGreaterThan(t1 + 0.8);
    const clock2 = await clockRegion(page);
    const changed = clock1.filter((v, i) => v !== clock2[i]).length;
    expect(changed).toBeGreaterThan(100);
    await page.screenshot({ path: join(ARTIFACTS, 'video-player.png') });

    // The camera's stream dies and comes back: the player hears about it and plays again.
    await fleet.rtsp.stopStream(cam, { refuseMs: 800 });
    await page.waitForFunction(() => (window as unknown as { __video: Seen }).__video.states.includes('reconnecting'), undefined, { timeout: 15_000 });
    const framesAtDrop = (await seen(page)).frames;
    await page.waitForFunction(
      (n) => {
        const v = (window as unknown as { __video: Seen }).__video;
        return v.codecs.length >= 2 && v.frames > n + 10;
      },
      framesAtDrop,
      { timeout: 20_000 },
    );
    const after = await seen(page);
    expect(after.codecs.map((c) => c.epoch)).toEqual([1, 2]);
    expect(after.states.lastIndexOf('live')).toBeGreaterThan(after.states.lastIndexOf('reconnecting'));
    writeFileSync(join(ARTIFACTS, 'video-player.json'), JSON.stringify({ firstFrameMs: first.firstFrameMs, states: after.states, frames: after.frames }, null, 2));
    await page.context().close();
    await until(() => relayProcesses().length === 0, 'the relay ffmpeg to stop after the page left', 10_000);
  });

  it('refuses the socket without a session', async () => {
    const page = await playerPage(false);
    await page.evaluate((id) => (window as unknown as { startPlayer: (id: string) => void }).startPlayer(id), fleet.ids[0]!);
    await page.waitForFunction(() => (window as unknown as { __video: Seen }).__video.closed !== null, undefined, { timeout: 10_000 });
    const s = await seen(page);
    expect(s.closed!.code).toBe(1006); // the upgrade was answered 401
    expect(s.frames).toBe(0);
    expect(relayProcesses()).toEqual([]);
    await page.context().close();
  });
});
