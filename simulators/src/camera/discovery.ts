/**
 * WS-Discovery (SOAP-over-UDP, the 2005/04 namespace ONVIF uses) for a fleet: a Probe sent to the
 * responder's port — unicast, or multicast 239.255.255.250:3702 when enabled — is answered to the
 * sender with one ProbeMatches datagram per matching camera, as separate devices would (and as
 * the `onvif` client's parser expects: one ProbeMatch per message). Types and Scopes in the Probe
 * filter the answer, so `onvif://www.onvif.org/name/cam-0042` finds one camera among 1657.
 * Replies go out in batches so a big fleet does not overrun the prober's socket buffer at once.
 */
import { randomUUID } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { child, esc, parseXml, textAt } from './xml.js';

export const WS_DISCOVERY_MULTICAST = '239.255.255.250';
export const WS_DISCOVERY_PORT = 3702;
const NS_DISCOVERY = 'http://schemas.xmlsoap.org/ws/2005/04/discovery';
const NS_ADDRESSING = 'http://schemas.xmlsoap.org/ws/2004/08/addressing';
const PROBE_ACTION = `${NS_DISCOVERY}/Probe`;

export interface DiscoveryOptions {
  /** bind address; default the fleet's host */
  host?: string;
  /** 3702 on a real network; 0 (default) picks a free port */
  port?: number;
  /** also join 239.255.255.250 (needs a network that carries multicast); default false */
  multicast?: boolean;
  /** cameras answered per Probe at most; default all */
  maxMatches?: number;
  /** datagrams sent per batch; default 64 */
  batchSize?: number;
  /** pause between batches, ms; default 2 */
  batchIntervalMs?: number;
}

/** One device as discovery shows it. */
export interface DiscoveryTarget {
  endpointReference: string;
  scopes: readonly string[];
  /** the device service URL(s), space-separated, as reachable from `proberAddress` */
  xaddrs(proberAddress: string): string;
  online: boolean;
}

export const DEVICE_TYPES = 'dn:NetworkVideoTransmitter tds:Device';
const TYPE_LOCAL_NAMES = new Set(['NetworkVideoTransmitter', 'Device']);

/** RFC 3986 matching (the default MatchBy): scheme and authority equal, path a segment prefix. */
export function scopeMatches(probe: string, scope: string, matchBy: string | undefined): boolean {
  if (matchBy?.endsWith('strcmp0')) return probe === scope;
  const norm = (s: string) => s.replace(/\/+$/, '');
  const p = norm(probe);
  const s = norm(scope);
  return s === p || s.startsWith(`${p}/`);
}

export interface DiscoveryResponder {
  readonly port: number;
  readonly stats: { probes: number; matchesSent: number };
  close(): Promise<void>;
}

export function probeMatchMessage(
  target: DiscoveryTarget,
  xaddrs: string,
  relatesTo: string,
  instanceId: number,
  messageNumber: number,
): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="${NS_ADDRESSING}" ` +
    `xmlns:d="${NS_DISCOVERY}" xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">` +
    `<SOAP-ENV:Header><wsa:MessageID>urn:uuid:${randomUUID()}</wsa:MessageID><wsa:RelatesTo>${esc(relatesTo)}</wsa:RelatesTo>` +
    `<wsa:To>${NS_ADDRESSING}/role/anonymous</wsa:To><wsa:Action>${NS_DISCOVERY}/ProbeMatches</wsa:Action>` +
    `<d:AppSequence InstanceId="${instanceId}" MessageNumber="${messageNumber}"/></SOAP-ENV:Header>` +
    `<SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch><wsa:EndpointReference><wsa:Address>${esc(target.endpointReference)}</wsa:Address></wsa:EndpointReference>` +
    `<d:Types>${DEVICE_TYPES}</d:Types><d:Scopes>${esc(target.scopes.join(' '))}</d:Scopes>` +
    `<d:XAddrs>${esc(xaddrs)}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>`
  );
}

export async function startDiscoveryResponder(
  opts: DiscoveryOptions & { host: string },
  targets: () => Iterable<DiscoveryTarget>,
): Promise<DiscoveryResponder> {
  const socket: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  const instanceId = Math.floor(Date.now() / 1000);
  let messageNumber = 0;
  const stats = { probes: 0, matchesSent: 0 };
  const timers = new Set<NodeJS.Timeout>();
  const batchSize = Math.max(1, opts.batchSize ?? 64);
  const interval = Math.max(0, opts.batchIntervalMs ?? 2);
  let closed = false;

  const onProbe = (msg: Buffer, from: RemoteInfo) => {
    let relatesTo: string;
    let types: string[];
    let scopes: string[];
    let matchBy: string | undefined;
    try {
      const doc = parseXml(msg.toString('utf8'));
      const header = child(doc, 'Header');
      const probe = child(child(doc, 'Body'), 'Probe');
      const action = textAt(header, 'Action');
      if (!probe || (action !== undefined && action !== PROBE_ACTION)) return;
      relatesTo = textAt(header, 'MessageID') ?? '';
      types = (textAt(probe, 'Types') ?? '').split(/\s+/).filter(Boolean);
      const scopesEl = child(probe, 'Scopes');
      scopes = (scopesEl?.text ?? '').split(/\s+/).filter(Boolean);
      matchBy = scopesEl?.attrs['MatchBy'];
    } catch {
      return; // not XML: not for us
    }
    stats.probes++;
    // Types are QNames; compared by local name (dn:NetworkVideoTransmitter, tds:Device).
    if (types.some((t) => !TYPE_LOCAL_NAMES.has(t.slice(t.indexOf(':') + 1)))) return;
    const matches: DiscoveryTarget[] = [];
    const max = opts.maxMatches ?? Infinity;
    for (const t of targets()) {
      if (matches.length >= max) break;
      if (!t.online) continue;
      if (scopes.every((p) => t.scopes.some((s) => scopeMatches(p, s, matchBy)))) matches.push(t);
    }
    let i = 0;
    const sendBatch = () => {
      if (closed) return;
      for (let k = 0; k < batchSize && i < matches.length; k++, i++) {
        const target = matches[i]!;
        const reply = Buffer.from(probeMatchMessage(target, target.xaddrs(from.address), relatesTo, instanceId, ++messageNumber), 'utf8');
        socket.send(reply, from.port, from.address);
        stats.matchesSent++;
      }
      if (i < matches.length) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          sendBatch();
        }, interval);
        timers.add(timer);
      }
    };
    sendBatch();
  };

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(opts.port ?? 0, opts.multicast ? undefined : opts.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => {
    /* a failed send to one prober must not take the responder down */
  });
  if (opts.multicast) {
    try {
      socket.addMembership(WS_DISCOVERY_MULTICAST);
      socket.setMulticastTTL(1);
    } catch {
      // No multicast route on this host: unicast probes still work.
    }
  }
  socket.on('message', onProbe);
  return {
    port: socket.address().port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        for (const t of timers) clearTimeout(t);
        socket.close(() => resolve());
      }),
  };
}
