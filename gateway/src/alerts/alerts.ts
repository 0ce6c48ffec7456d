/**
 * The alerts capability, assembled: rules (signals from device data) feed the incident service
 * (correlation, location, dispatch, escalation), which notifies people over the WebSocket and any
 * configured webhooks.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../../config/schema.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { PushHub } from '../push/hub.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { OperationalStore } from '../store/store.js';
import { FireDangerService } from './fire-danger.js';
import { IncidentService } from './incidents.js';
import { PushNotifier, WebhookNotifier, type Notifier } from './notifiers.js';
import { AlertRules, type Signal } from './rules.js';
import type { SiteMap } from './site-map.js';

export interface AlertsContext {
  config: Config;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  store: OperationalStore;
  siteMap: SiteMap;
  hub: PushHub;
  /** Extra notifiers (tests; the cluster's ring to other instances' dashboards). */
  notifiers?: Notifier[];
  /** Whether this instance raises device_offline (default always; in a cluster, the leader). */
  offlineChecks?: () => boolean;
}

export class Alerts {
  readonly rules: AlertRules;
  readonly incidents: IncidentService;
  readonly fireDanger: FireDangerService;
  readonly #offAttach: Array<() => void> = [];
  readonly #hub: PushHub;
  /** Where the rules' signals go: the incident service, or (in a cluster) to the leader. */
  #route: (signal: Signal) => void = (signal) => this.incidents.handleSignal(signal);

  constructor(ctx: AlertsContext) {
    const config = ctx.config.gateway!.alerts;
    this.#hub = ctx.hub;
    const notifiers: Notifier[] = [
      new PushNotifier(ctx.hub),
      ...config.webhooks.map((w) => new WebhookNotifier({ ...w, log: ctx.log })),
      ...(ctx.notifiers ?? []),
    ];
    this.incidents = new IncidentService({
      config,
      timeZone: ctx.config.site.timeZone,
      log: ctx.log,
      metrics: ctx.metrics,
      registry: ctx.registry,
      store: ctx.store,
      siteMap: ctx.siteMap,
      push: ctx.hub,
      notifiers,
      photoDir: join(ctx.config.gateway!.dataDir, 'incident-photos'),
    });
    this.fireDanger = new FireDangerService({
      bus: ctx.bus,
      store: ctx.store.incidents.fireDanger,
      log: ctx.log,
      timeZone: ctx.config.site.timeZone,
      metrics: ctx.metrics,
      onChange: (fireDanger) => ctx.hub.publish({ type: 'fireDanger', fireDanger }),
    });
    this.rules = new AlertRules({
      config,
      log: ctx.log,
      bus: ctx.bus,
      metrics: ctx.metrics,
      registry: ctx.registry,
      onSignal: (signal) => this.#route(signal),
      ...(ctx.offlineChecks ? { offlineChecks: ctx.offlineChecks } : {}),
      fireDangerLevel: () => this.fireDanger.level(),
    });
  }

  /** Sends the rules' signals to `route` instead of this instance's incident service (cluster/leadership.ts). */
  routeSignals(route: (signal: Signal) => void): void {
    this.#route = route;
  }

  /** `lead: false`: a cluster instance starts as a follower; the lease decides when it leads. */
  start(opts: { lead?: boolean } = {}): void {
    this.fireDanger.start();
    this.incidents.start(opts);
    this.rules.start();
    this.#offAttach.push(
      this.#hub.onAttach((user, send) => {
        send({ type: 'incidents.snapshot', incidents: this.incidents.openFor(user) });
        send({ type: 'fireDanger', fireDanger: this.fireDanger.status() });
      }),
    );
  }

  stop(): void {
    for (const off of this.#offAttach.splice(0)) off();
    this.rules.stop();
    this.incidents.stop();
    this.fireDanger.stop();
  }
}
