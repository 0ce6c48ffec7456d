/**
 * External broker mode: the gateway is an MQTT 5 client of a broker cluster (EMQX in production,
 * Mosquitto in tests) and takes its share of the device traffic through shared subscriptions
 * (`$share/<group>/gs/v1/devices/+/telemetry` ...), so N instances split the load. Device
 * authentication and ACLs are the broker's job here.
 *
 * The promise is the embedded broker's: a QoS1 PUBACK means "in this instance's spool". Every
 * message goes through the same `ingest.handle`; its PUBACK is written once the spool's group
 * commit holding its points is done (a rejected message is acknowledged at once: it is counted,
 * never redelivered forever). PUBACKs leave in arrival order (MQTT-4.6.0-2). What has not been
 * acknowledged stays with the broker: the session is persistent (clean start off, a session
 * expiry), so a restarted instance gets it again, and the MQTT 5 Receive Maximum bounds how many
 * the broker sends before it waits for acknowledgements — a slow disk or a full spool holds the
 * broker back instead of filling memory.
 *
 * Why not MQTT.js `customHandleAcks`: MQTT.js handles inbound packets one at a time and reads the
 * next only after the current one's PUBACK is written, so delaying the PUBACK there would allow a
 * single message per group commit (a few hundred a second). Instead the documented
 * `handleMessage` hook lets the packet pump go on and suppresses the library's PUBACK, and this
 * module writes the PUBACK itself when the message is durable.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { ConfigError } from '../../../config/load.js';
import type { GatewayConfig } from '../../../config/schema.js';
import { topics } from '../../../protocol/topics.js';
import type { Ingest } from '../ingest/ingest.js';
import type { Metrics } from '../metrics.js';
import type { Durability } from './broker.js';
import { LogThrottle } from './log-throttle.js';
import { clusterTopics, type BrokerStatus, type ClusterLink, type GatewayBroker } from './types.js';

export interface ExternalBrokerContext {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  ingest: Pick<Ingest, 'handle'>;
  durability: Durability;
  /** Opens the MQTT connection (default mqtt.connect); tests wrap it to reach the socket. */
  connect?: (url: string, options: IClientOptions) => MqttClient;
  /** How long start() waits for the first connection before it goes on without (default 5000 ms). */
  startWaitMs?: number;
  /** How often messages held for a full spool look again (default 200 ms). */
  spoolFullPollMs?: number;
}

/** The external broker settings, checked: a problem is a ConfigError with the key that has it. */
export interface ExternalSettings {
  url: string;
  /** For logs and /health: the URL without credentials. */
  displayUrl: string;
  username: string | undefined;
  password: string | undefined;
  ca: Buffer | undefined;
  shareGroup: string;
  clientId: string | undefined;
  sessionExpirySec: number;
  receiveMaximum: number;
  keepaliveSec: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  fanout: boolean;
}

