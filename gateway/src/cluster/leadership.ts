/**
 * Work that must happen once, with several gateway instances on one PostgreSQL store: the
 * instance holding the lease (lease.ts) leads and is the one place where incident decisions are
 * made — correlation, escalation timers, offline checks. The others follow:
 *
 * - **Signals** their rules raise (from the device messages their share of the broker brought)
 *   go into the `cluster_signals` queue (store/cluster.ts); the leader drains it in order, woken
 *   by NOTIFY and by a poll (`queuePollMs`) as a safety net. While no instance leads they wait
 *   there. A signal the previous leader applied but had not yet marked done is recognised by its
 *   (device, kind, ts, receivedAt) among the incidents' stored signals and skipped.
 * - **Decisions** their users take (acknowledge, on site, resolve, false alarm, note, escalate)
 *   are queued too, and the user is answered once the leader applied one — it marks the row done
 *   in the same transaction as the decision, so a decision is applied once or not at all. Past
 *   `actionTimeoutMs` the follower marks the row given up (only if still pending: the row update
 *   is the arbiter between the two) and answers 503 NO_LEADER. Routing decisions through the
 *   leader, rather than writing them on the follower and asking the leader to re-read, keeps one
 *   writer per incident: the leader rewrites an incident's row whole from memory (an escalation,
 *   a joining signal), which would silently undo a follower's concurrent write.
 * - **Dashboards**: the leader announces every incident change and every dispatch ring on
 *   `gs_cluster_events` (NOTIFY; the payload names the incident, which followers read from the
 *   store, so the 8 kB NOTIFY limit never bites), and followers push them to their own
 *   dashboards. A follower's new dashboard gets the open incidents from the store.
 * - **Taking over**: the new leader loads open incidents (deadlines included) from the store as a
 *   restarted single gateway does, fires overdue escalations at once, and drains the queue.
 *
 * Broadcast jobs are not under the lease yet: each instance runs the jobs created through it
 * (docs/architecture.md, "Not built yet").
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { GatewayConfig } from '../../../config/schema.js';
import type { EscalationLevel, Incident, IncidentDetail, Severity, SignalKind } from '../../../protocol/incidents.js';
import type { BroadcastServerMessage } from '../../../protocol/broadcasts.js';
import type { ServerMessage } from '../../../protocol/ws.js';
import type { Alerts } from '../alerts/alerts.js';
import { NoLeaderError, type IncidentDecisions } from '../alerts/decisions.js';
import { IncidentService, type IncidentAction } from '../alerts/incidents.js';
import type { DispatchNotice, Notifier, NotifyOutcome } from '../alerts/notifiers.js';
import type { Signal } from '../alerts/rules.js';
import { ApiError, ERRORS, type ErrorCode } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Audience, PushHub } from '../push/hub.js';
import { DONE_CHANNEL, QUEUE_CHANNEL, type ClusterQueue, type QueueResult, type QueueRow } from '../store/cluster.js';
import { isStoreOutage, StoreErrorReporter } from '../store/errors.js';
import { postgresOptions } from '../store/open.js';
import { displayPostgresUrl, withPassword } from '../store/postgres.js';
import type { OperationalStore, User } from '../store/store.js';
import { LeaderLease, leaseKeyOf } from './lease.js';

/** The leader's announcements to the other instances' dashboards. */
export const EVENTS_CHANNEL = 'gs_cluster_events';

/** Signals kept while the queue cannot be written (store down); beyond this the oldest go. */
const MAX_OUTBOX = 10_000;
/** Queue rows read per round. */
const DRAIN_BATCH = 100;
/** Done rows are kept this long (a follower may still read its decision's result), then purged. */
const KEEP_DONE_MS = 10 * 60_000;
/** After taking the lease and failing to load the work (store down): give it back for this long. */
const RELEASE_PAUSE_MS = 5000;
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes and more. */
const NOTIFY_MAX_BYTES = 7900;
/** How often a waiting follower looks at its decision's row besides on NOTIFY. */
const RESULT_POLL_MS = 200;

interface QueuedSignal {
  deviceId: string;
  kind: SignalKind;
  ts: number;
  receivedAt: number;
  severity: Severity;
  bearingDeg: number | null;
  confidence: number | null;
  value: number | null;
  repeats: number;
  clear: boolean;
}

