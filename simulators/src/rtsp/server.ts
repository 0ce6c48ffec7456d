/**
 * The cameras' RTSP side: one RTSP 1.0 server (RFC 2326) on one TCP port for every simulated
 * camera, `rtsp://host:port/<cameraId>`, H.264 over RTP/AVP/TCP (interleaved) or RTP/AVP (UDP).
 *
 * Thousands of cameras must not mean thousands of encoders: a camera's ffmpeg encoder is started
 * by its first PLAY, feeds every viewer of that camera from the same packets (renumbered per
 * viewer, see rtp.ts), and is stopped `idleStopMs` after its last viewer leaves. If the encoder
 * dies, or `stopStream` kills it to simulate a camera whose stream fails, its viewers get an
 * RTCP BYE and their RTSP connection is closed, which is what a client of a real camera sees.
 */
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { CameraEncoder, findFont, probeH264Fmtp, type EncoderExit, type EncoderSettings, type H264Fmtp } from './encoder.js';
import {
  chooseTransport,
  encodeResponse,
  interleave,
  RtspRequestParser,
  sessionIdOf,
  streamTargetOf,
  TRACK_CONTROL,
  type RtspInput,
  type RtspRequest,
  type RtspResponse,
} from './protocol.js';
import { rtcpBye, ViewerRtpMapper } from './rtp.js';

/** Structured log sink; a pino logger fits. */
export interface RtspLog {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface RtspServerOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** RTSP (TCP) port; 0 (default) picks a free one. Real cameras use 554. */
  port?: number;
  /** UDP port for RTP (RTCP is the next one); 0 (default) picks a free even/odd pair */
  udpPort?: number;
  /** encoder stops this long after its camera's last viewer leaves; default 5000 */
  idleStopMs?: number;
  /** a UDP session, or one not playing, ends after this long without a request or RTCP from its client; default 60000 */
  sessionTimeoutMs?: number;
  /** default /usr/bin/ffmpeg */
  ffmpegPath?: string;
  /** `WIDTHxHEIGHT`, default 640x360 (a camera's sub-stream) */
  framesize?: string;
  /** default 15 */
  fps?: number;
  /** default 800 */
  bitrateKbps?: number;
  /** overlay font; default: the first of FONT_CANDIDATES present; null: no text */
  fontFile?: string | null;
  /** cameras this server serves; others get 404. Default: any well-formed id. */
  isKnown?: (cameraId: string) => boolean;
  /** encoders running at once; a PLAY that would start one more gets 453. Default 16. */
  maxEncoders?: number;
  log?: RtspLog;
}

export interface RtspServer {
  readonly host: string;
  readonly port: number;
  /** the UDP ports RTP and RTCP are sent from (server_port) */
  readonly udpPorts: readonly [number, number];
  urlFor(cameraId: string): string;
  /** cameras with an encoder process, sorted; one being stopped is listed until it has exited */
  activeEncoders(): string[];
  /** the camera's ffmpeg process id while its encoder runs */
  encoderPid(cameraId: string): number | undefined;
  /** sessions playing this camera now */
  viewerCount(cameraId: string): number;
  /**
   * Fault injection: the camera's stream dies. Its encoder is killed, every session on it ends
   * (BYE, connection closed), and DESCRIBE/SETUP/PLAY get 503 until `restoreStream`, or for
   * `refuseMs` if given. Resolves when the encoder process is gone.
   */
  stopStream(cameraId: string, opts?: { refuseMs?: number }): Promise<void>;
  restoreStream(cameraId: string): void;
  close(): Promise<void>;
}

const SERVER_NAME = 'GreenShield camera simulator (RTSP/1.0)';
const PUBLIC_METHODS = 'OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER';
/** RTSP 1.0 methods this server knows but does not serve (405); anything else is 501. */
const OTHER_RTSP_METHODS = new Set(['ANNOUNCE', 'RECORD', 'REDIRECT', 'SET_PARAMETER']);
/** A TCP viewer this far behind has packets dropped until the next key frame. */
const MAX_BUFFERED_BYTES = 1 << 20;
const MAX_SESSIONS_PER_CONNECTION = 8;
const noLog: RtspLog = { info: () => undefined, warn: () => undefined };

