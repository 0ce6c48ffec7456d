/**
 * The embedded MQTT broker (aedes over TCP, optionally TLS, and WebSocket on the HTTP port — one
 * aedes instance, one set of rules). Ingest runs inside `authorizePublish`, the one aedes hook
 * that runs before a QoS1 PUBACK is written, and the hook returns only once the message's points
 * are committed to the gateway's spool: a PUBACK means "durably accepted". Rejected messages are still acknowledged (MQTT 3.1.1 has no negative
 * ack, and refusing by disconnecting would make a store-and-forward agent resend the poison
 * message forever); they are counted, not retained and not forwarded to any subscriber.
 *
 * Security (docs/security.md): CONNECT is checked against the credentials file (scrypt hashes)
 * and binds the client id to the principal; every PUBLISH, SUBSCRIBE and last will is checked
 * against the ACL derived from the ledger (acl.ts) before ingest sees it. A publish the ACL denies
 * is handled like an ingest rejection: acknowledged, dropped, counted.
 *
 * Connections: at most `gateway.mqtt.maxConnections` over all transports (descriptors.ts); past it
 * a new one is closed on arrival and counted, so that the HTTP API, the dashboards and storage
 * keep the descriptors they need.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type Connection } from 'aedes';
import type { Logger } from 'pino';
import { createWebSocketStream, type WebSocket } from 'ws';
import { ConfigError } from '../../../config/load.js';
import type { GatewayConfig } from '../../../config/schema.js';
import { TOPIC_ROOT, parseTopic } from '../../../protocol/topics.js';
import type { Ingest } from '../ingest/ingest.js';
import type { Metrics } from '../metrics.js';
import { clientIdMatches, mayPublishParsed, maySubscribe, mayWill, principalName, type DeviceDirectory, type Principal } from './acl.js';
import { loadCredentialsFile, type CredentialRecord } from './credentials.js';
import { openFileLimit, resolveMaxConnections, type ConnectionCap } from './descriptors.js';
import { IngressGate } from './ingress-gate.js';
import { LogThrottle } from './log-throttle.js';
import type { BrokerStatus, GatewayBroker } from './types.js';
import { FailureLimiter, SecretVerifier } from './verifier.js';

/** What the broker needs from storage so that a QoS1 PUBACK means "on disk" (the spool). */
export interface Durability {
  readonly full: boolean;
  /** `publisher`: the connection the waiting message came on. */
  barrier(publisher?: object): Promise<void> | undefined;
}

/** The embedded broker waits per publish: barrier() as a callback, without a promise each. */
export interface CallbackDurability extends Durability {
  /** Calls cb once everything written so far is on disk; false (cb never called) when nothing is pending. */
  whenDurable(cb: (err?: Error) => void, publisher?: object): boolean;
}

export interface BrokerContext {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  ingest: Ingest;
  durability: CallbackDurability;
  /** The ledger, for the ACL: which agent speaks for which device. */
  devices: DeviceDirectory;
  /** A refused CONNECT is answered this long after it arrived (default 1000 ms). */
  authFailureDelayMs?: number;
  /** How often the credentials file is checked for changes (default 2000 ms). */
  credentialsPollMs?: number;
}

type Transport = 'tcp' | 'tls' | 'ws';
interface Connected {
  transport: Transport;
  address: string;
  client: Client;
  destroy(): void;
}
type AuthDenyReason = 'anonymous' | 'unknown_user' | 'bad_password' | 'client_id' | 'will' | 'rate_limited';
type AuthOutcome = { ok: true; principal: Principal; method: 'anonymous' | 'credentials' } | { ok: false; reason: AuthDenyReason; returnCode: 4 | 5 };

const DEV: Principal = { kind: 'dev' };
/** Log fields from client-chosen strings are cut short. */
const clip = (s: string | undefined) => (s === undefined ? undefined : s.length > 80 ? `${s.slice(0, 80)}…` : s);