interface QueuedAction {
  incidentId: string;
  action: IncidentAction;
  user: User;
  input: { note?: string; reason?: string };
}

type ClusterEvent =
  | { v: 1; from: string; type: 'incident'; id: string; isNew: boolean }
  | { v: 1; from: string; type: 'broadcast'; message: BroadcastServerMessage }
  | { v: 1; from: string; type: 'dispatch'; incidentId: string; level: EscalationLevel; title: string; ts: number; usernames: string[] };

export interface LeadershipContext {
  config: GatewayConfig;
  siteId: string;
  log: Logger;
  metrics: Metrics;
  /** The PostgreSQL store (it has the cluster queue). */
  store: OperationalStore;
  registry: { get(id: string): LedgerDevice | undefined };
  /** This instance's dashboards. */
  hub: Pick<PushHub, 'publish' | 'onAttach'>;
  /** Replaces the lease built from the config (tests). */
  lease?: LeaderLease;
}

/** Thrown inside a decision's transaction when its follower gave up on it first: nothing is applied. */
class GivenUpError extends Error {}

export class ClusterLeadership implements IncidentDecisions {
  /** This process in logs and queue rows. */
  readonly instanceId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  readonly lease: LeaderLease;
  /** Add to the alerts' notifiers: rings reach dashboards on the other instances. */
  readonly ringNotifier: Notifier;
  readonly #ctx: LeadershipContext;
  readonly #queue: ClusterQueue;
  readonly #storeErrors: StoreErrorReporter;
  #alerts: Alerts | undefined;
  /** This instance took up the work (the lease is held and the incidents are loaded). */
  #led = false;
  /** Signals waiting to be queued (the store was down), oldest first. */
  readonly #outbox: Signal[] = [];
  #droppedSignals = 0;
  readonly #waiters = new Map<number, () => void>();
  readonly #off: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #drainScheduled = false;
  #draining = false;
  #lastDrainAt = 0;
  #lastPurgeAt = 0;

