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
 * - **Broadcasts** run on the leader too (sends, schedules, repeats, retries, expiry). A
 *   follower's create, cancel and re-send are queued like decisions (the leader's answer — the
 *   job — comes back in the row's result); the pole acks a follower ingests are queued like
 *   signals and marked done in the transaction that stores the progress they made (re-applying
 *   an ack is harmless: deliveries only move forward).
 * - **Taking over**: the new leader loads open incidents (deadlines included) and the scheduled
 *   and active broadcast jobs (their deliveries as stored) from the store as a restarted single
 *   gateway does, fires overdue escalations at once, and drains the queue.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { GatewayConfig } from '../../../config/schema.js';
import type { EscalationLevel, Incident, IncidentDetail } from '../../../protocol/incidents.js';
import type { BroadcastJob, BroadcastRequest, BroadcastServerMessage } from '../../../protocol/broadcasts.js';
import type { CommandAck } from '../../../protocol/payloads.js';
import type { ServerMessage } from '../../../protocol/ws.js';
import type { Alerts } from '../alerts/alerts.js';
import { NoLeaderError, type IncidentDecisions } from '../alerts/decisions.js';
import { IncidentService, type IncidentAction } from '../alerts/incidents.js';
import type { DispatchNotice, Notifier, NotifyOutcome } from '../alerts/notifiers.js';
import type { Signal } from '../alerts/rules.js';
import type { BroadcastCommands, BroadcastService, Operator } from '../broadcast/service.js';
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

/** A signal as it waits in the queue: the device by id (the leader looks it up in its ledger). */
type QueuedSignal = Omit<Signal, 'device'> & { deviceId: string };

interface QueuedAction {
  incidentId: string;
  action: IncidentAction;
  user: User;
  input: { note?: string; reason?: string };
}

/** A broadcast command taken on a follower, for the leader's broadcast service. */
type QueuedBroadcast =
  | { op: 'create'; request: BroadcastRequest; operator: Operator }
  | { op: 'cancel'; id: string; operator: Operator; reason?: string }
  | { op: 'retry'; id: string; operator: Operator };

/** A pole's ack ingested by a follower. */
interface QueuedAck {
  poleId: string;
  ack: CommandAck;
  receivedAt: number;
}

