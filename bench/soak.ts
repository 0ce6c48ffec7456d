/**
 * Soak (issue 9, "Tests"): a long, bounded run of the whole alert path under steady telemetry —
 * does the gateway's memory or event-loop lag creep, does anything get lost over time?
 *
 *   npm run bench:soak [-- --minutes 20 --rate 5000 --fire-rate 1 --plot docs/img/soak.svg]
 *
 * It runs bench/alert-latency.ts for `--minutes` (real InfluxDB, background telemetry at
 * `--rate` msg/s from 20,000 tanks over 100 agent connections, fire alarms at `--fire-rate` a
 * second, each a new incident resolved a second after it arrived, with duplicates, repeats and
 * joins around it) and reads its time series: the gateway's RSS and event-loop lag p99 every
 * 10 s, every alarm's latency. Figures compare the second quarter of the run (after start-up
 * has settled) with the last quarter:
 *
 *   rss_mb_q2 / rss_mb_q4            median gateway RSS in each quarter
 *   rss_growth_mb_per_h              least-squares slope of RSS over the second half
 *   heap_used_mb_q2 / _q4, heap_growth_mb_per_h   the same for the ingest thread's V8 heap in use
 *                                    (sampled between GCs, so it saws; the slope is what counts)
 *   lag_p99_ms_q2 / lag_p99_ms_q4    median of the 10-s event-loop lag p99s in each quarter
 *   alarm_p99_ms_q2 / alarm_p99_ms_q4
 *   lost                             background messages acknowledged and not in InfluxDB, plus
 *                                    incidents lost or duplicated
 *
 * Flat means: the last quarter's RSS within 10 % of the second's, and its lag p99 no more than
 * 1.5 x the second's (+2 ms for the resolution of a quiet run). Progress on stderr; with --plot an
 * SVG of RSS, lag and alarm latency over the run; one JSON line last on stdout. Exit 0 even when
 * a target is missed; non-zero only when the benchmark itself failed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { percentile } from './lib/histogram.js';
import { installExitHandlers, onCleanup, parseIntArg, removeOnExit, REPO, round } from './lib/proc.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '20' },
    rate: { type: 'string', default: '5000' },
    'fire-rate': { type: 'string', default: '1' },
    warmup: { type: 'string', default: '30' },
    plot: { type: 'string' },
  },
});
const minutes = parseIntArg(args.minutes, 'minutes', 1, 240);
const rate = parseIntArg(args.rate, 'rate', 1, 100_000);
const fireRate = parseIntArg(args['fire-rate'], 'fire-rate', 1, 50);
const warmup = parseIntArg(args.warmup, 'warmup', 0, 600);
const TARGET = { minutes: 20, rate_msg_per_s: 5000, rss_q4_over_q2_max: 1.1, lag_q4_over_q2_max: 1.5, lost: 0 };

installExitHandlers();
const tmp = mkdtempSync(join(tmpdir(), 'gs-bench-soak-'));
removeOnExit(tmp);
const seriesFile = join(tmp, 'series.jsonl');

interface Row {
  t: number;
  kind: string;
  p99_ms?: number;
  rss_mb?: number;
  heap_used_mb?: number | null;
  latency_ms?: number;
}

function runAlertLatency(): Promise<Record<string, unknown>> {
  const argv = [
    '--import', 'tsx', `${REPO}/bench/alert-latency.ts`,
    '--seconds', String(minutes * 60), '--warmup', String(warmup),
    '--rate', String(rate), '--fire-rate', String(fireRate), '--series-out', seriesFile,
  ];
  const child = spawn(process.execPath, argv, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  onCleanup(() => void child.kill('SIGTERM'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((ok, fail) => {
    child.once('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) return fail(new Error(`bench/alert-latency.ts exited with ${code}`));
      try {
        ok(JSON.parse(last) as Record<string, unknown>);
      } catch {
        fail(new Error(`bench/alert-latency.ts printed no JSON line: ${last.slice(0, 200)}`));
      }
    });
  });
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number | null {
  if (points.length < 3) return null;
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx > 0 ? points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx : null;
}

/** A small SVG: one panel per series, time in minutes along the bottom. */
function plot(file: string, panels: Array<{ title: string; unit: string; points: Array<[number, number]>; dots?: boolean }>, caption: string): void {
  const W = 900;
  const H = 200;
  const pad = { l: 60, r: 20, t: 28, b: 30 };
  const xMax = Math.max(1, ...panels.flatMap((p) => p.points.map(([x]) => x)));
  const parts: string[] = [];
  panels.forEach((panel, i) => {
    const y0 = i * H;
    const yMax = Math.max(1, ...panel.points.map(([, y]) => y)) * 1.1;
    const sx = (x: number) => pad.l + (x / xMax) * (W - pad.l - pad.r);
    const sy = (y: number) => y0 + H - pad.b - (y / yMax) * (H - pad.t - pad.b);
    parts.push(`<text x="${pad.l}" y="${y0 + 18}" font-size="14" font-weight="bold">${panel.title} (${panel.unit})</text>`);
    parts.push(`<line x1="${pad.l}" y1="${sy(0)}" x2="${W - pad.r}" y2="${sy(0)}" stroke="#888"/>`);
    parts.push(`<line x1="${pad.l}" y1="${sy(0)}" x2="${pad.l}" y2="${sy(yMax)}" stroke="#888"/>`);
    for (let k = 0; k <= 4; k++) {
      const v = (yMax / 4) * k;
      parts.push(`<text x="${pad.l - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end">${round(v, v < 10 ? 1 : 0)}</text>`);
      if (k > 0) parts.push(`<line x1="${pad.l}" y1="${sy(v)}" x2="${W - pad.r}" y2="${sy(v)}" stroke="#eee"/>`);
    }
    const step = xMax > 30 ? 10 : xMax > 10 ? 5 : 1;
    for (let m = 0; m <= xMax; m += step) parts.push(`<text x="${sx(m)}" y="${sy(0) + 16}" font-size="11" text-anchor="middle">${m} min</text>`);
    if (panel.dots) {
      for (const [x, y] of panel.points) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="1.5" fill="#c0392b"/>`);
    } else {
      const d = panel.points.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="#2c7a4b" stroke-width="1.5"/>`);
    }
  });
  const height = panels.length * H + 24;
  parts.push(`<text x="${pad.l}" y="${height - 6}" font-size="11" fill="#555">${caption.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>`);
  writeFileSync(
    file,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">\n` +
      `<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`,
  );
}