export class EmbeddedBroker implements GatewayBroker {
  readonly mode = 'embedded' as const;
  readonly #ctx: BrokerContext;
  #aedes: Aedes | undefined;
  #server: Server | undefined;
  #tlsServer: TlsServer | undefined;
  /** Every open connection, on any transport, keyed by the stream aedes reads. */
  readonly #conns = new Map<Connection, Connected>();
  /** Who each authenticated client is; outlives the connection so its will can still be checked. */
  readonly #principals = new WeakMap<Client, Principal>();
  /** The will topic of each CONNECT, captured in preConnect and checked once the principal is known. */
  readonly #willTopics = new WeakMap<Client, string>();
  #credentials = new Map<string, CredentialRecord>();
  readonly #verifier: SecretVerifier;
  readonly #failures = new FailureLimiter({ maxFailures: 10, windowMs: 60_000 });
  readonly #authLog = new LogThrottle();
  readonly #aclLog = new LogThrottle();
  readonly #capLog = new LogThrottle();
  readonly #cap: ConnectionCap;
  #watching: string | undefined;
  /** Payload buffers of rejected publishes; aedes copies the packet but keeps the buffer. */
  readonly #rejected = new WeakSet<Buffer>();
  /** Bounds the publishes held in memory waiting for the spool (ingress-gate.ts). */
  readonly #gate: IngressGate;
  #gaugeTimer: NodeJS.Timeout | undefined;