/** What a follower could not queue yet (the store was down), oldest first. */
type Outgoing = { kind: 'signal'; signal: Signal } | { kind: 'ack'; ack: QueuedAck };

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
  /** Joins once the broker is up (attachBroadcasts). */
  #broadcasts: BroadcastService | undefined;
  /** This instance took up the work (the lease is held and the incidents are loaded). */
  #led = false;
  /** Signals and acks waiting to be queued (the store was down), oldest first. */
  readonly #outbox: Outgoing[] = [];
  #droppedSignals = 0;
  readonly #waiters = new Map<number, () => void>();
  readonly #off: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #drainScheduled = false;
  #draining = false;
  /** A drain was asked for while one ran (it awaited a broadcast command): read the queue again after it. */
  #drainAgain = false;
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

  /**
   * The broadcast service (started with `{ lead: false }` once the broker is up, so a job taken
   * over can send at once) runs the jobs while this instance leads, and hands the leader its
   * commands and acks while it follows.
   */
  attachBroadcasts(broadcasts: BroadcastService): void {
    this.#broadcasts = broadcasts;
    const commands: BroadcastCommands = {
      create: async (request, operator) => ({ broadcast: await this.#broadcastCommand({ op: 'create', request, operator }) }),
      cancel: (id, operator, reason) => this.#broadcastCommand({ op: 'cancel', id, operator, ...(reason !== undefined ? { reason } : {}) }),
      retry: async (id, operator) => ({ broadcast: await this.#broadcastCommand({ op: 'retry', id, operator }) }),
    };
    broadcasts.routeTo({ commands, ack: (poleId, ack, receivedAt) => this.#handOver({ kind: 'ack', ack: { poleId, ack, receivedAt } }) });
    if (!this.#led) return;
    try {
      this.#leadBroadcasts();
    } catch (err) {
      this.#ctx.log.error({ err, instance: this.instanceId }, 'leads but could not load the broadcast jobs from the store; giving the lease back');
      this.#stepDown('broadcast jobs not loaded');
      void this.lease.release(RELEASE_PAUSE_MS);
      return;
    }
    this.#scheduleDrain();
  }

  #leadBroadcasts(): void {
    const jobs = this.#broadcasts?.lead(() => this.lease.leading);
    if (jobs !== undefined) this.#ctx.log.info({ instance: this.instanceId, broadcastJobs: jobs }, 'broadcast jobs run here now');
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
    try {
      this.#leadBroadcasts();
    } catch (err) {
      alerts.incidents.follow();
      log.error({ err, instance: this.instanceId }, 'took the lease but could not load the broadcast jobs from the store; giving the lease back');
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
    // Signals and acks this instance could not queue while it followed go straight in now.
    for (const item of this.#outbox.splice(0)) {
      if (item.kind === 'signal') alerts.incidents.handleSignal(item.signal);
      else this.#broadcasts?.applyAck(item.ack.poleId, item.ack.ack, item.ack.receivedAt);
    }
    void this.#drain();
  }

  #stepDown(reason: string): void {
    if (!this.#led) return;
    this.#led = false;
    const { log, metrics } = this.#ctx;
    // Signals kept through a store outage go to the next leader.
    this.#outbox.unshift(...this.#alerts!.incidents.follow().map((signal): Outgoing => ({ kind: 'signal', signal })));
    this.#broadcasts?.follow();
    metrics.clusterLeader.set(0);
    metrics.clusterLeaderChanges.inc({ to: 'follower' });
    log.warn({ instance: this.instanceId, reason }, 'this instance no longer leads: its signals and decisions go to the leader');
    this.#flushOutbox();
  }

  #onTimer(): void {
    if (this.#outbox.length > 0) this.#flushOutbox();
    if (!this.leading) return;
    const now = Date.now();
    if (now - this.#lastDrainAt >= this.#ctx.config.cluster.queuePollMs) void this.#drain();
    if (now - this.#lastPurgeAt >= 60_000) {
      this.#lastPurgeAt = now;
      this.#storeErrors.attempt('cluster_queue', () => void this.#queue.purge(now - KEEP_DONE_MS), 'done rows are purged later');
    }
  }

  // ---- signals ------------------------------------------------------------------------------------

  #signal(signal: Signal): void {
    if (this.leading) return this.#alerts!.incidents.handleSignal(signal);
    this.#handOver({ kind: 'signal', signal });
  }

  /** A signal or an ack for the leader: queued, or kept in order while the store is down. */
  #handOver(item: Outgoing): void {
    // Led meanwhile (an ack from the bus of a service that has not heard yet): applied here.
    if (item.kind === 'ack' && this.leading && this.#broadcasts?.leading) return this.#broadcasts?.applyAck(item.ack.poleId, item.ack.ack, item.ack.receivedAt);
    this.#outbox.push(item);
    if (this.#outbox.length > MAX_OUTBOX) {
      const dropped = this.#outbox.shift()!;
      this.#ctx.metrics.clusterQueue.inc({ kind: dropped.kind, outcome: 'dropped' });
      if (this.#droppedSignals++ === 0) this.#ctx.log.error({ kept: MAX_OUTBOX, kind: dropped.kind }, 'operational store unavailable for long: the oldest signals and acks waiting for the leader are being dropped');
    }
    this.#flushOutbox();
  }

  /** Queues the signals and acks waiting here, in order, until the store fails. */
  #flushOutbox(): void {
    while (this.#outbox.length > 0) {
      const item = this.#outbox[0]!;
      try {
        if (item.kind === 'signal') this.#queue.enqueue('signal', this.instanceId, queuedSignal(item.signal), Date.now());
        else this.#queue.enqueue('ack', this.instanceId, item.ack, Date.now());
      } catch (err) {
        if (isStoreOutage(err)) {
          this.#storeErrors.failed('cluster_queue', err, 'signals and acks for the leader are kept and queued once the store answers');
          return;
        }
        this.#ctx.log.error({ err, kind: item.kind }, 'a signal or ack could not be queued for the leader; dropped');
      }
      this.#outbox.shift();
      this.#ctx.metrics.clusterQueue.inc({ kind: item.kind, outcome: 'queued' });
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
      void this.#drain();
    });
  }

  /**
   * The leader applies the queue in order, until it is empty or the store fails (the rest waits).
   * Acks are applied as they come and marked done with the progress they made, once per batch.
   * Rows for the broadcast service wait while it has not joined yet.
   */
  async #drain(): Promise<void> {
    if (!this.leading) return;
    if (this.#draining) {
      this.#drainAgain = true;
      return;
    }
    this.#draining = true;
    this.#lastDrainAt = Date.now();
    try {
      do {
        this.#drainAgain = false;
        for (;;) {
          const rows = this.#queue.pending(DRAIN_BATCH);
          const acks: QueueRow[] = [];
          let waiting = false;
          for (const row of rows) {
            if (!this.leading) return;
            if ((row.kind === 'ack' || row.kind === 'broadcast') && !this.#broadcasts?.leading) {
              waiting = true;
              break;
            }
            if (row.kind === 'ack') {
              this.#applyAck(row);
              acks.push(row);
              continue;
            }
            // Acks applied so far are stored before anything else (a broadcast command awaits).
            if (acks.length > 0) this.#finishAcks(acks.splice(0));
            await this.#applyRow(row);
          }
          if (acks.length > 0) this.#finishAcks(acks);
          if (waiting || rows.length < DRAIN_BATCH) break;
        }
      } while (this.#drainAgain && this.leading);
      this.#storeErrors.succeeded('cluster_queue');
    } catch (err) {
      if (!isStoreOutage(err)) this.#ctx.log.error({ err }, 'cluster queue not drained');
      else this.#storeErrors.failed('cluster_queue', err, 'the queue is read again on the next notification or poll');
    } finally {
      this.#draining = false;
    }
  }

  /** An ack a follower ingested, to the broadcast service (in memory; done with its progress). */
  #applyAck(row: QueueRow): void {
    const body = row.body;
    if (!isQueuedAck(body)) {
      this.#ctx.log.error({ row: row.id }, 'a queued ack is malformed; refused');
      return;
    }
    this.#broadcasts!.applyAck(body.poleId, body.ack, body.receivedAt);
  }

  /** Stores the progress the acks made and marks them done, in one transaction; throws on an outage (they are applied again: harmless). */
  #finishAcks(rows: QueueRow[]): void {
    if (!this.#broadcasts?.leading) return; // stepped down meanwhile: the rows stay for the next leader
    const now = Date.now();
    this.#broadcasts!.commitWith(() => {
      for (const row of rows) this.#queue.finish(row.id, isQueuedAck(row.body) ? { ok: true } : { ok: false, code: 'BAD_REQUEST', message: 'malformed ack' }, now);
    });
    for (const row of rows) this.#ctx.metrics.clusterQueue.inc({ kind: 'ack', outcome: isQueuedAck(row.body) ? 'applied' : 'refused' });
  }

  /** Applies one row; a store outage is thrown (the row stays pending), anything else marks it refused. */
  async #applyRow(row: QueueRow): Promise<void> {
    const { metrics, log } = this.#ctx;
    try {
      if (row.kind === 'signal') this.#applySignal(row);
      else if (row.kind === 'broadcast') await this.#applyBroadcast(row);
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

  /** A follower's broadcast command: applied by the leader's service, the row marked done in the same transaction. */
  async #applyBroadcast(row: QueueRow): Promise<void> {
    const { metrics } = this.#ctx;
    const body = row.body;
    if (!isQueuedBroadcast(body)) throw new Error(`queue row ${row.id} is not a broadcast command`);
    const broadcasts = this.#broadcasts!;
    const done = (job: BroadcastJob): void => {
      if (!this.#queue.finish(row.id, { ok: true, value: job }, Date.now())) throw new GivenUpError();
    };
    // Its follower may have given up while it waited: `done` then throws and nothing is applied.
    try {
      if (body.op === 'create') await broadcasts.create(body.request, body.operator, { inTransaction: done });
      else if (body.op === 'retry') await broadcasts.retry(body.id, body.operator, done);
      else broadcasts.cancel(body.id, body.operator, body.reason, done);
      metrics.clusterQueue.inc({ kind: 'broadcast', outcome: 'applied' });
    } catch (err) {
      if (err instanceof GivenUpError) return; // its follower answered 503 already: nothing was applied
      if (!(err instanceof ApiError) || isStoreOutage(err)) throw err;
      metrics.clusterQueue.inc({ kind: 'broadcast', outcome: 'refused' });
      this.#queue.finish(row.id, { ok: false, code: err.code, message: err.message }, Date.now());
    }
  }

  // ---- decisions ----------------------------------------------------------------------------------

  /** A person's decision: applied here when this instance leads, else by the leader (waiting for it). */
  async act(id: string, action: IncidentAction, user: User, input: { note?: string; reason?: string }): Promise<IncidentDetail> {
    const incidents = this.#alerts!.incidents;
    if (this.leading) return incidents.act(id, action, user, input);
    const request: QueuedAction = { incidentId: id, action, user, input };
    await this.#viaLeader('action', request, 'decision');
    return incidents.get(id, user);
  }

  /** A broadcast command on a follower: the leader's service applies it; its answer (the job) is this one's. */
  async #broadcastCommand(request: QueuedBroadcast): Promise<BroadcastJob> {
    // Led meanwhile: applied here.
    const broadcasts = this.#broadcasts!;
    if (this.leading && broadcasts.leading) {
      if (request.op === 'create') return (await broadcasts.create(request.request, request.operator)).broadcast;
      if (request.op === 'retry') return (await broadcasts.retry(request.id, request.operator)).broadcast;
      return broadcasts.cancel(request.id, request.operator, request.reason);
    }
    const result = await this.#viaLeader('broadcast', request, 'broadcast request');
    if (!isBroadcastJob(result.value)) throw new ApiError('INTERNAL', 'the leader answered the broadcast request without the broadcast');
    return result.value;
  }

  /**
   * Queues a request for the leader and waits for it to be applied (woken by NOTIFY, polled);
   * throws its refusal as the API error, or NO_LEADER past `actionTimeoutMs` (then it is not applied).
   */
  async #viaLeader(kind: 'action' | 'broadcast', request: QueuedAction | QueuedBroadcast, what: string): Promise<QueueResult & { ok: true }> {
    const { metrics, config } = this.#ctx;
    const rowId = this.#queue.enqueue(kind, this.instanceId, request, Date.now());
    metrics.clusterQueue.inc({ kind, outcome: 'queued' });
    let result = await this.#result(rowId, Date.now() + config.cluster.actionTimeoutMs);
    if (!result) {
      const message = `no gateway instance applied the ${what} within ${config.cluster.actionTimeoutMs} ms (none leads just now; a takeover takes a few seconds): it was not applied, try again`;
      if (this.#queue.finish(rowId, { ok: false, code: 'NO_LEADER', message }, Date.now())) {
        metrics.clusterQueue.inc({ kind, outcome: 'timeout' });
        throw new NoLeaderError(message);
      }
      result = this.#queue.result(rowId); // the leader applied it at the last moment
      if (!result) throw new NoLeaderError(message);
    }
    if (!result.ok) {
      if (result.code === 'NO_LEADER') throw new NoLeaderError(result.message);
      throw new ApiError(result.code in ERRORS ? (result.code as ErrorCode) : 'INTERNAL', result.message);
    }
    return result;
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
   * NOTIFY, to every other instance's. (Only the leader runs jobs; a follower's service publishes
   * nothing but its own dashboards' snapshots.)
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
  const { device, ...rest } = s;
  return { ...rest, deviceId: device.id };
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

function isOperator(x: unknown): x is Operator {
  return isObject(x) && typeof x.username === 'string' && typeof x.displayName === 'string';
}

function isQueuedBroadcast(x: unknown): x is QueuedBroadcast {
  if (!isObject(x) || !isOperator(x.operator)) return false;
  if (x.op === 'create') return isObject(x.request) && isObject(x.request.target) && isObject(x.request.content);
  if (x.op === 'retry') return typeof x.id === 'string';
  if (x.op === 'cancel') return typeof x.id === 'string' && (x.reason === undefined || typeof x.reason === 'string');
  return false;
}

function isQueuedAck(x: unknown): x is QueuedAck {
  return (
    isObject(x) &&
    typeof x.poleId === 'string' &&
    typeof x.receivedAt === 'number' &&
    isObject(x.ack) &&
    typeof x.ack.cmdId === 'string' &&
    typeof x.ack.status === 'string' &&
    typeof x.ack.ts === 'number' &&
    (x.ack.reason === undefined || typeof x.ack.reason === 'string')
  );
}

function isBroadcastJob(x: unknown): x is BroadcastJob {
  return isObject(x) && typeof x.id === 'string' && typeof x.status === 'string' && isObject(x.counts);
}

function isClusterEvent(x: unknown): x is ClusterEvent {
  if (!isObject(x) || x.v !== 1 || typeof x.from !== 'string') return false;
  if (x.type === 'incident') return typeof x.id === 'string' && typeof x.isNew === 'boolean';
  if (x.type === 'broadcast') return isObject(x.message) && typeof x.message.type === 'string' && x.message.type.startsWith('broadcast');
  if (x.type === 'dispatch') return typeof x.incidentId === 'string' && typeof x.level === 'string' && typeof x.title === 'string' && typeof x.ts === 'number' && Array.isArray(x.usernames);
  return false;
}
