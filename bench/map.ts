/**
 * Map benchmark: headless Chromium (Debian's, through playwright-core) loads the dashboard with
 * the site's 1,788 devices and with a 50,000-device district, then takes 1,000 status changes per
 * second for 20 s, then is panned and zoomed while the changes go on.
 * `npm run bench:map [-- --devices 1788,50000 --seconds 20 --rate 1000]`
 *
 * Per fleet size: a synthetic ledger in a temp dir (bench/lib/dashboard.ts: the site's mix of
 * kinds in the shipped grids), a gateway child (no InfluxDB, no flap damping), a fresh browser
 * window, every device set online over MQTT, a wait until the gateway and the browser are idle,
 * then the signed-in page is loaded and timed. No device simulators: the changes are MQTT
 * `state`/`telemetry` messages published by this script.
 *
 * Figures (per size, prefixed `d<devices>_`):
 *   first_render_ms    navigation start -> the first animation frame after every device is in the
 *                      page's store and (where the map reports it) drawn on the canvas
 *   max_frame_ms, p99_frame_ms, p50_frame_ms, frames_over_50ms
 *                      intervals between animation frames while the changes stream in (every
 *                      interval of the window, none dropped)
 *   first_render_other_cpu_percent  CPU (of 200 %) other sessions used while the page loaded
 *   long_task_max_ms   longest main-thread task (PerformanceObserver 'longtask') in that window
 *   pan_zoom_max_frame_ms  the same, while the mouse drags and wheel-zooms the map meanwhile
 *   counts_match       after the stream stops, the page's online/offline counts equal the gateway's
 * `ratio_to_limit` is the worst measured/target over both targets and all sizes (<= 1 meets them).
 * Progress on stderr; one JSON line last on stdout; exit 0 even when a target is missed.
 */
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, CDPSession, Page } from 'playwright-core';
import { launchBrowser } from '../test/helpers/browser.js';
import { signInToken, siteFleet, startDashboardGateway, StatusStream, TreeCpu, writeFleet } from './lib/dashboard.js';
import {
  cleanupAll,
  gitCommit,
  hardDeadline,
  installExitHandlers,
  MachineCpu,
  onCleanup,
  parseIntArg,
  phase,
  ProcSampler,
  readProc,
  removeOnExit,
  round,
  sleep,
  stopChild,
} from './lib/proc.js';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1788,50000' },
    seconds: { type: 'string', default: '20' },
    rate: { type: 'string', default: '1000' },
    'pan-seconds': { type: 'string', default: '5' },
    /**
     * gateway.push.maxBufferedBytes in MB. The default config's 8 MB is smaller than a 50,000-device
     * snapshot (~11 MB): the hub then takes every page for a slow client and re-sends the snapshot
     * instead of updates (docs/BENCHMARKS.md). 0 = the config default.
     */
    'push-max-buffered-mb': { type: 'string', default: '32' },
    /** Serve another dashboard build (e.g. an earlier commit's dashboard/dist) for a before/after. */
    'dashboard-dir': { type: 'string' },
    /** Write a Chromium trace of each size's first render to DIR/first-render-<devices>.json (diagnostics; it slows the page). */
    'trace-dir': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const sizes = args.devices.split(',').map((s) => parseIntArg(s.trim(), 'devices', 1, 500_000));
const seconds = parseIntArg(args.seconds, 'seconds', 1, 600);
const rate = parseIntArg(args.rate, 'rate', 1, 100_000);
const panSeconds = parseIntArg(args['pan-seconds'], 'pan-seconds', 0, 120);
const pushMaxBufferedMb = parseIntArg(args['push-max-buffered-mb'], 'push-max-buffered-mb', 0, 1024);
/** Main thread, network, script and rendering events: enough to see where a load's time goes. */
const TRACE_CATEGORIES = ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'blink.user_timing', 'loading', 'toplevel', 'netlog'];
const TARGET = { first_render_ms: 2000, max_frame_ms: 50, devices: 50_000, rate_per_s: 1000, seconds: 20 };
const VIEWPORT = { width: 1600, height: 900 };

installExitHandlers();
hardDeadline((300 + sizes.length * (120 + seconds + panSeconds)) * 1000);
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-map-'));
removeOnExit(tmp);

/**
 * Installed in the page before its own scripts: an animation-frame recorder, a long-task
 * observer, and the render-complete probe (it reads the dashboard's test hooks `window.__gs`).
 * Plain JavaScript text: tsx would decorate a serialised TypeScript function with helpers
 * (`__name`) that do not exist in the page.
 */
