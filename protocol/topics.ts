/**
 * MQTT topic layout, version 1. Every publisher and subscriber builds and parses topics here,
 * so the layout lives in exactly one place.
 *
 *   gs/v1/devices/{deviceId}/telemetry   device -> gateway   QoS1            periodic readings
 *   gs/v1/devices/{deviceId}/event       device -> gateway   QoS1            alarms, faults
 *   gs/v1/devices/{deviceId}/state       device -> gateway   QoS1 retained   online/offline (+ will)
 *   gs/v1/devices/{deviceId}/ack         device -> gateway   QoS1            command progress
 *   gs/v1/devices/{deviceId}/cmd         gateway -> device   QoS1            commands
 *   gs/v1/agents/{agentId}/state         agent  -> gateway   QoS1 retained   agent online/offline (+ will)
 */

export const TOPIC_ROOT = 'gs/v1';

export const DEVICE_CHANNELS = ['telemetry', 'event', 'state', 'ack', 'cmd'] as const;
export type DeviceChannel = (typeof DEVICE_CHANNELS)[number];

/** Device and agent ids: safe in topics, URLs, InfluxDB tags and file names. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
const idRe = new RegExp(ID_PATTERN);
export function isValidId(id: string): boolean {
  return idRe.test(id);
}

export const topics = {
  telemetry: (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/telemetry`,
  event: (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/event`,
  state: (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/state`,
  ack: (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/ack`,
  cmd: (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/cmd`,
  agentState: (agentId: string) => `${TOPIC_ROOT}/agents/${agentId}/state`,
  /** What the gateway subscribes to: everything devices and agents send upstream. */
  upstreamFilters: [
    `${TOPIC_ROOT}/devices/+/telemetry`,
    `${TOPIC_ROOT}/devices/+/event`,
    `${TOPIC_ROOT}/devices/+/state`,
    `${TOPIC_ROOT}/devices/+/ack`,
    `${TOPIC_ROOT}/agents/+/state`,
  ],
} as const;

export type ParsedTopic =
  | { scope: 'device'; deviceId: string; channel: DeviceChannel }
  | { scope: 'agent'; agentId: string; channel: 'state' };

const DEVICES_PREFIX = `${TOPIC_ROOT}/devices/`;
const AGENTS_PREFIX = `${TOPIC_ROOT}/agents/`;

/**
 * Parses a v1 topic; returns undefined for anything that is not exactly one of ours. Runs for
 * every publish the gateway receives: prefix checks and one substring (the id), no split.
 */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const device = topic.startsWith(DEVICES_PREFIX);
  if (!device && !topic.startsWith(AGENTS_PREFIX)) return undefined;
  const start = device ? DEVICES_PREFIX.length : AGENTS_PREFIX.length;
  const slash = topic.indexOf('/', start);
  if (slash < 0) return undefined;
  const channelAt = slash + 1;
  if (!device) {
    // Exactly "state" after the id: nothing longer, nothing shorter.
    if (topic.length !== channelAt + 5 || !topic.startsWith('state', channelAt)) return undefined;
    const agentId = topic.slice(start, slash);
    return isValidId(agentId) ? { scope: 'agent', agentId, channel: 'state' } : undefined;
  }
  let channel: DeviceChannel | undefined;
  for (const c of DEVICE_CHANNELS) {
    if (topic.length === channelAt + c.length && topic.startsWith(c, channelAt)) {
      channel = c;
      break;
    }
  }
  if (!channel) return undefined;
  const deviceId = topic.slice(start, slash);
  return isValidId(deviceId) ? { scope: 'device', deviceId, channel } : undefined;
}
