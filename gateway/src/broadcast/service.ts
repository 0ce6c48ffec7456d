/**
 * The broadcast service: one message from the command center to many voice poles, tracked pole
 * by pole.
 *
 *   create → target resolved to poles, content rendered, schedule checked → job (stored, audited)
 *   run    → one delivery per pole → `broadcast.play` per pole over MQTT (QoS1, expiresAt)
 *   acks   → per-pole state machine (delivery.ts) → counts, live progress (WebSocket), store
 *   clock  → offline poles wait and are sent when heard online again; no ack → same command id
 *            again (bounded); pole unreachable or busy → a new attempt later (bounded); nothing
 *            is sent after the expiry; a daily job starts its next run
 *   cancel → `broadcast.stop` to every pole that has it, deliveries cancelled, audited
 *
 * Open jobs live in memory and are written to the store in small batches; on start the service
 * resumes every scheduled and active job from the store. The scheduler is a tick (`tickMs`),
 * not one timer per pole: it stays cheap for 10,000 poles and needs no bookkeeping to survive a
 * restart.
 *
 * Only a leading service runs jobs (`lead()` / `follow()`): a single gateway always leads; in a
 * cluster the instance holding the lease does (cluster/leadership.ts), and the others hand it
 * their creations, cancellations, re-sends and pole acks (`routeTo`). A new leader resumes the
 * jobs from the store as a restarted gateway does.
 *
 * The store can fail (PostgreSQL down or not answering): a change to a job is written before it
 * is kept in memory, so memory never runs ahead of the store; the tick retries what the store
 * refused (a due run still starts, late but within its expiry), and progress stays pending until
 * it is written.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { BroadcastConfig } from '../../../config/schema.js';
import {
  emptyCounts,
  type BroadcastClipView,
  type BroadcastDelivery,
  type BroadcastJob,
  type BroadcastPriority,
  type BroadcastRequest,
  type BroadcastServerMessage,
  type BroadcastStatus,
  type BroadcastTarget,
  type BroadcastTemplateView,
  type DeliveryCounts,
  type DeliveryState,
  type ResolvedPole,
} from '../../../protocol/broadcasts.js';
import type { CommandAck, DeviceCommand } from '../../../protocol/payloads.js';
import type { Availability } from '../../../protocol/ws.js';
import { NoLeaderError } from '../alerts/decisions.js';
import type { Bus } from '../bus.js';
import { ApiError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { PushHub } from '../push/hub.js';
import type { BroadcastJobQuery, StoredBroadcastJob, StoredDelivery } from '../store/broadcasts.js';
import { isStoreOutage, StoreErrorReporter } from '../store/errors.js';
import type { OperationalStore } from '../store/store.js';
import { commandId, decideAck, isFinal, parseCommandId, stopCommandId } from './delivery.js';
import { ProgressPublisher } from './progress.js';
import { checkSchedule, checkTimeZone, nextRun, type RunWindow } from './schedule.js';
import { TargetResolver, type SiteQueries } from './targets.js';
import { renderTemplate, templateCatalogue, type TemplateValues, type TemplateValuesProvider } from './templates.js';

export interface BroadcastContext {
  config: BroadcastConfig;
  /** IANA time zone of the site (config site.timeZone): daily windows are local times there. */
  timeZone: string;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  /** Live availability of the poles. */
  registry: { view(id: string): { status: Availability } | undefined };
  store: OperationalStore;
  site: SiteQueries;
  ledger: readonly LedgerDevice[];
  /** Publishes a command to a device (the gateway's sendCommand). */
  sendCommand: (deviceId: string, command: DeviceCommand) => Promise<void>;
  hub?: Pick<PushHub, 'publish' | 'onAttach'>;
  /** Current values for template variables (the fire-danger service supplies them); default none. */
  templateValues?: TemplateValuesProvider;
  now?: () => number;
}

/** Who asks: recorded on the job and in the audit log. */
export interface Operator {
  username: string;
  displayName: string;
}

interface Delivery extends StoredDelivery {
  /** Publishes of the current command id after the first (in memory: a restart starts over). */
  resends: number;
  /** broadcast.stop commands sent for it. */
  stops: number;
}

interface OpenJob {
  job: StoredBroadcastJob;
  poles: readonly string[];
  /** The current run's deliveries, by pole index. */
  deliveries: Delivery[];
  /** Deliveries not yet final. */
  pending: Set<Delivery>;
  /** When the job ended (finished or cancelled); it stays in memory a while for late acks. */
  endedAt: number | null;
}

/** A run about to start, not yet applied: the job as it will be and one queued delivery per pole. */
interface RunStart {
  job: StoredBroadcastJob;
  deliveries: Delivery[];
}

export interface CreateResult {
  broadcast: BroadcastJob;
  /** Only for a dry run: the poles it would go to. */
  poles?: ResolvedPole[];
}

/**
 * What the API asks of the broadcasts: applied by this service when it leads (a single gateway,
 * the cluster's leader), else handed to the leader (`BroadcastService.commands`).
 */
export interface BroadcastCommands {
  create(req: BroadcastRequest, operator: Operator): Promise<CreateResult>;
  cancel(id: string, operator: Operator, why?: string): Promise<BroadcastJob>;
  retry(id: string, operator: Operator): Promise<CreateResult>;
}

/** Where a service that does not lead sends its work: the leader, through the cluster queue. */
export interface BroadcastRouting {
  commands: BroadcastCommands;
  /** A pole's ack to one of our broadcast commands, ingested here. */
  ack(poleId: string, ack: CommandAck, receivedAt: number): void;
}

/** Runs inside the store transaction of a create or cancel, with the job as it will be; throwing undoes it. */
export type InTransaction = (job: BroadcastJob) => void;

const MINUTE = 60_000;
/** An ended job stays in memory this long, so late acks still correct its record (or re-stop a cancelled pole). */
const LATE_ACK_GRACE_MS = 10 * MINUTE;
/** broadcast.stop commands per delivery at most (a cancelled pole that keeps reporting it plays). */
const MAX_STOPS = 3;
/** Sends per event-loop turn: a 10,000-pole job does not hold up acks that arrive meanwhile. */
const SEND_BATCH = 500;
/** Changes are written to the store at most this often. */
const FLUSH_MS = 20;
const PRIORITY_RANK: Record<BroadcastPriority, number> = { routine: 0, warning: 1, emergency: 2 };

