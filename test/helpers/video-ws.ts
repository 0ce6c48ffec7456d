/**
 * Helpers for the video tests: a few simulated cameras (real RTSP server with ffmpeg encoders,
 * real ONVIF fleet) put into the shipped ledger with credentials in their URLs; a WebSocket client
 * of `/api/video/:id/live` that records every frame; the relay's ffmpeg processes found in /proc
 * (independent of the relay's own bookkeeping); and a small MP4 box reader written apart from
 * the gateway's, so the tests do not check the parser with itself.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import type { VideoServerMessage } from '../../protocol/video.js';
import { startCameraFleet, type CameraFleet } from '../../simulators/src/camera/index.js';
import { startRtspServer, type RtspServer } from '../../simulators/src/rtsp/index.js';
import { CONFIG_DIR, type TestGateway, type TestRole } from './gateway.js';

export const CAMERA_USER = 'cam-admin';
/** Never to be seen outside the gateway. */
export const CAMERA_PASSWORD = 'Sekr1t-cam-pw';

export type CameraDevice = Extract<LedgerDevice, { kind: 'camera' }>;

export interface VideoFleet {
  rtsp: RtspServer;
  cameras: CameraFleet;
  ids: string[];
  /** the shipped ledger, the chosen cameras with onvif_url and rtsp_url (credentials inside) */
  ledger: LedgerDevice[];
  close(): Promise<void>;
}

export async function startVideoFleet(
  count: number,
  opts: { rtspIdleStopMs?: number; ptzDegPerSec?: number; pick?: (cameras: CameraDevice[]) => CameraDevice[] } = {},
): Promise<VideoFleet> {
  const shipped = loadLedger(join(CONFIG_DIR, 'ledger/chashan-zhuhai.csv'));
  const all = shipped.filter((d): d is CameraDevice => d.kind === 'camera');
  const chosen = (opts.pick ? opts.pick(all) : all).slice(0, count);
  const ids = chosen.map((d) => d.id);
  const known = new Set(ids);
  const rtsp = await startRtspServer({ host: '127.0.0.1', port: 0, isKnown: (id) => known.has(id), idleStopMs: opts.rtspIdleStopMs ?? 500 });
  let cameras: CameraFleet;
  try {
    cameras = await startCameraFleet(
      chosen.map((d) => ({ id: d.id, name: d.name, headingDeg: d.settings.headingDeg ?? 0, vendor: d.settings.vendor, lat: d.lat, lon: d.lon })),
      {
        username: CAMERA_USER,
        password: CAMERA_PASSWORD,
        streamUrlFor: (id) => rtsp.urlFor(id),
        seed: 7,
        events: { maxPullTimeoutMs: 1000 },
        ptz: { maxPanDegPerSec: opts.ptzDegPerSec ?? 360 },
      },
    );
  } catch (err) {
    await rtsp.close();
    throw err;
  }
  const withCreds = (raw: string) => {
    const u = new URL(raw);
    u.username = CAMERA_USER;
    u.password = CAMERA_PASSWORD;
    return u.toString();
  };
  const ledger = shipped.map((d): LedgerDevice =>
    d.kind === 'camera' && known.has(d.id)
      ? { ...d, settings: { ...d.settings, onvifUrl: withCreds(cameras.deviceServiceUrl(d.id)), rtspUrl: withCreds(rtsp.urlFor(d.id)) } }
      : d,
  );
  return {
    rtsp,
    cameras,
    ids,
    ledger,
    async close() {
      await cameras.close();
      await rtsp.close();
    },
  };
}

// ---- the live socket ----------------------------------------------------------------------------

export type Frame = { at: number; text: VideoServerMessage } | { at: number; binary: Buffer };