  constructor(ctx: LeadershipContext) {
    if (!ctx.store.cluster) throw new Error('cluster leadership needs the PostgreSQL store (gateway.store.kind: postgres)');
    this.#ctx = ctx;
    this.#queue = ctx.store.cluster;
    this.#storeErrors = new StoreErrorReporter({ log: ctx.log, count: (operation) => ctx.metrics.storeErrors.inc({ operation }) });
    const cfg = ctx.config.cluster;
    if (ctx.lease) {
      this.lease = ctx.lease;
    } else {
      const pg = postgresOptions(ctx.config);
      this.lease = new LeaderLease({
        connectionString: withPassword(pg.url, pg.password),
        displayUrl: displayPostgresUrl(pg.url),
        applicationName: pg.applicationName ?? 'greenshield-gateway',
        key: cfg.leaseKey !== undefined ? String(cfg.leaseKey) : leaseKeyOf(ctx.siteId),
        intervalMs: cfg.leaseIntervalMs,
        ttlMs: cfg.leaseTtlMs,
        connectTimeoutMs: pg.connectTimeoutMs ?? pg.callTimeoutMs ?? 5000,
        channels: [QUEUE_CHANNEL, DONE_CHANNEL, EVENTS_CHANNEL],
        log: ctx.log,
      });
    }
    this.ringNotifier = { channel: 'cluster', notify: (notice) => this.#ring(notice) };
  }

  /** True while this instance holds the lease and has taken up the work. */
  get leading(): boolean {
    return this.#led && this.lease.leading;
  }

  /** Starts as a follower and tries for the lease; `alerts` must be started with `{ lead: false }`. */
  start(alerts: Alerts): void {
    this.#alerts = alerts;
    alerts.routeSignals((signal) => this.#signal(signal));
    this.#ctx.metrics.clusterLeader.set(0);
    this.#off.push(
      this.lease.onChange((leading, reason) => (leading ? this.#takeOver(reason) : this.#stepDown(reason))),
      this.lease.onNotification((channel, payload) => this.#onNotification(channel, payload)),
      alerts.incidents.onIncident((incident, isNew) => this.#announce({ v: 1, from: this.instanceId, type: 'incident', id: incident.id, isNew })),
    );
    this.#timer = setInterval(() => this.#onTimer(), 1000);
    this.#timer.unref();
    this.lease.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined; // waiting decisions give up now
    for (const off of this.#off.splice(0)) off();
    for (const wake of this.#waiters.values()) wake();
    await this.lease.stop();
    if (this.#led) this.#stepDown('stopping');
  }

  // ---- leadership ---------------------------------------------------------------------------------

  #takeOver(reason: string): void {
    const alerts = this.#alerts!;
    const { log, metrics } = this.#ctx;
    try {
      alerts.incidents.lead(() => this.lease.leading);
    } catch (err) {
      log.error({ err, instance: this.instanceId }, 'took the lease but could not load the open incidents from the store; giving the lease back');
      void this.lease.release(RELEASE_PAUSE_MS);
      return;
    }
    this.#led = true;
    metrics.clusterLeader.set(1);
    metrics.clusterLeaderChanges.inc({ to: 'leader' });
    const open = alerts.incidents.openIncidents();
    // Devices an earlier leader reported dark are not reported again.
    alerts.rules.markOfflineRaised(open.filter((i) => i.category === 'device').flatMap((i) => i.devices));
    log.info({ instance: this.instanceId, reason, openIncidents: open.length }, 'this instance leads now: incident correlation, escalations and offline checks run here');
    // Signals this instance could not queue while it followed go straight in now.
    for (const signal of this.#outbox.splice(0)) alerts.incidents.handleSignal(signal);
    this.#drain();
  }

  #stepDown(reason: string): void {
    if (!this.#led) return;
    this.#led = false;
    const { log, metrics } = this.#ctx;
    // Signals kept through a store outage go to the next leader.
    this.#outbox.unshift(...this.#alerts!.incidents.follow());
    metrics.clusterLeader.set(0);
    metrics.clusterLeaderChanges.inc({ to: 'follower' });
    log.warn({ instance: this.instanceId, reason }, 'this instance no longer leads: its signals and decisions go to the leader');
    this.#flushOutbox();
  }

  #onTimer(): void {
    if (this.#outbox.length > 0) this.#flushOutbox();
    if (!this.leading) return;
    const now = Date.now();
    if (now - this.#lastDrainAt >= this.#ctx.config.cluster.queuePollMs) this.#drain();
    if (now - this.#lastPurgeAt >= 60_000) {
      this.#lastPurgeAt = now;
      this.#storeErrors.attempt('cluster_queue', () => void this.#queue.purge(now - KEEP_DONE_MS), 'done rows are purged later');
    }
  }

  // ---- signals ------------------------------------------------------------------------------------

  #signal(signal: Signal): void {
    if (this.leading) return this.#alerts!.incidents.handleSignal(signal);
    this.#outbox.push(signal);
    if (this.#outbox.length > MAX_OUTBOX) {
      const dropped = this.#outbox.shift()!;
      this.#ctx.metrics.clusterQueue.inc({ kind: 'signal', outcome: 'dropped' });
      if (this.#droppedSignals++ === 0) this.#ctx.log.error({ kept: MAX_OUTBOX, kind: dropped.kind }, 'operational store unavailable for long: the oldest signals waiting for the leader are being dropped');
    }
    this.#flushOutbox();
  }

  /** Queues the signals waiting here, in order, until the store fails. */
  #flushOutbox(): void {
    while (this.#outbox.length > 0) {
      const signal = this.#outbox[0]!;
      try {
        this.#queue.enqueue('signal', this.instanceId, queuedSignal(signal), Date.now());
      } catch (err) {
        if (isStoreOutage(err)) {
          this.#storeErrors.failed('cluster_queue', err, 'signals for the leader are kept and queued once the store answers');
          return;
        }
        this.#ctx.log.error({ err, kind: signal.kind, device: signal.device.id }, 'a signal could not be queued for the leader; dropped');
      }
      this.#outbox.shift();
      this.#ctx.metrics.clusterQueue.inc({ kind: 'signal', outcome: 'queued' });
    }
    if (this.#droppedSignals > 0) this.#ctx.log.warn({ dropped: this.#droppedSignals }, 'signals dropped while the store was unavailable');
    this.#droppedSignals = 0;
    this.#storeErrors.succeeded('cluster_queue');
  }

  #scheduleDrain(): void {
    if (this.#drainScheduled) return;
    this.#drainScheduled = true;
    setImmediate(() => {
      this.#drainScheduled = false;
      this.#drain();
    });
  }

  /** The leader applies the queue in order, until it is empty or the store fails (the rest waits). */
  #drain(): void {
    if (!this.leading || this.#draining) return;
    this.#draining = true;
    this.#lastDrainAt = Date.now();
    try {
      for (;;) {
        const rows = this.#queue.pending(DRAIN_BATCH);
        for (const row of rows) {
          if (!this.leading) return;
          this.#applyRow(row);
        }
        if (rows.length < DRAIN_BATCH) break;
      }
      this.#storeErrors.succeeded('cluster_queue');
    } catch (err) {
      if (!isStoreOutage(err)) this.#ctx.log.error({ err }, 'cluster queue not drained');
      else this.#storeErrors.failed('cluster_queue', err, 'the queue is read again on the next notification or poll');
    } finally {
      this.#draining = false;
    }
  }

  /** Applies one row; a store outage is thrown (the row stays pending), anything else marks it refused. */
  #applyRow(row: QueueRow): void {
    const { metrics, log } = this.#ctx;
    try {
      if (row.kind === 'signal') this.#applySignal(row);
      else this.#applyAction(row);
    } catch (err) {
      if (isStoreOutage(err)) throw err;
      log.error({ err, row: row.id, kind: row.kind, origin: row.origin }, 'a queued request could not be applied; refused');
      metrics.clusterQueue.inc({ kind: row.kind, outcome: 'refused' });
      this.#queue.finish(row.id, { ok: false, code: 'INTERNAL', message: ERRORS.INTERNAL.message }, Date.now());
    }
  }

  #applySignal(row: QueueRow): void {
    const { metrics, log, registry } = this.#ctx;
    const body = row.body;
    if (!isQueuedSignal(body)) throw new Error(`queue row ${row.id} is not a signal`);
    const device = registry.get(body.deviceId);
    if (!device) {
      log.warn({ row: row.id, device: body.deviceId }, 'a queued signal names a device this instance\'s ledger does not have; refused');
      metrics.clusterQueue.inc({ kind: 'signal', outcome: 'refused' });
      this.#queue.finish(row.id, { ok: false, code: 'DEVICE_NOT_FOUND', message: `no device "${body.deviceId}" in the ledger` }, Date.now());
      return;
    }
    // Applied by a leader that died before marking it done: not twice. (A clear is idempotent.)
    if (!body.clear && this.#queue.signalApplied(body.deviceId, body.kind, body.ts, body.receivedAt)) {
      metrics.clusterQueue.inc({ kind: 'signal', outcome: 'duplicate' });
      this.#queue.finish(row.id, { ok: true }, Date.now());
      return;
    }
    this.#alerts!.incidents.applySignal({ ...body, device });
    this.#queue.finish(row.id, { ok: true }, Date.now());
    metrics.clusterQueue.inc({ kind: 'signal', outcome: 'applied' });
  }

  #applyAction(row: QueueRow): void {
    const { metrics } = this.#ctx;
    const body = row.body;
    if (!isQueuedAction(body)) throw new Error(`queue row ${row.id} is not an incident decision`);
    try {
      this.#alerts!.incidents.act(body.incidentId, body.action, body.user, body.input, () => {
        if (!this.#queue.finish(row.id, { ok: true }, Date.now())) throw new GivenUpError();
      });
      metrics.clusterQueue.inc({ kind: 'action', outcome: 'applied' });
    } catch (err) {
      if (err instanceof GivenUpError) return; // its follower answered 503 already: nothing was applied
      if (!(err instanceof ApiError)) throw err;
      metrics.clusterQueue.inc({ kind: 'action', outcome: 'refused' });
      this.#queue.finish(row.id, { ok: false, code: err.code, message: err.message }, Date.now());
    }
  }

  // ---- decisions ----------------------------------------------------------------------------------

  /** A person's decision: applied here when this instance leads, else by the leader (waiting for it). */
  async act(id: string, action: IncidentAction, user: User, input: { note?: string; reason?: string }): Promise<IncidentDetail> {
    const incidents = this.#alerts!.incidents;
    if (this.leading) return incidents.act(id, action, user, input);
    const { metrics, config } = this.#ctx;
    const request: QueuedAction = { incidentId: id, action, user, input };
    const rowId = this.#queue.enqueue('action', this.instanceId, request, Date.now());
    metrics.clusterQueue.inc({ kind: 'action', outcome: 'queued' });
    let result = await this.#result(rowId, Date.now() + config.cluster.actionTimeoutMs);
    if (!result) {
      const message = `no gateway instance applied the decision within ${config.cluster.actionTimeoutMs} ms (none leads just now; a takeover takes a few seconds): it was not applied, try again`;
      if (this.#queue.finish(rowId, { ok: false, code: 'NO_LEADER', message }, Date.now())) {
        metrics.clusterQueue.inc({ kind: 'action', outcome: 'timeout' });
        throw new NoLeaderError(message);
      }
      result = this.#queue.result(rowId); // the leader applied it at the last moment
      if (!result) throw new NoLeaderError(message);
    }
    if (!result.ok) {
      if (result.code === 'NO_LEADER') throw new NoLeaderError(result.message);
      throw new ApiError(result.code in ERRORS ? (result.code as ErrorCode) : 'INTERNAL', result.message);
    }
    return incidents.get(id, user);
  }

  /** A queued row's result, once the leader marked it done (woken by NOTIFY, polled as well); undefined past the deadline. */
  #result(rowId: number, deadline: number): Promise<QueueResult | undefined> {
    return new Promise((resolve) => {
      const check = (): void => {
        let result: QueueResult | undefined;
        try {
          result = this.#queue.result(rowId);
        } catch {
          result = undefined; // the store is down: the deadline decides
        }
        if (result || Date.now() >= deadline || !this.#timer) {
          clearInterval(poll);
          this.#waiters.delete(rowId);
          resolve(result);
        }
      };
      const poll = setInterval(check, RESULT_POLL_MS);
      this.#waiters.set(rowId, check);
    });
  }

  // ---- every dashboard ----------------------------------------------------------------------------

  /**
   * The hub for the broadcast service: its messages go to this instance's dashboards and, over
   * NOTIFY, to every other instance's. (Broadcast jobs run where they were created, leader or not.)
   */
  broadcastHub(): Pick<PushHub, 'publish' | 'onAttach'> {
    const { hub } = this.#ctx;
    return {
      publish: (message, audience) => {
        const sent = hub.publish(message, audience);
        if (message.type.startsWith('broadcast') && message.type !== 'broadcasts.snapshot') this.#shareBroadcast(message as BroadcastServerMessage);
        return sent;
      },
      onAttach: (listener) => hub.onAttach(listener),
    };
  }

  #shareBroadcast(message: BroadcastServerMessage): void {
    let payload = JSON.stringify({ v: 1, from: this.instanceId, type: 'broadcast', message } satisfies ClusterEvent);
    // A large job's progress: the counts go, the per-pole changes stay on this instance.
    if (Buffer.byteLength(payload) > NOTIFY_MAX_BYTES && message.type === 'broadcast.progress') {
      payload = JSON.stringify({ v: 1, from: this.instanceId, type: 'broadcast', message: { ...message, changes: [] } } satisfies ClusterEvent);
    }
    this.#send(payload, 'broadcast');
  }

  async #ring(notice: DispatchNotice): Promise<NotifyOutcome[]> {
    const usernames = notice.recipients.flatMap((r) => (r.username ? [r.username] : []));
    if (usernames.length > 0) {
      this.#announce({ v: 1, from: this.instanceId, type: 'dispatch', incidentId: notice.incident.id, level: notice.level, title: notice.incident.title, ts: Date.now(), usernames });
    }
    return []; // whether a follower had the recipient signed in is not known here
  }

  /** The leader's incident news, to the other instances. */
  #announce(event: ClusterEvent): void {
    if (!this.leading) return;
    this.#send(JSON.stringify(event), event.type);
  }

  #send(payload: string, type: string): void {
    if (Buffer.byteLength(payload) > NOTIFY_MAX_BYTES) {
      this.#ctx.log.warn({ type, bytes: Buffer.byteLength(payload) }, 'cluster announcement too large for NOTIFY; other instances\' dashboards miss it');
      return;
    }
    this.lease.notify(EVENTS_CHANNEL, payload).catch((err: unknown) => this.#ctx.log.debug({ err: (err as Error).message, type }, 'cluster announcement not sent'));
  }

  #onNotification(channel: string, payload: string): void {
    if (channel === QUEUE_CHANNEL) {
      if (this.leading) this.#scheduleDrain();
    } else if (channel === DONE_CHANNEL) {
      this.#waiters.get(Number(payload))?.();
    } else if (channel === EVENTS_CHANNEL) {
      let event: unknown;
      try {
        event = JSON.parse(payload);
      } catch {
        return;
      }
      if (!isClusterEvent(event) || event.from === this.instanceId) return;
      if (event.type === 'broadcast') this.#ctx.hub.publish(event.message);
      else if (!this.leading) this.#relay(event); // a leader's own memory is the truth

    }
  }

