/**
 * The WebSocket hub behind `/ws`. A new client gets `hello` and a full snapshot; after that,
 * device updates are coalesced (latest per device) and sent once per flush interval. A client
 * that does not keep up (its unsent bytes pass the cap) gets nothing more until it drains, then a
 * fresh snapshot: memory per client stays bounded and a slow wall screen never slows the others.
 */
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../../../config/schema.js';
import type { DeviceUpdate, ServerMessage } from '../../../protocol/ws.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { SeriesWriter } from '../storage/types.js';
import type { User } from '../store/store.js';
import { DeviceSnapshotEncoder } from './device-snapshot.js';

/** Decides whether a signed-in user may receive a message (e.g. a grid worker: own grids only). */
export type Audience = (user: User) => boolean;

interface PushClient {
  socket: WebSocket;
  /** Who signed in on this socket: incidents and other scoped messages are filtered by it. */
  user: User;
  /** Set when the client fell behind and must be re-sent a snapshot once drained. */
  stale: boolean;
}

export interface HubContext {
  config: GatewayConfig;
  /** The site id (as in /api/site and /health), so a page can tell it is talking to the right site. */
  siteId: string;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  writer: SeriesWriter;
}

export class PushHub {
  readonly #ctx: HubContext;
  readonly #clients = new Set<PushClient>();
  #pending = new Map<string, DeviceUpdate>();
  #timer: NodeJS.Timeout | undefined;
  readonly #off: Array<() => void> = [];
  /** Size of the latest device snapshot: added to the slow-client cap (see #sendState). */
  #snapshotBytes = 0;
  /** Keeps the snapshot's serialised ledger columns: a new client costs only the live ones. */
  readonly #snapshots = new DeviceSnapshotEncoder();
  readonly #attachListeners = new Set<(user: User, send: (message: ServerMessage) => void) => void>();

  constructor(ctx: HubContext) {
    this.#ctx = ctx;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  start(): void {
    const { bus, config } = this.#ctx;
    this.#off.push(
      bus.on('deviceUpdate', (update) => {
        const prev = this.#pending.get(update.id);
        this.#pending.set(update.id, prev ? { ...prev, ...update } : update);
      }),
      bus.on('storageStatus', (storage) => this.#broadcast({ type: 'storage', storage })),
    );
    this.#timer = setInterval(() => this.flush(), config.push.flushIntervalMs);
    this.#timer.unref();
    this.#snapshots.warm(this.#ctx.registry.views());
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const off of this.#off.splice(0)) off();
    for (const c of this.#clients) c.socket.close(1001, 'gateway stopping');
    this.#clients.clear();
  }

  attach(socket: WebSocket, user: User): void {
    const client: PushClient = { socket, user, stale: false };
    this.#clients.add(client);
    this.#ctx.metrics.wsClients.set(this.#clients.size);
    socket.on('close', () => {
      this.#clients.delete(client);
      this.#ctx.metrics.wsClients.set(this.#clients.size);
    });
    socket.on('error', (err) => this.#ctx.log.debug({ err: err.message }, 'websocket error'));
    this.#send(client, {
      type: 'hello',
      protocol: 1,
      serverTime: Date.now(),
      site: this.#ctx.siteId,
      storage: this.#ctx.writer.status,
    });
    this.#sendState(client);
  }

  /** Sends coalesced updates to every client that keeps up. Runs on the flush timer. */
  flush(): void {
    const max = this.#ctx.config.push.maxBufferedBytes;
    for (const client of this.#clients) {
      if (client.stale && client.socket.bufferedAmount < max / 4) {
        client.stale = false;
        this.#sendState(client);
      }
    }
    if (this.#pending.size === 0) return;
    const updates = Array.from(this.#pending.values());
    this.#pending = new Map();
    this.#broadcast({ type: 'devices.update', updates });
  }

  /**
   * Sends a message to every connected client now (not coalesced), or only to those the audience
   * admits; returns how many got it. For events people act on (incidents, broadcast progress), which must not wait for the
   * next device flush. A client that fell behind misses it, and gets the whole state again
   * (`onAttach`) once it drains.
   */
  publish(message: ServerMessage, audience?: Audience): number {
    return this.#broadcast(message, audience);
  }

  /**
   * Runs for every new client after the device snapshot: capabilities send their current state
   * (open incidents, running broadcasts) through `send`.
   */
  onAttach(listener: (user: User, send: (message: ServerMessage) => void) => void): () => void {
    this.#attachListeners.add(listener);
    return () => this.#attachListeners.delete(listener);
  }

  /** Returns how many clients it was sent to. */
  #broadcast(message: ServerMessage, audience?: Audience): number {
    if (this.#clients.size === 0) return 0;
    // UTF-8 once, not once per client: `ws` sends a Buffer as it is (a text frame here).
    const text = Buffer.from(JSON.stringify(message));
    let sent = 0;
    for (const client of this.#clients) if ((!audience || audience(client.user)) && this.#sendText(client, text)) sent++;
    return sent;
  }

  /** The full picture: the device snapshot, then each capability's current state. */
  #sendState(client: PushClient): void {
    const snapshot = this.#snapshots.encode(this.#ctx.registry.views());
    // A client's own snapshot (~2.5 MB for 50,000 devices) must not count as falling behind.
    this.#snapshotBytes = snapshot.length;
    // The same UTF-8 JSON in a binary frame: Chromium takes MBs of those in faster than a text frame.
    this.#sendText(client, snapshot, true);
    for (const listener of this.#attachListeners) {
      try {
        listener(client.user, (message) => this.#send(client, message));
      } catch (err) {
        this.#ctx.log.error({ err }, 'attach listener failed');
      }
    }
  }

  #send(client: PushClient, message: ServerMessage): void {
    this.#sendText(client, JSON.stringify(message));
  }

  /** `text`: JSON, as a string or already UTF-8 encoded; a text frame unless `binary`. */
  #sendText(client: PushClient, text: string | Buffer, binary = false): boolean {
    if (client.stale || client.socket.readyState !== client.socket.OPEN) return false;
    if (client.socket.bufferedAmount > this.#ctx.config.push.maxBufferedBytes + this.#snapshotBytes) {
      client.stale = true;
      this.#ctx.log.warn('dashboard client is not keeping up; pausing its updates until it drains');
      return false;
    }
    client.socket.send(text, { binary });
    return true;
  }
}