type SessionTransport =
  | { lower: 'tcp'; channels: [number, number] }
  | { lower: 'udp'; address: string; clientPorts: [number, number] };

interface Session {
  id: string;
  camera: CameraStream;
  conn: Connection;
  transport: SessionTransport;
  state: 'ready' | 'playing' | 'paused';
  mapper: ViewerRtpMapper;
  lastSeen: number;
  /** the RTP-Info of the PLAY that started the current run */
  rtpInfo?: string;
}

interface Connection {
  socket: Socket;
  parser: RtspRequestParser;
  sessions: Set<Session>;
}

interface CameraStream {
  id: string;
  sessions: Set<Session>;
  viewers: Set<Session>;
  encoder: CameraEncoder | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  refused: boolean;
  refuseTimer: NodeJS.Timeout | undefined;
}

function parseFramesize(framesize: string): { width: number; height: number } {
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(framesize);
  const width = Number(m?.[1]);
  const height = Number(m?.[2]);
  if (!m || width % 2 !== 0 || height % 2 !== 0) throw new RangeError(`framesize ${framesize}: want WIDTHxHEIGHT, both even`);
  return { width, height };
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return isIPv6(host) ? `[${host}]` : host;
}

async function bindUdpPair(host: string, port: number): Promise<[UdpSocket, UdpSocket]> {
  const type = isIPv6(host) ? 'udp6' : 'udp4';
  const bind = (p: number) =>
    new Promise<UdpSocket>((resolve, reject) => {
      const s = createSocket(type);
      s.once('error', (e) => {
        s.close();
        reject(e);
      });
      s.bind(p, host, () => {
        s.removeAllListeners('error');
        resolve(s);
      });
    });
  if (port !== 0) return [await bind(port), await bind(port + 1)];
  // RTP on an even port and RTCP on the next (RFC 3550 11), which some clients assume.
  for (let attempt = 0; attempt < 50; attempt++) {
    const rtp = await bind(0);
    const p = rtp.address().port;
    if (p % 2 === 0 && p < 65535) {
      const rtcp = await bind(p + 1).catch(() => undefined);
      if (rtcp) return [rtp, rtcp];
    }
    rtp.close();
  }
  throw new Error('no free UDP port pair for RTP/RTCP');
}

