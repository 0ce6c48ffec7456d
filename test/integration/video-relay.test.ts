/**
 * The live video relay against real ffmpeg and the simulated cameras' real RTSP server: what a
 * viewer receives (codec message, an init segment that parses, media fragments whose decode time
 * advances and that ffprobe decodes), one ffmpeg shared by three viewers and stopped after the
 * linger, a camera stream that dies and comes back (reconnecting → live), the cap on streams,
 * the MPEG-1 fallback, sign-in, and camera credentials that never leave the gateway.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VIDEO_CLOSE_CODES, type VideoServerMessage } from '../../protocol/video.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import {
  CAMERA_PASSWORD,
  CAMERA_USER,
  decodeTimeOf,
  findBox,
  openVideo,
  relayProcesses,
  startVideoFleet,
  topBoxTypes,
  until,
  type VideoClient,
  type VideoFleet,
} from '../helpers/video-ws.js';

const LINGER_MS = 1500;

let fleet: VideoFleet;
let gateway: TestGateway;
let dir: string;
const clients: VideoClient[] = [];
/** every text frame any viewer received, for the credentials check */
const allTexts: string[] = [];

beforeAll(async () => {
  fleet = await startVideoFleet(4);
  gateway = await startTestGateway({
    ledger: fleet.ledger,
    gateway: {
      video: { lingerMs: LINGER_MS, maxStreams: 2, maxTranscodes: 1, retryInitialMs: 200, retryMaxMs: 800, stallTimeoutMs: 4000, offlineAfterMs: 1000 },
    },
  });
  dir = mkdtempSync(join(tmpdir(), 'gs-video-'));
});

// A failed test must not leave its viewers keeping streams open for the next one.
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await gateway?.close();
  await fleet?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // every ffmpeg the relay started is gone with the gateway
  expect(relayProcesses()).toEqual([]);
});

async function watch(cameraId: string, opts: Parameters<typeof openVideo>[2] = {}): Promise<VideoClient> {
  const c = await openVideo(gateway, cameraId, opts);
  clients.push(c);
  c.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) allTexts.push(data.toString('utf8'));
  });
  return c;
}

const codecs = (c: VideoClient) => c.texts().filter((m): m is Extract<VideoServerMessage, { type: 'codec' }> => m.type === 'codec');
const mediaAfter = (c: VideoClient, epochIndex: number) => {
  // binaries after the epochIndex-th codec message: [init, fragment, fragment, ...]
  let seen = -1;
  const out: Buffer[] = [];
  for (const f of c.frames) {
    if ('text' in f) {
      if (f.text.type === 'codec') seen++;
      continue;
    }
    if (seen === epochIndex) out.push(f.binary);
  }
  return out;
};

function ffprobe(file: string): Promise<{ codec: string; width: number; height: number; frames: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      '/usr/bin/ffprobe',
      ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height,nb_read_frames', '-of', 'json', file],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${err.message}: ${stderr}`));
        const s = (JSON.parse(stdout) as { streams: Array<{ codec_name: string; width: number; height: number; nb_read_frames: string }> }).streams[0]!;
        resolve({ codec: s.codec_name, width: s.width, height: s.height, frames: Number(s.nb_read_frames) });
      },
    );
  });
}

