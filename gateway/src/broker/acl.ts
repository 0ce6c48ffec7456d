/**
 * Who may publish and subscribe to what, decided from the principal and the ledger:
 *
 *   agent A    publish   gs/v1/devices/{id}/(telemetry|event|state|ack)  for ledger devices whose agent is A
 *                        gs/v1/agents/A/state                            (its will must be this topic)
 *              subscribe gs/v1/devices/{id}/cmd                          same devices, exact topics only
 *   device D   publish   gs/v1/devices/D/(telemetry|event|state|ack)     (its will must be .../D/state)
 *              subscribe gs/v1/devices/D/cmd
 *   dev        anything  (anonymous clients when gateway.mqtt.allowAnonymous is on)
 *
 * Everything else is refused for agents and devices, wildcards in subscriptions included: an
 * agent lists its devices' command topics one by one, so the broker never has to reason about
 * what a filter might match.
 */
import { parseTopic, topics, type ParsedTopic } from '../../../protocol/topics.js';
import type { PrincipalKind } from './credentials.js';

export type Principal = { kind: 'dev' } | { kind: PrincipalKind; username: string; hash: string };

/** What the ACL needs from the ledger (the device registry): which agent speaks for a device. */
export interface DeviceDirectory {
  get(id: string): { readonly agent: string } | undefined;
  /** Every device; used only to warn at start about principals the ledger does not know. */
  views(): ReadonlyArray<{ readonly agent: string }>;
}

export function principalName(p: Principal): string {
  return p.kind === 'dev' ? '(anonymous)' : p.username;
}

export function mayPublish(p: Principal, topic: string, devices: DeviceDirectory): boolean {
  return p.kind === 'dev' || mayPublishParsed(p, parseTopic(topic), devices);
}

/** mayPublish for a topic already parsed (`parseTopic`; undefined = not one of ours): the broker parses each publish once, for this and for ingest. */
export function mayPublishParsed(p: Principal, parsed: ParsedTopic | undefined, devices: DeviceDirectory): boolean {
  if (p.kind === 'dev') return true;
  if (!parsed) return false;
  if (parsed.scope === 'agent') return p.kind === 'agent' && parsed.agentId === p.username;
  if (parsed.channel === 'cmd') return false;
  if (p.kind === 'device') return parsed.deviceId === p.username;
  return devices.get(parsed.deviceId)?.agent === p.username;
}

export function maySubscribe(p: Principal, filter: string, devices: DeviceDirectory): boolean {
  if (p.kind === 'dev') return true;
  if (filter.includes('+') || filter.includes('#')) return false;
  const parsed = parseTopic(filter);
  if (!parsed || parsed.scope !== 'device' || parsed.channel !== 'cmd') return false;
  if (p.kind === 'device') return parsed.deviceId === p.username;
  return devices.get(parsed.deviceId)?.agent === p.username;
}

/** A last will may only announce its own principal going offline. */
export function mayWill(p: Principal, topic: string): boolean {
  if (p.kind === 'dev') return true;
  return topic === (p.kind === 'agent' ? topics.agentState(p.username) : topics.state(p.username));
}

/** MQTT client ids are bound to the principal: `username`, or `username:<anything>` for extra connections. */
export function clientIdMatches(username: string, clientId: string): boolean {
  return clientId === username || clientId.startsWith(`${username}:`);
}
