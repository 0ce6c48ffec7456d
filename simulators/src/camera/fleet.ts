/**
 * A fleet of simulated ONVIF cameras behind one HTTP server (or one port each): routing,
 * authentication, the SOAP envelope, snapshots, WS-Discovery and the subscription sweeper.
 * The cameras themselves are plain objects (camera.ts); 1657 of them fit in a few megabytes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIPv6, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { LedgerDevice } from '../../../config/ledger.js';
import { DigestAuthority, NonceCache, verifyBasic, verifyUsernameToken, type Credentials } from './auth.js';
import { SimCameraImpl, type CameraContext, type CameraSpec, type SimCamera } from './camera.js';
import { startDiscoveryResponder, type DiscoveryOptions, type DiscoveryResponder, type DiscoveryTarget } from './discovery.js';
import { DEFAULT_PTZ_LIMITS, type PtzLimits } from './ptz.js';
import { handlerFor, type EventLimits, type FleetServices, type SoapReply } from './services.js';
import { SnapshotRenderer, type SnapshotOptions, type SnapshotStats } from './snapshot.js';
import { envelope, faultBody, faults, SOAP_CONTENT_TYPE, SoapFault } from './soap.js';
import { cameraUrls, routeOf, type SoapService } from './urls.js';
import type { CameraVendor } from './vendors.js';
import { child, esc, parseXml, type XmlElement } from './xml.js';

export interface CameraFleetOptions {
  /** bind address; default 127.0.0.1 */
  host?: string;
  /** 'shared' (default): one server on `port`; 'port-per-camera': camera i on basePort + i */
  layout?: 'shared' | 'port-per-camera';
  /** shared layout; 0 (default) picks a free port */
  port?: number;
  /** port-per-camera layout; 0 or absent: a free port each */
  basePort?: number;
  /** the fleet's account; with neither (and no per-camera credentials) nothing is authenticated */
  username?: string;
  password?: string;
  /** GetStreamUri's answer, e.g. the RTSP server's `urlFor` */
  streamUrlFor: (cameraId: string) => string;
  /** fleet clock, ms; default Date.now */
  now?: () => number;
  /** serial numbers, endpoint UUIDs and MACs derive from it */
  seed: number;
  /** default 'generic' */
  vendor?: CameraVendor;
  /** also offer Media2 (ver20) as Profile T devices do; the `onvif` client then uses it */
  profileT?: boolean;
  /** host name put in XAddrs; default the bind address, or the request's Host if that is 0.0.0.0/:: */
  advertiseHost?: string;
  ptz?: Partial<PtzLimits>;
  events?: Partial<EventLimits> & {
    /** per subscription; beyond it the oldest messages are dropped. Default 1000 */
    maxQueuedMessages?: number;
  };
  auth?: {
    /** accepted distance of a UsernameToken's Created from the camera clock; default 5 min */
    maxClockSkewMs?: number;
    /** HTTP status of a WS-Security failure: 400 (ONVIF core, default) or 401 (some firmware) */
    failureStatus?: 400 | 401;
    /** refuse a UsernameToken nonce seen before; default true */
    rejectReplayedNonces?: boolean;
  };
  snapshot?: SnapshotOptions;
  /** WS-Discovery responder; off unless given */
  discovery?: DiscoveryOptions | false;
  /** how long SystemReboot keeps a camera down; default 30 s */
  rebootMs?: number;
}

export interface FleetStats {
  httpRequests: number;
  soapRequests: number;
  authFailures: number;
  faults: number;
  /** requests to offline cameras left hanging */
  heldRequests: number;
  snapshots: SnapshotStats;
  discovery?: { probes: number; matchesSent: number };
}

export interface CameraFleet {
  readonly host: string;
  /** the shared server's port (port-per-camera: the first camera's) */
  readonly port: number;
  readonly discoveryPort: number | undefined;
  readonly ids: readonly string[];
  portOf(cameraId: string): number;
  deviceServiceUrl(cameraId: string): string;
  snapshotUrl(cameraId: string): string;
  camera(cameraId: string): SimCamera;
  stats(): FleetStats;
  close(): Promise<void>;
}