export interface VideoClient {
  ws: WebSocket;
  frames: Frame[];
  texts(): VideoServerMessage[];
  binaries(): Buffer[];
  states(): string[];
  /** resolves when the server closes the socket (or it fails to open) */
  closed: Promise<{ code: number; reason: string }>;
  waitFor<T>(check: () => T | undefined | false, what: string, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export function liveUrl(gateway: TestGateway, cameraId: string, format?: string): string {
  return `${gateway.httpUrl.replace(/^http/, 'ws')}/api/video/${encodeURIComponent(cameraId)}/live${format ? `?format=${format}` : ''}`;
}

/** Opens the live socket as the test user of `role` (null: without a session). */
export async function openVideo(gateway: TestGateway, cameraId: string, opts: { role?: TestRole | null; format?: string } = {}): Promise<VideoClient> {
  const headers: Record<string, string> = {};
  if (opts.role !== null) headers.authorization = `Bearer ${await gateway.tokenFor(opts.role ?? 'viewer')}`;
  const ws = new WebSocket(liveUrl(gateway, cameraId, opts.format), { headers });
  const frames: Frame[] = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const at = Date.now();
    if (isBinary) frames.push({ at, binary: Buffer.from(data) });
    else frames.push({ at, text: JSON.parse(data.toString('utf8')) as VideoServerMessage });
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ code: -(res.statusCode ?? 0), reason: `HTTP ${res.statusCode}` });
      ws.terminate();
    });
    ws.on('error', () => undefined);
  });
  const client: VideoClient = {
    ws,
    frames,
    texts: () => frames.flatMap((f) => ('text' in f ? [f.text] : [])),
    binaries: () => frames.flatMap((f) => ('binary' in f ? [f.binary] : [])),
    states: () => client.texts().flatMap((m) => (m.type === 'state' ? [m.state] : [])),
    closed,
    async waitFor(check, what, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const v = check();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; frames: ${describeFrames(frames)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      const done = new Promise((r) => ws.once('close', r));
      ws.close();
      await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
      ws.terminate();
    },
  };
  return client;
}

export function describeFrames(frames: Frame[]): string {
  const parts = frames.slice(0, 12).map((f) => ('text' in f ? JSON.stringify(f.text) : `<${f.binary.length} bytes ${topBoxTypes(f.binary).join('+') || 'ts'}>`));
  return `${frames.length} [${parts.join(', ')}${frames.length > 12 ? ', …' : ''}]`;
}

// ---- MP4, read independently of gateway/src/video/fmp4.ts -----------------------------------------

export function topBoxTypes(buf: Buffer): string[] {
  const types: string[] = [];
  for (let at = 0; at + 8 <= buf.length; ) {
    const size = buf.readUInt32BE(at);
    if (size < 8 || at + size > buf.length) return [];
    types.push(buf.toString('latin1', at + 4, at + 8));
    at += size;
  }
  return types;
}

/** Finds the first box of `type` anywhere under buf (a depth-first walk of container boxes). */
export function findBox(buf: Buffer, type: string, containers = ['moov', 'trak', 'mdia', 'minf', 'stbl', 'moof', 'traf', 'mvex']): Buffer | undefined {
  for (let at = 0; at + 8 <= buf.length; ) {
    const size = buf.readUInt32BE(at);
    if (size < 8 || at + size > buf.length) return undefined;
    const t = buf.toString('latin1', at + 4, at + 8);
    const box = buf.subarray(at, at + size);
    if (t === type) return box;
    if (containers.includes(t)) {
      const inner = findBox(box.subarray(8), type, containers);
      if (inner) return inner;
    }
    at += size;
  }
  return undefined;
}

/** tfdt baseMediaDecodeTime of a moof(+mdat). */
export function decodeTimeOf(fragment: Buffer): number {
  const tfdt = findBox(fragment, 'tfdt');
  if (!tfdt) throw new Error('no tfdt');
  return tfdt[8] === 1 ? Number(tfdt.readBigUInt64BE(12)) : tfdt.readUInt32BE(12);
}

// ---- the relay's processes ------------------------------------------------------------------------

export interface RelayProcess {
  pid: number;
  cameraId: string;
  format: 'fmp4' | 'mpeg1';
}

/** ffmpeg processes of this process reading an RTSP stream (the relay's; the simulator's encoders read testsrc2). */
export function relayProcesses(): RelayProcess[] {
  const out: RelayProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid || fields[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const input = argv[argv.indexOf('-i') + 1] ?? '';
      if (!argv.includes('-rtsp_transport') || !input.startsWith('rtsp://')) continue;
      out.push({ pid: Number(entry), cameraId: decodeURIComponent(new URL(input).pathname.slice(1)), format: argv.includes('mpeg1video') ? 'mpeg1' : 'fmp4' });
    } catch {
      // went away while we looked
    }
  }
  return out;
}

export async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - start;
}
