/**
 * The camera simulator's RTSP server against real ffmpeg: Debian's ffprobe/ffmpeg as independent
 * clients (TCP and UDP), plus a minimal RTSP client written here to look at the wire: RTP-Info,
 * SSRC, the first packet a viewer gets, BYE when the stream dies. Encoders are checked two ways:
 * the server's own `activeEncoders()`, and the ffmpeg children of this process found in /proc.
 */
import { execFile } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedger } from '../../config/ledger.js';
import { startRtspServer, type RtspServer } from '../../simulators/src/rtsp/index.js';
import { parseRtpHeader, startsH264KeyFrame } from '../../simulators/src/rtsp/rtp.js';

const FFPROBE = '/usr/bin/ffprobe';
const FFMPEG = '/usr/bin/ffmpeg';
const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts/rtsp');
const IDLE_STOP_MS = 1500;
const SESSION_TIMEOUT_MS = 2000;

const cameraIds = new Set(loadLedger(join(import.meta.dirname, '../../config/ledger/chashan-zhuhai.csv')).filter((d) => d.kind === 'camera').map((d) => d.id));

// ---- helpers -------------------------------------------------------------------------------------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeoutMs = 15_000, encoding: 'utf8' | 'buffer' = 'utf8'): Promise<Run & { raw: Buffer }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'buffer', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({
        code: typeof err?.code === 'number' ? err.code : 0,
        stdout: encoding === 'utf8' ? stdout.toString('utf8') : '',
        raw: stdout,
        stderr: stderr.toString('utf8'),
      });
    });
  });
}

async function probe(url: string, transport: 'tcp' | 'udp') {
  const r = await run(FFPROBE, ['-rtsp_transport', transport, '-v', 'error', '-show_streams', '-of', 'json', url]);
  expect(r.code, r.stderr).toBe(0);
  const streams = (JSON.parse(r.stdout) as { streams: Array<{ codec_name: string; width: number; height: number }> }).streams;
  return streams;
}

/** ffmpeg encoders that are children of this process, from /proc (independent of the server's bookkeeping). */
function encoderProcesses(): Array<{ pid: number; cameraId: string }> {
  const found: Array<{ pid: number; cameraId: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid || fields[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const source = argv.find((a) => a.startsWith('testsrc2='));
      if (!source) continue;
      const id = /text='([A-Za-z0-9._-]+)'/.exec(source)?.[1] ?? '?';
      found.push({ pid: Number(entry), cameraId: id });
    } catch {
      /* the process went away while we looked */
    }
  }
  return found;
}

function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}

interface Reply {
  status: number;
  headers: Map<string, string>;
  body: string;
}

interface Received {
  channel: number;
  data: Buffer;
  at: number;
}

