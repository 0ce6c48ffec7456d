import { describe, expect, it } from 'vitest';
import { encoderArgs, overlayFilter, parseH264Fmtp, type EncoderSettings } from '../../simulators/src/rtsp/encoder.js';
import { isRtcp, parseRtpHeader, rtcpBye, startsH264KeyFrame, ViewerRtpMapper } from '../../simulators/src/rtsp/rtp.js';

/** An RTP packet from "the encoder": SSRC 0x11111111, PT 96. */
function rtp(seq: number, ts: number, payload: number[], marker = false): Buffer {
  const p = Buffer.alloc(12 + payload.length);
  p.writeUInt8(0x80, 0);
  p.writeUInt8((marker ? 0x80 : 0) | 96, 1);
  p.writeUInt16BE(seq & 0xffff, 2);
  p.writeUInt32BE(ts >>> 0, 4);
  p.writeUInt32BE(0x11111111, 8);
  Buffer.from(payload).copy(p, 12);
  return p;
}

const SPS = [0x67, 0x42, 0xc0, 0x16];
const IDR_FU_START = [0x7c, 0x85, 0x88]; // FU-A (28), start bit, type 5
const IDR_FU_MIDDLE = [0x7c, 0x05, 0x88];
const P_SLICE = [0x41, 0x9a];
const STAP_A_SPS_PPS = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];

describe('H.264 key-frame starts (RFC 6184)', () => {
  it('SPS or IDR as a single NAL, inside STAP-A, or as the first FU-A fragment', () => {
    expect(startsH264KeyFrame(Buffer.from(SPS))).toBe(true);
    expect(startsH264KeyFrame(Buffer.from([0x65, 0x88]))).toBe(true);
    expect(startsH264KeyFrame(Buffer.from(STAP_A_SPS_PPS))).toBe(true);
    expect(startsH264KeyFrame(Buffer.from(IDR_FU_START))).toBe(true);
  });
  it('not a P slice, a later IDR fragment, a lone PPS or an empty payload', () => {
    expect(startsH264KeyFrame(Buffer.from(P_SLICE))).toBe(false);
    expect(startsH264KeyFrame(Buffer.from(IDR_FU_MIDDLE))).toBe(false);
    expect(startsH264KeyFrame(Buffer.from([0x68, 0xce]))).toBe(false);
    expect(startsH264KeyFrame(Buffer.from([0x7c, 0x81, 0x00]))).toBe(false); // FU-A start of a P slice
    expect(startsH264KeyFrame(Buffer.alloc(0))).toBe(false);
  });
  it('finds the payload after CSRCs and a header extension', () => {
    const p = Buffer.concat([Buffer.from([0x91, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]), Buffer.alloc(4), Buffer.from([0xbe, 0xde, 0, 1]), Buffer.alloc(4), Buffer.from(SPS)]);
    const h = parseRtpHeader(p)!;
    expect(h.payloadOffset).toBe(12 + 4 + 4 + 4);
    expect(startsH264KeyFrame(p.subarray(h.payloadOffset))).toBe(true);
    expect(parseRtpHeader(Buffer.from([0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]))).toBeUndefined(); // RTCP SR
  });
});