try {
  process.stderr.write(`soak: ${minutes} min at ${rate} msg/s, ${fireRate} alarm/s (bench/alert-latency.ts underneath)\n`);
  const inner = await runAlertLatency();
  const rows = readFileSync(seriesFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Row);
  // The window starts at the first alarm; times in minutes from there.
  const start = rows.find((r) => r.kind === 'alarm')?.t ?? rows[0]?.t ?? 0;
  const span = minutes * 60;
  const quarter = (r: Row, q: number) => r.t - start >= ((q - 1) * span) / 4 && r.t - start < (q * span) / 4;
  const lags = rows.filter((r) => r.kind === 'lag' && r.t >= start && Number.isFinite(r.p99_ms));
  const alarms = rows.filter((r) => r.kind === 'alarm');
  const med = (xs: number[]) => percentile(xs, 50);
  const rssQ = (q: number) => med(lags.filter((r) => quarter(r, q) && r.rss_mb).map((r) => r.rss_mb!));
  const lagQ = (q: number) => med(lags.filter((r) => quarter(r, q)).map((r) => r.p99_ms!));
  const alarmQ = (q: number) => percentile(alarms.filter((r) => quarter(r, q)).map((r) => r.latency_ms!), 99);
  const secondHalf = lags.filter((r) => r.t - start >= span / 2 && r.rss_mb).map((r): [number, number] => [(r.t - start) / 3600, r.rss_mb!]);
  const growthPerH = slope(secondHalf);
  const heapQ = (q: number) => med(lags.filter((r) => quarter(r, q) && r.heap_used_mb).map((r) => r.heap_used_mb!));
  const heapGrowthPerH = slope(lags.filter((r) => r.t - start >= span / 2 && r.heap_used_mb).map((r): [number, number] => [(r.t - start) / 3600, r.heap_used_mb!]));
  const [rss2, rss4, lag2, lag4] = [rssQ(2), rssQ(4), lagQ(2), lagQ(4)];

  const backgroundLost = inner.background_lost as number | null;
  const lost = (backgroundLost ?? 0) + Number(inner.lost ?? 0) + Number(inner.duplicated ?? 0);
  const misses: string[] = [];
  if (minutes < TARGET.minutes) misses.push(`minutes ${minutes} < ${TARGET.minutes}`);
  if (rate < TARGET.rate_msg_per_s) misses.push(`rate ${rate} < ${TARGET.rate_msg_per_s}`);
  if (backgroundLost === null) misses.push('background loss not counted (no InfluxDB)');
  if (lost !== TARGET.lost) misses.push(`lost ${lost} (background ${backgroundLost}, incidents lost ${inner.lost}, duplicated ${inner.duplicated})`);
  if (rss2 === null || rss4 === null || rss4 > rss2 * TARGET.rss_q4_over_q2_max) misses.push(`RSS ${rss2} -> ${rss4} MB (more than +10 %)`);
  if (lag2 === null || lag4 === null || lag4 > lag2 * TARGET.lag_q4_over_q2_max + 2) misses.push(`event-loop lag p99 ${lag2} -> ${lag4} ms (more than x1.5)`);
  if (inner.gateway_crashed) misses.push(`gateway ${String(inner.gateway_crashed)}`);

  if (args.plot) {
    const file = resolve(args.plot);
    plot(
      file,
      [
        { title: 'Gateway RSS', unit: 'MB', points: lags.filter((r) => r.rss_mb).map((r) => [(r.t - start) / 60, r.rss_mb!]) },
        { title: 'Ingest thread V8 heap in use', unit: 'MB', points: lags.filter((r) => r.heap_used_mb).map((r) => [(r.t - start) / 60, r.heap_used_mb!]) },
        { title: 'Event-loop lag p99 per 10 s', unit: 'ms', points: lags.map((r) => [(r.t - start) / 60, r.p99_ms!]) },
        { title: 'Fire alarm -> incident on the dashboard', unit: 'ms', points: alarms.map((r) => [(r.t - start) / 60, r.latency_ms!]), dots: true },
      ],
      `npm run bench:soak -- --minutes ${minutes} --rate ${rate} --fire-rate ${fireRate}; commit ${String(inner.commit)}; other CPU ${String(inner.other_cpu_percent)} %`,
    );
    process.stderr.write(`plot written to ${file}\n`);
  }

  const result = {
    bench: 'soak',
    commit: inner.commit,
    commit_dirty_paths: inner.commit_dirty_paths,
    minutes,
    rate_msg_per_s: rate,
    fire_rate_per_s: fireRate,
    background_msg_per_s: inner.background_msg_per_s,
    background_acked: inner.background_acked,
    background_stored: inner.background_stored,
    incidents_expected: inner.incidents_expected,
    incidents_arrived: inner.incidents_arrived,
    lost,
    rss_mb_q2: round(rss2, 0),
    rss_mb_q4: round(rss4, 0),
    rss_growth_mb_per_h: round(growthPerH, 1),
    heap_used_mb_q2: round(heapQ(2), 0),
    heap_used_mb_q4: round(heapQ(4), 0),
    heap_growth_mb_per_h: round(heapGrowthPerH, 1),
    lag_p99_ms_q2: round(lag2, 1),
    lag_p99_ms_q4: round(lag4, 1),
    alarm_p99_ms_q2: round(alarmQ(2), 1),
    alarm_p99_ms_q4: round(alarmQ(4), 1),
    alarm_p99_ms: inner.p99_ms,
    alarm_p999_ms: inner.p999_ms,
    gateway_cpu_percent: inner.gateway_cpu_percent,
    other_cpu_percent: inner.other_cpu_percent,
    targets: TARGET,
    target_met: misses.length === 0,
    target_misses: misses,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}
