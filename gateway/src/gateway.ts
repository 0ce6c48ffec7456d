/**
 * `buildGateway(config)` wires the capabilities together; `main.ts` only reads config, starts it
 * and handles signals. Tests build the same thing on free ports (port 0) and tear it down.
 *
 *   broker --(authorizePublish)--> ingest --bus--> registry --bus--> push (WebSocket)
 *                                             \--> storage (InfluxDB)
 *
 * The broker is the embedded aedes (gateway.mqtt.mode 'embedded') or a client of an external
 * broker cluster ('external', broker/external.ts); then cluster/fanout.ts shares device updates
 * with the other instances.
 */
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { loadLedger, type LedgerDevice } from '../../config/ledger.js';
import type { Config } from '../../config/schema.js';
import type { DeviceCommand } from '../../protocol/payloads.js';
import { topics } from '../../protocol/topics.js';
import { validate } from '../../protocol/validate.js';
import { Alerts } from './alerts/alerts.js';
import { SiteMap } from './alerts/site-map.js';
import { AuthService } from './auth/auth.js';
import { BroadcastService } from './broadcast/service.js';
import { fireDangerTemplateValues } from './broadcast/templates.js';
import { EmbeddedBroker } from './broker/broker.js';
import { ExternalBroker } from './broker/external.js';
import type { GatewayBroker } from './broker/types.js';
import { ClusterFanout } from './cluster/fanout.js';
import { ClusterLeadership } from './cluster/leadership.js';
import { openStore } from './store/open.js';
import { Bus } from './bus.js';
import { buildHttp } from './http/server.js';
import { Ingest } from './ingest/ingest.js';
import { createLogger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { PushHub } from './push/hub.js';
import { DeviceRegistry } from './registry/registry.js';
import { StorageService } from './storage/storage.js';
import { VideoService } from './video/service.js';
import type { SeriesTarget } from './storage/types.js';

export interface GatewayOptions {
  log?: Logger;
  /** Defaults to the file named by config.ledger.file. */
  ledger?: readonly LedgerDevice[];
  /** Replaces the InfluxDB target (tests of the writer's fault handling); null disables storage. */
  storageTarget?: SeriesTarget | null;
  dashboardDir?: string;
}

export interface Gateway {
  readonly log: Logger;
  readonly bus: Bus;
  readonly metrics: Metrics;
  readonly registry: DeviceRegistry;
  readonly storage: StorageService;
  readonly ingest: Ingest;
  readonly alerts: Alerts;
  readonly siteMap: SiteMap;
  readonly broadcasts: BroadcastService;
  /** Live video relay, alarm snapshots and PTZ (docs/video.md). */
  readonly video: VideoService;
  /** With the PostgreSQL store: the lease and the queue to the leader (cluster/leadership.ts); else undefined. */
  readonly leadership: ClusterLeadership | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Publishes a command to a device's command topic (QoS1), for the agent that speaks for it.
   * Progress comes back as `ack` facts on the bus. Rejects a command that breaks the contract.
   */
  sendCommand(deviceId: string, command: DeviceCommand): Promise<void>;
  /** The broker this instance takes device traffic from, embedded or external. */
  readonly broker: GatewayBroker;
  /**
   * The embedded broker's MQTT port, valid after start(); null in external broker mode (the
   * gateway listens for no MQTT client then: devices connect to the external broker).
   */
  readonly mqttPort: number | null;
  /** The mqtts port; null when gateway.mqtt.tls.port is not set or the broker is external. */
  readonly mqttTlsPort: number | null;
  readonly httpPort: number;
  readonly httpUrl: string;
  /** Where devices connect: the embedded broker's URL, or the external broker's (without credentials). */
  readonly mqttUrl: string;
}

export function buildGateway(config: Config, opts: GatewayOptions = {}): Gateway {
  const gw = config.gateway;
  if (!gw) throw new Error('the config has no `gateway` section');
  const log = opts.log ?? createLogger(config.log.level);
  const ledger = opts.ledger ?? loadLedger(config.ledger.file);
  const bus = new Bus(log.child({ module: 'bus' }));
  const metrics = createMetrics();
  const registry = new DeviceRegistry({ config: gw, log: log.child({ module: 'registry' }), bus, metrics, ledger });
  const ingest = new Ingest({ log: log.child({ module: 'ingest' }), bus, metrics, registry });
  const storage = new StorageService({ config: gw, log: log.child({ module: 'storage' }), bus, metrics, registry }, opts.storageTarget);
  const hub = new PushHub({ config: gw, siteId: config.site.id, log: log.child({ module: 'push' }), bus, metrics, registry, writer: storage.writer });
  const brokerLog = log.child({ module: 'broker' });
  const external = gw.mqtt.mode === 'external' ? new ExternalBroker({ config: gw, log: brokerLog, metrics, ingest, durability: storage.writer }) : undefined;
  const broker: GatewayBroker = external ?? new EmbeddedBroker({ config: gw, log: brokerLog, metrics, ingest, durability: storage.writer, devices: registry });
  const fanout =
    external && gw.mqtt.external.fanout
      ? new ClusterFanout({
          config: gw,
          log: log.child({ module: 'cluster' }),
          bus,
          metrics,
          registry,
          hub,
          link: external,
          // The leader's offline clocks, and its broadcasts waiting for a pole, follow devices that talk to other instances.
          onPeerStatus: (id, status) => {
            alerts.rules.observeStatus(id, status);
            broadcasts.observeStatus(id, status);
          },
        })
      : undefined;
  const store = openStore(gw, log.child({ module: 'store' }));
  // Several instances on one PostgreSQL store: the lease decides which one makes incident decisions.
  const leadership =
    gw.store.kind === 'postgres' ? new ClusterLeadership({ config: gw, siteId: config.site.id, log: log.child({ module: 'leadership' }), metrics, store, registry, hub }) : undefined;
  const auth = new AuthService({ config: gw.auth, store, log: log.child({ module: 'auth' }) });
  const siteMap = SiteMap.fromFile(config.site.geojson, ledger);
  const alerts = new Alerts({
    config,
    log: log.child({ module: 'alerts' }),
    bus,
    metrics,
    registry,
    store,
    siteMap,
    hub,
    ...(leadership ? { notifiers: [leadership.ringNotifier], offlineChecks: () => leadership.leading } : {}),
  });
  const sendCommand = async (deviceId: string, command: DeviceCommand): Promise<void> => {
    if (!registry.get(deviceId)) throw new Error(`no device "${deviceId}" in the ledger`);
    const payload = JSON.stringify(command);
    const checked = validate.command(payload);
    if (!checked.ok) throw new Error(`invalid command: ${checked.detail}`);
    await broker.publish(topics.cmd(deviceId), payload, { qos: 1 });
  };
  const broadcasts = new BroadcastService({
    config: gw.broadcast,
    timeZone: config.site.timeZone,
    log: log.child({ module: 'broadcast' }),
    bus,
    metrics,
    registry,
    store,
    site: siteMap,
    ledger,
    // In a cluster its messages reach every instance's dashboards.
    hub: leadership ? leadership.broadcastHub() : hub,
    sendCommand,
    // Templates speak the fire danger level in force (e.g. fire-danger-warning).
    templateValues: () => fireDangerTemplateValues(alerts.fireDanger.level()),
  });
  const video = new VideoService({ config: gw.video, dataDir: gw.dataDir, log: log.child({ module: 'video' }), bus, metrics, registry, incidents: alerts.incidents, sendCommand });
  let http: Awaited<ReturnType<typeof buildHttp>> | undefined;
  let httpPort = 0;
  const startedAt = Date.now();

  const hostFor = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h);

  return {
    log,
    bus,
    metrics,
    registry,
    storage,
    ingest,
    alerts,
    siteMap,
    broadcasts,
    video,
    leadership,
    broker,
    get mqttPort() {
      return broker.port;
    },
    get mqttTlsPort() {
      return broker.tlsPort;
    },
    get httpPort() {
      return httpPort;
    },
    get httpUrl() {
      return `http://${hostFor(gw.http.host)}:${httpPort}`;
    },
    get mqttUrl() {
      return broker.url;
    },
    async start() {
      auth.seed();
      registry.start();
      hub.start();
      // A single gateway leads at once; a cluster instance follows until it holds the lease.
      alerts.start({ lead: !leadership });
      if (!leadership) metrics.clusterLeader.set(1);
      // Before the broker: the first signals already go to the leader, not to this follower's incidents.
      leadership?.start(alerts);
      await storage.start();
      try {
        await broker.start();
      } catch (err) {
        // A bad credentials file or TLS key material stops the start: undo what already runs.
        await leadership?.stop();
        alerts.stop();
        hub.stop();
        registry.stop();
        await storage.stop();
        throw err;
      }
      fanout?.start();
      // After the broker: resumed broadcast jobs may send at once. In a cluster only the leader runs them.
      broadcasts.start({ lead: !leadership });
      leadership?.attachBroadcasts(broadcasts);
      video.start();
      http = await buildHttp({
        config,
        log: log.child({ module: 'http' }),
        metrics,
        registry,
        writer: storage.writer,
        hub,
        broker,
        startedAt,
        auth,
        store,
        incidents: alerts.incidents,
        ...(leadership ? { incidentDecisions: leadership } : {}),
        fireDanger: alerts.fireDanger,
        broadcasts,
        video,
        ...(opts.dashboardDir ? { dashboardDir: opts.dashboardDir } : {}),
      });
      await http.listen({ port: gw.http.port, host: gw.http.host });
      httpPort = (http.server.address() as AddressInfo).port;
      log.info({ url: `http://${hostFor(gw.http.host)}:${httpPort}`, devices: registry.size }, 'gateway ready');
    },
    sendCommand,
    async stop() {
      // Stop taking data first, then flush what was taken.
      await broker.stop();
      fanout?.stop();
      broadcasts.stop();
      // Ends the lease session: another instance takes over within one lease interval.
      await leadership?.stop();
      alerts.stop();
      // Before the HTTP server: viewers are told the gateway is going away and every ffmpeg is stopped.
      await video.stop();
      hub.stop();
      if (http) await http.close();
      registry.stop();
      await storage.stop();
      store.close();
    },
  };
}
