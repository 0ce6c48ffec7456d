/**
 * What the rest of the gateway needs from "the broker", whichever it is: the embedded aedes broker
 * (broker.ts; the gateway is the broker) or an external broker cluster the gateway is a client of
 * (external.ts; EMQX or Mosquitto, MQTT 5 shared subscriptions). gateway.ts and the HTTP server
 * see only this.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { TOPIC_ROOT } from '../../../protocol/topics.js';

/**
 * Topics between gateway instances (cluster fan-out, external broker mode only). Not device
 * topics: only gateway principals may use them (the broker ACL must allow a gateway to publish
 * and subscribe to `gs/v1/cluster/#`).
 *
 *   gs/v1/cluster/{instanceId}/devices   gateway -> gateways   QoS0   batched device updates
 */
export const clusterTopics = {
  prefix: `${TOPIC_ROOT}/cluster/`,
  devices: (instanceId: string) => `${TOPIC_ROOT}/cluster/${instanceId}/devices`,
  devicesFilter: `${TOPIC_ROOT}/cluster/+/devices`,
} as const;

export type BrokerMode = 'embedded' | 'external';

/** For /health and /ready: where device traffic comes in and whether it can. */
export type BrokerStatus =
  | {
      mode: 'embedded';
      listening: boolean;
      port: number | null;
      tlsPort: number | null;
      clients: number;
      /** gateway.mqtt.maxConnections as resolved; null: no cap (the open-file limit is unknown). */
      maxConnections: number | null;
    }
  | {
      mode: 'external';
      /** The broker URL without credentials. */
      url: string;
      clientId: string;
      state: 'connecting' | 'connected' | 'reconnecting' | 'stopped';
      /** Connected and subscribed: device messages flow to this instance. */
      connected: boolean;
      /** Since when (ms) the current state holds. */
      since: number;
      /** Why the last connection attempt failed or the connection dropped. */
      lastError: string | null;
      /** Messages received and not yet acknowledged to the broker (waiting for the spool). */
      inflight: number;
    };

export interface GatewayBroker {
  readonly mode: BrokerMode;
  start(): Promise<void>;
  /** Stops taking messages; acknowledged ones are in the spool, unacknowledged ones stay with the broker. */
  stop(): Promise<void>;
  /** Publishes from the gateway itself (commands to devices); resolves once the broker has it. */
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }): Promise<void>;
  /** True while this instance can take device traffic (embedded: listening; external: connected and subscribed). */
  readonly ready: boolean;
  status(): BrokerStatus;
  /** The embedded broker's TCP port; null for an external broker. */
  readonly port: number | null;
  readonly tlsPort: number | null;
  /** A URL a device or test client can connect to. */
  readonly url: string;
  /** MQTT over WebSocket on the HTTP port; only the embedded broker accepts clients itself. */
  attachWebSocket?(socket: WebSocket, req: IncomingMessage): void;
}

/**
 * The broker connection as a channel between gateway instances (cluster fan-out): a message on
 * `gs/v1/cluster/...` from any other instance, and publishing there. Only an external broker has
 * peers.
 */
export interface ClusterLink {
  /** This instance's id in cluster topics (its MQTT client id). */
  readonly instanceId: string;
  readonly connected: boolean;
  /** Runs on every (re)connection; returns an unsubscribe function. */
  onConnected(listener: () => void): () => void;
  /** Messages other instances published on the cluster topics. */
  onClusterMessage(listener: (topic: string, payload: Buffer) => void): () => void;
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }): Promise<void>;
}
