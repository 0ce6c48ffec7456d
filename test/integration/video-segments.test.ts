/**
 * The relay's stream handling on real ffmpeg output, without cameras: fragmented MP4 and
 * MPEG-TS written by ffmpeg with the relay's own arguments are cut into segments (fed in odd-sized
 * chunks, as a pipe delivers them); key frames found by the parser are the ones ffprobe reports;
 * and a slow viewer skips to the next key frame with its timeline kept continuous, which ffprobe
 * confirms by decoding what that viewer received.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { BoxSplitter, parseFragment, parseInit, type FragmentInfo } from '../../gateway/src/video/fmp4.js';
import { TsSplitter, type TsSegment } from '../../gateway/src/video/mpegts.js';
import { outputArgs } from '../../gateway/src/video/upstream.js';
import { Viewer } from '../../gateway/src/video/viewer.js';
import { decodeTimeOf } from '../helpers/video-ws.js';

const FFMPEG = '/usr/bin/ffmpeg';
const FFPROBE = '/usr/bin/ffprobe';
let dir: string;

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { timeout: 30_000, maxBuffer: 32 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

const RELAY = { fragmentMs: 100, mpeg1: { bitrateKbps: 1000, fps: 25 as const, width: 640 } };

/** ffmpeg with the relay's own output arguments (gateway/src/video/upstream.ts), to a file instead of the pipe. */
async function relayOutput(input: string[], format: 'fmp4' | 'mpeg1', file: string): Promise<Buffer> {
  const out = outputArgs(format, RELAY);
  expect(out.at(-1)).toBe('pipe:1');
  await run(FFMPEG, ['-hide_banner', '-loglevel', 'error', ...input, ...out.slice(0, -1), '-y', file]);
  return readFileSync(file);
}

/** 4 s of 640x360 H.264 at 15 fps with a key frame every second (as the simulated cameras send), remuxed as the relay does. */
async function makeFmp4(): Promise<Buffer> {
  const h264 = join(dir, 'camera.h264');
  await run(FFMPEG, [
    '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=15', '-t', '4',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-g', '15', '-keyint_min', '15', '-sc_threshold', '0', '-bf', '0',
    '-f', 'h264', '-y', h264,
  ]);
  return relayOutput(['-r', '15', '-f', 'h264', '-i', h264], 'fmp4', join(dir, 'source.mp4'));
}

function chunked(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, n = 0; at < buf.length; n++) {
    const size = [7, 1000, 65536, 3, 20000][n % 5]!;
    out.push(buf.subarray(at, at + size));
    at += size;
  }
  return out;
}

/** The ws surface a Viewer uses, with bufferedAmount set by the test. */
class FakeSocket {
  readyState = 1;
  bufferedAmount = 0;
  sent: Array<string | Buffer> = [];
  on(): this {
    return this;
  }
  send(data: string | Buffer): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gs-video-seg-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fragmented MP4', () => {
  let init: Buffer;
  let fragments: Array<{ data: Buffer; info: FragmentInfo }>;

  beforeAll(async () => {
    const source = await makeFmp4();
    const splitter = new BoxSplitter();
    const boxes = chunked(source).flatMap((c) => splitter.push(c));
    expect(splitter.pendingBytes).toBe(0);
    expect(boxes.slice(0, 2).map((b) => b.type)).toEqual(['ftyp', 'moov']);
    init = Buffer.concat([boxes[0]!.data, boxes[1]!.data]);
    const info = parseInit(init);
    fragments = [];
    for (let i = 2; i + 1 < boxes.length; i += 2) {
      expect([boxes[i]!.type, boxes[i + 1]!.type]).toEqual(['moof', 'mdat']);
      const data = Buffer.concat([boxes[i]!.data, boxes[i + 1]!.data]);
      fragments.push({ data, info: parseFragment(data, info.defaultSampleFlags)! });
    }
  });

  it('reads the codec string, size and timescale from the init segment', () => {
    const info = parseInit(init);
    expect(info).toMatchObject({ sampleEntry: 'avc1', width: 640, height: 360 });
    expect(info.codec).toMatch(/^avc1\.42C0[0-9A-F]{2}$/); // constrained baseline
    expect(info.timescale).toBeGreaterThan(0);
  });

