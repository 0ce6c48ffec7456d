/**
 * Finding cameras that are on the network but not in the ledger (WS-Discovery), so the command
 * center can add them. The agent never adds a camera by itself: the ledger stays the one record
 * of what the site owns and which agent speaks for it.
 *
 * By default the `onvif` client's own `Discovery.probe` multicasts a Probe to
 * 239.255.255.250:3702 (it can only do that). With `address`, the same Probe is sent unicast to
 * one host and port — a camera or a subnet's discovery proxy across a router that does not carry
 * multicast, and the tests' simulator — and the answers are read with the client's own parser.
 */
import { randomUUID } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import onvif from 'onvif';
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';

export interface DiscoveredCamera {
  /** WS-Discovery endpoint reference, e.g. `urn:uuid:…`: the camera's stable identity */
  endpointReference: string;
  /** the first device service URL (what goes into the ledger's onvif_url) */
  xaddr: string;
  xaddrs: string[];
  scopes: string[];
  types: string[];
  /** from the `onvif://www.onvif.org/name/…` scope, if any */
  name?: string;
  /** from the `onvif://www.onvif.org/hardware/…` scope, if any */
  hardware?: string;
  /** the address the answer came from */
  from: string;
}

export interface DiscoverCamerasOptions {
  /** how long to collect answers; default 5000 ms */
  timeoutMs?: number;
  /** unicast the Probe here instead of multicasting it */
  address?: { host: string; port: number };
  /** cameras already in the ledger are left out of the answer (by onvif_url, or by the name scope = ledger id) */
  ledger?: readonly LedgerDevice[];
  log?: Logger;
}