const PAGE_PROBE = `
(() => {
  const probe = { expected: __EXPECTED__, renderedAt: null, storeFullAt: null, recording: false, frames: [], longTasks: [], loadTasks: [] };
  window.__gsBench = probe;
  let last = 0;
  let complete = false;
  const tick = (t) => {
    if (probe.recording && last > 0) probe.frames.push(t - last);
    last = t;
    if (probe.renderedAt === null) {
      // performance.now(), not t: a late callback still carries its frame's (earlier) begin time.
      if (complete) probe.renderedAt = performance.now(); // the frame after the one that drew everything
      else {
        const gs = window.__gs;
        if (gs && gs.deviceCount() === probe.expected) {
          if (probe.storeFullAt === null) probe.storeFullAt = performance.now();
          // mapStats() is null until the map exists: the store can fill before it does.
          const stats = gs.mapStats ? gs.mapStats() : undefined;
          complete = stats === undefined ? true : stats !== null && stats.drawn === probe.expected;
        }
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (probe.recording) probe.longTasks.push(e.duration);
        else if (probe.renderedAt === null) probe.loadTasks.push([Math.round(e.startTime), Math.round(e.duration)]);
      }
    }).observe({ type: 'longtask', buffered: true });
  } catch {
    // no long-task timing in this browser: long_task_max_ms stays null
  }
  // What made a frame long (Long Animation Frames): its scripts, and how much of it was rendering.
  probe.longFrames = [];
  try {
    new PerformanceObserver((list) => {
      if (!probe.recording) return;
      for (const e of list.getEntries()) {
        if (probe.longFrames.length >= 50) break;
        probe.longFrames.push({
          at: Math.round(e.startTime),
          ms: Math.round(e.duration),
          renderMs: e.renderStart ? Math.round(e.startTime + e.duration - e.renderStart) : 0,
          scripts: e.scripts.map((x) => [x.invoker, (x.sourceURL || '').split('/').pop() + ':' + x.sourceCharPosition, Math.round(x.duration)]),
        });
      }
    }).observe({ type: 'long-animation-frame' });
  } catch {
    // no Long Animation Frames in this browser
  }
})();
`;

/**
 * Waits for the probe's `renderedAt` with a bare CDP `Runtime.evaluate` every 100 ms: Playwright's
 * `waitForFunction` first injects its own script into the page, 40–80 ms of the page's main thread
 * (CDP trace) in the middle of the load it is timing.
 */
async function waitForRender(cdp: CDPSession, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    try {
      const { result } = await cdp.send('Runtime.evaluate', { expression: 'window.__gsBench ? window.__gsBench.renderedAt : null', returnByValue: true });
      if (typeof result.value === 'number') return;
    } catch {
      // no execution context yet (navigating): ask again
    }
    await sleep(100);
  }
  throw new Error(`no complete render within ${timeoutMs} ms`);
}

/**
 * Waits until the gateway and the browser (this process's whole tree) have used under 10 % of a
 * core for a second running (at most 20 s); returns how long it took.
 */
async function settled(gatewayPid: number): Promise<number> {
  const started = performance.now();
  let quiet = 0;
  while (performance.now() - started < 20_000 && quiet < 2) {
    const tree = new TreeCpu();
    tree.markStart();
    await sleep(500);
    tree.markEnd();
    quiet = (tree.percent ?? 100) < 10 && readProc(gatewayPid) !== undefined ? quiet + 1 : 0;
  }
  return Math.round(performance.now() - started);
}

interface FrameFigures {
  frames: number;
  max: number | null;
  p99: number | null;
  p50: number | null;
  over50: number;
  longTaskMax: number | null;
  longTasks: number;
}

async function recordFrames(page: Page, ms: number, during?: () => Promise<void>): Promise<FrameFigures> {
  await page.evaluate(() => {
    const b = (window as unknown as { __gsBench: { recording: boolean; frames: number[]; longTasks: number[] } }).__gsBench;
    b.frames = [];
    b.longTasks = [];
    (b as unknown as { longFrames: unknown[] }).longFrames = [];
    b.recording = true;
  });
  const until = performance.now() + ms;
  if (during) await during();
  while (performance.now() < until) await sleep(Math.min(250, until - performance.now()));
  const { frames, longTasks, longFrames } = await page.evaluate(() => {
    const b = (window as unknown as { __gsBench: { recording: boolean; frames: number[]; longTasks: number[]; longFrames: unknown[] } }).__gsBench;
    b.recording = false;
    return { frames: b.frames, longTasks: b.longTasks, longFrames: b.longFrames };
  });
  // Diagnostics, on stderr: each long frame's scripts as [invoker, file:char position, ms].
  if (longFrames.length > 0) process.stderr.write(`  long animation frames (> 50 ms): ${JSON.stringify(longFrames)}\n`);
  const sorted = [...frames].sort((a, b) => a - b);
  const pick = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : null);
  return {
    frames: frames.length,
    max: sorted.at(-1) ?? null,
    p99: pick(99),
    p50: pick(50),
    over50: frames.filter((f) => f > 50).length,
    longTaskMax: longTasks.length ? Math.max(...longTasks) : null,
    longTasks: longTasks.length,
  };
}