export async function startRtspServer(opts: RtspServerOptions = {}): Promise<RtspServer> {
  const host = opts.host ?? '127.0.0.1';
  const idleStopMs = opts.idleStopMs ?? 5000;
  const sessionTimeoutMs = opts.sessionTimeoutMs ?? 60_000;
  const maxEncoders = opts.maxEncoders ?? 16;
  const log = opts.log ?? noLog;
  const { width, height } = parseFramesize(opts.framesize ?? '640x360');
  const fps = opts.fps ?? 15;
  if (!(fps > 0 && fps <= 60)) throw new RangeError(`fps ${fps}`);
  const settings: EncoderSettings = {
    ffmpegPath: opts.ffmpegPath ?? '/usr/bin/ffmpeg',
    width,
    height,
    fps,
    bitrateKbps: opts.bitrateKbps ?? 800,
    fontFile: opts.fontFile === undefined ? findFont() : opts.fontFile,
  };
  if (settings.fontFile === null) log.warn({}, 'rtsp: no font found, the picture carries no camera id or time');

  // SPS/PPS for DESCRIBE, from one short encoder run now rather than a camera encoder per DESCRIBE.
  let fmtp: H264Fmtp | undefined;
  try {
    fmtp = await probeH264Fmtp(settings);
  } catch (err) {
    log.warn({ err: String(err) }, 'rtsp: could not probe the encoder; SDP goes without sprop-parameter-sets');
  }

  const cameras = new Map<string, CameraStream>();
  const sessions = new Map<string, Session>();
  /** `address:port` of a UDP viewer's RTP and RTCP ports → its session (RTCP keeps it alive) */
  const udpPeers = new Map<string, Session>();
  const connections = new Set<Connection>();
  /** encoders detached from their camera (idle stop, fault) that have not exited yet */
  const stopping = new Set<CameraEncoder>();
  let closed = false;

  const [udpRtp, udpRtcp] = await bindUdpPair(host, opts.udpPort ?? 0);
  const udpPorts = [udpRtp.address().port, udpRtcp.address().port] as const;
  const onUdp = (_packet: Buffer, rinfo: RemoteInfo) => {
    const session = udpPeers.get(`${rinfo.address}:${rinfo.port}`);
    if (session) session.lastSeen = Date.now();
  };
  udpRtp.on('message', onUdp);
  udpRtcp.on('message', onUdp);
  udpRtp.on('error', (err) => log.warn({ err: String(err) }, 'rtsp: UDP socket error'));
  udpRtcp.on('error', (err) => log.warn({ err: String(err) }, 'rtsp: UDP socket error'));

  // ---- cameras and encoders --------------------------------------------------------------------

  const cameraFor = (id: string): CameraStream => {
    let cam = cameras.get(id);
    if (!cam) {
      cam = { id, sessions: new Set(), viewers: new Set(), encoder: undefined, idleTimer: undefined, refused: false, refuseTimer: undefined };
      cameras.set(id, cam);
    }
    return cam;
  };

  const forgetIfUnused = (cam: CameraStream) => {
    if (cam.sessions.size === 0 && !cam.encoder && !cam.refused && !cam.idleTimer) cameras.delete(cam.id);
  };

  const runningEncoders = () => [...cameras.values()].filter((c) => c.encoder).length;

  const startEncoder = (cam: CameraStream) => {
    const encoder: CameraEncoder = new CameraEncoder(cam.id, settings, {
      onRtp: (packet) => {
        if (cam.encoder !== encoder) return;
        for (const viewer of cam.viewers) deliverRtp(viewer, packet);
      },
      onRtcp: (packet) => {
        if (cam.encoder !== encoder) return;
        for (const viewer of cam.viewers) deliverRtcp(viewer, packet);
      },
      onSdp: (actual) => {
        if (actual.spropParameterSets && actual.spropParameterSets !== fmtp?.spropParameterSets) {
          log.warn(
            { camera: cam.id, probed: fmtp?.spropParameterSets, actual: actual.spropParameterSets },
            "rtsp: encoder SPS/PPS differ from the probe; DESCRIBE now uses the encoder's",
          );
          fmtp = actual;
        }
      },
      onExit: (exit) => onEncoderExit(cam, encoder, exit),
    });
    cam.encoder = encoder;
    log.info({ camera: cam.id }, 'rtsp: encoder started');
  };

  const detachEncoder = (cam: CameraStream): CameraEncoder | undefined => {
    const encoder = cam.encoder;
    if (cam.idleTimer) clearTimeout(cam.idleTimer);
    cam.idleTimer = undefined;
    cam.encoder = undefined;
    if (encoder) {
      stopping.add(encoder);
      void encoder.exited.finally(() => stopping.delete(encoder));
    }
    return encoder;
  };

  const onEncoderExit = (cam: CameraStream, encoder: CameraEncoder, exit: EncoderExit) => {
    if (cam.encoder !== encoder) return; // stopped on purpose and already detached
    if (cam.idleTimer) clearTimeout(cam.idleTimer);
    cam.idleTimer = undefined;
    cam.encoder = undefined;
    log.warn({ camera: cam.id, code: exit.code, signal: exit.signal, stderr: exit.stderr }, 'rtsp: encoder died; its viewers are disconnected');
    for (const viewer of [...cam.viewers]) dropConnection(viewer.conn, 'encoder stopped');
    forgetIfUnused(cam);
  };

  const addViewer = (session: Session) => {
    const cam = session.camera;
    cam.viewers.add(session);
    if (cam.idleTimer) clearTimeout(cam.idleTimer);
    cam.idleTimer = undefined;
    if (!cam.encoder) startEncoder(cam);
  };

  const removeViewer = (session: Session) => {
    const cam = session.camera;
    if (!cam.viewers.delete(session) || cam.viewers.size > 0 || !cam.encoder || cam.idleTimer) return;
    cam.idleTimer = setTimeout(() => {
      cam.idleTimer = undefined;
      if (cam.viewers.size > 0) return;
      const encoder = detachEncoder(cam);
      log.info({ camera: cam.id, idleStopMs }, 'rtsp: no viewers; encoder stopped');
      void encoder?.stop('SIGTERM');
      forgetIfUnused(cam);
    }, idleStopMs);
  };

  // ---- delivery --------------------------------------------------------------------------------

  const udpAddress = (address: string) => (!isIPv6(host) && address.startsWith('::ffff:') ? address.slice(7) : address);

  const deliverRtp = (session: Session, packet: Buffer) => {
    const t = session.transport;
    if (t.lower === 'tcp') {
      if (session.conn.socket.writableLength > MAX_BUFFERED_BYTES) {
        session.mapper.skipToKeyFrame();
        return;
      }
      const out = session.mapper.map(packet);
      if (out) session.conn.socket.write(interleave(t.channels[0], out));
    } else {
      const out = session.mapper.map(packet);
      if (out) udpRtp.send(out, t.clientPorts[0], t.address, () => undefined);
    }
  };

  const deliverRtcp = (session: Session, packet: Buffer) => {
    const out = session.mapper.mapRtcp(packet);
    if (!out) return;
    const t = session.transport;
    if (t.lower === 'tcp') session.conn.socket.write(interleave(t.channels[1], out));
    else udpRtcp.send(out, t.clientPorts[1], t.address, () => undefined);
  };

  const sendBye = (session: Session) => {
    const bye = rtcpBye(session.mapper.ssrc);
    const t = session.transport;
    if (t.lower === 'tcp') {
      if (!session.conn.socket.destroyed) session.conn.socket.write(interleave(t.channels[1], bye));
    } else udpRtcp.send(bye, t.clientPorts[1], t.address, () => undefined);
  };

  // ---- sessions --------------------------------------------------------------------------------

  const endSession = (session: Session, why: string) => {
    if (!sessions.delete(session.id)) return;
    session.conn.sessions.delete(session);
    if (session.transport.lower === 'udp') {
      const { address, clientPorts } = session.transport;
      udpPeers.delete(`${address}:${clientPorts[0]}`);
      udpPeers.delete(`${address}:${clientPorts[1]}`);
    }
    session.camera.sessions.delete(session);
    if (session.state === 'playing') removeViewer(session);
    log.info({ camera: session.camera.id, session: session.id, why }, 'rtsp: session ended');
    forgetIfUnused(session.camera);
  };

  /** The stream is gone: BYE to each of the connection's playing sessions, then close it. */
  const dropConnection = (conn: Connection, why: string) => {
    for (const session of [...conn.sessions]) {
      if (session.state === 'playing') sendBye(session);
      endSession(session, why);
    }
    conn.socket.end();
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  };

  const sweeper = setInterval(
    () => {
      const now = Date.now();
      for (const session of [...sessions.values()]) {
        const heldByTcp = session.transport.lower === 'tcp' && session.state === 'playing';
        if (!heldByTcp && now - session.lastSeen > sessionTimeoutMs) endSession(session, 'timeout');
      }
    },
    Math.min(1000, Math.max(50, sessionTimeoutMs / 4)),
  );
  sweeper.unref();

  // ---- requests --------------------------------------------------------------------------------

  const sessionHeader = (s: Session) => `${s.id};timeout=${Math.max(1, Math.round(sessionTimeoutMs / 1000))}`;

  const contentBase = (conn: Connection, request: RtspRequest, cameraId: string): string => {
    if (!request.uri.startsWith('/')) {
      try {
        const url = new URL(request.uri);
        return `${url.protocol}//${url.host}/${cameraId}/`;
      } catch {
        /* fall through */
      }
    }
    return `rtsp://${hostForUrl(conn.socket.localAddress ?? host)}:${port}/${cameraId}/`;
  };

  const sdpFor = (conn: Connection, cameraId: string): string => {
    const local = conn.socket.localAddress ?? host;
    const v6 = isIPv6(local) && !local.startsWith('::ffff:');
    const origin = v6 ? `IN IP6 ${local}` : `IN IP4 ${local.replace(/^::ffff:/, '')}`;
    const params = ['packetization-mode=1'];
    if (fmtp?.profileLevelId) params.push(`profile-level-id=${fmtp.profileLevelId}`);
    if (fmtp?.spropParameterSets) params.push(`sprop-parameter-sets=${fmtp.spropParameterSets}`);
    return [
      'v=0',
      `o=- ${Date.now()} 1 ${origin}`,
      `s=GreenShield simulated camera ${cameraId}`,
      v6 ? 'c=IN IP6 ::' : 'c=IN IP4 0.0.0.0',
      't=0 0',
      'a=tool:GreenShield camera simulator',
      'a=range:npt=0-',
      'a=control:*',
      'm=video 0 RTP/AVP 96',
      `b=AS:${Math.round(settings.bitrateKbps * 1.25)}`,
      'a=rtpmap:96 H264/90000',
      `a=fmtp:96 ${params.join(';')}`,
      `a=framerate:${settings.fps}`,
      `a=cliprect:0,0,${settings.height},${settings.width}`,
      `a=control:${TRACK_CONTROL}`,
      '',
    ].join('\r\n');
  };

  /** Resolves the request's camera, or the error response. */
  const resolveCamera = (request: RtspRequest): { cam: CameraStream; track: 'aggregate' | 0 } | RtspResponse => {
    const target = streamTargetOf(request.uri);
    if (!target || (opts.isKnown && !opts.isKnown(target.cameraId))) return { status: 404 };
    const cam = cameraFor(target.cameraId);
    if (cam.refused) {
      forgetIfUnused(cam);
      return { status: 503 };
    }
    return { cam, track: target.track };
  };

  const findSession = (request: RtspRequest, conn: Connection): Session | RtspResponse => {
    const id = sessionIdOf(request);
    const session = id === undefined ? undefined : sessions.get(id);
    if (!session) return { status: 454 };
    // A UDP session may be controlled from a new connection (RFC 2326 allows it) and then belongs
    // to that one; TCP data is tied to its connection, so a TCP session answers only there.
    if (session.conn !== conn) {
      if (session.transport.lower === 'tcp') return { status: 454 };
      session.conn.sessions.delete(session);
      session.conn = conn;
      conn.sessions.add(session);
    }
    session.lastSeen = Date.now();
    return session;
  };

  const handle = (conn: Connection, request: RtspRequest): RtspResponse => {
    const required = request.headers.get('require');
    if (required) return { status: 551, headers: { Unsupported: required } };
    switch (request.method) {
      case 'OPTIONS': {
        const id = sessionIdOf(request);
        const session = id === undefined ? undefined : sessions.get(id);
        if (session) session.lastSeen = Date.now();
        return { status: 200, headers: { Public: PUBLIC_METHODS } };
      }
      case 'DESCRIBE': {
        const found = resolveCamera(request);
        if (!('cam' in found)) return found;
        const base = contentBase(conn, request, found.cam.id);
        forgetIfUnused(found.cam);
        return { status: 200, headers: { 'Content-Type': 'application/sdp', 'Content-Base': base }, body: sdpFor(conn, found.cam.id) };
      }
      case 'SETUP':
        return setup(conn, request);
      case 'PLAY': {
        const session = findSession(request, conn);
        if (!('id' in session)) return session;
        const target = streamTargetOf(request.uri);
        if (target && target.cameraId !== session.camera.id) return { status: 459 };
        const cam = session.camera;
        if (cam.refused) return { status: 503 };
        if (session.state !== 'playing') {
          if (!cam.encoder && runningEncoders() >= maxEncoders) return { status: 453 };
          const start = session.mapper.arm();
          session.state = 'playing';
          addViewer(session);
          session.rtpInfo = `url=${contentBase(conn, request, cam.id)}${TRACK_CONTROL};seq=${start.seq};rtptime=${start.rtptime}`;
          log.info({ camera: cam.id, session: session.id, transport: session.transport.lower }, 'rtsp: play');
        }
        return { status: 200, headers: { Session: sessionHeader(session), Range: 'npt=0.000-', 'RTP-Info': session.rtpInfo ?? '' } };
      }
      case 'PAUSE': {
        const session = findSession(request, conn);
        if (!('id' in session)) return session;
        if (session.state === 'playing') {
          session.state = 'paused';
          session.mapper.pause();
          removeViewer(session);
        }
        return { status: 200, headers: { Session: sessionHeader(session) } };
      }
      case 'TEARDOWN': {
        const session = findSession(request, conn);
        if (!('id' in session)) return session;
        endSession(session, 'teardown');
        return { status: 200, headers: { Session: session.id } };
      }
      case 'GET_PARAMETER': {
        if (sessionIdOf(request) !== undefined) {
          const session = findSession(request, conn);
          if (!('id' in session)) return session;
        }
        if (request.body.length > 0) return { status: 451 };
        return { status: 200 };
      }
      default:
        return OTHER_RTSP_METHODS.has(request.method) ? { status: 405, headers: { Allow: PUBLIC_METHODS } } : { status: 501 };
    }
  };

  const setup = (conn: Connection, request: RtspRequest): RtspResponse => {
    const found = resolveCamera(request);
    if (!('cam' in found)) return found;
    const { cam } = found;
    const requested = chooseTransport(request.headers.get('transport'));
    if (!requested) {
      forgetIfUnused(cam);
      return { status: 461 };
    }
    let session: Session | undefined;
    if (sessionIdOf(request) !== undefined) {
      const existing = findSession(request, conn);
      if (!('id' in existing)) return existing;
      if (existing.camera !== cam) return { status: 459 };
      if (existing.state === 'playing') return { status: 455, headers: { Allow: 'PLAY, PAUSE, TEARDOWN, GET_PARAMETER, OPTIONS' } };
      session = existing;
    } else if (conn.sessions.size >= MAX_SESSIONS_PER_CONNECTION) {
      forgetIfUnused(cam);
      return { status: 453 };
    }

    let transport: SessionTransport;
    if (requested.lower === 'tcp') {
      const taken = new Set<number>();
      for (const other of conn.sessions) if (other !== session && other.transport.lower === 'tcp') other.transport.channels.forEach((c) => taken.add(c));
      let channels = requested.interleaved;
      if (!channels || taken.has(channels[0]) || taken.has(channels[1])) {
        let c = 0;
        while (taken.has(c) || taken.has(c + 1)) c += 2;
        channels = [c, c + 1];
      }
      transport = { lower: 'tcp', channels };
    } else {
      transport = { lower: 'udp', address: udpAddress(conn.socket.remoteAddress ?? '127.0.0.1'), clientPorts: requested.clientPorts };
    }

    if (session) {
      if (session.transport.lower === 'udp') {
        udpPeers.delete(`${session.transport.address}:${session.transport.clientPorts[0]}`);
        udpPeers.delete(`${session.transport.address}:${session.transport.clientPorts[1]}`);
      }
      session.transport = transport;
    } else {
      session = { id: randomBytes(8).toString('hex'), camera: cam, conn, transport, state: 'ready', mapper: new ViewerRtpMapper(), lastSeen: Date.now() };
      sessions.set(session.id, session);
      conn.sessions.add(session);
      cam.sessions.add(session);
    }
    if (transport.lower === 'udp') {
      udpPeers.set(`${transport.address}:${transport.clientPorts[0]}`, session);
      udpPeers.set(`${transport.address}:${transport.clientPorts[1]}`, session);
    }
    const ssrc = session.mapper.ssrc.toString(16).toUpperCase().padStart(8, '0');
    const spec =
      transport.lower === 'tcp'
        ? `RTP/AVP/TCP;unicast;interleaved=${transport.channels[0]}-${transport.channels[1]};ssrc=${ssrc};mode="PLAY"`
        : `RTP/AVP;unicast;client_port=${transport.clientPorts.join('-')};server_port=${udpPorts.join('-')};ssrc=${ssrc};mode="PLAY"`;
    return { status: 200, headers: { Transport: spec, Session: sessionHeader(session) } };
  };

  const onInput = (conn: Connection, input: RtspInput) => {
    if (input.kind === 'interleaved') {
      // The client's RTCP over TCP: proof of life for the session using that channel.
      for (const s of conn.sessions) if (s.transport.lower === 'tcp' && s.transport.channels.includes(input.channel)) s.lastSeen = Date.now();
      return;
    }
    if (input.kind === 'bad_request') {
      log.warn({ remote: conn.socket.remoteAddress, status: input.status }, 'rtsp: malformed request');
      conn.socket.write(encodeResponse({ status: input.status }, input.cseq, SERVER_NAME));
      if (input.fatal) conn.socket.end();
      return;
    }
    const { request } = input;
    let response: RtspResponse;
    if (request.cseq === undefined) response = { status: 400 };
    else {
      try {
        response = handle(conn, request);
      } catch (err) {
        log.warn({ err: String(err), method: request.method }, 'rtsp: request failed');
        response = { status: 500 };
      }
    }
    if (!conn.socket.destroyed) conn.socket.write(encodeResponse(response, request.cseq, SERVER_NAME));
  };

  // ---- TCP server ------------------------------------------------------------------------------

  const server: Server = createServer((socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const conn: Connection = { socket, parser: new RtspRequestParser(), sessions: new Set() };
    connections.add(conn);
    socket.on('data', (chunk: Buffer) => {
      for (const input of conn.parser.push(chunk)) onInput(conn, input);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      connections.delete(conn);
      for (const session of [...conn.sessions]) endSession(session, 'connection closed');
    });
  });
  server.maxConnections = 4096;
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  }).catch((err: unknown) => {
    udpRtp.close();
    udpRtcp.close();
    throw err;
  });
  const restoreStream = (cameraId: string) => {
    const cam = cameras.get(cameraId);
    if (!cam) return;
    if (cam.refuseTimer) clearTimeout(cam.refuseTimer);
    cam.refuseTimer = undefined;
    cam.refused = false;
    log.info({ camera: cameraId }, 'rtsp: stream restored');
    forgetIfUnused(cam);
  };

  log.info({ host, port, udpPorts, framesize: `${width}x${height}`, fps, sprop: fmtp?.spropParameterSets ?? null }, 'rtsp: listening');

  return {
    host,
    port,
    udpPorts,
    urlFor: (cameraId) => `rtsp://${hostForUrl(host)}:${port}/${cameraId}`,
    activeEncoders: () => [...new Set([...[...cameras.values()].filter((c) => c.encoder).map((c) => c.id), ...[...stopping].map((e) => e.cameraId)])].sort(),
    encoderPid: (cameraId) => cameras.get(cameraId)?.encoder?.pid,
    viewerCount: (cameraId) => cameras.get(cameraId)?.viewers.size ?? 0,
    async stopStream(cameraId, stopOpts) {
      const cam = cameraFor(cameraId);
      cam.refused = true;
      if (cam.refuseTimer) clearTimeout(cam.refuseTimer);
      cam.refuseTimer = undefined;
      if (stopOpts?.refuseMs !== undefined) {
        cam.refuseTimer = setTimeout(() => restoreStream(cameraId), stopOpts.refuseMs);
        cam.refuseTimer.unref();
      }
      const encoder = detachEncoder(cam);
      log.warn({ camera: cameraId, refuseMs: stopOpts?.refuseMs ?? null }, 'rtsp: fault injected: stream stopped');
      for (const conn of new Set([...cam.sessions].map((s) => s.conn))) dropConnection(conn, 'stream stopped');
      if (encoder) await encoder.stop('SIGKILL');
    },
    restoreStream,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const conn of connections) conn.socket.destroy();
      const exits: Promise<unknown>[] = [];
      for (const cam of cameras.values()) {
        if (cam.refuseTimer) clearTimeout(cam.refuseTimer);
        const encoder = detachEncoder(cam);
        if (encoder) exits.push(encoder.stop('SIGTERM'));
      }
      for (const encoder of stopping) exits.push(encoder.exited);
      await Promise.all([...exits, serverClosed]);
      udpRtp.close();
      udpRtcp.close();
    },
  };
}
