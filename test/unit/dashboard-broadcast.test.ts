/**
 * The broadcast console's logic that needs no browser: the `/ws` message checks, the live job
 * set (never stepping back to an older record), targets from the form's drafts, and the map
 * geometry (a click on a grid finds the ledger's grid; GCJ-02 clicks go back to WGS-84).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import type { SiteInfo } from '../../dashboard/src/api.js';
import { BroadcastJobs, parseBroadcastMessage, type BroadcastJob, type JobEvent } from '../../dashboard/src/broadcast-feed.js';
import { draftTarget, emptyTargetDraft, gridAt, insideRings, siteAreas, unprojectWith } from '../../dashboard/src/broadcast-targets.js';
import { wgs84ToGcj02 } from '../../dashboard/src/geo/gcj02.js';

const CONFIG_DIR = join(import.meta.dirname, '../../config');
const counts = (over: Partial<BroadcastJob['counts']> = {}) => ({ queued: 0, sent: 0, accepted: 0, playing: 0, done: 0, failed: 0, expired: 0, preempted: 0, cancelled: 0, ...over });

function job(over: Partial<BroadcastJob> = {}): BroadcastJob {
  return {
    id: 'bm1',
    title: '森林防火提醒',
    status: 'active',
    priority: 'routine',
    reason: null,
    content: { type: 'text', text: '森林防火，人人有责。' },
    text: '森林防火，人人有责。',
    clipId: null,
    repeat: 1,
    volume: null,
    target: { type: 'grids', grids: ['G08'] },
    targetLabel: '网格 G08',
    poleCount: 4,
    schedule: { type: 'now' },
    incidentId: null,
    retryOf: null,
    createdAt: 1_775_010_600_000,
    createdBy: 'duty',
    createdByName: '值班员',
    run: 1,
    runStartedAt: 1_775_010_600_000,
    runExpiresAt: 1_775_012_400_000,
    nextRunAt: null,
    counts: counts({ queued: 4 }),
    finishedAt: null,
    cancelledAt: null,
    cancelledBy: null,
    cancelReason: null,
    ...over,
  };
}

describe('parseBroadcastMessage', () => {
  it('takes the five broadcast messages and checks their shape', () => {
    expect(parseBroadcastMessage({ type: 'broadcasts.snapshot', broadcasts: [job(), { id: 'half a job' }] })).toEqual({ type: 'broadcasts.snapshot', broadcasts: [job()] });
    for (const type of ['broadcast.created', 'broadcast.updated', 'broadcast.finished'] as const) {
      expect(parseBroadcastMessage({ type, broadcast: job() })).toEqual({ type, broadcast: job() });
      expect(parseBroadcastMessage({ type, broadcast: { ...job(), status: 'paused' } })).toBeNull();
      expect(parseBroadcastMessage({ type, broadcast: { ...job(), counts: { done: 1 } } })).toBeNull();
    }
    const progress = { type: 'broadcast.progress', id: 'bm1', run: 1, total: 4, counts: counts({ playing: 3, failed: 1 }) };
    expect(parseBroadcastMessage({ ...progress, changes: [['pole-005', 'playing'], ['pole-065', 'failed', 'pole: AMPLIFIER_FAULT'], ['pole-009', 'singing'], ['pole-025']] })).toEqual({
      ...progress,
      changes: [
        ['pole-005', 'playing'],
        ['pole-065', 'failed', 'pole: AMPLIFIER_FAULT'],
      ],
    });
    expect(parseBroadcastMessage({ ...progress, counts: counts(), changes: 'none' })).toBeNull();
    expect(parseBroadcastMessage({ type: 'incident', incident: {} })).toBeNull();
    expect(parseBroadcastMessage({ type: 'hello' })).toBeNull();
  });
});

describe('BroadcastJobs', () => {
  it('follows created → progress → finished, and an older REST answer does not step back', () => {
    const jobs = new BroadcastJobs();
    const events: JobEvent['kind'][] = [];
    jobs.onChange((e) => events.push(e.kind));
    expect(jobs.handle({ type: 'devices.update' })).toBe(false);
    expect(jobs.handle({ type: 'broadcasts.snapshot', broadcasts: [job({ id: 'old', status: 'active' })] } as never)).toBe(true);
    jobs.handle({ type: 'broadcast.created', broadcast: job() } as never);
    jobs.handle({ type: 'broadcast.progress', id: 'bm1', run: 1, total: 4, counts: counts({ playing: 2, done: 2 }), changes: [] } as never);
    expect(jobs.get('bm1')!.counts).toMatchObject({ playing: 2, done: 2 });
    jobs.remember(job()); // the create answer, overtaken by the feed
    expect(jobs.get('bm1')!.counts.done).toBe(2);
    jobs.handle({ type: 'broadcast.finished', broadcast: job({ status: 'finished', counts: counts({ done: 4 }), finishedAt: 1_775_010_620_000 }) } as never);
    jobs.remember(job({ counts: counts({ done: 3, playing: 1 }) }));
    expect(jobs.get('bm1')).toMatchObject({ status: 'finished', counts: { done: 4 } });
    expect(jobs.open().map((j) => j.id)).toEqual(['old']);
    // Reconnected: an open job the snapshot no longer has ended long ago; it is not shown running.
    jobs.handle({ type: 'broadcasts.snapshot', broadcasts: [jobs.get('bm1')!] } as never);
    expect(jobs.get('old')).toBeUndefined();
    expect(events).toEqual(['snapshot', 'job', 'progress', 'job', 'snapshot']);
  });
});

describe('targets from the form', () => {
  it('each kind, and nothing while it selects nothing', () => {
    const d = emptyTargetDraft();
    expect(draftTarget(d)).toBeNull();
    d.grids.add('G27').add('G08');
    expect(draftTarget(d)).toEqual({ type: 'grids', grids: ['G08', 'G27'] });
    d.kind = 'radius';
    expect(draftTarget(d)).toBeNull();
    d.center = { lat: 29.431234567, lon: 105.884198765 };
    expect(draftTarget(d)).toEqual({ type: 'radius', center: { lat: 29.431235, lon: 105.884199 }, radiusM: 3000 });
    d.kind = 'polygon';
    d.ring = [
      [105.88, 29.43],
      [105.89, 29.43],
    ];
    expect(draftTarget(d)).toBeNull();
    d.ring.push([105.885, 29.44]);
    expect(draftTarget(d)).toMatchObject({ type: 'polygon', ring: d.ring });
    d.kind = 'poles';
    expect(draftTarget(d)).toBeNull();
    d.poles = ['pole-009', 'pole-005'];
    expect(draftTarget(d)).toEqual({ type: 'poles', poles: ['pole-009', 'pole-005'] });
    d.kind = 'all';
    expect(draftTarget(d)).toEqual({ type: 'all' });
  });
});

describe('map geometry', () => {
  const geojson = JSON.parse(readFileSync(join(CONFIG_DIR, 'sites/chashan-zhuhai.geojson'), 'utf8')) as SiteInfo['geojson'];
  const site: SiteInfo = { id: 'chashan-zhuhai', name: '茶山竹海街道', geojson, map: { tileUrl: null, tileAttribution: '', tileCrs: 'wgs84' } };
  const poles = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv')).filter((d) => d.kind === 'voice_pole');

  it('a click on a pole’s position finds the grid the ledger gives it', () => {
    const areas = siteAreas(site);
    expect(areas.grids.size).toBeGreaterThan(40);
    expect(areas.grids.get('G01')).toMatchObject({ name: '茶山社区第1网格', community: '茶山社区' });
    expect([...areas.communities.keys()]).toContain('竹海社区');
    for (const p of poles) expect(gridAt(areas, { lat: p.lat, lon: p.lon })?.id, p.id).toBe(p.grid);
    expect(gridAt(areas, { lat: 0, lon: 0 })).toBeNull();
  });

  it('points in a ring, and GCJ-02 map clicks back to WGS-84 within a millimetre', () => {
    const square: Array<[number, number]> = [
      [0, 0],
      [1, 0],
      [1, 1],
      [0, 1],
    ];
    expect(insideRings([square], { lat: 0.5, lon: 0.5 })).toBe(true);
    expect(insideRings([square], { lat: 1.5, lon: 0.5 })).toBe(false);
    const gcj = (lat: number, lon: number): [number, number] => {
      const g = wgs84ToGcj02(lat, lon);
      return [g.lat, g.lon];
    };
    for (const p of poles.slice(0, 10)) {
      const [mlat, mlon] = gcj(p.lat, p.lon);
      expect(Math.abs(mlat - p.lat) + Math.abs(mlon - p.lon)).toBeGreaterThan(1e-3); // GCJ-02 moves it hundreds of metres
      const back = unprojectWith(gcj, mlat, mlon);
      expect(Math.abs(back.lat - p.lat)).toBeLessThan(1e-8);
      expect(Math.abs(back.lon - p.lon)).toBeLessThan(1e-8);
    }
    expect(unprojectWith((lat, lon) => [lat, lon], 29.4, 105.9)).toEqual({ lat: 29.4, lon: 105.9 });
  });
});
