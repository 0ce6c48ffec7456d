/**
 * The simulated broadcast terminal's HTTP/JSON API over real sockets: auth, error codes, play /
 * duplicate / busy / conflict, the job and status endpoints with a fast time scale, stop, and
 * the transport faults (offline refuses connections, slow delays answers).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { startPoleFleet, startPoleSimulator, type PoleSimulator, type PoleSimulatorOptions } from '../../simulators/src/voice-pole/simulator.js';
import { CONFIG_DIR } from '../helpers/gateway.js';
import { join } from 'node:path';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function pole(opts: Partial<PoleSimulatorOptions> = {}): Promise<PoleSimulator> {
  const sim = await startPoleSimulator({ deviceId: 'pole-001', timeScale: 20, ...opts });
  cleanup.push(() => sim.close());
  return sim;
}

/** Calls the pole with the credentials in its URL (fetch refuses URLs that carry them). */
async function call(sim: PoleSimulator, method: string, path: string, body?: unknown, auth = 'Basic ' + Buffer.from('admin:pole-sim').toString('base64')) {
  const res = await fetch(`http://${sim.host}:${sim.port}${path}`, {
    method,
    headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('voice-pole simulator API', () => {
  it('demands HTTP Basic credentials and answers errors as {code, message}', async () => {
    const sim = await pole();
    expect(sim.url).toBe(`http://admin:pole-sim@127.0.0.1:${sim.port}/`);
    const denied = await call(sim, 'GET', '/api/v1/status', undefined, 'Basic ' + Buffer.from('admin:wrong').toString('base64'));
    expect(denied.status).toBe(401);
    expect(denied.body).toEqual({ code: 'UNAUTHORIZED', message: 'missing or wrong credentials' });
    expect(denied.headers.get('www-authenticate')).toMatch(/^Basic /);

    expect((await call(sim, 'GET', '/api/v1/nothing')).body.code).toBe('NOT_FOUND');
    expect((await call(sim, 'GET', '/api/v1/play')).body.code).toBe('METHOD_NOT_ALLOWED');
    expect(await call(sim, 'POST', '/api/v1/play', '{nope')).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
    expect(await call(sim, 'POST', '/api/v1/play', { jobId: 'j', type: 'tts', text: '甲', volume: 120 })).toMatchObject({
      status: 422,
      body: { code: 'INVALID_PARAM', field: 'volume' },
    });
    expect(await call(sim, 'POST', '/api/v1/play', { jobId: 'j', type: 'clip', clipId: 'nope' })).toMatchObject({ status: 422, body: { code: 'UNKNOWN_CLIP' } });
    expect(await call(sim, 'POST', '/api/v1/play', { jobId: 'j', type: 'tts', text: 'x'.repeat(9000) })).toMatchObject({
      status: 413,
      body: { code: 'PAYLOAD_TOO_LARGE' },
    });
    expect(await call(sim, 'GET', '/api/v1/jobs/none')).toMatchObject({ status: 404, body: { code: 'JOB_NOT_FOUND' } });
  });

  it('plays a TTS job to the end on the scaled clock, and shows it in status and on its job endpoint', async () => {
    let t = 1_750_000_000_000; // the pole's clock, moved by hand so the test does not race it
    const sim = await pole({ timeScale: 20, now: () => t });
    const created = await call(sim, 'POST', '/api/v1/play', { jobId: 'c-1', type: 'tts', text: '森林防火，人人有责', priority: 'routine', volume: 80 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ duplicate: false, job: { jobId: 'c-1', state: 'accepted', volume: 80, createdAt: t } });
    const durationMs = created.body.job.durationMs as number;
    expect(durationMs).toBe(Math.round(created.body.job.nominalDurationMs / 20));

    t += 800 / 20; // the start delay, scaled
    const status = await call(sim, 'GET', '/api/v1/status');
    expect(status.body).toMatchObject({ deviceId: 'pole-001', state: 'playing', jobId: 'c-1', jobState: 'playing', priority: 'routine', volume: 80 });
    expect(status.body.remainingMs).toBe(durationMs);
    expect((await call(sim, 'GET', '/api/v1/jobs/c-1')).body).toMatchObject({ job: { state: 'playing', startedAt: t }, remainingMs: durationMs });

    t += durationMs;
    const job = (await call(sim, 'GET', '/api/v1/jobs/c-1')).body.job;
    expect(job).toMatchObject({ state: 'done', endedAt: t });
    expect(job.endedAt - job.startedAt).toBe(durationMs);
    expect((await call(sim, 'GET', '/api/v1/status')).body).toMatchObject({ state: 'idle', jobId: null, volume: 70, lastJobs: [{ jobId: 'c-1' }] });
  });

  it('an emergency pre-empts; a routine job meanwhile is BUSY; the same job id is not played twice', async () => {
    const sim = await pole({ timeScale: 5 });
    await call(sim, 'POST', '/api/v1/play', { jobId: 'r-1', type: 'clip', clipId: 'fire-warning-01' });
    const e = await call(sim, 'POST', '/api/v1/play', { jobId: 'e-1', type: 'clip', clipId: 'evacuation-01', priority: 'emergency', volume: 100 });
    expect(e.status).toBe(201);
    expect((await call(sim, 'GET', '/api/v1/jobs/r-1')).body.job).toMatchObject({ state: 'preempted', preemptedBy: 'e-1', preemptedByPriority: 'emergency' });
    const busy = await call(sim, 'POST', '/api/v1/play', { jobId: 'r-2', type: 'tts', text: '例行宣传' });
    expect(busy).toMatchObject({ status: 409, body: { code: 'BUSY', currentJob: { jobId: 'e-1', priority: 'emergency' } } });

    const again = await call(sim, 'POST', '/api/v1/play', { jobId: 'e-1', type: 'clip', clipId: 'evacuation-01', priority: 'emergency', volume: 100 });
    expect(again).toMatchObject({ status: 200, body: { duplicate: true, job: { jobId: 'e-1' } } });
    const conflict = await call(sim, 'POST', '/api/v1/play', { jobId: 'e-1', type: 'tts', text: '别的' });
    expect(conflict).toMatchObject({ status: 409, body: { code: 'JOB_ID_CONFLICT' } });
    expect(sim.model.jobs().map((j) => j.jobId)).toEqual(['r-1', 'e-1']);
  });

  it('stop: the active job, a named one, or nothing', async () => {
    const sim = await pole({ timeScale: 1 });
    expect((await call(sim, 'POST', '/api/v1/stop', {})).body).toEqual({ job: null, stopped: false });
    await call(sim, 'POST', '/api/v1/play', { jobId: 's-1', type: 'clip', clipId: 'fire-warning-01' });
    const r = await call(sim, 'POST', '/api/v1/stop', { jobId: 's-1' });
    expect(r.body).toMatchObject({ stopped: true, job: { jobId: 's-1', state: 'stopped', stoppedBy: 'api' } });
    expect((await call(sim, 'POST', '/api/v1/stop')).body).toEqual({ job: null, stopped: false });
    expect((await call(sim, 'POST', '/api/v1/stop', { jobId: 'x' })).body.code).toBe('JOB_NOT_FOUND');
    expect((await call(sim, 'GET', '/api/v1/clips')).body.clips.map((c: { id: string }) => c.id)).toContain('evacuation-01');
  });

  it('offline refuses connections on the same port until it clears; playback carries on meanwhile', async () => {
    const sim = await pole({ timeScale: 1 });
    await call(sim, 'POST', '/api/v1/play', { jobId: 'o-1', type: 'clip', clipId: 'fire-warning-01' });
    await sim.setFault('offline');
    const err = await fetch(`http://${sim.host}:${sim.port}/api/v1/status`).catch((e: unknown) => e as Error & { cause?: { code?: string } });
    expect((err as Error & { cause?: { code?: string } }).cause?.code).toBe('ECONNREFUSED');
    await sim.setFault('none');
    expect((await call(sim, 'GET', '/api/v1/status')).body).toMatchObject({ state: 'playing', jobId: 'o-1' });
  });

  it('fault accepts a job and fails it; slow delays each answer', async () => {
    const sim = await pole({ timeScale: 20, slowMs: 300 });
    await sim.setFault('fault');
    const r = await call(sim, 'POST', '/api/v1/play', { jobId: 'f-1', type: 'tts', text: '测试' });
    expect(r.status).toBe(201);
    await sleep(80);
    expect((await call(sim, 'GET', '/api/v1/jobs/f-1')).body.job).toMatchObject({ state: 'failed', error: { code: 'AMPLIFIER_FAULT' } });
    expect((await call(sim, 'GET', '/api/v1/status')).body).toMatchObject({ state: 'fault', fault: { code: 'AMPLIFIER_FAULT' } });

    await sim.setFault('slow');
    const t0 = Date.now();
    expect((await call(sim, 'GET', '/api/v1/status')).body.state).toBe('idle');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('a fleet runs one server per pole of the ledger', async () => {
    const ledger = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv')).filter((d) => ['pole-001', 'pole-002', 'tank-001'].includes(d.id));
    const fleet = await startPoleFleet(ledger, { timeScale: 10 });
    cleanup.push(() => fleet.close());
    expect([...fleet.endpoints.keys()]).toEqual(['pole-001', 'pole-002']);
    const ports = new Set([...fleet.poles.values()].map((p) => p.port));
    expect(ports.size).toBe(2);
    for (const [id, p] of fleet.poles) expect((await call(p, 'GET', '/api/v1/status')).body.deviceId).toBe(id);
  });
});
