/**
 * The uplink: drains the outbox to the gateway's broker over MQTT QoS1, at most `maxInflight`
 * unacknowledged at a time, and deletes a message only on its PUBACK. The agent's own retained
 * state topic carries a last will, so the gateway learns at once when the agent drops.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { parseTopic, topics } from '../../protocol/topics.js';
import type { AgentState } from '../../protocol/payloads.js';
import type { Outbox, OutboxRow } from './outbox.js';

export interface UplinkOptions {
  agentId: string;
  brokerUrl: string;
  username?: string;
  password?: string;
  maxInflight: number;
  devices: number;
  version: string;
  /** Devices whose command topics to subscribe to (exact topics: the broker's ACL refuses wildcards). */
  commandDevices: readonly string[];
  /** Called with each command payload as received (validated by the agent). */
  onCommand: (deviceId: string, payload: Buffer) => void;
}

export class Uplink {
  readonly #opts: UplinkOptions;
  readonly #outbox: Outbox;
  readonly #log: Logger;
  #client: MqttClient | undefined;
  readonly #inflight = new Set<number>();
  /** Highest id handed to MQTT, per priority; rows above it are not sent yet. */
  readonly #cursor: [number, number] = [0, 0];
  #pumping = false;
  #stateSeq = 0;
  #sent = 0;
  #acked = 0;
  #connectedOnce = false;

  constructor(opts: UplinkOptions, outbox: Outbox, log: Logger) {
    this.#opts = opts;
    this.#outbox = outbox;
    this.#log = log;
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  stats() {
    return { ...this.#outbox.stats(), inflight: this.#inflight.size, sent: this.#sent, acked: this.#acked, connected: this.connected };
  }

  start(): void {
    const { agentId, brokerUrl } = this.#opts;
    const willTs = Date.now();
    const will: AgentState = { ts: willTs, seq: 0, status: 'offline' };
    const client = mqtt.connect(brokerUrl, {
      clientId: agentId,
      // Clean sessions: the outbox, not the broker, holds what must not be lost upstream; a
      // command missed while offline is re-sent by the gateway (broadcast delivery tracking).
      clean: true,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(this.#opts.username ? { username: this.#opts.username } : {}),
      ...(this.#opts.password ? { password: this.#opts.password } : {}),
      will: { topic: topics.agentState(agentId), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true },
    });
    this.#client = client;
    client.on('connect', () => {
      this.#log.info({ brokerUrl, queued: this.#outbox.stats().queued }, this.#connectedOnce ? 'uplink reconnected' : 'uplink connected');
      this.#connectedOnce = true;
      const state: AgentState = { ts: Date.now(), seq: ++this.#stateSeq, status: 'online', version: this.#opts.version, devices: this.#opts.devices };
      client.publish(topics.agentState(agentId), JSON.stringify(state), { qos: 1, retain: true });
      if (this.#opts.commandDevices.length > 0) {
        client.subscribe(
          this.#opts.commandDevices.map((id) => topics.cmd(id)),
          { qos: 1 },
          (err, granted) => {
            const refused = (granted ?? []).filter((g) => g.qos === 128).length;
            if (err || refused > 0) this.#log.error({ err: err?.message, refused }, 'command subscription refused (check the ledger and the broker ACL)');
          },
        );
      }
      this.pump();
    });
    client.on('message', (topic, payload) => {
      const parsed = parseTopic(topic);
      if (parsed?.scope === 'device' && parsed.channel === 'cmd') this.#opts.onCommand(parsed.deviceId, payload);
    });
    client.on('close', () => {
      if (this.#connectedOnce) this.#log.debug('uplink connection closed');
    });
    client.on('offline', () => this.#log.warn({ brokerUrl, queued: this.#outbox.stats().queued }, 'uplink offline; storing readings until the gateway is back'));
    client.on('error', (err) => this.#log.warn({ err: err.message }, 'uplink error'));
  }

  /** Sends as much of the outbox as the in-flight window allows. Cheap to call often. */
  pump(): void {
    const client = this.#client;
    if (!client?.connected || this.#pumping) return;
    this.#pumping = true;
    try {
      for (const priority of [1, 0] as const) {
        while (this.#inflight.size < this.#opts.maxInflight) {
          const room = this.#opts.maxInflight - this.#inflight.size;
          const rows = this.#outbox.fetch(priority, this.#cursor[priority], room);
          if (rows.length === 0) break;
          for (const row of rows) this.#send(client, row);
        }
        // Telemetry waits while events are still being sent.
        if (this.#inflight.size >= this.#opts.maxInflight) break;
      }
    } finally {
      this.#pumping = false;
    }
  }

  #send(client: MqttClient, row: OutboxRow): void {
    this.#cursor[row.priority] = Math.max(this.#cursor[row.priority], row.id);
    if (this.#inflight.has(row.id)) return;
    this.#inflight.add(row.id);
    this.#sent++;
    client.publish(row.topic, row.payload, { qos: 1, retain: row.retain }, (err) => {
      this.#inflight.delete(row.id);
      if (err) {
        // Not acknowledged: rewind so the row is sent again (the gateway de-duplicates).
        this.#cursor[row.priority] = Math.min(this.#cursor[row.priority], row.id - 1);
        return;
      }
      this.#acked++;
      this.#outbox.remove(row.id);
      queueMicrotask(() => this.pump());
    });
  }

  async stop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    if (client.connected) {
      // A clean stop says so instead of leaving the will to fire.
      const state: AgentState = { ts: Date.now(), seq: ++this.#stateSeq, status: 'offline' };
      await client.publishAsync(topics.agentState(this.#opts.agentId), JSON.stringify(state), { qos: 1, retain: true }).catch(() => undefined);
    }
    await client.endAsync(true);
  }
}