describe('live video relay (fmp4)', () => {
  it('sends the codec, an init segment (ftyp+moov), then fragments from a key frame whose decode time advances; ffprobe decodes them', async () => {
    const cam = fleet.ids[0]!;
    const v = await watch(cam);
    await v.waitFor(() => mediaAfter(v, 0).length >= 12, '12 binary frames');
    const texts = v.texts();
    expect(texts[0]).toMatchObject({ type: 'state', cameraId: cam, format: 'fmp4', state: 'connecting' });
    const codec = codecs(v)[0]!;
    expect(codec).toMatchObject({ type: 'codec', format: 'fmp4', epoch: 1, width: 640, height: 360 });
    expect(codec.codec).toMatch(/^avc1\.[0-9A-F]{6}$/);
    expect(codec.mimeType).toBe(`video/mp4; codecs="${codec.codec}"`);
    expect(v.states()).toContain('live');

    const [init, ...fragments] = mediaAfter(v, 0);
    expect(topBoxTypes(init!)).toEqual(['ftyp', 'moov']);
    // avc1.PPCCLL is profile, compatibility and level from the avcC box (after its type: version, then those three)
    const avcC = init!.indexOf(Buffer.from('avcC'));
    expect(avcC).toBeGreaterThan(0);
    expect(codec.codec.slice(5)).toBe(init!.subarray(avcC + 5, avcC + 8).toString('hex').toUpperCase());
    for (const f of fragments) expect(topBoxTypes(f)).toEqual(['moof', 'mdat']);
    const times = fragments.map(decodeTimeOf);
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThan(times[i - 1]!);
    const file = join(dir, 'first.mp4');
    writeFileSync(file, Buffer.concat([init!, ...fragments]));
    const probed = await ffprobe(file);
    expect(probed).toMatchObject({ codec: 'h264', width: 640, height: 360 });
    expect(probed.frames).toBeGreaterThanOrEqual(fragments.length);
    await v.close();
  });

  it('three viewers share one ffmpeg, which stops lingerMs after the last leaves', async () => {
    const cam = fleet.ids[1]!;
    const viewers = [await watch(cam), await watch(cam), await watch(cam)];
    await Promise.all(viewers.map((v) => v.waitFor(() => mediaAfter(v, 0).length >= 3, 'media')));
    const procs = relayProcesses().filter((p) => p.cameraId === cam);
    expect(procs).toHaveLength(1);
    expect(procs[0]!.pid).toBe(gateway.video.relay.pidOf(cam));
    // the simulated camera itself sees one RTSP viewer: the gateway
    expect(fleet.rtsp.viewerCount(cam)).toBe(1);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/gs_video_viewers\{format="fmp4"\} 3/);
    expect(metrics).toMatch(/gs_video_streams\{format="fmp4",state="live"\} [12]\n/); // the first test's camera may still linger
    expect(gateway.video.relay.streams().find((s) => s.cameraId === cam)).toMatchObject({ state: 'live', viewers: 3 });
    // a late joiner's first fragment starts at a key frame too: all three decode from their first fragment
    for (const v of viewers) {
      const [init, first] = mediaAfter(v, 0);
      const trun = findBox(first!, 'trun')!;
      const flags = trun.readUInt32BE(8) & 0xffffff;
      if (flags & 0x4) expect(trun.readUInt32BE(16 + (flags & 0x1 ? 4 : 0)) & 0x10000).toBe(0);
      expect(topBoxTypes(init!)).toEqual(['ftyp', 'moov']);
    }

    await Promise.all(viewers.map((v) => v.close()));
    const closedAt = Date.now();
    const streams = (await (await gateway.api('/api/video/streams', { as: 'viewer' })).json()) as { streams: Array<{ cameraId: string; viewers: number; closesInMs: number | null }> };
    expect(streams.streams.find((s) => s.cameraId === cam)).toMatchObject({ viewers: 0 });
    await new Promise((r) => setTimeout(r, LINGER_MS / 2));
    expect(relayProcesses().filter((p) => p.cameraId === cam)).toHaveLength(1); // still lingering
    await until(() => relayProcesses().every((p) => p.cameraId !== cam), 'the ffmpeg to stop', LINGER_MS + 5000);
    const stoppedAfter = Date.now() - closedAt;
    expect(stoppedAfter).toBeGreaterThanOrEqual(LINGER_MS - 100);
    expect(gateway.video.relay.streams().find((s) => s.cameraId === cam)).toBeUndefined();
  });

  it('a camera stream that dies: viewers get reconnecting, offline while it stays down, then live again with a new codec epoch and init segment', async () => {
    const cam = fleet.ids[2]!;
    const v = await watch(cam);
    await v.waitFor(() => mediaAfter(v, 0).length >= 3, 'media');
    const restartsBefore = gateway.video.relay.streams().find((s) => s.cameraId === cam)!.restarts;
    await fleet.rtsp.stopStream(cam, { refuseMs: 4000 });
    const reconnecting = await v.waitFor(() => v.texts().find((m) => m.type === 'state' && m.state === 'reconnecting'), 'reconnecting');
    expect(reconnecting).toMatchObject({ cameraId: cam, state: 'reconnecting' });
    expect(typeof (reconnecting as { retryInMs?: number }).retryInMs).toBe('number');
    // while refused (RTSP 503) the relay keeps retrying; past offlineAfterMs the state says offline; then the stream returns
    await v.waitFor(() => codecs(v).length >= 2 && mediaAfter(v, 1).length >= 3, 'live again', 20_000);
    const states = v.states();
    expect(states.indexOf('offline'), states.join(' ')).toBeGreaterThan(states.indexOf('reconnecting'));
    expect(states.lastIndexOf('live'), states.join(' ')).toBeGreaterThan(states.indexOf('offline'));
    const offline = v.texts().find((m) => m.type === 'state' && m.state === 'offline') as { reason?: string };
    expect(offline.reason, JSON.stringify(offline)).toMatch(/503|Service Unavailable|Server returned/i);
    expect(offline.reason).not.toContain('127.0.0.1'); // no camera addresses for viewers either
    expect(codecs(v)[1]!.epoch).toBe(2);
    expect(topBoxTypes(mediaAfter(v, 1)[0]!)).toEqual(['ftyp', 'moov']);
    expect(gateway.video.relay.streams().find((s) => s.cameraId === cam)!.restarts).toBeGreaterThan(restartsBefore);
    expect(relayProcesses().filter((p) => p.cameraId === cam)).toHaveLength(1);
    await v.close();
  });

  it('refuses a stream beyond video.maxStreams with VIDEO_STREAM_LIMIT, and makes room by closing a lingering one', async () => {
    // Cameras 0..2 may still linger from the tests above; wait until none is open.
    await until(() => gateway.video.relay.streams().length === 0, 'no streams open', 10_000);
    const a = await watch(fleet.ids[0]!);
    const b = await watch(fleet.ids[1]!);
    await Promise.all([a, b].map((v) => v.waitFor(() => v.states().includes('live'), 'live')));
    const c = await watch(fleet.ids[2]!);
    const closed = await c.closed;
    expect(closed).toEqual({ code: VIDEO_CLOSE_CODES.VIDEO_STREAM_LIMIT, reason: 'VIDEO_STREAM_LIMIT' });
    expect(c.texts()).toEqual([{ type: 'error', code: 'VIDEO_STREAM_LIMIT', message: expect.stringContaining('video.maxStreams') }]);
    expect(relayProcesses().filter((p) => p.format === 'fmp4')).toHaveLength(2);
    // A leaves; its stream lingers, and gives way to a camera someone wants to watch.
    await a.close();
    await until(() => gateway.video.relay.streams().some((s) => s.cameraId === fleet.ids[0] && s.viewers === 0), 'a lingering');
    const d = await watch(fleet.ids[3]!);
    await d.waitFor(() => d.states().includes('live'), 'live');
    expect(gateway.video.relay.streams().map((s) => s.cameraId).sort()).toEqual([fleet.ids[1], fleet.ids[3]].sort());
    await until(() => relayProcesses().filter((p) => p.format === 'fmp4').length === 2, 'two ffmpeg');
    await Promise.all([b.close(), d.close()]);
  });
});