export class BroadcastService {
  readonly #ctx: BroadcastContext;
  readonly #cfg: BroadcastConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #targets: TargetResolver;
  readonly #templates: Map<string, BroadcastTemplateView>;
  readonly #clips: Map<string, BroadcastClipView>;
  readonly #progress: ProgressPublisher;
  #templateValues: TemplateValuesProvider | undefined;
  readonly #jobs = new Map<string, OpenJob>();
  readonly #byPole = new Map<string, Set<Delivery>>();
  readonly #sendQueue: Delivery[] = [];
  #draining = false;
  readonly #dirty = new Set<Delivery>();
  readonly #dirtyJobs = new Set<OpenJob>();
  #flushTimer: NodeJS.Timeout | undefined;
  #tick: NodeJS.Timeout | undefined;
  readonly #off: Array<() => void> = [];
  #running = false;
  readonly #storeErrors: StoreErrorReporter;
  /** Jobs whose last write failed in a way that may still have stored it (a timed-out commit): re-read before the next step. */
  readonly #reload = new Set<string>();
  /** This service runs the jobs (a single gateway, or the cluster's leader). */
  #leading = false;
  /** Asked on every tick: a leader whose lease is not confirmed right now does nothing on that tick. */
  #gate: () => boolean = () => true;
  #route: BroadcastRouting | undefined;
  readonly #local: BroadcastCommands = {
    create: (req, operator) => this.create(req, operator),
    cancel: async (id, operator, why) => this.cancel(id, operator, why),
    retry: (id, operator) => this.retry(id, operator),
  };

  /** Throws on a configuration that cannot work (unknown time zone, a group naming a non-pole). */
  constructor(ctx: BroadcastContext) {
    this.#ctx = ctx;
    this.#cfg = ctx.config;
    this.#log = ctx.log;
    this.#now = ctx.now ?? Date.now;
    checkTimeZone(ctx.timeZone);
    this.#targets = new TargetResolver({ site: ctx.site, devices: ctx.ledger, groups: ctx.config.groups });
    this.#templates = templateCatalogue(ctx.config.templates);
    this.#clips = new Map(ctx.config.clips.map((c) => [c.id, { id: c.id, title: c.title }]));
    this.#templateValues = ctx.templateValues;
    this.#storeErrors = new StoreErrorReporter({ log: ctx.log, count: (operation) => ctx.metrics.storeErrors.inc({ operation }), now: this.#now });
    this.#progress = new ProgressPublisher({
      publish: (m) => this.#publish(m),
      source: { progressOf: (id) => this.#progressOf(id) },
      intervalMs: ctx.config.progressIntervalMs,
      now: this.#now,
    });
  }

  /** Plugs in the provider of current template values (e.g. today's fire danger level). */
  setTemplateValues(provider: TemplateValuesProvider | undefined): void {
    this.#templateValues = provider;
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  /** Starts leading (the default: a single gateway) or, with `{ lead: false }`, following until `lead()`. */
  start(opts: { lead?: boolean } = {}): void {
    if (this.#running) return;
    this.#running = true;
    const { bus, hub } = this.#ctx;
    this.#off.push(
      bus.on('ack', ({ device, message, receivedAt }) => {
        if (this.#leading) this.#onAck(device.id, message, receivedAt);
        else if (this.#route && isBroadcastAck(message)) this.#route.ack(device.id, message, receivedAt);
      }),
      bus.on('deviceUpdate', (u) => {
        if (u.status) this.observeStatus(u.id, u.status);
      }),
    );
    if (hub) this.#off.push(hub.onAttach((_user, send) => send({ type: 'broadcasts.snapshot', broadcasts: this.#snapshot() })));
    if (opts.lead ?? true) this.lead();
  }

  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    for (const off of this.#off.splice(0)) off();
    if (this.#leading) this.#flush();
    this.#leading = false;
    this.#clearMemory();
  }

  /**
   * Runs the jobs from now on: every scheduled and active job is loaded from the store (as after
   * a restart) and the clock starts. `gate` is asked on every tick (the cluster's lease). Throws
   * if the store cannot be read; then nothing changed. Returns how many jobs it took up.
   */
  lead(gate: () => boolean = () => true): number {
    if (!this.#running) throw new Error('the broadcast service is not started');
    if (this.#leading) return this.#jobs.size;
    this.#clearMemory();
    let resumed: number;
    try {
      resumed = this.#resume();
    } catch (err) {
      this.#clearMemory();
      throw err;
    }
    this.#gate = gate;
    this.#leading = true;
    this.#tick = setInterval(() => this.tick(), this.#cfg.tickMs);
    this.#tick.unref();
    this.tick();
    return resumed;
  }

  /**
   * Stops running the jobs (another instance leads now): the clock stops and memory is let go,
   * unwritten progress included — the new leader's state wins over this one's late writes.
   */
  follow(): void {
    if (!this.#leading) return;
    this.#leading = false;
    this.#clearMemory();
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** While this service does not lead, the API's commands and the pole acks it ingests go here. */
  routeTo(route: BroadcastRouting): void {
    this.#route = route;
  }

  /** Create, cancel and re-send as the API asks them: here when leading, else through the leader. */
  get commands(): BroadcastCommands {
    return this.#leading || !this.#route ? this.#local : this.#route.commands;
  }

  /** An ack ingested by another instance (the leader applies what followers hand over). */
  applyAck(poleId: string, ack: CommandAck, receivedAt: number): void {
    if (this.#leading) this.#onAck(poleId, ack, receivedAt);
  }

  /** A pole's availability changed, here or (in a cluster) seen by another instance: what waits for it goes now. */
  observeStatus(poleId: string, status: Availability): void {
    if (this.#leading && status === 'online') this.#onOnline(poleId);
  }

  /**
   * Writes the pending progress now, with `write` in the same transaction (the leader marks the
   * acks it applied done with it). Throws if the store refuses; then the progress stays pending.
   */
  commitWith(write: () => void): void {
    this.#ctx.store.transaction(() => {
      this.#writeDirty();
      write();
    });
    this.#clearDirty();
  }

  #clearMemory(): void {
    clearInterval(this.#tick);
    this.#tick = undefined;
    this.#progress.stop();
    this.#clearDirty();
    this.#jobs.clear();
    this.#byPole.clear();
    this.#sendQueue.length = 0;
    this.#reload.clear();
    this.#refreshGauge();
  }

  /** Picks up every scheduled and active job from the store (after a restart, or a takeover). */
  #resume(): number {
    const { store } = this.#ctx;
    let resumed = 0;
    for (const job of store.broadcasts.openJobs()) {
      this.#jobs.set(job.id, this.#load(job));
      resumed++;
    }
    if (resumed > 0) this.#log.info({ jobs: resumed }, 'resumed broadcast jobs from the store');
    this.#refreshGauge();
    return resumed;
  }

  /** A stored job as an open job: its current run's deliveries (pending ones indexed) and counts. */
  #load(job: StoredBroadcastJob): OpenJob {
    const { store } = this.#ctx;
    const open: OpenJob = { job, poles: store.broadcasts.jobPoles(job.id), deliveries: [], pending: new Set(), endedAt: null };
    if (job.run > 0 && job.status !== 'scheduled') {
      open.deliveries = store.broadcasts.deliveries(job.id, job.run).map((d) => ({ ...d, resends: 0, stops: 0 }));
      job.counts = emptyCounts();
      for (const d of open.deliveries) {
        job.counts[d.state]++;
        if (job.status === 'active' && !isFinal(d.state)) this.#addPending(open, d);
      }
    }
    if (job.status === 'finished' || job.status === 'cancelled') open.endedAt = job.finishedAt ?? job.cancelledAt ?? this.#now();
    return open;
  }

  // ---- queries ----------------------------------------------------------------------------------

  templates(): { templates: BroadcastTemplateView[]; clips: BroadcastClipView[]; groups: Array<{ name: string; poles: number }> } {
    return { templates: [...this.#templates.values()], clips: [...this.#clips.values()], groups: this.#targets.groups() };
  }

  /** Current values of template variables, for the console's preview. */
  async currentTemplateValues(): Promise<TemplateValues> {
    return this.#providerValues();
  }

  resolveTargets(target: BroadcastTarget): { label: string; count: number; byStatus: Record<Availability, number>; poles: ResolvedPole[] } {
    const resolved = this.#targets.resolve(target);
    const poles = this.#resolvedPoles(resolved.poles, resolved.distanceM);
    const byStatus: Record<Availability, number> = { online: 0, offline: 0, unknown: 0 };
    for (const p of poles) byStatus[p.status]++;
    return { label: resolved.label, count: poles.length, byStatus, poles };
  }

  get(id: string, run?: number): { broadcast: BroadcastJob; deliveries: BroadcastDelivery[] } {
    const open = this.#jobs.get(id);
    const job = open?.job ?? this.#ctx.store.broadcasts.getJob(id);
    if (!job) throw new ApiError('BROADCAST_NOT_FOUND', `no broadcast "${id}"`);
    const wanted = run ?? job.run;
    if (wanted < 0 || wanted > job.run) throw new ApiError('BAD_REQUEST', `broadcast ${id} has runs 1–${job.run}; there is no run ${wanted}`);
    const rows: StoredDelivery[] = open && wanted === job.run ? open.deliveries : this.#ctx.store.broadcasts.deliveries(id, wanted);
    return { broadcast: view(job), deliveries: rows.map(deliveryView) };
  }

  list(q: BroadcastJobQuery): { broadcasts: BroadcastJob[]; total: number } {
    const { jobs, total } = this.#ctx.store.broadcasts.listJobs(q);
    // Open jobs: the live counts, not the last batch written.
    return { broadcasts: jobs.map((j) => view(this.#jobs.get(j.id)?.job ?? j)), total };
  }

  // ---- commands ---------------------------------------------------------------------------------

  /** Creates a job (or, with dryRun, only checks it and says what it would do). */
  async create(req: BroadcastRequest, operator: Operator, opts: { dryRun?: boolean; retryOf?: string; inTransaction?: InTransaction } = {}): Promise<CreateResult> {
    if (!opts.dryRun) this.#mustLead();
    const now = this.#now();
    const template = req.content.type === 'template' ? this.#templates.get(req.content.template) : undefined;
    if (req.content.type === 'template' && !template) {
      throw new ApiError('BROADCAST_BAD_CONTENT', `no template "${req.content.template}" (templates: ${[...this.#templates.keys()].join(', ')})`);
    }
    const priority: BroadcastPriority = req.priority ?? template?.priority ?? 'routine';
    const reason = req.reason?.trim() || null;
    if (priority === 'emergency' && !reason) throw new ApiError('BROADCAST_REASON_REQUIRED', 'an emergency broadcast needs a reason (e.g. the incident it warns about)');

    let text: string | null = null;
    let clipId: string | null = null;
    let title: string;
    switch (req.content.type) {
      case 'text':
        text = req.content.text.trim();
        if (text === '') throw new ApiError('BROADCAST_BAD_CONTENT', 'the text is empty');
        title = [...text].length > 24 ? `${[...text].slice(0, 24).join('')}…` : text;
        break;
      case 'clip': {
        const clip = this.#clips.get(req.content.clipId);
        if (!clip) throw new ApiError('BROADCAST_BAD_CONTENT', `no clip "${req.content.clipId}" on the poles (clips: ${[...this.#clips.keys()].join(', ')})`);
        clipId = clip.id;
        title = clip.title;
        break;
      }
      case 'template':
        text = renderTemplate(template!, req.content.values ?? {}, await this.#providerValues());
        title = template!.title;
        break;
    }

    const resolved = this.#targets.resolve(req.target);
    const schedule = req.schedule ?? { type: 'now' as const };
    const first = checkSchedule(schedule, {
      timeZone: this.#ctx.timeZone,
      now,
      priority,
      expiresAt: req.expiresAt,
      expiryMin: this.#cfg.expiryMin,
    });
    const startsNow = first.start <= now;
    const job: StoredBroadcastJob = {
      id: `b${now.toString(36)}${randomBytes(3).toString('hex')}`,
      title: req.title?.trim() || title,
      status: 'scheduled',
      priority,
      reason,
      content: req.content,
      text,
      clipId,
      repeat: req.repeat ?? 1,
      volume: req.volume ?? null,
      target: req.target,
      targetLabel: resolved.label,
      poleCount: resolved.poles.length,
      schedule,
      requestedExpiresAt: req.expiresAt ?? null,
      incidentId: req.incidentId ?? null,
      retryOf: opts.retryOf ?? null,
      createdAt: now,
      createdBy: operator.username,
      createdByName: operator.displayName,
      run: 0,
      runStartedAt: null,
      runExpiresAt: null,
      nextRunAt: startsNow ? null : first.start,
      counts: emptyCounts(),
      finishedAt: null,
      cancelledAt: null,
      cancelledBy: null,
      cancelReason: null,
    };
    if (opts.dryRun) {
      const preview = { ...job, ...(startsNow ? { status: 'active' as const, run: 1, runStartedAt: now, runExpiresAt: first.expiresAt } : {}) };
      preview.counts = { ...emptyCounts(), queued: startsNow ? resolved.poles.length : 0 };
      return { broadcast: view(preview), poles: this.#resolvedPoles(resolved.poles, resolved.distanceM) };
    }

    // Again: leadership may have moved while the template values were awaited.
    this.#mustLead();
    const poles = resolved.poles.map((p) => p.id);
    const open: OpenJob = { job, poles, deliveries: [], pending: new Set(), endedAt: null };
    const { store } = this.#ctx;
    const start = startsNow ? this.#prepareRun(open, 1, first) : undefined;
    store.transaction(() => {
      store.broadcasts.insertJob(job, poles);
      if (start) this.#writeRun(start);
      store.audit({
        ts: now,
        actor: operator.username,
        action: 'broadcast.create',
        subject: job.id,
        detail: {
          title: job.title,
          priority,
          ...(reason ? { reason } : {}),
          content: req.content.type,
          ...(req.content.type === 'template' ? { template: req.content.template } : {}),
          ...(clipId ? { clipId } : {}),
          ...(text !== null ? { text } : {}),
          target: resolved.label,
          poles: poles.length,
          schedule: schedule.type,
          ...(startsNow ? { expiresAt: first.expiresAt } : { startsAt: first.start }),
          ...(job.incidentId ? { incidentId: job.incidentId } : {}),
          ...(job.retryOf ? { retryOf: job.retryOf } : {}),
        },
      });
      opts.inTransaction?.(view(start?.job ?? job));
    });
    if (start) this.#applyRun(open, start);
    this.#jobs.set(job.id, open);
    this.#ctx.metrics.broadcastJobs.inc({ priority });
    this.#refreshGauge();
    this.#log.info({ job: job.id, priority, poles: poles.length, target: resolved.label, by: operator.username, startsAt: first.start }, 'broadcast created');
    this.#publish({ type: 'broadcast.created', broadcast: view(job) });
    if (startsNow) this.#sendDue(open);
    return { broadcast: view(job) };
  }

  /** Stops a job: poles still playing it get `broadcast.stop`, nothing more is sent. */
  cancel(id: string, operator: Operator, why?: string, inTransaction?: InTransaction): BroadcastJob {
    this.#mustLead();
    const open = this.#jobs.get(id);
    const job = open?.job ?? this.#ctx.store.broadcasts.getJob(id);
    if (!job) throw new ApiError('BROADCAST_NOT_FOUND', `no broadcast "${id}"`);
    if (!open || job.status === 'finished' || job.status === 'cancelled') {
      throw new ApiError('BROADCAST_ENDED', `broadcast ${id} has already ${job.status === 'cancelled' ? 'been cancelled' : 'finished'}`);
    }
    const now = this.#now();
    const reason = why?.trim() || null;
    const pending = [...open.pending];
    const reached = (d: Delivery) => d.state !== 'queued';
    // The job as cancelled is stored first: if the store refuses, nothing is stopped and nothing changes.
    const counts = { ...job.counts };
    for (const d of pending) {
      counts[d.state]--;
      counts.cancelled++;
    }
    const cancelled: StoredBroadcastJob = { ...job, status: 'cancelled', cancelledAt: now, cancelledBy: operator.username, cancelReason: reason, nextRunAt: null, counts };
    const stopped = pending.filter(reached).length;
    const { store } = this.#ctx;
    store.transaction(() => {
      store.broadcasts.updateJob(cancelled);
      store.audit({
        ts: now,
        actor: operator.username,
        action: 'broadcast.cancel',
        subject: id,
        detail: { title: job.title, run: job.run, ...(reason ? { reason } : {}), stopsSent: stopped, counts: compactCounts(counts) },
      });
      inTransaction?.(view(cancelled));
    });
    Object.assign(job, { ...cancelled, counts: job.counts });
    open.endedAt = now;
    // The deliveries follow in the next progress batch (written with retries).
    for (const d of pending) {
      if (reached(d)) this.#sendStop(d);
      this.#transition(open, d, 'cancelled', `cancelled by ${operator.username}${reached(d) ? ' (stop sent)' : ''}`, now);
    }
    this.#flush();
    if (job.run > 0) this.#countFinalStates(open);
    this.#refreshGauge();
    this.#log.info({ job: id, by: operator.username, stopsSent: stopped }, 'broadcast cancelled');
    this.#progress.flush(id);
    this.#publish({ type: 'broadcast.finished', broadcast: view(job) });
    return view(job);
  }

  /** A new job with the same content to the poles of the last run that did not play it (failed, expired, pre-empted). */
  async retry(id: string, operator: Operator, inTransaction?: InTransaction): Promise<CreateResult> {
    this.#mustLead();
    const job = this.#jobs.get(id)?.job ?? this.#ctx.store.broadcasts.getJob(id);
    if (!job) throw new ApiError('BROADCAST_NOT_FOUND', `no broadcast "${id}"`);
    if (job.status !== 'finished') {
      throw new ApiError('BROADCAST_NOTHING_TO_RETRY', `broadcast ${id} is ${job.status}; only a finished broadcast can be re-sent to the poles that missed it`);
    }
    const missed = this.#ctx.store.broadcasts
      .deliveries(id, job.run)
      .filter((d) => d.state === 'failed' || d.state === 'expired' || d.state === 'preempted')
      .map((d) => d.pole);
    if (missed.length === 0) throw new ApiError('BROADCAST_NOTHING_TO_RETRY', `every pole of broadcast ${id} played it (run ${job.run})`);
    const req: BroadcastRequest = {
      target: { type: 'poles', poles: missed },
      content: job.content,
      priority: job.priority,
      repeat: job.repeat,
      title: job.title,
      ...(job.reason ? { reason: job.reason } : {}),
      ...(job.volume !== null ? { volume: job.volume } : {}),
      ...(job.incidentId ? { incidentId: job.incidentId } : {}),
    };
    return this.create(req, operator, { retryOf: id, ...(inTransaction ? { inTransaction } : {}) });
  }

  /** Jobs change only where they run: another instance must hand its commands to the leader (`commands`). */
  #mustLead(): void {
    if (!this.#leading) throw new NoLeaderError('this gateway instance does not run broadcasts just now (it does not lead); try again');
  }

  // ---- runs -------------------------------------------------------------------------------------

  /** Run `run` of a job, prepared but not applied: nothing changes until it is stored. */
  #prepareRun(open: OpenJob, run: number, window: RunWindow): RunStart {
    const now = this.#now();
    const job: StoredBroadcastJob = {
      ...open.job,
      status: 'active',
      run,
      runStartedAt: Math.max(now, window.start),
      runExpiresAt: window.expiresAt,
      nextRunAt: null,
      counts: { ...emptyCounts(), queued: open.poles.length },
    };
    const deliveries = open.poles.map((pole, index) => ({
      jobId: job.id,
      run,
      index,
      pole,
      state: 'queued' as DeliveryState,
      reason: null,
      attempt: 1,
      sends: 0,
      cmdId: commandId(job.id, run, index, 1),
      notBefore: null,
      waitOnline: false,
      sentAt: null,
      lastSentAt: null,
      acceptedAt: null,
      playingAt: null,
      endedAt: null,
      updatedAt: now,
      resends: 0,
      stops: 0,
    }));
    return { job, deliveries };
  }

  /** Stores a run's start (call inside a store transaction). */
  #writeRun(start: RunStart): void {
    this.#ctx.store.broadcasts.insertDeliveries(start.deliveries);
    this.#ctx.store.broadcasts.updateJob(start.job);
  }

  /** Once stored, the run is the job's current one. */
  #applyRun(open: OpenJob, start: RunStart): void {
    Object.assign(open.job, start.job);
    for (const d of open.pending) this.#removePending(open, d);
    open.deliveries = start.deliveries;
    for (const d of open.deliveries) this.#addPending(open, d);
  }

  /**
   * A run whose every delivery is final ends: the next daily run is scheduled, or the job
   * finishes. Never throws (it runs from the tick, acks and sends): if the store refuses, the
   * run stays as it was and the next tick ends it.
   */
  #maybeEndRun(open: OpenJob): void {
    const { job } = open;
    if (job.status !== 'active' || open.pending.size > 0 || this.#reload.has(job.id)) return;
    const now = this.#now();
    const next = nextRun(job.schedule, this.#ctx.timeZone, job.runExpiresAt ?? now, now);
    const ended: Partial<StoredBroadcastJob> = next ? { status: 'scheduled', nextRunAt: next.start } : { status: 'finished', finishedAt: now };
    const { store } = this.#ctx;
    try {
      store.transaction(() => {
        this.#writeDirty();
        store.broadcasts.updateJob({ ...job, ...ended });
        store.audit({
          ts: now,
          actor: 'system',
          action: next ? 'broadcast.run_end' : 'broadcast.finish',
          subject: job.id,
          detail: { title: job.title, run: job.run, counts: compactCounts(job.counts), ...(next ? { nextRunAt: next.start } : {}) },
        });
      });
    } catch (err) {
      this.#storeFailed(job.id, 'broadcast_run', err);
      return;
    }
    this.#clearDirty();
    this.#storeErrors.succeeded('broadcast_run');
    Object.assign(job, ended);
    if (!next) open.endedAt = now;
    this.#countFinalStates(open);
    this.#refreshGauge();
    this.#log.info({ job: job.id, run: job.run, counts: compactCounts(job.counts), next: next?.start }, next ? 'broadcast run ended' : 'broadcast finished');
    this.#progress.flush(job.id);
    this.#publish({ type: next ? 'broadcast.updated' : 'broadcast.finished', broadcast: view(job) });
  }

  /** A job's write failed: counted and logged (once per outage); after an outage error its stored state is re-read before its next step. */
  #storeFailed(jobId: string, operation: string, err: unknown): void {
    if (isStoreOutage(err)) this.#reload.add(jobId);
    this.#storeErrors.failed(operation, err, 'retried on the next tick');
  }

  /** Takes the store's state of jobs whose last write may or may not have been stored. */
  #reloadUnsure(): void {
    for (const id of [...this.#reload]) {
      const open = this.#jobs.get(id);
      let stored: StoredBroadcastJob | undefined;
      let fresh: OpenJob | undefined;
      try {
        stored = open && this.#ctx.store.broadcasts.getJob(id);
        // The write was stored after all: the job as stored, with its run's deliveries.
        if (open && stored && (stored.run !== open.job.run || stored.status !== open.job.status)) fresh = this.#load(stored);
      } catch (err) {
        this.#storeErrors.failed('broadcast_run', err, 'retried on the next tick');
        return;
      }
      this.#reload.delete(id);
      if (!open || !fresh) continue;
      for (const d of open.pending) this.#removePending(open, d);
      this.#jobs.set(id, fresh);
      this.#log.info({ job: id, status: fresh.job.status, run: fresh.job.run }, 'broadcast step found stored after a failed commit; carrying on from it');
      this.#refreshGauge();
      this.#publish({ type: fresh.endedAt === null ? 'broadcast.updated' : 'broadcast.finished', broadcast: view(fresh.job) });
      if (fresh.job.status === 'active') this.#progress.touch(id); // its deliveries go out in this tick
    }
  }

  #countFinalStates(open: OpenJob): void {
    for (const d of open.deliveries) if (isFinal(d.state)) this.#ctx.metrics.broadcastDeliveries.inc({ state: d.state });
  }

  // ---- the clock --------------------------------------------------------------------------------

  /** Runs due runs, sends due deliveries, resends unanswered ones, expires late ones. On a timer; public for tests. */
  tick(): void {
    if (!this.#running || !this.#leading || !this.#gate()) return;
    this.#reloadUnsure();
    const now = this.#now();
    const { ackTimeoutMs, maxResends, maxPlayMin } = this.#cfg;
    for (const open of [...this.#jobs.values()]) {
      if (this.#reload.has(open.job.id)) continue; // its stored state is not known yet
      const { job } = open;
      if (open.endedAt !== null && open.pending.size === 0 && now - open.endedAt > LATE_ACK_GRACE_MS) {
        this.#jobs.delete(job.id);
        this.#progress.forget(job.id);
        continue;
      }
      if (job.status === 'scheduled' && job.nextRunAt !== null && job.nextRunAt <= now) {
        try {
          this.#runDue(open, now);
          this.#storeErrors.succeeded('broadcast_run');
        } catch (err) {
          // Still scheduled and due: the next tick starts it (within its expiry) once the store answers.
          this.#storeFailed(job.id, 'broadcast_run', err);
          continue;
        }
      }
      if (job.status === 'cancelled') continue;
      const expiresAt = job.runExpiresAt ?? Infinity;
      let due = false;
      for (const d of [...open.pending]) {
        switch (d.state) {
          case 'queued':
            if (now >= expiresAt) this.#transition(open, d, 'expired', this.#expiryReason(d), now);
            else if (this.#sendable(d, expiresAt, now)) due = true;
            break;
          case 'sent':
            if (now >= expiresAt + ackTimeoutMs) {
              this.#transition(open, d, 'expired', 'no answer from the pole before the expiry', now);
            } else if (d.lastSentAt !== null && now - d.lastSentAt >= ackTimeoutMs) {
              if (d.resends < maxResends && this.#status(d.pole) !== 'offline') {
                this.#resend(open, d);
              } else {
                d.waitOnline = true;
                this.#transition(open, d, 'queued', 'no answer from the pole’s agent; waiting for the pole to be heard online', now);
              }
            }
            break;
          case 'accepted':
          case 'playing': {
            const since = d.playingAt ?? d.acceptedAt ?? now;
            if (now - since >= maxPlayMin * MINUTE) this.#transition(open, d, 'failed', `the pole reported no end within ${maxPlayMin} min`, now);
            break;
          }
          default:
        }
      }
      if (due) this.#sendDue(open);
      this.#maybeEndRun(open);
    }
  }

  /** A scheduled job's run is due: start it, or skip a window missed while the gateway was down. Throws if the store refuses (then nothing changed). */
  #runDue(open: OpenJob, now: number): void {
    const { job } = open;
    let window: RunWindow | null;
    if (job.schedule.type === 'daily') {
      window = nextRun(job.schedule, this.#ctx.timeZone, job.nextRunAt ?? now, now);
    } else {
      const start = job.nextRunAt ?? now;
      window = { start, expiresAt: job.requestedExpiresAt ?? start + this.#cfg.expiryMin[job.priority] * MINUTE };
      if (window.expiresAt <= now) window = null;
    }
    const { store } = this.#ctx;
    if (!window || window.start > now) {
      // The gateway was down through the window: no late broadcast, the next window (if any) instead.
      const missedAt = job.nextRunAt;
      const skipped: Partial<StoredBroadcastJob> = window ? { nextRunAt: window.start } : { status: 'finished', finishedAt: now, nextRunAt: null };
      store.transaction(() => {
        store.broadcasts.updateJob({ ...job, ...skipped });
        store.audit({ ts: now, actor: 'system', action: 'broadcast.missed', subject: job.id, detail: { title: job.title, missedAt, ...(window ? { nextRunAt: window.start } : {}) } });
      });
      Object.assign(job, skipped);
      if (!window) open.endedAt = now;
      this.#log.warn({ job: job.id, missedAt, next: window?.start }, 'broadcast run missed (the gateway was not running); not played late');
      this.#publish({ type: window ? 'broadcast.updated' : 'broadcast.finished', broadcast: view(job) });
      this.#refreshGauge();
      return;
    }
    const start = this.#prepareRun(open, job.run + 1, window);
    store.transaction(() => this.#writeRun(start));
    this.#applyRun(open, start);
    this.#refreshGauge();
    this.#log.info({ job: job.id, run: job.run, poles: open.poles.length, expiresAt: window.expiresAt }, 'broadcast run started');
    this.#publish({ type: 'broadcast.updated', broadcast: view(job) });
    this.#progress.touch(job.id);
    this.#sendDue(open);
  }

  #expiryReason(d: Delivery): string {
    const status = this.#status(d.pole);
    const why =
      status === 'offline'
        ? 'the pole was offline until the expiry'
        : status === 'unknown'
          ? 'the pole was not heard from before the expiry'
          : 'not delivered before the expiry';
    return d.reason ? `${why} (last: ${d.reason})` : why;
  }

  #status(pole: string): Availability {
    return this.#ctx.registry.view(pole)?.status ?? 'unknown';
  }

  /** A queued delivery may go now: due, not waiting for its pole, pole not known offline, before expiry. */
  #sendable(d: Delivery, expiresAt: number, now: number): boolean {
    return d.state === 'queued' && !d.waitOnline && (d.notBefore === null || d.notBefore <= now) && now < expiresAt && this.#status(d.pole) !== 'offline';
  }

  // ---- sending ----------------------------------------------------------------------------------

  #sendDue(open: OpenJob): void {
    const now = this.#now();
    const expiresAt = open.job.runExpiresAt ?? Infinity;
    for (const d of open.pending) if (this.#sendable(d, expiresAt, now)) this.#sendQueue.push(d);
    this.#drain();
  }

  /** Sends queued deliveries in batches, one batch per event-loop turn. */
  #drain(): void {
    if (this.#draining || this.#sendQueue.length === 0) return;
    this.#draining = true;
    setImmediate(() => {
      this.#draining = false;
      if (!this.#running) return;
      const batch = this.#sendQueue.splice(0, SEND_BATCH);
      const now = this.#now();
      for (const d of batch) {
        const open = this.#jobs.get(d.jobId);
        // Re-checked: an ack, a cancel or the expiry may have come in between.
        if (!open || open.job.run !== d.run || open.job.status !== 'active' || !this.#sendable(d, open.job.runExpiresAt ?? Infinity, now)) continue;
        this.#send(open, d, now);
      }
      this.#drain();
    });
  }

  #send(open: OpenJob, d: Delivery, now: number): void {
    if (!this.#targets.pole(d.pole)) {
      // A job resumed after the ledger changed.
      this.#transition(open, d, 'failed', 'the pole is no longer in the ledger', now);
      this.#maybeEndRun(open);
      return;
    }
    d.sentAt ??= now;
    d.lastSentAt = now;
    d.sends++;
    d.resends = 0;
    d.waitOnline = false;
    d.notBefore = null;
    this.#transition(open, d, 'sent', d.reason, now);
    this.#publishPlay(open, d, 'play');
  }

  /** The same command again (the agent and the pole drop it if they already have it). */
  #resend(open: OpenJob, d: Delivery): void {
    d.lastSentAt = this.#now();
    d.sends++;
    d.resends++;
    this.#markDirty(open, d);
    this.#publishPlay(open, d, 'resend');
  }

  #publishPlay(open: OpenJob, d: Delivery, kind: 'play' | 'resend'): void {
    const { job } = open;
    const params: DeviceCommand['params'] = { priority: job.priority, repeat: job.repeat };
    if (job.clipId !== null) params.clipId = job.clipId;
    else params.text = job.text;
    if (job.volume !== null) params.volume = job.volume;
    const command: DeviceCommand = { id: d.cmdId!, ts: this.#now(), name: 'broadcast.play', params };
    if (job.runExpiresAt !== null) command.expiresAt = job.runExpiresAt;
    this.#ctx.metrics.broadcastCommands.inc({ kind });
    this.#ctx.sendCommand(d.pole, command).catch((err: unknown) => {
      // Left as sent: the ack timeout sends it again.
      this.#log.warn({ job: job.id, pole: d.pole, err: (err as Error).message }, 'broadcast command not published');
    });
  }

  #sendStop(d: Delivery): void {
    if (d.cmdId === null || d.stops >= MAX_STOPS) return;
    d.stops++;
    const command: DeviceCommand = { id: stopCommandId(d.cmdId, d.stops), ts: this.#now(), name: 'broadcast.stop', params: { cmdId: d.cmdId } };
    this.#ctx.metrics.broadcastCommands.inc({ kind: 'stop' });
    this.#ctx.sendCommand(d.pole, command).catch((err: unknown) => {
      this.#log.warn({ job: d.jobId, pole: d.pole, err: (err as Error).message }, 'broadcast stop not published');
    });
  }

  // ---- what comes back --------------------------------------------------------------------------

  #onAck(poleId: string, ack: CommandAck, receivedAt: number): void {
    const id = parseCommandId(ack.cmdId);
    if (!id) return; // not a broadcast command of ours
    if (id.stop) {
      this.#log.debug({ pole: poleId, cmd: ack.cmdId, status: ack.status, reason: ack.reason }, 'broadcast stop progress');
      return;
    }
    const open = this.#jobs.get(id.jobId);
    if (!open || open.job.run !== id.run) {
      this.#log.debug({ pole: poleId, cmd: ack.cmdId, status: ack.status }, 'ack for a broadcast run that is no longer open; ignored');
      return;
    }
    const d = open.deliveries[id.index];
    if (!d || d.pole !== poleId) {
      this.#log.warn({ pole: poleId, cmd: ack.cmdId }, 'broadcast ack from a device the command was not sent to; ignored');
      return;
    }
    const expiresAt = open.job.runExpiresAt ?? Infinity;
    const retry = {
      allowed: d.attempt < this.#cfg.maxAttempts && receivedAt < expiresAt && open.job.status === 'active',
      whenUncertain: open.job.priority !== 'routine',
    };
    const decision = decideAck(d, { attempt: id.attempt, status: ack.status, reason: ack.reason }, retry);
    switch (decision.kind) {
      case 'ignore':
        this.#log.debug({ pole: poleId, cmd: ack.cmdId, status: ack.status, why: decision.why }, 'broadcast ack ignored');
        return;
      case 'restop':
        this.#log.info({ job: d.jobId, pole: poleId, status: ack.status }, 'a cancelled broadcast reports it started; stopping it again');
        this.#sendStop(d);
        return;
      case 'retry': {
        const now = this.#now();
        d.attempt++;
        d.cmdId = commandId(d.jobId, d.run, d.index, d.attempt);
        // Doubling: a pole out for a minute is not asked every few seconds, one back soon is not kept waiting long.
        d.notBefore = now + Math.min(this.#cfg.retryDelayMs * 2 ** (d.attempt - 2), this.#cfg.retryMaxDelayMs);
        d.resends = 0;
        this.#transition(open, d, 'queued', decision.reason, now);
        return;
      }
      case 'advance': {
        if (decision.to === 'accepted') d.acceptedAt = receivedAt;
        if (decision.to === 'playing') {
          d.acceptedAt ??= receivedAt;
          d.playingAt = receivedAt;
          if (open.job.runStartedAt !== null) {
            this.#ctx.metrics.broadcastTimeToPlaying.observe({ priority: open.job.priority }, Math.max(0, receivedAt - open.job.runStartedAt) / 1000);
          }
        }
        if (isFinal(decision.to)) d.endedAt = receivedAt;
        this.#transition(open, d, decision.to, decision.reason, receivedAt);
        this.#maybeEndRun(open);
      }
    }
  }

  /** A pole heard online: what waits for it goes now, and a command it may have missed goes again. */
  #onOnline(pole: string): void {
    const set = this.#byPole.get(pole);
    if (!set) return;
    const now = this.#now();
    // Highest priority first: the pole plays the evacuation order, and the routine reminder that
    // waited with it is refused as busy and tried again later, rather than being pre-empted.
    const rank = (d: Delivery) => PRIORITY_RANK[this.#jobs.get(d.jobId)?.job.priority ?? 'routine'];
    for (const d of [...set].sort((a, b) => rank(b) - rank(a))) {
      const open = this.#jobs.get(d.jobId);
      if (!open || open.job.status !== 'active') continue;
      if (d.state === 'queued') {
        d.waitOnline = false;
        d.notBefore = null;
        if (this.#sendable(d, open.job.runExpiresAt ?? Infinity, now)) this.#sendQueue.push(d);
      } else if (d.state === 'sent' && now < (open.job.runExpiresAt ?? Infinity)) {
        // Sent while its agent could not take it, perhaps: a duplicate costs one message, the agent drops it.
        this.#resend(open, d);
      }
    }
    this.#drain();
  }

  #transition(open: OpenJob, d: Delivery, to: DeliveryState, reason: string | null, at: number): void {
    const from = d.state;
    if (from !== to) {
      open.job.counts[from]--;
      open.job.counts[to]++;
    }
    d.state = to;
    d.reason = reason;
    d.updatedAt = at;
    if (isFinal(to)) {
      d.endedAt ??= at;
      this.#removePending(open, d);
    } else {
      d.endedAt = null;
      this.#addPending(open, d);
    }
    this.#markDirty(open, d);
    if (from !== to) this.#progress.change(open.job.id, d.pole, to, isFinal(to) || to === 'queued' ? reason : null);
  }

  #addPending(open: OpenJob, d: Delivery): void {
    open.pending.add(d);
    let set = this.#byPole.get(d.pole);
    if (!set) this.#byPole.set(d.pole, (set = new Set()));
    set.add(d);
  }

  #removePending(open: OpenJob, d: Delivery): void {
    open.pending.delete(d);
    const set = this.#byPole.get(d.pole);
    if (!set) return;
    set.delete(d);
    if (set.size === 0) this.#byPole.delete(d.pole);
  }

  // ---- store ------------------------------------------------------------------------------------

  #markDirty(open: OpenJob, d: Delivery): void {
    this.#dirty.add(d);
    this.#dirtyJobs.add(open);
    if (!this.#flushTimer && this.#running) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.#flush();
      }, FLUSH_MS);
    }
  }

  #flush(): void {
    if (this.#dirty.size === 0 && this.#dirtyJobs.size === 0) return;
    try {
      this.#ctx.store.transaction(() => this.#writeDirty());
    } catch (err) {
      // Kept dirty: written with the next batch, or retried in a second.
      this.#storeErrors.failed('broadcast_progress', err, 'kept and retried every second');
      if (this.#running && !this.#flushTimer) {
        this.#flushTimer = setTimeout(() => {
          this.#flushTimer = undefined;
          this.#flush();
        }, 1000);
      }
      return;
    }
    this.#clearDirty();
    this.#storeErrors.succeeded('broadcast_progress');
  }

  /** Writes pending changes (call inside a store transaction); they stay pending until #clearDirty, after the commit. */
  #writeDirty(): void {
    this.#ctx.store.broadcasts.saveDeliveries([...this.#dirty]);
    for (const open of this.#dirtyJobs) this.#ctx.store.broadcasts.updateJob(open.job);
  }

  /** The pending changes are committed. */
  #clearDirty(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#dirty.clear();
    this.#dirtyJobs.clear();
  }

  // ---- push -------------------------------------------------------------------------------------

  #publish(message: BroadcastServerMessage): void {
    this.#ctx.hub?.publish(message);
  }

  #progressOf(id: string): { run: number; total: number; counts: DeliveryCounts } | undefined {
    const open = this.#jobs.get(id);
    return open ? { run: open.job.run, total: open.deliveries.length, counts: open.job.counts } : undefined;
  }

  /** Open jobs and those ended in the last hour, newest first. */
  #snapshot(): BroadcastJob[] {
    const recent = this.#ctx.store.broadcasts.listJobs({ endedAfter: this.#now() - 60 * MINUTE, limit: 100, offset: 0 }).jobs;
    // A follower runs no job: the open ones as the leader last wrote them.
    const open = this.#leading ? [...this.#jobs.values()].filter((o) => o.endedAt === null).map((o) => o.job) : this.#ctx.store.broadcasts.openJobs();
    const seen = new Set(open.map((j) => j.id));
    return [...open, ...recent.filter((j) => !seen.has(j.id)).map((j) => this.#jobs.get(j.id)?.job ?? j)]
      .sort((a, b) => b.createdAt - a.createdAt)
      .map(view);
  }

  #refreshGauge(): void {
    const by: Record<BroadcastStatus, number> = { scheduled: 0, active: 0, finished: 0, cancelled: 0 };
    for (const o of this.#jobs.values()) by[o.job.status]++;
    this.#ctx.metrics.broadcastJobsOpen.set({ status: 'scheduled' }, by.scheduled);
    this.#ctx.metrics.broadcastJobsOpen.set({ status: 'active' }, by.active);
  }

  async #providerValues(): Promise<TemplateValues> {
    if (!this.#templateValues) return {};
    try {
      return await this.#templateValues();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'template values provider failed; templates get only the request’s values');
      return {};
    }
  }

  #resolvedPoles(poles: ReadonlyArray<{ id: string; name: string; grid: string; community: string; lat: number; lon: number }>, distanceM?: Map<string, number>): ResolvedPole[] {
    return poles.map((p) => ({
      id: p.id,
      name: p.name,
      grid: p.grid,
      community: p.community,
      lat: p.lat,
      lon: p.lon,
      status: this.#status(p.id),
      ...(distanceM?.has(p.id) ? { distanceM: distanceM.get(p.id)! } : {}),
    }));
  }
}

/** An ack to a broadcast.play of ours (a stop's acks are only logged; other commands' are not ours). */
function isBroadcastAck(ack: CommandAck): boolean {
  const id = parseCommandId(ack.cmdId);
  return id !== undefined && !id.stop;
}

function view(job: StoredBroadcastJob): BroadcastJob {
  const { requestedExpiresAt: _omit, ...rest } = job;
  return { ...rest, counts: { ...job.counts } };
}

function deliveryView(d: StoredDelivery): BroadcastDelivery {
  return {
    pole: d.pole,
    run: d.run,
    state: d.state,
    reason: d.reason,
    cmdId: d.sends > 0 ? d.cmdId : null,
    attempt: d.attempt,
    sends: d.sends,
    sentAt: d.sentAt,
    acceptedAt: d.acceptedAt,
    playingAt: d.playingAt,
    endedAt: d.endedAt,
    updatedAt: d.updatedAt,
  };
}

/** Counts without the zeros, for logs and the audit log. */
function compactCounts(c: DeliveryCounts): Partial<DeliveryCounts> {
  return Object.fromEntries(Object.entries(c).filter(([, n]) => n > 0));
}
