/**
 * Cluster fan-out (external broker mode): with a shared subscription each gateway instance
 * ingests only its share of the device messages, so a dashboard on instance A would miss what B
 * ingested. Each instance publishes its registry's device updates, coalesced per flush interval,
 * on `gs/v1/cluster/<instanceId>/devices` (QoS0: a live view, the next update or snapshot repairs
 * a loss), and applies the other instances' updates to its own registry and dashboards — only
 * there: they are not stored, alerted on or published on again (DeviceRegistry.applyPeerUpdate).
 *
 * A late or reconnected instance says `hello`; the others answer with a snapshot of every device
 * they have heard, and every instance sends one periodically anyway, so all converge.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../../../config/schema.js';
import { ID_PATTERN } from '../../../protocol/topics.js';
import type { DeviceUpdate, ServerMessage } from '../../../protocol/ws.js';
import { clusterTopics, type ClusterLink } from '../broker/types.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';

const PeerDeviceUpdate = Type.Object(
  {
    id: Type.String({ pattern: ID_PATTERN }),
    status: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')])),
    lastSeen: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
    values: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,39}$' }), Type.Union([Type.Number(), Type.String({ maxLength: 2000 }), Type.Boolean()]), {
        maxProperties: 64,
        // TypeBox's Record only sets patternProperties: without this, keys off the pattern would pass.
        additionalProperties: false,
      }),
    ),
    valuesTs: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
  },
  { additionalProperties: false },
);

/** One message on gs/v1/cluster/<instanceId>/devices. */
export const ClusterDevicesMessage = Type.Object(
  {
    v: Type.Literal(1),
    /** The sending instance (also in the topic). */
    from: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
    kind: Type.Union([Type.Literal('delta'), Type.Literal('snapshot'), Type.Literal('hello')]),
    updates: Type.Array(PeerDeviceUpdate, { maxItems: 10_000 }),
  },
  { additionalProperties: false },
);
export type ClusterDevicesMessage = Static<typeof ClusterDevicesMessage>;

const validateMessage = new Ajv({ strict: true }).compile<ClusterDevicesMessage>(ClusterDevicesMessage);

/** Updates per MQTT message: well under EMQX's default 1 MB packet limit. */
const CHUNK = 1000;

export interface FanoutContext {
  config: GatewayConfig;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  /** Where peers' updates go to this instance's dashboards (the push hub's immediate send). */
  hub: { publish(message: ServerMessage): number };
  link: ClusterLink;
  /** Full snapshot period (default 60 s). */
  snapshotIntervalMs?: number;
  /**
   * A device's availability changed here through another instance's update (the alert rules'
   * offline clocks follow it: peers' updates do not reach this instance's bus).
   */
  onPeerStatus?: (deviceId: string, status: 'online' | 'offline' | 'unknown') => void;
}

export class ClusterFanout {
  readonly #ctx: FanoutContext;
  /** Local updates to send, latest per device. */
  #outgoing = new Map<string, DeviceUpdate>();
  /** Peers' updates applied here, for this instance's dashboards at the next flush. */
  #incoming = new Map<string, DeviceUpdate>();
  readonly #off: Array<() => void> = [];
  #flushTimer: NodeJS.Timeout | undefined;
  #snapshotTimer: NodeJS.Timeout | undefined;
  #answerTimer: NodeJS.Timeout | undefined;

  constructor(ctx: FanoutContext) {
    this.#ctx = ctx;
  }

  start(): void {
    const { bus, link, config } = this.#ctx;
    this.#off.push(
      // Only local facts reach the bus: peers' updates are applied beside it, never re-sent.
      bus.on('deviceUpdate', (update) => {
        const prev = this.#outgoing.get(update.id);
        this.#outgoing.set(update.id, prev ? { ...prev, ...update } : update);
      }),
      link.onClusterMessage((topic, payload) => this.#receive(topic, payload)),
      link.onConnected(() => {
        // Peers answer a hello with their snapshot; ours goes out too, for them.
        this.#send('hello', []);
        this.#sendSnapshot();
      }),
    );
    if (link.connected) {
      this.#send('hello', []);
      this.#sendSnapshot();
    }
    this.#flushTimer = setInterval(() => this.flush(), config.push.flushIntervalMs);
    this.#flushTimer.unref();
    this.#snapshotTimer = setInterval(() => this.#sendSnapshot(), this.#ctx.snapshotIntervalMs ?? 60_000);
    this.#snapshotTimer.unref();
  }