describe('per-viewer renumbering', () => {
  it('starts at the next key frame with the announced seq/rtptime and its own SSRC, then follows the source', () => {
    const m = new ViewerRtpMapper({ ssrc: 0xabcdef01, seq: 65534, rtptime: 0xfffffff0 });
    expect(m.map(rtp(100, 9000, SPS))).toBeUndefined(); // not playing yet
    expect(m.arm()).toEqual({ seq: 65534, rtptime: 0xfffffff0 });
    expect(m.map(rtp(100, 9000, P_SLICE))).toBeUndefined(); // mid-GOP: skipped
    expect(m.map(rtp(101, 9000, IDR_FU_MIDDLE))).toBeUndefined();
    const first = parseRtpHeader(m.map(rtp(102, 15000, SPS))!)!;
    expect([first.seq, first.timestamp, first.ssrc]).toEqual([65534, 0xfffffff0, 0xabcdef01]);
    const second = parseRtpHeader(m.map(rtp(103, 15000, IDR_FU_START))!)!;
    expect([second.seq, second.timestamp]).toEqual([65535, 0xfffffff0]);
    // wraps; a source gap (105 lost) stays a gap; timestamps keep their spacing
    expect(parseRtpHeader(m.map(rtp(104, 21000, P_SLICE, true))!)!.seq).toBe(0);
    const after = parseRtpHeader(m.map(rtp(106, 27000, P_SLICE))!)!;
    expect([after.seq, after.timestamp]).toEqual([2, (0xfffffff0 + 12000) >>> 0]);
    expect(m.packetCount).toBe(4);
  });

  it('leaves the source packet untouched (every viewer gets its own copy)', () => {
    const m = new ViewerRtpMapper({ ssrc: 1, seq: 1, rtptime: 1 });
    m.arm();
    const src = rtp(500, 500, SPS);
    const copy = Buffer.from(src);
    m.map(src);
    expect(src).toEqual(copy);
  });

  it('after falling behind, skips to the next key frame and keeps its offsets (the gap shows as loss)', () => {
    const m = new ViewerRtpMapper({ ssrc: 1, seq: 1000, rtptime: 0 });
    m.arm();
    m.map(rtp(10, 0, SPS));
    m.skipToKeyFrame();
    expect(m.map(rtp(11, 0, P_SLICE))).toBeUndefined();
    expect(parseRtpHeader(m.map(rtp(20, 6000, SPS))!)!.seq).toBe(1010);
  });

  it('resumes after PAUSE with the next seq and its clock moved on by the pause', () => {
    let now = 1_000_000;
    const m = new ViewerRtpMapper({ ssrc: 1, seq: 10, rtptime: 5000, now: () => now });
    m.arm();
    m.map(rtp(1, 0, SPS));
    m.pause();
    expect(m.map(rtp(2, 0, P_SLICE))).toBeUndefined();
    now += 2000;
    expect(m.arm()).toEqual({ seq: 11, rtptime: 5000 + 180_000 });
    const resumed = parseRtpHeader(m.map(rtp(900, 777, SPS))!)!;
    expect([resumed.seq, resumed.timestamp]).toEqual([11, 185_000]);
  });

  it('rewrites the encoder\'s sender report and SDES for the viewer, and drops its BYE', () => {
    const m = new ViewerRtpMapper({ ssrc: 0x22222222, seq: 0, rtptime: 1000 });
    const sr = Buffer.alloc(28);
    sr.writeUInt8(0x80, 0);
    sr.writeUInt8(200, 1);
    sr.writeUInt16BE(6, 2);
    sr.writeUInt32BE(0x11111111, 4);
    sr.writeUInt32BE(0x83aa7e80, 8); // NTP seconds
    sr.writeUInt32BE(9000, 16); // RTP time
    sr.writeUInt32BE(999, 20);
    const sdes = Buffer.from([0x81, 202, 0, 2, 0x11, 0x11, 0x11, 0x11, 1, 1, 0x61, 0]);
    const bye = Buffer.from([0x81, 203, 0, 1, 0x11, 0x11, 0x11, 0x11]);
    const compound = Buffer.concat([sr, sdes, bye]);
    expect(m.mapRtcp(compound)).toBeUndefined(); // no packet sent to this viewer yet
    m.arm();
    m.map(rtp(1, 9000, [...SPS, 0, 0, 0, 0]));
    const out = m.mapRtcp(compound)!;
    expect(out.length).toBe(28 + 12);
    expect(out.readUInt32BE(4)).toBe(0x22222222);
    expect(out.readUInt32BE(8)).toBe(0x83aa7e80);
    expect(out.readUInt32BE(16)).toBe(1000); // the viewer's RTP time for the same instant
    expect([out.readUInt32BE(20), out.readUInt32BE(24)]).toEqual([1, 8]); // this viewer's packets / payload octets
    expect(out.readUInt32BE(28 + 4)).toBe(0x22222222);
  });

  it('BYE: an empty RR then a BYE with a reason, both for the viewer\'s SSRC, padded to 32 bits', () => {
    const b = rtcpBye(0x01020304, 'stream ended');
    expect(isRtcp(b)).toBe(true);
    expect([b.readUInt8(1), b.readUInt16BE(2), b.readUInt32BE(4)]).toEqual([201, 1, 0x01020304]);
    expect([b.readUInt8(9), b.readUInt32BE(12)]).toEqual([203, 0x01020304]);
    expect((b.readUInt16BE(10) + 1) * 4).toBe(b.length - 8);
    expect(b.subarray(17, 17 + 12).toString()).toBe('stream ended');
  });
});