  /** The leader's announcement, to this instance's dashboards. */
  #relay(event: Exclude<ClusterEvent, { type: 'broadcast' }>): void {
    const { hub, log } = this.#ctx;
    if (event.type === 'dispatch') {
      const usernames = new Set(event.usernames);
      hub.publish({ type: 'incident.dispatch', incidentId: event.incidentId, level: event.level, title: event.title, ts: event.ts }, (user) => usernames.has(user.username));
      return;
    }
    // Read on the lease connection (asynchronous, in order with the announcements).
    this.lease.query<{ body: Incident | string }>('SELECT body FROM incidents WHERE id = $1', [event.id]).then(
      (rows) => {
        const body = rows[0]?.body;
        if (body === undefined) return;
        const incident = typeof body === 'string' ? (JSON.parse(body) as Incident) : body;
        hub.publish({ type: 'incident', incident, isNew: event.isNew }, IncidentService.audience(incident));
      },
      (err: unknown) => log.debug({ err: (err as Error).message, incident: event.id }, 'announced incident not read'),
    );
  }
}

function queuedSignal(s: Signal): QueuedSignal {
  return { deviceId: s.device.id, kind: s.kind, ts: s.ts, receivedAt: s.receivedAt, severity: s.severity, bearingDeg: s.bearingDeg, confidence: s.confidence, value: s.value, repeats: s.repeats, clear: s.clear };
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const numOrNull = (x: unknown) => x === null || typeof x === 'number';

function isQueuedSignal(x: unknown): x is QueuedSignal {
  return (
    isObject(x) &&
    typeof x.deviceId === 'string' &&
    typeof x.kind === 'string' &&
    typeof x.ts === 'number' &&
    typeof x.receivedAt === 'number' &&
    typeof x.severity === 'string' &&
    numOrNull(x.bearingDeg) &&
    numOrNull(x.confidence) &&
    numOrNull(x.value) &&
    typeof x.repeats === 'number' &&
    typeof x.clear === 'boolean'
  );
}

function isQueuedAction(x: unknown): x is QueuedAction {
  return (
    isObject(x) &&
    typeof x.incidentId === 'string' &&
    typeof x.action === 'string' &&
    isObject(x.user) &&
    typeof x.user.username === 'string' &&
    typeof x.user.role === 'string' &&
    Array.isArray(x.user.grids) &&
    isObject(x.input)
  );
}

function isClusterEvent(x: unknown): x is ClusterEvent {
  if (!isObject(x) || x.v !== 1 || typeof x.from !== 'string') return false;
  if (x.type === 'incident') return typeof x.id === 'string' && typeof x.isNew === 'boolean';
  if (x.type === 'broadcast') return isObject(x.message) && typeof x.message.type === 'string' && x.message.type.startsWith('broadcast');
  if (x.type === 'dispatch') return typeof x.incidentId === 'string' && typeof x.level === 'string' && typeof x.title === 'string' && typeof x.ts === 'number' && Array.isArray(x.usernames);
  return false;
}