const onvifUtils = createRequire(import.meta.url)('onvif/lib/utils.js') as {
  parseSOAPString(xml: string, cb: (err: Error | null, data: unknown) => void, status: number): void;
  linerase(x: unknown): unknown;
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const textOf = (v: unknown): string => (typeof v === 'string' ? v : isObject(v) && typeof v._ === 'string' ? v._ : typeof v === 'number' ? String(v) : '');
const words = (v: unknown): string[] => textOf(v).split(/\s+/).filter(Boolean);

/** The client's Probe (its Discovery.probe sends exactly this). */
function probeMessage(messageId: string): string {
  return (
    '<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">' +
    '<Header>' +
    `<wsa:MessageID xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">${messageId}</wsa:MessageID>` +
    '<wsa:To xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>' +
    '<wsa:Action xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>' +
    '</Header><Body>' +
    '<Probe xmlns="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
    '<Types>dn:NetworkVideoTransmitter</Types><Scopes />' +
    '</Probe></Body></Envelope>'
  );
}

/** A ProbeMatch as the client's parser leaves it (`linerase` of the SOAP body) → a candidate. */
function candidateOf(body: unknown, from: string): DiscoveredCamera | undefined {
  const matches = isObject(body) && isObject(body.probeMatches) ? body.probeMatches : undefined;
  const match = matches ? (Array.isArray(matches.probeMatch) ? matches.probeMatch[0] : matches.probeMatch) : undefined;
  if (!isObject(match)) return undefined;
  const epr = isObject(match.endpointReference) ? textOf(match.endpointReference.address) : '';
  const xaddrs = words(match.XAddrs).filter((x) => /^https?:\/\//i.test(x));
  if (!epr || xaddrs.length === 0) return undefined;
  const scopes = words(match.scopes);
  const scopeValue = (kind: string) => {
    const s = scopes.find((x) => x.startsWith(`onvif://www.onvif.org/${kind}/`));
    if (!s) return undefined;
    try {
      return decodeURIComponent(s.slice(`onvif://www.onvif.org/${kind}/`.length));
    } catch {
      return undefined;
    }
  };
  const name = scopeValue('name');
  const hardware = scopeValue('hardware');
  return {
    endpointReference: epr,
    xaddr: xaddrs[0]!,
    xaddrs,
    scopes,
    types: words(match.types),
    ...(name !== undefined ? { name } : {}),
    ...(hardware !== undefined ? { hardware } : {}),
    from,
  };
}

/** scheme://host:port/path of a URL, without credentials, query or trailing slash. */
function urlKey(url: string): string | undefined {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return `${u.protocol}//${u.hostname.toLowerCase()}:${port}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return undefined;
  }
}

/** Whether a candidate is already in the ledger: its XAddr is a camera's onvif_url, or its name scope a camera's id. */
export function isInLedger(c: DiscoveredCamera, ledger: readonly LedgerDevice[]): boolean {
  const urls = new Set<string>();
  const ids = new Set<string>();
  for (const d of ledger) {
    if (d.kind !== 'camera') continue;
    ids.add(d.id);
    const k = d.settings.onvifUrl ? urlKey(d.settings.onvifUrl) : undefined;
    if (k) urls.add(k);
  }
  if (c.xaddrs.some((x) => urls.has(urlKey(x) ?? ''))) return true;
  return c.name !== undefined && ids.has(c.name);
}

function probeUnicast(address: { host: string; port: number }, timeoutMs: number, onError: (e: string) => void): Promise<DiscoveredCamera[]> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const found = new Map<string, DiscoveredCamera>();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve([...found.values()]);
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.on('message', (msg, rinfo) => {
      onvifUtils.parseSOAPString(
        msg.toString('utf8'),
        (err, data) => {
          const body = !err && Array.isArray(data) ? onvifUtils.linerase(data) : undefined;
          const c = body === undefined ? undefined : candidateOf(body, rinfo.address);
          if (!c) return onError(`not a ProbeMatch from ${rinfo.address}:${rinfo.port}`);
          if (!found.has(c.endpointReference)) found.set(c.endpointReference, c);
        },
        200,
      );
    });
    const probe = Buffer.from(probeMessage(`urn:uuid:${randomUUID()}`), 'utf8');
    socket.bind(0, () => socket.send(probe, address.port, address.host));
  });
}

function probeMulticast(timeoutMs: number, onError: (e: string) => void): Promise<DiscoveredCamera[]> {
  return new Promise((resolve) => {
    // Discovery is a shared emitter that emits 'error' for any stray datagram: without a
    // listener that would throw.
    const onDiscoveryError = (e: unknown) => onError(e instanceof Error ? e.message : String(e));
    onvif.Discovery.on('error', onDiscoveryError);
    const found = new Map<string, DiscoveredCamera>();
    const onDevice = (data: unknown, rinfo: { address: string }) => {
      const c = candidateOf(data, rinfo.address);
      if (c && !found.has(c.endpointReference)) found.set(c.endpointReference, c);
    };
    onvif.Discovery.on('device', onDevice);
    onvif.Discovery.probe({ timeout: timeoutMs, resolve: false }, () => {
      onvif.Discovery.off('device', onDevice);
      onvif.Discovery.off('error', onDiscoveryError);
      resolve([...found.values()]);
    });
  });
}

/**
 * Cameras that answer a WS-Discovery Probe and are not in `ledger`, one per endpoint reference,
 * in the order they answered. Multicast by default; unicast to `address` when given.
 */
export async function discoverCameras(opts: DiscoverCamerasOptions = {}): Promise<DiscoveredCamera[]> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  let strays = 0;
  const onError = (e: string) => {
    if (strays++ === 0) opts.log?.debug({ reason: e }, 'discovery: ignored an answer that is not a ProbeMatch');
  };
  const found = opts.address ? await probeUnicast(opts.address, timeoutMs, onError) : await probeMulticast(timeoutMs, onError);
  const fresh = opts.ledger ? found.filter((c) => !isInLedger(c, opts.ledger!)) : found;
  opts.log?.info({ answered: found.length, notInLedger: fresh.length, ignored: strays, unicast: opts.address !== undefined }, 'camera discovery done');
  return fresh;
}