  it('finds exactly the key frames ffprobe finds, one a second, each starting a fragment', async () => {
    const file = join(dir, 'whole.mp4');
    writeFileSync(file, Buffer.concat([init, ...fragments.map((f) => f.data)]));
    const out = await run(FFPROBE, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=dts_time,flags', '-of', 'csv=p=0', file]);
    const keyTimes = out.trim().split('\n').filter((l) => l.includes('K')).map((l) => Number(l.split(',')[0]));
    expect(keyTimes).toEqual([0, 1, 2, 3]);
    const timescale = parseInit(init).timescale!;
    const ours = fragments.filter((f) => f.info.keyframe).map((f) => f.info.decodeTime / timescale);
    expect(ours.map((t) => Math.round(t * 1000) / 1000)).toEqual(keyTimes);
    expect(fragments.length).toBeGreaterThan(8); // short fragments between key frames too
    for (const f of fragments) expect(f.info.decodeTime).toBe(decodeTimeOf(f.data));
  });

  it('a slow viewer skips to the next key frame and its timeline stays continuous', async () => {
    const socket = new FakeSocket();
    let drops = 0;
    const viewer = new Viewer(socket as unknown as WebSocket, 'slow', { maxBufferedBytes: 100_000, onBytes: () => undefined, onDrop: () => drops++ });
    viewer.startEpoch({ type: 'codec', format: 'fmp4', epoch: 1, mimeType: 'video/mp4', codec: 'avc1', width: 640, height: 360 }, init);
    const keys = fragments.map((f, i) => (f.info.keyframe ? i : -1)).filter((i) => i >= 0);
    const [, secondKey, thirdKey] = keys as [number, number, number];
    const stallAt = secondKey - 2; // the link stalls just before the second key frame...
    const sentIndex: number[] = [];
    for (let i = 0; i < fragments.length; i++) {
      if (i === stallAt) socket.bufferedAmount = 99_999;
      if (i === thirdKey - 1) socket.bufferedAmount = 0; // ...and has drained before the third
      const before = socket.sent.length;
      viewer.media({ data: fragments[i]!.data, keyframe: fragments[i]!.info.keyframe, fragment: fragments[i]!.info });
      if (socket.sent.length > before) sentIndex.push(i);
    }
    // everything up to the stall, then nothing until the third key frame, then everything
    expect(sentIndex).toEqual([...Array(stallAt).keys(), ...Array.from({ length: fragments.length - thirdKey }, (_, k) => thirdKey + k)]);
    expect(drops).toBe(thirdKey - stallAt);
    const media = socket.sent.slice(2) as Buffer[];
    // the resumed fragment takes the decode time of the first skipped one: no gap for the player
    const resumed = media[stallAt]!;
    expect(decodeTimeOf(resumed)).toBe(fragments[stallAt]!.info.decodeTime);
    // the shared fragment itself is untouched (other viewers get the original)
    expect(decodeTimeOf(fragments[thirdKey]!.data)).toBe(fragments[thirdKey]!.info.decodeTime);
    const file = join(dir, 'slow.mp4');
    writeFileSync(file, Buffer.concat([init, ...media]));
    const out = await run(FFPROBE, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=dts', '-of', 'csv=p=0', file]);
    const dts = out.trim().split('\n').map(Number);
    const step = dts[1]! - dts[0]!;
    for (let i = 1; i < dts.length; i++) expect(dts[i]! - dts[i - 1]!).toBe(step); // evenly spaced, no jump
    expect(await run(FFPROBE, ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file])).toMatch(
      new RegExp(`^${dts.length}\\b`),
    );
  });
});

describe('MPEG-TS (the jsmpeg fallback)', () => {
  it('cuts whole packets and starts a segment at each MPEG-1 sequence header (a 720p camera scaled to 640 wide)', async () => {
    const ts = await relayOutput(['-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=15', '-t', '3'], 'mpeg1', join(dir, 'fallback.ts'));
    const splitter = new TsSplitter();
    const segments: TsSegment[] = chunked(ts).flatMap((c) => splitter.push(c));
    expect(splitter.width).toBe(640);
    expect(splitter.height).toBe(360);
    const keys = segments.filter((s) => s.keyframe);
    expect(keys.length).toBe(3); // one a second, though the input is 15 fps and MPEG-1 is declared at 25
    for (const s of segments) {
      expect(s.data.length % 188).toBe(0);
      expect(s.data[0]).toBe(0x47);
    }
    for (const k of keys) {
      expect(k.data[1]! & 0x40).toBe(0x40); // payload unit start
      expect(k.data.subarray(0, 188).indexOf(Buffer.from([0, 0, 1, 0xb3]))).toBeGreaterThan(0);
    }
  });
});