/** The ledger's cameras as specs: heading from `heading_deg`. */
export function cameraSpecsFromLedger(devices: readonly LedgerDevice[]): CameraSpec[] {
  const out: CameraSpec[] = [];
  for (const d of devices) {
    if (d.kind !== 'camera') continue;
    out.push({ id: d.id, name: d.name, headingDeg: d.settings.headingDeg ?? 0, vendor: d.settings.vendor, lat: d.lat, lon: d.lon });
  }
  return out;
}

const MAX_BODY_BYTES = 256 * 1024;

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        // Stop keeping it, let the rest drain, answer 413 and close.
        req.off('data', onData);
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const isWildcard = (h: string) => h === '0.0.0.0' || h === '::' || h === '';
const hostInUrl = (h: string) => (isIPv6(h) ? `[${h}]` : h);

export async function startCameraFleet(specs: readonly CameraSpec[], opts: CameraFleetOptions): Promise<CameraFleet> {
  const now = opts.now ?? Date.now;
  const host = opts.host ?? '127.0.0.1';
  const layout = opts.layout ?? 'shared';
  const ptzLimits: PtzLimits = { ...DEFAULT_PTZ_LIMITS, ...opts.ptz };
  const eventLimits: EventLimits = {
    maxPullTimeoutMs: opts.events?.maxPullTimeoutMs ?? 60_000,
    maxMessageLimit: opts.events?.maxMessageLimit ?? 1000,
    defaultSubscriptionTtlMs: opts.events?.defaultSubscriptionTtlMs ?? 60_000,
    maxSubscriptionTtlMs: opts.events?.maxSubscriptionTtlMs ?? 3600_000,
    maxSubscriptionsPerCamera: opts.events?.maxSubscriptionsPerCamera ?? 16,
  };
  const ctx: CameraContext = {
    now,
    seed: opts.seed,
    defaultVendor: opts.vendor ?? 'generic',
    ptzLimits,
    maxQueuedMessages: opts.events?.maxQueuedMessages ?? 1000,
    maxSubscriptions: eventLimits.maxSubscriptionsPerCamera,
  };
  const cameras = new Map<string, SimCameraImpl>();
  for (const spec of specs) {
    if (cameras.has(spec.id)) throw new Error(`duplicate camera id ${spec.id}`);
    cameras.set(spec.id, new SimCameraImpl(spec, ctx));
  }
  const ids = [...cameras.keys()];

  const fleetAccounts: Credentials[] =
    opts.username !== undefined || opts.password !== undefined ? [{ username: opts.username ?? '', password: opts.password ?? '' }] : [];
  const accountsOf = (c: SimCameraImpl): readonly Credentials[] => (c.credentials ? [c.credentials] : fleetAccounts);
  const digest = new DigestAuthority('GreenShield camera');
  const nonces = new NonceCache();
  const failureStatus = opts.auth?.failureStatus ?? 400;
  const maxSkewMs = opts.auth?.maxClockSkewMs ?? 5 * 60_000;
  const rejectReplays = opts.auth?.rejectReplayedNonces ?? true;
  const renderer = new SnapshotRenderer(opts.snapshot ?? {}, now);
  const counters = { httpRequests: 0, soapRequests: 0, authFailures: 0, faults: 0, heldRequests: 0 };

  const scopes = (c: SimCameraImpl): string[] => [
    'onvif://www.onvif.org/type/video_encoder',
    'onvif://www.onvif.org/type/ptz',
    'onvif://www.onvif.org/type/thermal',
    'onvif://www.onvif.org/Profile/Streaming',
    ...(opts.profileT ? ['onvif://www.onvif.org/Profile/T'] : []),
    `onvif://www.onvif.org/hardware/${encodeURIComponent(c.vendor.model)}`,
    `onvif://www.onvif.org/name/${encodeURIComponent(c.id)}`,
    'onvif://www.onvif.org/location/country/china',
    'onvif://www.onvif.org/location/city/chongqing',
  ];
  const services: FleetServices = {
    streamUrlFor: opts.streamUrlFor,
    profileT: opts.profileT ?? false,
    events: eventLimits,
    rebootMs: opts.rebootMs ?? 30_000,
    scopes,
  };

  // ---- HTTP -------------------------------------------------------------------------------------

  const portByCamera = new Map<string, number>();
  const helperOrigin = (port: number) =>
    `http://${hostInUrl(opts.advertiseHost ?? (isWildcard(host) ? '127.0.0.1' : host))}:${port}`;
  const requestOrigin = (req: IncomingMessage): string => {
    const port = req.socket.localPort ?? 0;
    if (opts.advertiseHost) return `http://${hostInUrl(opts.advertiseHost)}:${port}`;
    if (!isWildcard(host)) return `http://${hostInUrl(host)}:${port}`;
    const h = req.headers.host;
    return h && /^[A-Za-z0-9.\-:[\]]+$/.test(h) ? `http://${h}` : `http://127.0.0.1:${port}`;
  };

  const plain = (res: ServerResponse, status: number, text: string, headers: Record<string, string | string[]> = {}) => {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
    res.end(`${text}\n`);
  };

  /** An offline camera: a hung request (power loss) or a reset connection. */
  const goDark = (req: IncomingMessage, res: ServerResponse, mode: 'silent' | 'reset') => {
    if (mode === 'reset') {
      req.socket.destroy();
      return;
    }
    counters.heldRequests++;
    res.on('close', () => counters.heldRequests--);
  };

  const sendSoap = (res: ServerResponse, status: number, body: string, header = '', extra: Record<string, string | string[]> = {}) => {
    const doc = Buffer.from(envelope(body, header), 'utf8');
    res.writeHead(status, { 'Content-Type': SOAP_CONTENT_TYPE, 'Content-Length': String(doc.length), ...extra });
    res.end(doc);
  };
  const sendFault = (res: ServerResponse, fault: SoapFault, extra: Record<string, string | string[]> = {}) => {
    counters.faults++;
    sendSoap(res, fault.httpStatus, faultBody(fault), '', extra);
  };

  type AuthVerdict = { ok: true } | { ok: false; fault: SoapFault; headers: Record<string, string[]> };
  const authenticate = (req: IncomingMessage, camera: SimCameraImpl, header: XmlElement | undefined): AuthVerdict => {
    const accounts = accountsOf(camera);
    if (accounts.length === 0) return { ok: true };
    const security = child(header, 'Security');
    if (security) {
      const outcome = verifyUsernameToken(security, accounts, {
        nowMs: camera.clock(),
        maxSkewMs,
        ...(rejectReplays ? { replay: { cache: nonces, scope: camera.id } } : {}),
      });
      if (outcome.ok) return { ok: true };
      counters.authFailures++;
      return { ok: false, fault: faults.notAuthorized(failureStatus), headers: {} };
    }
    // No WS-Security: HTTP Digest, as ONVIF allows; a 401 challenge tells the client how.
    const outcome = digest.verify(req.headers.authorization, req.method ?? 'POST', req.url ?? '', accounts, now());
    if (outcome.ok) return { ok: true };
    if (req.headers.authorization) counters.authFailures++;
    const stale = !outcome.ok && outcome.failure === 'stale-nonce';
    return { ok: false, fault: faults.notAuthorized(401), headers: { 'WWW-Authenticate': digest.challenges(now(), { stale }) } };
  };

  const handleSoap = async (
    req: IncomingMessage,
    res: ServerResponse,
    camera: SimCameraImpl,
    service: SoapService,
    subscriptionId: number | undefined,
  ) => {
    if (req.method !== 'POST') return plain(res, 405, 'Method Not Allowed', { Allow: 'POST' });
    let text: string;
    try {
      text = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLarge) return plain(res, 413, 'Payload Too Large', { Connection: 'close' });
      return; // the client went away
    }
    counters.soapRequests++;
    camera.stats.soapRequests++;
    let doc: XmlElement;
    try {
      doc = parseXml(text);
    } catch (err) {
      return sendFault(res, faults.wellFormed((err as Error).message.split('\n')[0] ?? 'bad XML'));
    }
    const header = child(doc, 'Header');
    const op = child(doc, 'Body')?.children[0];
    if (doc.name !== 'Envelope' || !op) return sendFault(res, faults.wellFormed('no SOAP Envelope/Body operation'));

    const preAuth = service === 'device' && op.name === 'GetSystemDateAndTime';
    if (!preAuth) {
      const verdict = authenticate(req, camera, header);
      if (!verdict.ok) return sendFault(res, verdict.fault, verdict.headers);
    }
    const handler = handlerFor(service, op.name, services.profileT);
    if (!handler) return sendFault(res, faults.actionNotSupported(op.name));

    const aborter = new AbortController();
    res.on('close', () => aborter.abort());
    let reply: SoapReply;
    try {
      const out = await handler({
        camera,
        op,
        origin: requestOrigin(req),
        fleet: services,
        signal: aborter.signal,
        ...(subscriptionId !== undefined ? { subscriptionId } : {}),
      });
      reply = typeof out === 'string' ? { body: out } : out;
    } catch (err) {
      if (camera.offline) return goDark(req, res, camera.offline);
      if (err instanceof SoapFault) return sendFault(res, err);
      return sendFault(res, new SoapFault('env:Receiver', ['ter:Action'], `Internal error: ${(err as Error).message}`));
    }
    if (camera.offline) return goDark(req, res, camera.offline);
    if (res.destroyed) return;
    const messageId = child(header, 'MessageID')?.text;
    const wsa =
      (reply.action ? `<wsa5:Action>${esc(reply.action)}</wsa5:Action>` : '') +
      (messageId ? `<wsa5:RelatesTo>${esc(messageId)}</wsa5:RelatesTo>` : '');
    sendSoap(res, 200, reply.body, wsa);
    if (reply.after) res.once('finish', reply.after);
  };

  const handleSnapshot = async (req: IncomingMessage, res: ServerResponse, camera: SimCameraImpl) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'Method Not Allowed', { Allow: 'GET, HEAD' });
    const accounts = accountsOf(camera);
    if (accounts.length > 0) {
      const authz = req.headers.authorization;
      const outcome = /^basic /i.test(authz ?? '')
        ? verifyBasic(authz, accounts)
        : digest.verify(authz, req.method, req.url ?? '', accounts, now());
      if (!outcome.ok) {
        if (authz) counters.authFailures++;
        const stale = outcome.failure === 'stale-nonce';
        return plain(res, 401, 'Unauthorized', { 'WWW-Authenticate': digest.challenges(now(), { stale, basic: true }) });
      }
    }
    const active = camera.activeAlarms;
    const alarmKind = active.has('fire') ? 'FIRE' : active.has('smoke') ? 'SMOKE' : active.has('temperature') ? 'HOT' : undefined;
    const jpeg = await renderer.get({
      cameraId: camera.id,
      utcMs: camera.clock(),
      bearingDeg: camera.panBearingDeg,
      ...(alarmKind ? { alarm: alarmKind } : {}),
    });
    if (camera.offline) return goDark(req, res, camera.offline);
    if (res.destroyed) return;
    res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': String(jpeg.length), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : jpeg);
  };

  // Requests in flight per camera, so a camera going dark with 'reset' drops them too.
  const inFlight = new Map<SimCameraImpl, Set<ServerResponse>>();
  const track = (camera: SimCameraImpl, res: ServerResponse) => {
    let set = inFlight.get(camera);
    if (!set) inFlight.set(camera, (set = new Set()));
    set.add(res);
    res.on('close', () => {
      set.delete(res);
      if (set.size === 0 && inFlight.get(camera) === set) inFlight.delete(camera);
    });
  };
  for (const camera of cameras.values()) {
    camera.onOffline = (mode) => {
      if (mode !== 'reset') return;
      for (const res of inFlight.get(camera) ?? []) res.socket?.destroy();
    };
  }

  const onRequest = (portCamera: SimCameraImpl | undefined) => (req: IncomingMessage, res: ServerResponse) => {
    counters.httpRequests++;
    const route = routeOf((req.url ?? '/').split('?')[0] ?? '/');
    if (!route) return plain(res, 404, 'Not Found');
    let camera = route.cameraId === undefined ? portCamera : cameras.get(route.cameraId);
    if (portCamera && camera !== portCamera) camera = undefined;
    if (!camera) return plain(res, 404, 'No such camera');
    if (camera.offline) return goDark(req, res, camera.offline);
    track(camera, res);
    const done =
      route.kind === 'snapshot'
        ? handleSnapshot(req, res, camera)
        : handleSoap(req, res, camera, route.service, route.subscriptionId);
    done.catch(() => {
      if (!res.headersSent) plain(res, 500, 'Internal Server Error');
      else res.destroy();
    });
  };

  const servers: Server[] = [];
  const listen = (server: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const closeServers = async () => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  };

  let sharedPort = 0;
  let responder: DiscoveryResponder | undefined;
  try {
    if (layout === 'shared') {
      const server = createServer(onRequest(undefined));
      servers.push(server);
      sharedPort = await listen(server, opts.port ?? 0);
      for (const id of ids) portByCamera.set(id, sharedPort);
    } else {
      let i = 0;
      for (const camera of cameras.values()) {
        const server = createServer(onRequest(camera));
        servers.push(server);
        portByCamera.set(camera.id, await listen(server, opts.basePort ? opts.basePort + i : 0));
        i++;
      }
      sharedPort = portByCamera.get(ids[0] ?? '') ?? 0;
    }
    if (opts.discovery) {
      // Bound to every interface with nothing to advertise: answer a prober on this host with
      // 127.0.0.1, anyone else with this host's first external IPv4 address.
      const externalIPv4 = Object.values(networkInterfaces())
        .flat()
        .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
      const originFor = (port: number, prober: string) =>
        !opts.advertiseHost && isWildcard(host) && externalIPv4 && !prober.startsWith('127.')
          ? `http://${externalIPv4}:${port}`
          : helperOrigin(port);
      const targets = function* (): Iterable<DiscoveryTarget> {
        for (const c of cameras.values()) {
          yield {
            endpointReference: c.endpointReference,
            scopes: scopes(c),
            xaddrs: (prober) => cameraUrls(originFor(portByCamera.get(c.id) ?? 0, prober), c.id).device,
            online: c.offline === false,
          };
        }
      };
      responder = await startDiscoveryResponder({ ...opts.discovery, host: opts.discovery.host ?? host }, targets);
    }
  } catch (err) {
    await closeServers();
    renderer.close();
    throw err;
  }

  // Expired subscriptions are dropped on access too; the sweep frees the ones nobody asks about.
  const sweeper = setInterval(() => {
    for (const c of cameras.values()) c.expireSubscriptions();
  }, 5000);
  sweeper.unref();

  const cameraOrThrow = (id: string): SimCameraImpl => {
    const c = cameras.get(id);
    if (!c) throw new Error(`no camera ${id} in this fleet`);
    return c;
  };

  return {
    host,
    port: sharedPort,
    discoveryPort: responder?.port,
    ids,
    portOf: (id) => portByCamera.get(cameraOrThrow(id).id)!,
    deviceServiceUrl: (id) => cameraUrls(helperOrigin(portByCamera.get(cameraOrThrow(id).id)!), id).device,
    snapshotUrl: (id) => cameraUrls(helperOrigin(portByCamera.get(cameraOrThrow(id).id)!), id).snapshot,
    camera: cameraOrThrow,
    stats: () => ({
      ...counters,
      snapshots: { ...renderer.stats },
      ...(responder ? { discovery: { ...responder.stats } } : {}),
    }),
    async close() {
      clearInterval(sweeper);
      renderer.close();
      for (const c of cameras.values()) c.dispose();
      await Promise.all([closeServers(), responder?.close()]);
    },
  };
}