/** Drags the map around and wheel-zooms in and out for `ms`, as an operator looking around would. */
async function panAndZoom(page: Page, ms: number): Promise<void> {
  const box = await page.getByTestId('map').boundingBox();
  if (!box) throw new Error('no map on the page');
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  const until = performance.now() + ms;
  for (let i = 0; performance.now() < until; i++) {
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let s = 1; s <= 10; s++) await page.mouse.move(cx + (i % 2 ? -1 : 1) * s * 20, cy + s * 8, { steps: 1 });
    await page.mouse.up();
    await page.mouse.wheel(0, i % 4 < 2 ? -240 : 240);
    await sleep(150);
  }
}

type FeedStats = { snapshots: number; updateMessages: number; updates: number; flushes: number };
async function feedStats(page: Page): Promise<FeedStats | null> {
  return page.evaluate(() => (window as unknown as { __gs: { feedStats?: () => FeedStats } }).__gs.feedStats?.() ?? null);
}

async function countsFromPage(page: Page): Promise<Record<string, { online: number; offline: number; unknown: number }>> {
  return page.evaluate(() => {
    const out: Record<string, { online: number; offline: number; unknown: number }> = {};
    for (const row of document.querySelectorAll<HTMLElement>('[data-testid^="count-"][data-online]')) {
      const kind = row.dataset.testid!.slice('count-'.length);
      out[kind] = { online: Number(row.dataset.online), offline: Number(row.dataset.offline), unknown: Number(row.dataset.unknown) };
    }
    return out;
  });
}