  constructor(ctx: BrokerContext) {
    this.#ctx = ctx;
    this.#cap = resolveMaxConnections(ctx.config.mqtt.maxConnections, openFileLimit());
    this.#gate = new IngressGate(ctx.config.mqtt.maxWaitingPublishes, {
      onUngated: () => ctx.log.warn('aedes read hook not found: connections are not gated (gateway.mqtt.maxWaitingPublishes has no effect)'),
      onDefer: () => ctx.metrics.mqttReadsDeferred.inc(),
    });
    this.#verifier = new SecretVerifier({
      maxConcurrent: 2,
      onVerify: (method, ok) => ctx.metrics.mqttAuthVerifications.inc({ method, result: ok ? 'ok' : 'failed' }),
    });
  }

  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** The mqtts port, or null when TLS is off. */
  get tlsPort(): number | null {
    return (this.#tlsServer?.address() as AddressInfo | null)?.port ?? null;
  }

  get ready(): boolean {
    return this.#server?.listening === true;
  }

  get url(): string {
    const h = this.#ctx.config.mqtt.host;
    return `mqtt://${h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h}:${this.port}`;
  }

  status(): BrokerStatus {
    return {
      mode: 'embedded',
      listening: this.ready,
      port: this.ready ? this.port : null,
      tlsPort: this.tlsPort,
      clients: this.#aedes?.connectedClients ?? 0,
      maxConnections: Number.isFinite(this.#cap.max) ? this.#cap.max : null,
    };
  }

  async start(): Promise<void> {
    const { config, log, metrics, ingest, durability } = this.#ctx;
    const upstreamPrefix = `${TOPIC_ROOT}/`;
    // Both fail here, before anything listens, with the file or key named.
    this.#loadCredentials(true);
    const tlsContext = this.#tlsOptions();
    const aedes = await Aedes.createBroker({
      // A subscriber that stops reading is cut off instead of stalling delivery to everyone.
      drainTimeout: 10_000,
      preConnect: (client, packet, done) => {
        if (packet.will) this.#willTopics.set(client, packet.will.topic);
        done(null, true);
      },
      authenticate: (client: Client, username, password, done) => {
        const arrived = Date.now();
        this.#authenticate(client, username, password).then(
          (outcome) => {
            if (outcome.ok) {
              this.#principals.set(client, outcome.principal);
              log.debug({ clientId: clip(client.id), principal: principalName(outcome.principal), method: outcome.method }, 'MQTT client authenticated');
              return done(null, true);
            }
            this.#denied(client, username, outcome.reason);
            const err = new Error(outcome.returnCode === 4 ? 'bad username or password' : 'not authorized') as AuthenticateError;
            err.returnCode = outcome.returnCode;
            // Every refusal is answered a fixed time after the CONNECT arrived: slows guessing,
            // damps reconnect loops, and hides whether the username exists (no scrypt for unknown users).
            const wait = Math.max(0, arrived + (this.#ctx.authFailureDelayMs ?? 1000) - Date.now());
            setTimeout(() => done(err, false), wait);
          },
          (err: unknown) => {
            log.error({ err, clientId: clip(client.id) }, 'MQTT authentication failed unexpectedly');
            const refused = new Error('server unavailable') as AuthenticateError;
            refused.returnCode = 3;
            done(refused, false);
          },
        );
      },
      authorizeSubscribe: (client, subscription, done) => {
        const principal = this.#principals.get(client);
        if (principal && maySubscribe(principal, subscription.topic, this.#ctx.devices)) return done(null, subscription);
        this.#aclDenied(client, principal, 'subscribe', subscription.topic);
        // A null subscription is aedes' way to answer this topic with SUBACK 0x80 (failure).
        done(null, null);
      },
      authorizePublish: (client, packet, done) => {
        if (packet.topic.startsWith('$SYS')) return done(new Error('$SYS topics are reserved'));
        // Parsed once, for the ACL and for ingest.
        const parsed = parseTopic(packet.topic);
        // ACL before ingest. `client` is null only for wills aedes republishes for a broker
        // instance that died; every will was checked at CONNECT (mayWill) before it was stored.
        if (client !== null) {
          const principal = this.#principals.get(client);
          if (!principal || !mayPublishParsed(principal, parsed, this.#ctx.devices)) {
            this.#aclDenied(client, principal, 'publish', packet.topic);
            packet.retain = false;
            this.#rejected.add(packet.payload as Buffer);
            return done(null);
          }
        }
        if (!packet.topic.startsWith(upstreamPrefix)) {
          // Other topics are relayed untouched (tools, bridges); they are not ours to check.
          return done(null);
        }
        if (packet.qos > 0 && durability.full) {
          // Not acknowledged: the publisher keeps the message (the agent's outbox) and retries.
          metrics.spoolRefused.inc({ reason: 'full' });
          return done(new Error('gateway spool is full; retry later'));
        }
        const result = ingest.handle(packet.topic, packet.payload as Buffer, parsed);
        if (!result.ok) {
          packet.retain = false;
          this.#rejected.add(packet.payload as Buffer);
          if (client === null) log.debug({ topic: packet.topic }, 'rejected will message');
          return done(null);
        }
        // A QoS1 PUBACK means "on disk": wait for the spool's group commit that holds its points.
        if (packet.qos === 0) return done(null);
        const gate = this.#gate;
        gate.enter();
        const waiting = durability.whenDurable((err) => {
          gate.leave();
          if (err) metrics.spoolRefused.inc({ reason: 'write_failed' });
          done(err ?? null);
        }, client ?? undefined);
        if (!waiting) {
          gate.leave();
          done(null);
        }
      },
      authorizeForward: (_client, packet: AedesPublishPacket) => (this.#rejected.has(packet.payload as Buffer) ? null : packet),
    });
    aedes.on('client', () => metrics.mqttClients.set(aedes.connectedClients));
    this.#gaugeTimer = setInterval(() => metrics.mqttWaitingPublishes.set(this.#gate.waiting), 1000);
    this.#gaugeTimer.unref();
    aedes.on('clientDisconnect', () => metrics.mqttClients.set(aedes.connectedClients));
    aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'MQTT client error'));
    aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'MQTT connection error'));
    this.#aedes = aedes;

    const server = createServer((socket) => this.#attachSocket(socket, 'tcp'));
    this.#limit(server, 'tcp');
    this.#server = server;
    try {
      await listen(server, config.mqtt.port, config.mqtt.host);
      if (tlsContext && config.mqtt.tls.port !== null) {
        const tlsServer = createTlsServer(tlsContext, (socket) => this.#attachSocket(socket, 'tls'));
        tlsServer.on('tlsClientError', (err, socket) => log.debug({ err: err.message, address: socket.remoteAddress }, 'MQTT TLS handshake failed'));
        this.#limit(tlsServer, 'tls');
        this.#tlsServer = tlsServer;
        await listen(tlsServer, config.mqtt.tls.port, config.mqtt.host);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#watchCredentials();
    if (config.mqtt.allowAnonymous) log.warn('MQTT anonymous access is ON (development mode): any client may connect');
    if (this.#cap.warning) log.warn({ maxConnections: this.#cap.max, openFileLimit: this.#cap.fileLimit }, this.#cap.warning);
    metrics.mqttMaxConnections.set(Number.isFinite(this.#cap.max) ? this.#cap.max : -1);
    log.info(
      {
        host: config.mqtt.host,
        port: this.port,
        tlsPort: this.tlsPort,
        websocketPath: config.mqtt.websocketPath,
        principals: this.#credentials.size,
        maxConnections: Number.isFinite(this.#cap.max) ? this.#cap.max : 'unlimited (open-file limit unknown)',
        openFileLimit: this.#cap.fileLimit,
      },
      'MQTT broker listening',
    );
  }

  /**
   * MQTT over WebSocket: the HTTP server's `websocketPath` route hands each upgraded socket here.
   * Same aedes, same authentication and ACL as TCP.
   */
  attachWebSocket(socket: WebSocket, req: IncomingMessage): void {
    const aedes = this.#aedes;
    if (!aedes) {
      socket.close(1013, 'MQTT broker not running');
      return;
    }
    if (this.#full('ws', req.socket.remoteAddress)) {
      socket.close(1013, 'MQTT connection limit reached; try again later');
      return;
    }
    const stream = createWebSocketStream(socket);
    // Errors surface through aedes (the stream's 'error'); this keeps a late one from being unhandled.
    stream.on('error', () => undefined);
    const client = aedes.handle(stream, req);
    this.#conns.set(stream, { transport: 'ws', address: req.socket.remoteAddress ?? 'unknown', client, destroy: () => socket.terminate() });
    socket.once('close', () => this.#conns.delete(stream));
  }

  #attachSocket(socket: Socket, transport: 'tcp' | 'tls'): void {
    const aedes = this.#aedes;
    if (!aedes) {
      socket.destroy();
      return;
    }
    if (this.#full(transport, socket.remoteAddress)) {
      socket.destroy();
      return;
    }
    // aedes writes PUBACK and PUBLISH as small packets; without this Nagle adds ~40 ms per round trip.
    socket.setNoDelay(true);
    const client = aedes.handle(socket);
    this.#gate.attach(socket, client);
    this.#conns.set(socket, { transport, address: socket.remoteAddress ?? 'unknown', client, destroy: () => socket.destroy() });
    socket.once('close', () => this.#conns.delete(socket));
  }

  /**
   * Each listener closes connections past the cap before any JavaScript object is made for them
   * (net.Server.maxConnections, its 'drop' event); #full() caps the sum over the transports.
   */
  #limit(server: Server, transport: 'tcp' | 'tls'): void {
    if (!Number.isFinite(this.#cap.max)) return;
    server.maxConnections = this.#cap.max;
    server.on('drop', (data?: { remoteAddress?: string }) => this.#refused(transport, data?.remoteAddress));
  }

  /** True (and counted) when a new connection would go past the cap. */
  #full(transport: Transport, address: string | undefined): boolean {
    if (this.#conns.size < this.#cap.max) return false;
    this.#refused(transport, address);
    return true;
  }

  #refused(transport: Transport, address: string | undefined): void {
    this.#ctx.metrics.mqttConnectionsRefused.inc({ transport });
    const suppressed = this.#capLog.take(transport);
    if (suppressed === undefined) return;
    this.#ctx.log.warn(
      { transport, address, open: this.#conns.size, maxConnections: this.#cap.max, openFileLimit: this.#cap.fileLimit, suppressed },
      'MQTT connection refused: gateway.mqtt.maxConnections reached',
    );
  }

  async #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<AuthOutcome> {
    const { config } = this.#ctx;
    const address = this.#conns.get(client.conn)?.address ?? 'unknown';
    if (username === undefined || username === '') {
      // Anonymous means the development principal: it may do anything (docs/security.md).
      if (config.mqtt.allowAnonymous) return { ok: true, principal: DEV, method: 'anonymous' };
      return { ok: false, reason: 'anonymous', returnCode: 5 };
    }
    if (this.#failures.blocked(address)) return { ok: false, reason: 'rate_limited', returnCode: 5 };
    const record = this.#credentials.get(username);
    if (!record) {
      this.#failures.fail(address);
      return { ok: false, reason: 'unknown_user', returnCode: 4 };
    }
    // No password at all is a wrong one, and needs no scrypt to say so.
    if (!password || password.length === 0 || !(await this.#verifier.verify(record, password, () => client.closed))) {
      this.#failures.fail(address);
      return { ok: false, reason: 'bad_password', returnCode: 4 };
    }
    if (!clientIdMatches(username, client.id)) return { ok: false, reason: 'client_id', returnCode: 5 };
    const principal: Principal = { kind: record.kind, username, hash: record.hash };
    const will = this.#willTopics.get(client);
    if (will !== undefined && !mayWill(principal, will)) return { ok: false, reason: 'will', returnCode: 5 };
    return { ok: true, principal, method: 'credentials' };
  }

  #denied(client: Client, username: string | undefined, reason: AuthDenyReason): void {
    this.#ctx.metrics.mqttAuthDenied.inc({ reason });
    const conn = this.#conns.get(client.conn);
    const address = conn?.address ?? 'unknown';
    // One line per address and reason per minute; never the password.
    const suppressed = this.#authLog.take(`${reason}\u0000${address}`);
    if (suppressed === undefined) return;
    this.#ctx.log.warn(
      { reason, username: clip(username), clientId: clip(client.id), address, transport: conn?.transport, will: reason === 'will' ? clip(this.#willTopics.get(client)) : undefined, suppressed },
      'MQTT connection refused',
    );
  }

  #aclDenied(client: Client, principal: Principal | undefined, action: 'publish' | 'subscribe', topic: string): void {
    this.#ctx.metrics.mqttAclDenied.inc({ action });
    const name = principal ? principalName(principal) : '(unauthenticated)';
    const suppressed = this.#aclLog.take(`${name}\u0000${action}`);
    if (suppressed === undefined) return;
    this.#ctx.log.warn({ principal: name, kind: principal?.kind, clientId: clip(client.id), action, topic: clip(topic), suppressed }, `MQTT ${action} denied by ACL`);
  }

  /** Reads the credentials file. At start a bad file is fatal; later the previous set stays in force. */
  #loadCredentials(initial: boolean): void {
    const { config, log } = this.#ctx;
    const file = config.mqtt.credentialsFile;
    let records: CredentialRecord[] | undefined;
    try {
      records = loadCredentialsFile(file);
    } catch (err) {
      if (initial) throw err;
      log.error({ file, err: (err as Error).message }, 'credentials file is invalid; keeping the previous credentials');
      return;
    }
    this.#credentials = new Map((records ?? []).map((r) => [r.username, r]));
    this.#verifier.retain(this.#credentials);
    if (initial) {
      if (!records && !config.mqtt.allowAnonymous) log.warn({ file }, 'no MQTT credentials file: no client can connect until one is written (npm run credentials -- add <agent-id>)');
      for (const r of this.#credentials.values()) {
        const known = r.kind === 'device' ? this.#ctx.devices.get(r.username) !== undefined : this.#agentHasDevices(r.username);
        if (!known) log.warn({ username: r.username, kind: r.kind }, `credentials for ${r.kind} "${r.username}", which the ledger does not know: it can connect but not publish for any device`);
      }
      return;
    }
    if (records) log.info({ file, principals: this.#credentials.size }, 'credentials reloaded');
    else log.warn({ file }, 'credentials file is gone: no principal can connect');
    // A removed or rotated principal loses its open connections too.
    for (const conn of this.#conns.values()) {
      const p = this.#principals.get(conn.client);
      const current = p && p.kind !== 'dev' ? this.#credentials.get(p.username) : undefined;
      if (p && p.kind !== 'dev' && (current?.hash !== p.hash || current.kind !== p.kind)) {
        log.warn({ principal: p.username, clientId: clip(conn.client.id) }, 'closing MQTT connection: its credentials were removed or replaced');
        conn.client.close();
      }
    }
  }

  #agentHasDevices(agentId: string): boolean {
    return this.#ctx.devices.views().some((d) => d.agent === agentId);
  }

  #watchCredentials(): void {
    const file = this.#ctx.config.mqtt.credentialsFile;
    this.#watching = file;
    // Polling (not fs.watch): survives the CLI's write-and-rename and a file that appears later.
    watchFile(file, { interval: this.#ctx.credentialsPollMs ?? 2000, persistent: false }, (curr: Stats, prev: Stats) => {
      if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
      this.#loadCredentials(false);
    });
  }

  /** TLS key material, read at start; a missing or unreadable file stops the gateway with its config key. */
  #tlsOptions(): { cert: Buffer; key: Buffer } | undefined {
    const { tls } = this.#ctx.config.mqtt;
    if (tls.port === null) return undefined;
    const problems: string[] = [];
    const read = (name: 'certFile' | 'keyFile'): Buffer | undefined => {
      const file = tls[name];
      if (!file) {
        problems.push(`gateway.mqtt.tls.${name}: is required when gateway.mqtt.tls.port is set`);
        return undefined;
      }
      try {
        return readFileSync(file);
      } catch (err) {
        problems.push(`gateway.mqtt.tls.${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        return undefined;
      }
    };
    const cert = read('certFile');
    const key = read('keyFile');
    if (!cert || !key) throw new ConfigError('gateway.mqtt.tls', problems);
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new ConfigError('gateway.mqtt.tls', [
        `gateway.mqtt.tls.certFile, gateway.mqtt.tls.keyFile: not a PEM certificate and its private key (${(err as Error).message})`,
      ]);
    }
    return { cert, key };
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
    clearInterval(this.#gaugeTimer);
    const servers = [this.#server, this.#tlsServer].filter((x): x is Server => x !== undefined);
    const aedes = this.#aedes;
    this.#server = undefined;
    this.#tlsServer = undefined;
    this.#aedes = undefined;
    if (this.#watching) unwatchFile(this.#watching);
    this.#watching = undefined;
    const closed = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const conn of this.#conns.values()) conn.destroy();
    this.#conns.clear();
    await Promise.all(closed);
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
