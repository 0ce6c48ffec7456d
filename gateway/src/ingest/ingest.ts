/**
 * Ingest: the trust boundary for everything devices and agents publish. Each message is matched
 * to a ledger device, validated against protocol/, de-duplicated by (device, seq, ts) and routed
 * onto the bus: telemetry -> storage + registry, events -> alerts, state -> registry, acks ->
 * command tracking. A rejected message is counted by reason and logged at most once per device
 * and reason per minute; it never throws.
 */
import type { Logger } from 'pino';
import { parseTopic, type ParsedTopic } from '../../../protocol/topics.js';
import { validate } from '../../../protocol/validate.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { RecentMessages } from './dedupe.js';

export type IngestReason = 'bad_topic' | 'unknown_device' | 'too_large' | 'not_json' | 'schema' | 'forbidden';

export type IngestResult = { ok: true; duplicate: boolean } | { ok: false; reason: IngestReason; detail: string };

export interface IngestContext {
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  now?: () => number;
}

const LOG_EVERY_MS = 60_000;

export class Ingest {
  readonly #ctx: IngestContext;
  readonly #now: () => number;
  readonly #recent = new RecentMessages();
  readonly #lastLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(ctx: IngestContext) {
    this.#ctx = ctx;
    this.#now = ctx.now ?? Date.now;
  }

  /**
   * Handles one inbound publish. `payload` is not retained past this call. `parsed`: the topic
   * as `parseTopic` reads it, when the caller has parsed it already (the broker, for its ACL).
   */
  handle(topic: string, payload: Uint8Array, parsed: ParsedTopic | undefined = parseTopic(topic)): IngestResult {
    if (!parsed) return this.#reject('bad_topic', topic, `not a v1 upstream topic: ${topic.slice(0, 100)}`);
    const { bus, metrics, registry } = this.#ctx;
    const receivedAt = this.#now();
    metrics.messagesIn.inc({ channel: parsed.scope === 'agent' ? 'agent_state' : parsed.channel });

    // An empty retained publish is how MQTT clears a retained message; let it through untouched.
    if (payload.byteLength === 0 && parsed.channel === 'state') return { ok: true, duplicate: false };

    if (parsed.scope === 'agent') {
      const r = validate.agentState(payload);
      if (!r.ok) return this.#reject(r.reason, parsed.agentId, r.detail);
      bus.emit('agentState', { agentId: parsed.agentId, message: r.value, receivedAt });
      return { ok: true, duplicate: false };
    }

    const device = registry.get(parsed.deviceId);
    if (!device) return this.#reject('unknown_device', parsed.deviceId, 'not in the ledger');

    switch (parsed.channel) {
      case 'telemetry': {
        const r = validate.telemetry(device.kind, payload);
        if (!r.ok) return this.#reject(r.reason, device.id, r.detail);
        if (this.#duplicate(device.id, 'telemetry', r.value.seq, r.value.ts)) return { ok: true, duplicate: true };
        bus.emit('telemetry', { device, message: r.value, receivedAt });
        return { ok: true, duplicate: false };
      }
      case 'event': {
        const r = validate.event(payload);
        if (!r.ok) return this.#reject(r.reason, device.id, r.detail);
        if (this.#duplicate(device.id, 'event', r.value.seq, r.value.ts)) return { ok: true, duplicate: true };
        bus.emit('event', { device, message: r.value, receivedAt });
        return { ok: true, duplicate: false };
      }
      case 'state': {
        const r = validate.state(payload);
        if (!r.ok) return this.#reject(r.reason, device.id, r.detail);
        bus.emit('state', { device, message: r.value, receivedAt });
        return { ok: true, duplicate: false };
      }
      case 'ack': {
        const r = validate.ack(payload);
        if (!r.ok) return this.#reject(r.reason, device.id, r.detail);
        if (this.#duplicate(device.id, 'ack', r.value.seq, r.value.ts)) return { ok: true, duplicate: true };
        bus.emit('ack', { device, message: r.value, receivedAt });
        return { ok: true, duplicate: false };
      }
      case 'cmd':
        // Commands flow gateway -> device only; a client publishing one is refused.
        return this.#reject('forbidden', device.id, 'devices may not publish on their command topic');
    }
  }

  #duplicate(deviceId: string, channel: string, seq: number, ts: number): boolean {
    if (!this.#recent.isDuplicate(deviceId, channel, seq, ts)) return false;
    this.#ctx.metrics.duplicates.inc();
    return true;
  }

  #reject(reason: IngestReason, subject: string, detail: string): IngestResult {
    this.#ctx.metrics.messagesRejected.inc({ reason });
    const key = `${subject}\u0000${reason}`;
    const now = this.#now();
    const last = this.#lastLogged.get(key);
    if (!last || now - last.at >= LOG_EVERY_MS) {
      this.#ctx.log.warn({ subject, reason, detail, suppressed: last?.suppressed ?? 0 }, 'message rejected');
      this.#lastLogged.set(key, { at: now, suppressed: 0 });
      // Bound the log-throttle map even under a flood of distinct bad subjects.
      if (this.#lastLogged.size > 10_000) this.#lastLogged.clear();
    } else {
      last.suppressed++;
    }
    return { ok: false, reason, detail };
  }
}