/** A minimal RTSP client: requests answered in order, interleaved frames collected. */
class TestClient {
  readonly received: Received[] = [];
  readonly closed: Promise<void>;
  #socket: Socket;
  #buf = Buffer.alloc(0);
  #pending: Array<(r: Reply) => void> = [];
  #cseq = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new TestClient(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.#socket.destroyed;
  }

  request(method: string, url: string, headers: Record<string, string> = {}): Promise<Reply> {
    const lines = [`${method} ${url} RTSP/1.0`, `CSeq: ${++this.#cseq}`, 'User-Agent: greenshield-test', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    return this.raw(`${lines.join('\r\n')}\r\n\r\n`);
  }

  /** Sends bytes as they are and waits for the next response. */
  async raw(text: string | Buffer): Promise<Reply> {
    const [reply] = await this.send(text, 1);
    return reply!;
  }

  /** Sends bytes as they are and waits for `replies` responses. */
  send(bytes: string | Buffer, replies: number): Promise<Reply[]> {
    const all: Array<Promise<Reply>> = [];
    for (let i = 0; i < replies; i++) all.push(new Promise<Reply>((resolve) => this.#pending.push(resolve)));
    if (bytes.length > 0) this.#socket.write(bytes);
    return Promise.all(all);
  }

  write(bytes: Buffer | string): void {
    this.#socket.write(bytes);
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    for (;;) {
      if (this.#buf.length === 0) return;
      if (this.#buf[0] === 0x24) {
        if (this.#buf.length < 4) return;
        const length = this.#buf.readUInt16BE(2);
        if (this.#buf.length < 4 + length) return;
        this.received.push({ channel: this.#buf.readUInt8(1), data: Buffer.from(this.#buf.subarray(4, 4 + length)), at: Date.now() });
        this.#buf = this.#buf.subarray(4 + length);
        continue;
      }
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine = '', ...lines] = this.#buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const length = Number(headers.get('content-length') ?? 0);
      if (this.#buf.length < end + 4 + length) return;
      const body = this.#buf.subarray(end + 4, end + 4 + length).toString('utf8');
      this.#buf = this.#buf.subarray(end + 4 + length);
      this.#pending.shift()?.({ status: Number(statusLine.split(' ')[1]), headers, body });
    }
  }
}

/** DESCRIBE + SETUP (TCP interleaved 0-1) + PLAY; returns the client and what the server announced. */
async function playTcp(server: RtspServer, cameraId: string) {
  const client = await TestClient.connect(server.port);
  const url = server.urlFor(cameraId);
  const describe = await client.request('DESCRIBE', url, { Accept: 'application/sdp' });
  expect(describe.status).toBe(200);
  const setup = await client.request('SETUP', `${url}/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
  expect(setup.status).toBe(200);
  const session = (setup.headers.get('session') ?? '').split(';')[0] ?? '';
  const ssrc = parseInt(/ssrc=([0-9A-F]{8})/.exec(setup.headers.get('transport') ?? '')?.[1] ?? '', 16);
  const play = await client.request('PLAY', `${url}/`, { Session: session, Range: 'npt=0.000-' });
  expect(play.status).toBe(200);
  const info = /seq=(\d+);rtptime=(\d+)/.exec(play.headers.get('rtp-info') ?? '');
  return { client, url, session, ssrc, playedAt: Date.now(), seq: Number(info?.[1]), rtptime: Number(info?.[2]), describe, setup, play };
}

const rtpOf = (c: TestClient) => c.received.filter((r) => r.channel === 0);
const rtcpOf = (c: TestClient) => c.received.filter((r) => r.channel === 1);

/** The packet types in an RTCP compound packet. */
function rtcpTypes(compound: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at + 4 <= compound.length; at += 4 * (compound.readUInt16BE(at + 2) + 1)) types.push(compound.readUInt8(at + 1));
  return types;
}

// ---- tests ---------------------------------------------------------------------------------------

let server: RtspServer;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startRtspServer({
    host: '127.0.0.1',
    port: 0,
    idleStopMs: IDLE_STOP_MS,
    sessionTimeoutMs: SESSION_TIMEOUT_MS,
    ffmpegPath: FFMPEG,
    framesize: '640x360',
    fps: 15,
    isKnown: (id) => cameraIds.has(id),
  });
});

afterAll(async () => {
  await server?.close();
  expect(encoderProcesses()).toEqual([]);
});

describe('RTSP camera simulator', () => {
  it('starts no encoder before PLAY; two viewers (own client + ffprobe over TCP) share one; it stops idleStopMs after the last leaves', async () => {
    expect(cameraIds.size).toBe(1657);
    expect(server.activeEncoders()).toEqual([]);
    expect(encoderProcesses()).toEqual([]);

    const client = await TestClient.connect(server.port);
    const url = server.urlFor('cam-0001');
    const describe = await client.request('DESCRIBE', url);
    expect(describe.status).toBe(200);
    expect(describe.headers.get('content-type')).toBe('application/sdp');
    expect(describe.headers.get('content-base')).toBe(`${url}/`);
    expect(describe.body).toMatch(/^a=rtpmap:96 H264\/90000$/m);
    expect(describe.body).toMatch(/sprop-parameter-sets=[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+/);
    const setup = await client.request('SETUP', `${url}/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
    expect(setup.status).toBe(200);
    expect(setup.headers.get('session')).toMatch(/^[0-9a-f]{16};timeout=2$/);
    expect(setup.headers.get('transport')).toMatch(/^RTP\/AVP\/TCP;unicast;interleaved=0-1;ssrc=[0-9A-F]{8}/);
    // described and set up, not playing: still no encoder
    expect(server.activeEncoders()).toEqual([]);
    expect(encoderProcesses()).toEqual([]);
    await client.request('TEARDOWN', url, { Session: (setup.headers.get('session') ?? '').split(';')[0] ?? '' });
    client.close();

    const a = await playTcp(server, 'cam-0001');
    expect(a.play.headers.get('range')).toBe('npt=0.000-');
    expect(a.play.headers.get('rtp-info')).toMatch(new RegExp(`^url=${url}/trackID=0;seq=\\d+;rtptime=\\d+$`));
    expect(server.activeEncoders()).toEqual(['cam-0001']);
    const pid = server.encoderPid('cam-0001');
    expect(pid).toBeGreaterThan(0);

    // The first packet arrives soon and starts a key frame, numbered as RTP-Info announced.
    const firstAfter = await waitFor('the first RTP packet', () => rtpOf(a.client).length > 0, 5000);
    const first = rtpOf(a.client)[0]!.data;
    const h = parseRtpHeader(first)!;
    expect(startsH264KeyFrame(first.subarray(h.payloadOffset))).toBe(true);
    expect(h.payloadType).toBe(96);
    expect(h.seq).toBe(a.seq);
    expect(h.timestamp).toBe(a.rtptime);
    expect(h.ssrc).toBe(a.ssrc);
    expect(firstAfter).toBeLessThan(3000);

    // A second viewer, an independent client, joins the running stream.
    const streams = await probe(url, 'tcp');
    expect(streams).toHaveLength(1);
    expect(streams[0]).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
    expect(server.activeEncoders()).toEqual(['cam-0001']);
    expect(server.encoderPid('cam-0001')).toBe(pid); // the same encoder served both
    expect(encoderProcesses()).toEqual([{ pid, cameraId: 'cam-0001' }]);

    // Our viewer's numbering is its own and continuous while another viewer came and went.
    const seqs = rtpOf(a.client).map((r) => parseRtpHeader(r.data)!.seq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe((seqs[i - 1]! + 1) & 0xffff);
    expect(rtpOf(a.client).every((r) => parseRtpHeader(r.data)!.ssrc === a.ssrc)).toBe(true);
    // ~15 fps for the time played, in packets ≥ frames
    const playedMs = Date.now() - a.playedAt - firstAfter;
    expect(new Set(rtpOf(a.client).map((r) => parseRtpHeader(r.data)!.timestamp)).size).toBeGreaterThan((playedMs / 1000) * 15 * 0.6);

    expect((await a.client.request('TEARDOWN', a.url, { Session: a.session })).status).toBe(200);
    const stoppedAt = Date.now();
    expect(server.activeEncoders()).toEqual(['cam-0001']); // kept for a viewer coming back soon
    await waitFor('the encoder to stop', () => server.activeEncoders().length === 0, IDLE_STOP_MS + 3000);
    const waited = Date.now() - stoppedAt;
    expect(waited).toBeGreaterThanOrEqual(IDLE_STOP_MS - 100);
    await waitFor('the ffmpeg process to exit', () => !pidAlive(pid!), 3000);
    expect(encoderProcesses()).toEqual([]);
    a.client.close();
  });

  it('serves ffprobe over UDP (client_port → server_port), and a UDP viewer that goes silent times out', async () => {
    const streams = await probe(server.urlFor('cam-0002'), 'udp');
    expect(streams[0]).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });

    // Own UDP viewer that never sends RTCP or keep-alives.
    const rtp: UdpSocket = createSocket('udp4');
    const got: Buffer[] = [];
    rtp.on('message', (m) => got.push(m));
    await new Promise<void>((r) => rtp.bind(0, '127.0.0.1', () => r()));
    const clientPort = rtp.address().port;
    const client = await TestClient.connect(server.port);
    try {
      const url = server.urlFor('cam-0002');
      const setup = await client.request('SETUP', `${url}/trackID=0`, { Transport: `RTP/AVP;unicast;client_port=${clientPort}-${clientPort + 1}` });
      expect(setup.status).toBe(200);
      const transport = setup.headers.get('transport') ?? '';
      expect(transport).toContain(`client_port=${clientPort}-${clientPort + 1}`);
      expect(transport).toContain(`server_port=${server.udpPorts[0]}-${server.udpPorts[1]}`);
      expect(server.udpPorts[1]).toBe(server.udpPorts[0] + 1);
      const session = (setup.headers.get('session') ?? '').split(';')[0] ?? '';
      expect((await client.request('PLAY', url, { Session: session })).status).toBe(200);
      await waitFor('RTP over UDP', () => got.length > 10, 4000);
      expect(server.viewerCount('cam-0002')).toBe(1);
      const silentFrom = Date.now();
      await waitFor('the UDP session to time out', () => server.viewerCount('cam-0002') === 0, SESSION_TIMEOUT_MS + 2000);
      expect(Date.now() - silentFrom).toBeGreaterThanOrEqual(SESSION_TIMEOUT_MS - 1500);
      expect((await client.request('GET_PARAMETER', url, { Session: session })).status).toBe(454);
      await waitFor('the encoder to stop after the timeout', () => server.activeEncoders().length === 0, IDLE_STOP_MS + 2000);
      expect(encoderProcesses()).toEqual([]);
    } finally {
      client.close();
      rtp.close();
    }
  });

  it('stopStream kills the encoder, ends the viewer with BYE and a closed connection, and refuses the camera until restoreStream', async () => {
    const a = await playTcp(server, 'cam-0004');
    await waitFor('RTP', () => rtpOf(a.client).length > 5, 4000);
    const pid = server.encoderPid('cam-0004')!;
    expect(pidAlive(pid)).toBe(true);

    await server.stopStream('cam-0004');
    await a.client.closed;
    expect(pidAlive(pid)).toBe(false);
    expect(server.activeEncoders()).toEqual([]);
    const byes = rtcpOf(a.client).filter((r) => rtcpTypes(r.data).includes(203));
    expect(byes, 'an RTCP BYE before the close').toHaveLength(1);
    expect(byes[0]!.data.readUInt32BE(byes[0]!.data.indexOf(Buffer.from([0x81, 203])) + 4)).toBe(a.ssrc);

    const again = await TestClient.connect(server.port);
    expect((await again.request('DESCRIBE', a.url)).status).toBe(503);
    expect((await again.request('SETUP', `${a.url}/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast' })).status).toBe(503);
    server.restoreStream('cam-0004');
    expect((await again.request('DESCRIBE', a.url)).status).toBe(200);
    again.close();
    expect(encoderProcesses()).toEqual([]);
  });

  it('PAUSE and resume; an encoder that dies disconnects its viewers; the next PLAY starts a new one', async () => {
    const a = await playTcp(server, 'cam-0006');
    await waitFor('RTP', () => rtpOf(a.client).length > 5, 4000);
    const pid = server.encoderPid('cam-0006')!;

    // PAUSE stops delivery; PLAY resumes with the next sequence number, from a key frame.
    expect((await a.client.request('PAUSE', a.url, { Session: a.session })).status).toBe(200);
    expect(server.viewerCount('cam-0006')).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    const beforePause = rtpOf(a.client).length;
    const lastSeq = parseRtpHeader(rtpOf(a.client).at(-1)!.data)!.seq;
    await new Promise((r) => setTimeout(r, 300));
    expect(rtpOf(a.client).length).toBe(beforePause);
    const resume = await a.client.request('PLAY', a.url, { Session: a.session });
    expect(resume.headers.get('rtp-info')).toContain(`seq=${(lastSeq + 1) & 0xffff};`);
    await waitFor('RTP after resume', () => rtpOf(a.client).length > beforePause, 3000);
    const resumed = rtpOf(a.client)[beforePause]!.data;
    expect(parseRtpHeader(resumed)!.seq).toBe((lastSeq + 1) & 0xffff);
    expect(startsH264KeyFrame(resumed.subarray(parseRtpHeader(resumed)!.payloadOffset))).toBe(true);
    expect(server.encoderPid('cam-0006')).toBe(pid);

    // Now the encoder dies under its viewer.
    process.kill(pid, 'SIGKILL');
    await a.client.closed;
    expect(server.activeEncoders()).toEqual([]);

    const b = await playTcp(server, 'cam-0006');
    await waitFor('RTP from a new encoder', () => rtpOf(b.client).length > 0, 4000);
    const next = server.encoderPid('cam-0006');
    expect(next).toBeGreaterThan(0);
    expect(next).not.toBe(pid);
    b.client.close(); // socket close counts as leaving
    await waitFor('the encoder to stop after the socket closed', () => server.activeEncoders().length === 0, IDLE_STOP_MS + 2000);
  });

  it('draws the camera id and a running clock: one frame to PNG, and the clock differs 1.3 s later while the id does not', async () => {
    const url = server.urlFor('cam-0005');
    const png = join(ARTIFACTS, 'cam-0005.png');
    const grab = await run(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-y', '-rtsp_transport', 'tcp', '-i', url, '-frames:v', '1', png]);
    expect(grab.code, grab.stderr).toBe(0);
    expect(readFileSync(png).subarray(1, 4).toString('latin1')).toBe('PNG');

    // Frames 0 and 20 (1.333 s apart at 15 fps: the seconds and every millisecond digit change) of
    // one session, as grey crops of the two text lines
    // (fontsize 24 → the id box at y≈284..316, the clock box at y≈320..352).
    const crop = 'crop=300:24:12:290';
    const clockCrop = 'crop=300:24:12:326';
    const r = await run(
      FFMPEG,
      ['-hide_banner', '-loglevel', 'error', '-rtsp_transport', 'tcp', '-i', url, '-vf', `select=eq(n\\,0)+eq(n\\,20),split[a][b];[a]${crop}[id];[b]${clockCrop}[clock];[id][clock]vstack,format=gray`, '-fps_mode', 'passthrough', '-frames:v', '2', '-f', 'rawvideo', 'pipe:1'],
      15_000,
      'buffer',
    );
    expect(r.code, r.stderr).toBe(0);
    const frameBytes = 300 * 48;
    expect(r.raw.length).toBe(2 * frameBytes);
    const changed = (from: number, to: number) => {
      let n = 0;
      for (let i = from; i < to; i++) if (Math.abs(r.raw[i]! - r.raw[frameBytes + i]!) > 64) n++;
      return n;
    };
    const idChanged = changed(0, 300 * 24);
    const clockChanged = changed(300 * 24, frameBytes);
    const whiteInId = [...r.raw.subarray(0, 300 * 24)].filter((v) => v > 180).length;
    expect(whiteInId, 'text drawn in the id line').toBeGreaterThan(200);
    expect(idChanged, 'the id line stays the same').toBeLessThan(20);
    expect(clockChanged, 'the clock line moves on').toBeGreaterThan(100);
  });

  it('answers 404 for an unknown camera or a path that is not one', async () => {
    const r = await run(FFPROBE, ['-rtsp_transport', 'tcp', '-v', 'error', '-show_streams', '-of', 'json', server.urlFor('cam-9999')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/404 Not Found/);
    const client = await TestClient.connect(server.port);
    for (const path of ['cam-9999', 'cam-0001/trackID=7', 'a/b/c', '..', 'cam%200001']) {
      expect((await client.request('DESCRIBE', `rtsp://127.0.0.1:${server.port}/${path}`)).status, path).toBe(404);
    }
    client.close();
  });

  it('answers malformed requests with 400 and keeps serving the connection; errors are the RFC ones', async () => {
    const client = await TestClient.connect(server.port);
    const url = server.urlFor('cam-0001');
    expect((await client.raw('THIS IS NOT RTSP\r\n\r\n')).status).toBe(400);
    expect((await client.raw(`DESCRIBE ${url} RTSP/1.0\r\nno colon here\r\nCSeq: 5\r\n\r\n`)).status).toBe(400);
    const noCseq = await client.raw(`OPTIONS ${url} RTSP/1.0\r\n\r\n`);
    expect(noCseq.status).toBe(400);
    expect((await client.raw(`OPTIONS ${url} RTSP/2.0\r\nCSeq: 6\r\n\r\n`)).status).toBe(505);

    // the same connection still works, with the CSeq echoed
    const options = await client.raw(`OPTIONS ${url} RTSP/1.0\r\nCSeq: 41\r\n\r\n`);
    expect(options.status).toBe(200);
    expect(options.headers.get('cseq')).toBe('41');
    expect(options.headers.get('public')).toContain('GET_PARAMETER');

    // a request split into single bytes, then two requests and a client RTCP frame in one write
    const split = `OPTIONS ${url} RTSP/1.0\r\nCSeq: 42\r\n\r\n`;
    const reply = client.send('', 1);
    for (const ch of split) {
      client.write(ch);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect((await reply)[0]?.headers.get('cseq')).toBe('42');
    const rr = Buffer.from([0x24, 1, 0, 8, 0x80, 201, 0, 1, 1, 2, 3, 4]);
    const merged = Buffer.concat([Buffer.from(`GET_PARAMETER ${url} RTSP/1.0\r\nCSeq: 43\r\n\r\n`), rr, Buffer.from(`OPTIONS * RTSP/1.0\r\nCSeq: 44\r\n\r\n`)]);
    const [r43, r44] = await client.send(merged, 2);
    expect([r43?.status, r43?.headers.get('cseq')]).toEqual([200, '43']);
    expect([r44?.status, r44?.headers.get('cseq')]).toEqual([200, '44']);

    expect((await client.request('PLAY', url, { Session: 'nosuchsession' })).status).toBe(454);
    expect((await client.request('SETUP', `${url}/trackID=0`, { Transport: 'RTP/AVP;multicast;port=5000-5001' })).status).toBe(461);
    expect((await client.request('SETUP', `${url}/trackID=0`, { Transport: 'RTP/AVP;unicast' })).status).toBe(461);
    expect((await client.request('RECORD', url)).status).toBe(405);
    expect((await client.request('FROBNICATE', url)).status).toBe(501);
    expect((await client.request('DESCRIBE', url, { Require: 'implicit-play' })).status).toBe(551);
    expect(client.isClosed).toBe(false);

    // a head that never ends is cut off: 431, then the connection closes; the server serves on
    const flood = await TestClient.connect(server.port);
    const cut = flood.raw(`OPTIONS ${url} RTSP/1.0\r\nX-Junk: ${'a'.repeat(20_000)}`);
    expect((await cut).status).toBe(431);
    await flood.closed;
    expect((await client.request('DESCRIBE', url)).status).toBe(200);
    client.close();
  });
});