async function runSize(browser: Browser, count: number) {
  phase(`${count} devices: ledger, gateway, every device online`);
  const dir = mkdtempSync(join(tmp, `d${count}-`));
  const devices = siteFleet(count);
  const ledgerFile = join(dir, 'ledger.csv');
  writeFleet(ledgerFile, devices);
  const gw = await startDashboardGateway({
    dir,
    ledgerFile,
    logLevel: args['log-level'],
    ...(pushMaxBufferedMb > 0 ? { push: { maxBufferedBytes: pushMaxBufferedMb * 2 ** 20 } } : {}),
    ...(args['dashboard-dir'] ? { dashboardDir: args['dashboard-dir'] } : {}),
  });
  onCleanup(() => stopChild(gw.child, 5000));
  const gwSampler = new ProcSampler(gw.pid);
  // The browser window first, as on a wall PC where it is open before the dashboard loads: a new
  // window makes Chromium (156) load its own omnibox popup (chrome://omnibox-popup.top-chrome, a
  // WebUI renderer), ~1.4 s of CPU over the next second, which otherwise ran during the timed load.
  const context = await browser.newContext({ viewport: VIEWPORT });
  onCleanup(() => context.close().catch(() => undefined));
  await context.addInitScript({ content: PAGE_PROBE.replace('__EXPECTED__', String(count)) });
  const page = await context.newPage();
  const stream = new StatusStream(devices);
  onCleanup(() => stream.close());
  await stream.connect(gw.mqttPort);
  await stream.allOnline();
  // Setting every device online is this benchmark's own burst (50,000 messages in a second or
  // two); the gateway digests it (registry, push, GC) for a moment after. The page is timed
  // once that and the browser's own start are over, not against them.
  const settledMs = await settled(gw.pid);
  process.stderr.write(`[${count}] gateway and browser idle ${settledMs} ms after the devices went online\n`);
  const token = await signInToken(gw.httpUrl);
  await context.addCookies([{ name: 'gs_session', value: token, url: gw.httpUrl }]);

  phase(`${count} devices: first render`);
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  const cdp = await context.newCDPSession(page);
  // The first render has its own share of other sessions' CPU: it is the figure most sensitive to it.
  const loadMachine = new MachineCpu();
  const loadOurs = new TreeCpu();
  const traceFile = args['trace-dir'] ? join(args['trace-dir'], `first-render-${count}.json`) : null;
  if (traceFile) await browser.startTracing(page, { path: traceFile, categories: TRACE_CATEGORIES });
  const gwLoad = new ProcSampler(gw.pid);
  gwLoad.markStart();
  loadMachine.markStart();
  loadOurs.markStart();
  await page.goto(`${gw.httpUrl}/`);
  await waitForRender(cdp, 120_000);
  loadOurs.markEnd();
  loadMachine.markEnd();
  gwLoad.markEnd();
  gwLoad.stop();
  if (traceFile) await browser.stopTracing();
  await cdp.detach();
  const render = await page.evaluate(() => {
    const b = (window as unknown as { __gsBench: { renderedAt: number; storeFullAt: number; loadTasks: Array<[number, number]> } }).__gsBench;
    const gs = (window as unknown as { __gs: { mapStats?: () => unknown } }).__gs;
    const marks = Object.fromEntries([
      ...performance.getEntriesByType('mark').map((m) => [m.name, Math.round(m.startTime)]),
      ...performance.getEntriesByType('measure').map((m) => [`${m.name}_ms`, Math.round(m.duration)]),
    ]);
    const feed = (gs as unknown as { feedStats?: () => unknown }).feedStats?.() ?? null;
    return { renderedAt: b.renderedAt, storeFullAt: b.storeFullAt, mapStats: gs.mapStats?.() ?? null, marks, feed, loadTasks: b.loadTasks };
  });
  process.stderr.write(
    `[${count}] first render ${render.renderedAt.toFixed(0)} ms (store full at ${render.storeFullAt.toFixed(0)} ms) ${JSON.stringify(render.mapStats)} marks ${JSON.stringify(render.marks)} feed ${JSON.stringify(render.feed)} long tasks [start, ms] ${JSON.stringify(render.loadTasks)}\n`,
  );
  await sleep(1000);

  phase(`${count} devices: ${rate} status changes/s for ${seconds} s`);
  const machine = new MachineCpu();
  const ours = new TreeCpu();
  const sentBefore = stream.sent;
  const feedBefore = await feedStats(page);
  const streamStarted = performance.now();
  stream.start(rate);
  await sleep(500); // the first flush reaches the page
  machine.markStart();
  ours.markStart();
  gwSampler.markStart();
  const streaming = await recordFrames(page, seconds * 1000);
  gwSampler.markEnd();
  ours.markEnd();
  machine.markEnd();
  process.stderr.write(`[${count}] frames ${JSON.stringify(streaming)}\n`);

  let panZoom: FrameFigures | null = null;
  if (panSeconds > 0) {
    phase(`${count} devices: pan and zoom for ${panSeconds} s while the changes go on`);
    panZoom = await recordFrames(page, panSeconds * 1000, () => panAndZoom(page, panSeconds * 1000));
    process.stderr.write(`[${count}] pan/zoom frames ${JSON.stringify(panZoom)}\n`);
  }
  stream.stop();
  const sentInRun = stream.sent - sentBefore;
  const streamSeconds = (performance.now() - streamStarted) / 1000;
  const feedAfter = await feedStats(page);

  // The page's counts must settle on the gateway's once the stream stops.
  let countsMatch = false;
  const apiCounts = async () =>
    ((await (await fetch(`${gw.httpUrl}/health`)).json()) as { devices: { byKind: Record<string, { online: number; offline: number; unknown: number }> } })
      .devices.byKind;
  for (let i = 0; i < 20 && !countsMatch; i++) {
    await sleep(250);
    const [a, b] = await Promise.all([apiCounts(), countsFromPage(page)]);
    countsMatch = Object.keys(a).every((k) => a[k]!.online === b[k]?.online && a[k]!.offline === b[k]?.offline && a[k]!.unknown === b[k]?.unknown);
  }
  const heapMb = await page.evaluate(() => {
    const m = (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory;
    return m ? m.usedJSHeapSize / 2 ** 20 : null;
  });

  await context.close();
  await stream.close();
  gwSampler.stop();
  await stopChild(gw.child, 10_000);
  return {
    devices: count,
    first_render_ms: round(render.renderedAt, 0),
    store_full_ms: round(render.storeFullAt, 0),
    // From navigation to the complete render (the CDP poll adds up to 100 ms to the window, not to the figure).
    first_render_other_cpu_percent: round((loadMachine.busyPercent ?? NaN) - (loadOurs.percent ?? NaN), 0),
    first_render_gateway_cpu_percent: round(gwLoad.cpuPercent, 0),
    settle_ms: settledMs,
    max_frame_ms: round(streaming.max, 1),
    p99_frame_ms: round(streaming.p99, 1),
    p50_frame_ms: round(streaming.p50, 1),
    frames: streaming.frames,
    frames_over_50ms: streaming.over50,
    long_task_max_ms: round(streaming.longTaskMax, 0),
    long_tasks: streaming.longTasks,
    pan_zoom_max_frame_ms: round(panZoom?.max, 1),
    pan_zoom_p99_frame_ms: round(panZoom?.p99, 1),
    pan_zoom_frames_over_50ms: panZoom?.over50 ?? null,
    changes_sent: sentInRun,
    changes_per_s: round(sentInRun / streamSeconds, 0),
    counts_match: countsMatch,
    page_snapshots_during_stream: feedAfter && feedBefore ? feedAfter.snapshots - feedBefore.snapshots : null,
    page_updates_received: feedAfter && feedBefore ? feedAfter.updates - feedBefore.updates : null,
    page_flushes: feedAfter && feedBefore ? feedAfter.flushes - feedBefore.flushes : null,
    page_heap_mb: round(heapMb, 0),
    page_errors: pageErrors.slice(0, 5),
    gateway_rss_mb: round(gwSampler.peakRssMb, 0),
    gateway_cpu_percent: round(gwSampler.cpuPercent, 0),
    machine_cpu_percent: round(machine.busyPercent, 0),
    // Ours: this process, the gateway, Chromium (all its processes); the rest is other sessions.
    bench_processes_cpu_percent: round(ours.percent, 0),
    other_cpu_percent: round((machine.busyPercent ?? NaN) - (ours.percent ?? NaN), 0),
  };
}

const { commit, dirty, diffSha } = gitCommit();
const loadAtStart = loadavg()[0];
process.stderr.write(`map bench: ${sizes.join(', ')} devices, ${rate} changes/s for ${seconds} s + ${panSeconds} s pan/zoom; commit ${commit}${dirty.length ? ' (dirty)' : ''}\n`);

try {
  phase('starting Chromium');
  const browser = await launchBrowser();
  onCleanup(() => browser.close());
  const runs = [];
  for (const size of sizes) runs.push(await runSize(browser, size));
  await browser.close();

  const misses: string[] = [];
  const ratios: number[] = [];
  for (const r of runs) {
    if (r.first_render_ms !== null) ratios.push(r.first_render_ms / TARGET.first_render_ms);
    if (r.max_frame_ms !== null) ratios.push(r.max_frame_ms / TARGET.max_frame_ms);
    if (r.first_render_ms === null || r.first_render_ms > TARGET.first_render_ms) misses.push(`d${r.devices} first_render_ms ${r.first_render_ms} > ${TARGET.first_render_ms}`);
    if (r.max_frame_ms === null || r.max_frame_ms > TARGET.max_frame_ms) misses.push(`d${r.devices} max_frame_ms ${r.max_frame_ms} > ${TARGET.max_frame_ms}`);
    if (!r.counts_match) misses.push(`d${r.devices} page counts never matched the gateway's`);
    if (r.page_errors.length > 0) misses.push(`d${r.devices} page errors: ${r.page_errors.join('; ')}`);
  }
  if (!sizes.includes(TARGET.devices)) misses.push(`no run with ${TARGET.devices} devices`);
  if (rate < TARGET.rate_per_s) misses.push(`rate ${rate} < ${TARGET.rate_per_s}`);
  if (seconds < TARGET.seconds) misses.push(`seconds ${seconds} < ${TARGET.seconds}`);

  const result: Record<string, unknown> = {
    bench: 'map',
    commit,
    commit_dirty_paths: dirty,
    worktree_diff_sha256: diffSha,
    viewport: `${VIEWPORT.width}x${VIEWPORT.height}`,
    rate_per_s: rate,
    seconds,
    pan_seconds: panSeconds,
    gateway_push_max_buffered_mb: pushMaxBufferedMb > 0 ? pushMaxBufferedMb : 'default',
    dashboard_dir: args['dashboard-dir'] ?? 'dashboard/dist',
    loadavg_1m_at_start: round(loadAtStart, 2),
  };
  for (const r of runs) for (const [k, v] of Object.entries(r)) if (k !== 'devices') result[`d${r.devices}_${k}`] = v;
  Object.assign(result, {
    ratio_to_limit: ratios.length ? round(Math.max(...ratios), 2) : null,
    targets: TARGET,
    target_met: misses.length === 0,
    target_misses: misses,
  });
  await cleanupAll();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await cleanupAll();
  process.exit(1);
}