describe('encoder command line', () => {
  const settings: EncoderSettings = { ffmpegPath: 'ffmpeg', width: 640, height: 360, fps: 15, bitrateKbps: 800, fontFile: '/f/DejaVu Sans.ttf' };
  const args = encoderArgs(settings, { cameraId: 'cam-0001', startMs: Date.UTC(2025, 3, 1, 8), rtpPort: 5000, rtcpPort: 5003, sdpFile: '/tmp/x.sdp', realtime: true });
  const value = (flag: string) => args[args.indexOf(flag) + 1];

  it('paces a lavfi test pattern in real time and encodes H.264 for low latency, a key frame each second, no B-frames', () => {
    expect(args).toContain('-re');
    expect(value('-f')).toBe('lavfi');
    expect(value('-i')).toMatch(/^testsrc2=size=640x360:rate=15,drawtext=/);
    expect([value('-c:v'), value('-preset'), value('-tune'), value('-g'), value('-bf')]).toEqual(['libx264', 'ultrafast', 'zerolatency', '15', '0']);
    expect(args.at(-1)).toBe('rtp://127.0.0.1:5000?rtcpport=5003&connect=1&pkt_size=1400');
    expect(value('-sdp_file')).toBe('/tmp/x.sdp');
  });

  it('draws the id and the clock with the font, escaped for the filter graph; no font, no text', () => {
    const f = overlayFilter('cam-0001', '/f/it\'s:here.ttf', 360, Date.now());
    expect(f).toContain("fontfile='/f/it'\\''s\\:here.ttf'");
    expect(f).toContain("text='cam-0001'");
    expect(f).toMatch(/%\{pts\\:hms\\:\d+\.\d{3}\\:24HH\}/);
    expect(encoderArgs({ ...settings, fontFile: null }, { cameraId: 'c', startMs: 0, rtpPort: 1, rtcpPort: 2, sdpFile: 's', realtime: false, frames: 1 })).not.toContain('-re');
    expect(value('-i')).toContain('drawtext');
    expect(encoderArgs({ ...settings, fontFile: null }, { cameraId: 'c', startMs: 0, rtpPort: 1, rtcpPort: 2, sdpFile: 's', realtime: true })[args.indexOf('-i') + 1]).toBe('testsrc2=size=640x360:rate=15');
  });

  it('reads sprop-parameter-sets and profile-level-id from ffmpeg\'s SDP', () => {
    const sdp = 'v=0\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAFtoCgL/lwEQAAAMABAAAAwB6PFi6gA==,aM4PyA==; profile-level-id=42C016\r\n';
    expect(parseH264Fmtp(sdp)).toEqual({ spropParameterSets: 'Z0LAFtoCgL/lwEQAAAMABAAAAwB6PFi6gA==,aM4PyA==', profileLevelId: '42C016' });
    expect(parseH264Fmtp('v=0\r\n')).toBeUndefined();
  });
});