describe('live video relay: fallback, access, credentials', () => {
  it('format=mpeg1 sends whole MPEG-TS packets of MPEG-1 video from a key frame, from its own ffmpeg', async () => {
    const cam = fleet.ids[3]!;
    const v = await watch(cam, { format: 'mpeg1' });
    await v.waitFor(() => v.binaries().reduce((n, b) => n + b.length, 0) > 50_000, 'TS data', 20_000);
    expect(codecs(v)[0]).toMatchObject({ format: 'mpeg1', codec: 'mpeg1video', mimeType: 'video/mp2t', width: 640, height: 360 });
    const bins = v.binaries();
    for (const b of bins) {
      expect(b.length % 188).toBe(0);
      for (let i = 0; i < b.length; i += 188) expect(b[i]).toBe(0x47);
    }
    // the first packet with a PES start carries a sequence header (00 00 01 B3): a key frame
    expect(bins[0]!.indexOf(Buffer.from([0, 0, 1, 0xb3]))).toBeGreaterThan(0);
    const file = join(dir, 'fallback.ts');
    writeFileSync(file, Buffer.concat(bins));
    expect(await ffprobe(file)).toMatchObject({ codec: 'mpeg1video', width: 640, height: 360 });
    expect(relayProcesses().filter((p) => p.cameraId === cam && p.format === 'mpeg1')).toHaveLength(1);
    // a second transcode is over video.maxTranscodes (1)
    const w = await watch(fleet.ids[0]!, { format: 'mpeg1' });
    expect((await w.closed).code).toBe(VIDEO_CLOSE_CODES.VIDEO_STREAM_LIMIT);
    await v.close();
  });

  it('needs a session (401 on the upgrade), and names an unknown camera', async () => {
    const anon = await watch(fleet.ids[0]!, { role: null });
    expect(await anon.closed).toEqual({ code: -401, reason: 'HTTP 401' });
    const unknown = await watch('cam-does-not-exist');
    expect(await unknown.closed).toEqual({ code: VIDEO_CLOSE_CODES.DEVICE_NOT_FOUND, reason: 'DEVICE_NOT_FOUND' });
    expect(unknown.texts()[0]).toMatchObject({ type: 'error', code: 'DEVICE_NOT_FOUND' });
    const bad = await watch(fleet.ids[0]!, { format: 'hls' });
    expect((await bad.closed).code).toBe(-400);
  });

  it('camera credentials never leave the gateway: not in device API bodies, stream lists or WebSocket messages', async () => {
    const cam = fleet.ids[0]!;
    expect(gateway.registry.get(cam)?.kind === 'camera' && gateway.registry.get(cam)!.settings).toMatchObject({ rtspUrl: expect.stringContaining(CAMERA_PASSWORD) });
    const bodies: string[] = [];
    for (const path of [`/api/devices/${cam}`, '/api/devices?kind=camera', '/api/video/streams', '/api/openapi.json']) {
      const res = await gateway.api(path, { as: 'viewer' });
      expect(res.status, path).toBe(200);
      bodies.push(await res.text());
    }
    const device = JSON.parse(bodies[0]!) as { settings: { rtspUrl: string; onvifUrl: string } };
    expect(device.settings.rtspUrl).toBe(fleet.rtsp.urlFor(cam));
    expect(device.settings.onvifUrl).toBe(fleet.cameras.deviceServiceUrl(cam));
    expect(allTexts.length).toBeGreaterThan(10);
    for (const text of [...bodies, ...allTexts]) {
      expect(text).not.toContain(CAMERA_PASSWORD);
      expect(text).not.toContain(`${CAMERA_USER}:`);
    }
  });
});
