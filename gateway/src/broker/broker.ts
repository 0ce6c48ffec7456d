/**
 * The embedded MQTT broker (aedes over TCP). Ingest runs inside `authorizePublish`, the one aedes
 * hook that runs before a QoS1 PUBACK is written, so that an acknowledgement can later be made to
 * mean "durably accepted". Rejected messages are still acknowledged (MQTT 3.1.1 has no negative
 * ack, and refusing by disconnecting would make a store-and-forward agent resend the poison
 * message forever); they are counted, not retained and not forwarded to any subscriber.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../../../config/schema.js';
import { TOPIC_ROOT } from '../../../protocol/topics.js';
import type { Ingest } from '../ingest/ingest.js';
import type { Metrics } from '../metrics.js';

export interface BrokerContext {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  ingest: Ingest;
}

export class EmbeddedBroker {
  readonly #ctx: BrokerContext;
  #aedes: Aedes | undefined;
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  /** Payload buffers of rejected publishes; aedes copies the packet but keeps the buffer. */
  readonly #rejected = new WeakSet<Buffer>();

  constructor(ctx: BrokerContext) {
    this.#ctx = ctx;
  }

  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const { config, log, metrics, ingest } = this.#ctx;
    const upstreamPrefix = `${TOPIC_ROOT}/`;
    const aedes = await Aedes.createBroker({
      // A subscriber that stops reading is cut off instead of stalling delivery to everyone.
      drainTimeout: 10_000,
      authenticate: (client: Client, username, _password, done) => {
        if (config.mqtt.allowAnonymous) return done(null, true);
        // Credentials per agent arrive with the broker-security work; until then only
        // development mode (allowAnonymous) can connect, and the refusal says why.
        log.warn({ clientId: client.id, username }, 'MQTT client refused: anonymous access is off and no credentials are configured');
        const err = new Error('not authorized') as AuthenticateError;
        err.returnCode = 5;
        done(err, false);
      },
      authorizePublish: (client, packet, done) => {
        if (packet.topic.startsWith('$SYS')) return done(new Error('$SYS topics are reserved'));
        if (!packet.topic.startsWith(upstreamPrefix)) {
          // Other topics are relayed untouched (tools, bridges); they are not ours to check.
          return done(null);
        }
        const result = ingest.handle(packet.topic, packet.payload as Buffer);
        if (!result.ok) {
          packet.retain = false;
          this.#rejected.add(packet.payload as Buffer);
          if (client === null) log.debug({ topic: packet.topic }, 'rejected will message');
        }
        done(null);
      },
      authorizeForward: (_client, packet: AedesPublishPacket) => (this.#rejected.has(packet.payload as Buffer) ? null : packet),
    });
    aedes.on('client', () => metrics.mqttClients.set(aedes.connectedClients));
    aedes.on('clientDisconnect', () => metrics.mqttClients.set(aedes.connectedClients));
    aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'MQTT client error'));
    aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'MQTT connection error'));
    this.#aedes = aedes;

    const server = createServer((socket) => {
      // aedes writes PUBACK and PUBLISH as small packets; without this Nagle adds ~40 ms per round trip.
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      aedes.handle(socket);
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.mqtt.port, config.mqtt.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (config.mqtt.allowAnonymous) log.warn('MQTT anonymous access is ON (development mode): any client may connect');
    log.info({ host: config.mqtt.host, port: this.port }, 'MQTT broker listening');
  }

  /** Publishes from the gateway itself (commands to devices). */
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }): Promise<void> {
    const aedes = this.#aedes;
    if (!aedes) return Promise.reject(new Error('broker not started'));
    return new Promise((resolve, reject) => {
      aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), qos: opts.qos, retain: opts.retain ?? false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  async stop(): Promise<void> {
    const server = this.#server;
    const aedes = this.#aedes;
    this.#server = undefined;
    this.#aedes = undefined;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of this.#sockets) s.destroy();
      await closed;
    }
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}