export function externalSettings(config: GatewayConfig): ExternalSettings {
  const ext = config.mqtt.external;
  const key = (k: string) => `gateway.mqtt.external.${k}`;
  const problems: string[] = [];
  if (ext.url === undefined) problems.push(`${key('url')}: is required when gateway.mqtt.mode is external`);
  let displayUrl = ext.url ?? '';
  if (ext.url !== undefined) {
    try {
      const u = new URL(ext.url);
      if (u.username || u.password) problems.push(`${key('url')}: must not carry credentials (it is logged); use username and passwordFile`);
      displayUrl = `${u.protocol}//${u.host}`;
    } catch {
      problems.push(`${key('url')}: must be a URL like mqtt://broker:1883 or mqtts://broker:8883`);
    }
  }
  if (ext.password !== undefined && ext.passwordFile !== undefined) problems.push(`${key('password')}, ${key('passwordFile')}: set one, not both`);
  const read = (k: 'passwordFile' | 'caFile'): Buffer | undefined => {
    const file = ext[k];
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push(`${key(k)}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  const passwordFromFile = read('passwordFile')?.toString('utf8').split(/\r?\n/)[0];
  if (ext.passwordFile !== undefined && passwordFromFile === '') problems.push(`${key('passwordFile')}: ${ext.passwordFile} is empty`);
  const ca = read('caFile');
  if (ext.reconnectMinMs > ext.reconnectMaxMs) problems.push(`${key('reconnectMinMs')}: must not exceed ${key('reconnectMaxMs')} (${ext.reconnectMaxMs})`);
  if (problems.length > 0) throw new ConfigError('gateway.mqtt.external', problems);
  return {
    url: ext.url!,
    displayUrl,
    username: ext.username,
    password: ext.password ?? passwordFromFile,
    ca,
    shareGroup: ext.shareGroup,
    clientId: ext.clientId,
    sessionExpirySec: ext.sessionExpirySec,
    receiveMaximum: ext.receiveMaximum,
    keepaliveSec: ext.keepaliveSec,
    reconnectMinMs: ext.reconnectMinMs,
    reconnectMaxMs: ext.reconnectMaxMs,
    fanout: ext.fanout,
  };
}

/**
 * The client id: configured, or chosen once (`gateway-<hostname>-<pid>`) and kept in the data dir,
 * so a restarted instance resumes its broker session (and the messages queued for it) while two
 * instances on one host never share one.
 */
export function resolveClientId(configured: string | undefined, dataDir: string): string {
  if (configured !== undefined) return configured;
  const file = join(dataDir, 'mqtt-client-id');
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (/^[A-Za-z0-9_.-]{1,128}$/.test(kept)) return kept;
  } catch {
    // first start
  }
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64) || 'host';
  const id = `gateway-${host}-${process.pid}`;
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${id}\n`);
  return id;
}

/** One inbound device message between its arrival and its PUBACK. */
interface Inbound {
  /** The connection it came on: a PUBACK is only meaningful on that one. */
  conn: number;
  topic: string;
  payload: Buffer;
  qos: number;
  messageId: number | undefined;
}

/** Passed to MQTT.js's handleMessage callback: "do not acknowledge, this module will". */
const DEFERRED = new Error('PUBACK deferred until the message is durable');

/** The one MQTT.js internal used here: writing a PUBACK for a message it did not acknowledge itself. */
interface PacketWriter {
  _sendPacket(packet: { cmd: 'puback'; messageId: number; reasonCode: number }, cb?: (err?: Error) => void): void;
}

type LinkState = 'connecting' | 'connected' | 'reconnecting' | 'stopped';

export class ExternalBroker implements GatewayBroker, ClusterLink {
  readonly mode = 'external' as const;
  readonly #ctx: ExternalBrokerContext;
  readonly #settings: ExternalSettings;
  readonly #log: Logger;
  #client: MqttClient | undefined;
  #clientId = '';
  #state: LinkState = 'stopped';
  #since = Date.now();
  #lastError: string | null = null;
  /** Incremented on every CONNACK; an Inbound from an older connection is never acknowledged. */
  #conn = 0;
  #subscribed = false;
  /** stop() has begun: unsubscribed, finishing what is in flight. */
  #draining = false;
  /** No message is taken any more (not acknowledged: the broker keeps it for this session). */
  #stopping = false;
  #lastInboundAt = 0;
  #keepaliveRestartedAt = 0;
  #attempt = 0;
  /** Held while the spool is full, in arrival order. */
  readonly #held: Inbound[] = [];
  #heldTimer: NodeJS.Timeout | undefined;
  #resubscribeTimer: NodeJS.Timeout | undefined;
  /** The last PUBACK in line; each waits for the one before (arrival order). Never rejects. */
  #ackTail: Promise<void> = Promise.resolve();
  #inflight = 0;
  readonly #errorLog = new LogThrottle(60_000);
  readonly #connectedListeners = new Set<() => void>();
  readonly #clusterListeners = new Set<(topic: string, payload: Buffer) => void>();

  constructor(ctx: ExternalBrokerContext) {
    this.#ctx = ctx;
    this.#log = ctx.log;
    // A bad external section stops buildGateway, before anything starts.
    this.#settings = externalSettings(ctx.config);
  }

  get port(): null {
    return null;
  }

  get tlsPort(): null {
    return null;
  }

  get url(): string {
    return this.#settings.displayUrl;
  }

  get instanceId(): string {
    return this.#clientId;
  }

  get connected(): boolean {
    return this.#state === 'connected';
  }

  get ready(): boolean {
    return this.#state === 'connected' && this.#subscribed && !this.#draining;
  }

  status(): Extract<BrokerStatus, { mode: 'external' }> {
    return {
      mode: 'external',
      url: this.#settings.displayUrl,
      clientId: this.#clientId,
      state: this.#state,
      connected: this.ready,
      since: this.#since,
      lastError: this.#lastError,
      inflight: this.#inflight,
    };
  }

  onConnected(listener: () => void): () => void {
    this.#connectedListeners.add(listener);
    return () => this.#connectedListeners.delete(listener);
  }

  onClusterMessage(listener: (topic: string, payload: Buffer) => void): () => void {
    this.#clusterListeners.add(listener);
    return () => this.#clusterListeners.delete(listener);
  }

  async start(): Promise<void> {
    const s = this.#settings;
    this.#clientId = resolveClientId(s.clientId, this.#ctx.config.dataDir);
    this.#stopping = false;
    this.#setState('connecting');
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: this.#clientId,
      // A persistent session: while this instance is away the broker keeps its subscriptions and
      // queues its share of QoS1 messages, and redelivers what was not acknowledged.
      clean: false,
      keepalive: s.keepaliveSec,
      connectTimeout: 10_000,
      reconnectPeriod: s.reconnectMinMs,
      // Refused credentials may be fixed on the broker side: keep trying (with back-off).
      reconnectOnConnackError: true,
      // Subscriptions are made here on every connection (see #subscribe).
      resubscribe: false,
      properties: { sessionExpiryInterval: s.sessionExpirySec, receiveMaximum: s.receiveMaximum },
      ...(s.username !== undefined ? { username: s.username } : {}),
      ...(s.password !== undefined ? { password: s.password } : {}),
      ...(s.ca ? { ca: s.ca } : {}),
    };
    const client = (this.#ctx.connect ?? mqtt.connect)(s.url, options);
    this.#client = client;
    // Before any packet can arrive: a resumed session delivers its queue right after CONNACK.
    client.handleMessage = (packet, callback) => this.#onPublish(packet, callback);
    // Runs before MQTT.js schedules the next attempt, so that attempt waits the backed-off delay.
    client.prependListener('close', () => this.#onClose(client));
    client.on('connect', (connack) => this.#onConnect(client, connack.sessionPresent === true));
    client.on('error', (err) => this.#onError(err));

    const wait = this.#ctx.startWaitMs ?? 5000;
    const up = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve(false);
      }, wait);
      const off = this.onConnected(() => {
        clearTimeout(timer);
        off();
        resolve(true);
      });
    });
    if (!up) {
      this.#log.warn({ url: s.displayUrl, clientId: this.#clientId, lastError: this.#lastError }, 'external MQTT broker not reachable yet; the gateway is not ready and keeps trying');
    }
  }

  /**
   * A graceful stop leaves nothing stranded: first the subscriptions go (the broker sends this
   * instance's share to the others from then on, instead of queueing it for a session that may
   * not come back — a scale-down), then what is in flight is finished and acknowledged, then a
   * clean DISCONNECT. Only a crash leaves the session subscribed, and its restart takes the queue.
   */
  async stop(): Promise<void> {
    const client = this.#client;
    if (!client || this.#draining) return;
    this.#draining = true;
    clearTimeout(this.#resubscribeTimer);
    if (client.connected) {
      const { shareGroup, fanout } = this.#settings;
      const filters = [...topics.upstreamFilters.map((f) => `$share/${shareGroup}/${f}`), ...(fanout ? [clusterTopics.devicesFilter] : [])];
      await withTimeout(client.unsubscribeAsync(filters), 3000);
      // Messages the broker sent before the UNSUBSCRIBE took effect: take them, until quiet.
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && client.connected && (this.#inflight > 0 || Date.now() - this.#lastInboundAt < 100)) await sleep(20);
    }
    this.#stopping = true;
    // Messages already in the spool get their PUBACK; held ones stay with the broker (redelivered).
    this.#dropHeld();
    await withTimeout(this.#ackTail, 5000);
    // A clean DISCONNECT keeps the session (its expiry stands): the broker queues for our return.
    await withTimeout(client.endAsync(false), 3000).then((ended) => {
      if (!ended) client.end(true);
    });
    this.#client = undefined;
    this.#setState('stopped');
    this.#subscribed = false;
    this.#draining = false;
    this.#stopping = false;
    this.#ctx.metrics.mqttBrokerConnected.set(0);
    this.#log.info({ url: this.#settings.displayUrl, clientId: this.#clientId }, 'disconnected from the external MQTT broker');
  }

  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }): Promise<void> {
    const client = this.#client;
    // Refused at once rather than queued: the callers (broadcast resends, PTZ) have their own timeouts.
    if (!client || !client.connected || this.#draining) return Promise.reject(new Error(`not connected to the MQTT broker at ${this.#settings.displayUrl}`));
    return client.publishAsync(topic, payload, { qos: opts.qos, retain: opts.retain ?? false }).then(() => undefined);
  }

  // ---- connection ---------------------------------------------------------------------------------

  #onConnect(client: MqttClient, sessionPresent: boolean): void {
    if (client !== this.#client) return;
    const first = this.#conn === 0;
    this.#conn++;
    this.#attempt = 0;
    client.options.reconnectPeriod = this.#settings.reconnectMinMs;
    this.#lastError = null;
    this.#setState('connected');
    this.#log.info({ url: this.#settings.displayUrl, clientId: this.#clientId, sessionPresent, shareGroup: this.#settings.shareGroup }, 'connected to the external MQTT broker');
    void this.#subscribe(client, this.#conn, first || !sessionPresent);
  }

  /**
   * The shared subscriptions (again on every connection: idempotent, and a broker that lost the
   * session needs them) and the cluster topic. Retained state is not sent for a shared
   * subscription (MQTT 5, 4.8.2), so at process start and after a lost session a plain
   * subscription to the state topics fetches the retained device and agent states (last wills
   * included) once, and is dropped again.
   */
  async #subscribe(client: MqttClient, conn: number, fetchRetained: boolean): Promise<void> {
    const { shareGroup, fanout } = this.#settings;
    const shared = topics.upstreamFilters.map((f) => `$share/${shareGroup}/${f}`);
    const retainedStates = [topics.state('+'), topics.agentState('+')];
    try {
      const grants = await client.subscribeAsync(shared, { qos: 1 });
      if (fanout) grants.push(...(await client.subscribeAsync(clusterTopics.devicesFilter, { qos: 0, nl: true })));
      const refused = grants.filter((g) => g.qos >= 0x80);
      if (refused.length > 0) throw new Error(`the broker refused ${refused.map((g) => `${g.topic} (reason ${g.qos})`).join(', ')}`);
      if (fetchRetained) {
        await client.subscribeAsync(retainedStates, { qos: 1, rh: 0 });
        // Retained messages are queued for us when the SUBSCRIBE is handled, before this UNSUBSCRIBE.
        await client.unsubscribeAsync(retainedStates);
      }
    } catch (err) {
      if (conn !== this.#conn || this.#draining) return;
      this.#lastError = (err as Error).message;
      this.#log.error({ err: (err as Error).message, url: this.#settings.displayUrl }, 'subscribing at the external MQTT broker failed (is the gateway allowed by its ACL?); retrying');
      clearTimeout(this.#resubscribeTimer);
      this.#resubscribeTimer = setTimeout(() => {
        if (conn === this.#conn && client.connected) void this.#subscribe(client, conn, fetchRetained);
      }, this.#settings.reconnectMaxMs);
      this.#resubscribeTimer.unref();
      return;
    }
    if (conn !== this.#conn || this.#draining) return;
    this.#subscribed = true;
    this.#ctx.metrics.mqttBrokerConnected.set(1);
    for (const listener of this.#connectedListeners) {
      try {
        listener();
      } catch (err) {
        this.#log.error({ err }, 'broker connection listener failed');
      }
    }
  }

  #onClose(client: MqttClient): void {
    if (client !== this.#client || this.#draining) return;
    const wasUp = this.#state === 'connected';
    this.#subscribed = false;
    this.#ctx.metrics.mqttBrokerConnected.set(0);
    this.#dropHeld();
    this.#ctx.metrics.mqttBrokerDisconnects.inc();
    if (wasUp) {
      this.#log.warn({ url: this.#settings.displayUrl, clientId: this.#clientId, lastError: this.#lastError }, 'connection to the external MQTT broker lost; reconnecting');
    }
    this.#setState(this.#conn === 0 ? 'connecting' : 'reconnecting');
    // Exponential back-off with jitter, so N instances do not all come back in the same instant.
    const { reconnectMinMs, reconnectMaxMs } = this.#settings;
    const ceiling = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** Math.min(this.#attempt, 20));
    this.#attempt++;
    client.options.reconnectPeriod = Math.max(reconnectMinMs, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
  }

  #onError(err: Error & { code?: string | number }): void {
    this.#lastError = err.message;
    // A broker that is down produces one error per attempt: one line per kind of error per minute.
    const suppressed = this.#errorLog.take(String(err.code ?? err.message));
    if (suppressed === undefined) return;
    const refused = typeof err.code === 'number' && err.code >= 0x80;
    this.#log[refused ? 'error' : 'warn']({ url: this.#settings.displayUrl, clientId: this.#clientId, err: err.message, code: err.code, suppressed }, refused ? 'the external MQTT broker refused the connection' : 'external MQTT broker connection error');
  }

  #setState(state: LinkState): void {
    if (state !== this.#state) this.#since = Date.now();
    this.#state = state;
  }

  // ---- inbound ------------------------------------------------------------------------------------

  #onPublish(packet: IPublishPacket, callback: (err?: Error) => void): void {
    const topic = packet.topic;
    const now = Date.now();
    // mqtt.js 5 restarts its keepalive clock only on acks and PINGRESP, not on PUBLISHes it
    // receives; a gateway that only receives then sends PINGREQ every keepalive and gives up when
    // the PINGRESP waits behind a busy broker's deliveries (bench:ingest-cluster saw "Keepalive
    // timeout" reconnects under load). Traffic from the broker proves the link: restart the clock,
    // at most once a second.
    if (now - this.#keepaliveRestartedAt >= 1000) {
      this.#keepaliveRestartedAt = now;
      this.#client?.reschedulePing(true);
    }
    this.#lastInboundAt = now;
    if (topic.startsWith(clusterTopics.prefix)) {
      callback();
      if (this.#stopping) return;
      const payload = toBuffer(packet.payload);
      for (const listener of this.#clusterListeners) {
        try {
          listener(topic, payload);
        } catch (err) {
          this.#log.error({ err }, 'cluster message listener failed');
        }
      }
      return;
    }
    if (packet.qos !== 1) {
      // QoS0 (a device that chose it) has nothing to acknowledge; QoS2 is never granted (we subscribe at 1).
      callback();
      if (!this.#stopping) this.#ctx.ingest.handle(topic, toBuffer(packet.payload));
      return;
    }
    // The pump goes on to the next packet; the PUBACK is written in #acknowledge.
    callback(DEFERRED);
    if (this.#stopping) return; // not acknowledged: the broker redelivers it to this session
    this.#inflight++;
    this.#ctx.metrics.mqttBrokerInflight.set(this.#inflight);
    this.#held.push({ conn: this.#conn, topic, payload: toBuffer(packet.payload), qos: packet.qos, messageId: packet.messageId });
    this.#drain();
  }

  /** Ingests held messages in arrival order while the spool has room. */
  #drain(): void {
    const { durability, metrics } = this.#ctx;
    while (this.#held.length > 0) {
      if (durability.full) {
        // Not acknowledged until there is room: with Receive Maximum in flight the broker stops sending.
        if (!this.#heldTimer) {
          metrics.spoolRefused.inc({ reason: 'full' });
          this.#heldTimer = setTimeout(() => {
            this.#heldTimer = undefined;
            this.#drain();
          }, this.#ctx.spoolFullPollMs ?? 200);
        }
        return;
      }
      this.#ingest(this.#held.shift()!);
    }
  }

  #ingest(msg: Inbound): void {
    const { ingest, durability } = this.#ctx;
    const result = ingest.handle(msg.topic, msg.payload);
    // A rejected message is acknowledged too (counted and logged by ingest): redelivery cannot fix it.
    // One publisher (the broker connection): a batch goes as soon as it holds a few of its messages.
    const durable = result.ok ? durability.barrier(this) : undefined;
    const previous = this.#ackTail;
    this.#ackTail = (durable ? Promise.all([previous, durable]) : previous).then(
      () => this.#acknowledge(msg),
      (err: unknown) => this.#notDurable(msg, err as Error),
    );
  }

  #acknowledge(msg: Inbound): void {
    this.#settle();
    const client = this.#client;
    // On a newer connection the broker redelivers the message instead (ingest drops the duplicate).
    if (!client || msg.conn !== this.#conn || !client.connected || msg.messageId === undefined) return;
    try {
      (client as unknown as PacketWriter)._sendPacket({ cmd: 'puback', messageId: msg.messageId, reasonCode: 0 });
    } catch (err) {
      // The connection is going: the broker redelivers the message on the next one.
      this.#log.debug({ err: (err as Error).message }, 'PUBACK not written');
    }
  }

  /** The spool could not commit: no PUBACK, and a new connection so the broker redelivers it. */
  #notDurable(msg: Inbound, err: Error): void {
    this.#settle();
    this.#ctx.metrics.spoolRefused.inc({ reason: 'write_failed' });
    if (msg.conn !== this.#conn || this.#stopping) return;
    this.#log.error({ err: err.message }, 'spool commit failed; reconnecting so the broker redelivers what is not acknowledged');
    this.#client?.stream.destroy();
  }

  #settle(): void {
    this.#inflight--;
    this.#ctx.metrics.mqttBrokerInflight.set(this.#inflight);
  }

  /** Forgets held messages (connection gone or stopping): the broker still has them. */
  #dropHeld(): void {
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
    this.#inflight -= this.#held.length;
    this.#held.length = 0;
    this.#ctx.metrics.mqttBrokerInflight.set(this.#inflight);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function toBuffer(payload: string | Buffer): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

/** Resolves true when `p` settles within `ms`, false otherwise. */
function withTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}