  stop(): void {
    clearInterval(this.#flushTimer);
    clearInterval(this.#snapshotTimer);
    clearTimeout(this.#answerTimer);
    for (const off of this.#off.splice(0)) off();
  }

  /** Sends coalesced local updates to the peers and applied peer updates to the dashboards. */
  flush(): void {
    if (this.#outgoing.size > 0 && this.#ctx.link.connected) {
      const updates = Array.from(this.#outgoing.values());
      this.#outgoing = new Map();
      this.#send('delta', updates);
    }
    if (this.#incoming.size > 0) {
      const updates = Array.from(this.#incoming.values());
      this.#incoming = new Map();
      this.#ctx.hub.publish({ type: 'devices.update', updates });
    }
  }

  #sendSnapshot(): void {
    if (!this.#ctx.link.connected) return;
    const heard = this.#ctx.registry.views().filter((v) => v.lastSeen !== null);
    const updates: DeviceUpdate[] = heard.map((v) => ({ id: v.id, status: v.status, lastSeen: v.lastSeen, values: v.values, valuesTs: v.valuesTs }));
    this.#send('snapshot', updates);
  }

  #send(kind: ClusterDevicesMessage['kind'], updates: DeviceUpdate[]): void {
    const { link, metrics, log } = this.#ctx;
    const topic = clusterTopics.devices(link.instanceId);
    const chunks = updates.length === 0 ? [[]] : Array.from({ length: Math.ceil(updates.length / CHUNK) }, (_, i) => updates.slice(i * CHUNK, (i + 1) * CHUNK));
    for (const chunk of chunks) {
      const message: ClusterDevicesMessage = { v: 1, from: link.instanceId, kind, updates: chunk };
      link.publish(topic, JSON.stringify(message), { qos: 0 }).then(
        () => metrics.clusterMessages.inc({ direction: 'sent', kind }),
        (err: unknown) => log.debug({ err: (err as Error).message, kind }, 'cluster update not sent'),
      );
    }
  }

  #receive(topic: string, payload: Buffer): void {
    const { metrics, log, registry, link } = this.#ctx;
    let message: unknown;
    try {
      message = JSON.parse(payload.toString('utf8'));
    } catch {
      message = undefined;
    }
    if (!validateMessage(message) || topic !== clusterTopics.devices(message.from)) {
      metrics.clusterMessages.inc({ direction: 'rejected', kind: 'invalid' });
      log.warn({ topic: topic.slice(0, 120) }, 'invalid cluster message dropped');
      return;
    }
    if (message.from === link.instanceId) return; // our own (a broker without No Local)
    metrics.clusterMessages.inc({ direction: 'received', kind: message.kind });
    if (message.kind === 'hello') {
      // Answer once for any number of hellos arriving together, a little later so peers do not answer in one burst.
      this.#answerTimer ??= setTimeout(() => {
        this.#answerTimer = undefined;
        this.#sendSnapshot();
      }, 100 + Math.random() * 400);
      this.#answerTimer.unref();
      return;
    }
    for (const update of message.updates) {
      const changed = registry.applyPeerUpdate(update as DeviceUpdate, message.kind);
      metrics.clusterDeviceUpdates.inc({ result: changed ? 'applied' : 'ignored' });
      if (!changed) continue;
      if (changed.status) this.#ctx.onPeerStatus?.(changed.id, changed.status);
      const prev = this.#incoming.get(changed.id);
      this.#incoming.set(changed.id, prev ? { ...prev, ...changed } : changed);
    }
  }
}
