/**
 * Broadcast jobs in the browser: shape checks for the `/ws` broadcast messages and the REST
 * answers, the live set of jobs the gateway pushes, and the API calls the console makes
 * (docs/broadcast.md). No DOM here, so api.ts can take `parseBroadcastMessage` from this module
 * without pulling in the console.
 */
import type {
  BroadcastClipView,
  BroadcastDelivery,
  BroadcastJob,
  BroadcastPriority,
  BroadcastRequest,
  BroadcastSchedule,
  BroadcastServerMessage,
  BroadcastStatus,
  BroadcastTarget,
  BroadcastTemplateView,
  DeliveryCounts,
  DeliveryState,
  MAX_REPEAT as PROTOCOL_MAX_REPEAT,
  MAX_TEXT_CHARS as PROTOCOL_MAX_TEXT_CHARS,
  PoleChange,
  ResolvedPole,
} from '../../protocol/broadcasts.js';
import { ApiError, requestJson } from './api.js';
import type { I18n } from './i18n.js';
import { isNumber, isNumberOrNull, isObject, isString, isStringOrNull, type Json } from './json.js';

export type {
  BroadcastClipView,
  BroadcastDelivery,
  BroadcastJob,
  BroadcastPriority,
  BroadcastRequest,
  BroadcastSchedule,
  BroadcastServerMessage,
  BroadcastStatus,
  BroadcastTarget,
  BroadcastTemplateView,
  DeliveryCounts,
  DeliveryState,
  ResolvedPole,
};

// Local copies of the protocol's lists (protocol/broadcasts.ts): importing the values would put
// TypeBox in the browser bundle. `satisfies` and the checks below keep them in step.
export const PRIORITIES = ['routine', 'warning', 'emergency'] as const satisfies readonly BroadcastPriority[];
export const DELIVERY_STATES = ['queued', 'sent', 'accepted', 'playing', 'done', 'failed', 'expired', 'preempted', 'cancelled'] as const satisfies readonly DeliveryState[];
export const JOB_STATUSES = ['scheduled', 'active', 'finished', 'cancelled'] as const satisfies readonly BroadcastStatus[];
const complete: [
  Exclude<BroadcastPriority, (typeof PRIORITIES)[number]>,
  Exclude<DeliveryState, (typeof DELIVERY_STATES)[number]>,
  Exclude<BroadcastStatus, (typeof JOB_STATUSES)[number]>,
] extends [never, never, never]
  ? true
  : false = true;
void complete;
/** Typed as the protocol's literal: a change there fails `tsc` here. */
export const MAX_TEXT_CHARS: typeof PROTOCOL_MAX_TEXT_CHARS = 500;
export const MAX_REPEAT: typeof PROTOCOL_MAX_REPEAT = 10;

export const FINAL_STATES: ReadonlySet<DeliveryState> = new Set(['done', 'failed', 'expired', 'preempted', 'cancelled']);
/** Jobs whose poles may still change: the ones a duty officer can cancel. */
export const isOpenJob = (job: BroadcastJob) => job.status === 'scheduled' || job.status === 'active';
/** Total deliveries of the job's current run (the counts always add up to it once a run started). */
export const countTotal = (counts: DeliveryCounts) => DELIVERY_STATES.reduce((sum, s) => sum + counts[s], 0);

// ---- shape checks -----------------------------------------------------------------------------

const oneOf =
  <T extends string>(values: readonly T[]) =>
  (v: unknown): v is T =>
    (values as readonly unknown[]).includes(v);
export const isDeliveryState = oneOf(DELIVERY_STATES);
export const isPriority = oneOf(PRIORITIES);
const isJobStatus = oneOf(JOB_STATUSES);

export function isDeliveryCounts(v: unknown): v is DeliveryCounts {
  return isObject(v) && DELIVERY_STATES.every((s) => isNumber(v[s]));
}

/** Enough of a check that a gateway/dashboard version mismatch drops a message instead of breaking the page. */
export function isBroadcastJob(v: unknown): v is BroadcastJob {
  return (
    isObject(v) &&
    isString(v.id) &&
    isString(v.title) &&
    isJobStatus(v.status) &&
    isPriority(v.priority) &&
    isStringOrNull(v.reason) &&
    isObject(v.content) &&
    isStringOrNull(v.text) &&
    isStringOrNull(v.clipId) &&
    isNumber(v.repeat) &&
    isNumberOrNull(v.volume) &&
    isObject(v.target) &&
    isString(v.targetLabel) &&
    isNumber(v.poleCount) &&
    isObject(v.schedule) &&
    isStringOrNull(v.incidentId) &&
    isStringOrNull(v.retryOf) &&
    isNumber(v.createdAt) &&
    isString(v.createdBy) &&
    isString(v.createdByName) &&
    isNumber(v.run) &&
    isNumberOrNull(v.runStartedAt) &&
    isNumberOrNull(v.runExpiresAt) &&
    isNumberOrNull(v.nextRunAt) &&
    isDeliveryCounts(v.counts) &&
    isNumberOrNull(v.finishedAt) &&
    isNumberOrNull(v.cancelledAt) &&
    isStringOrNull(v.cancelledBy) &&
    isStringOrNull(v.cancelReason)
  );
}

function isPoleChange(v: unknown): v is PoleChange {
  return Array.isArray(v) && (v.length === 2 || (v.length === 3 && isString(v[2]))) && isString(v[0]) && isDeliveryState(v[1]);
}

function isDelivery(v: unknown): v is BroadcastDelivery {
  return (
    isObject(v) &&
    isString(v.pole) &&
    isNumber(v.run) &&
    isDeliveryState(v.state) &&
    isStringOrNull(v.reason) &&
    isStringOrNull(v.cmdId) &&
    isNumber(v.attempt) &&
    isNumber(v.sends) &&
    isNumberOrNull(v.sentAt) &&
    isNumberOrNull(v.acceptedAt) &&
    isNumberOrNull(v.playingAt) &&
    isNumberOrNull(v.endedAt) &&
    isNumber(v.updatedAt)
  );
}

function isResolvedPole(v: unknown): v is ResolvedPole {
  return (
    isObject(v) &&
    isString(v.id) &&
    isString(v.name) &&
    isString(v.grid) &&
    isString(v.community) &&
    isNumber(v.lat) &&
    isNumber(v.lon) &&
    (v.status === 'online' || v.status === 'offline' || v.status === 'unknown') &&
    (v.distanceM === undefined || isNumber(v.distanceM))
  );
}

function isTemplate(v: unknown): v is BroadcastTemplateView {
  return (
    isObject(v) &&
    isString(v.id) &&
    isString(v.title) &&
    isPriority(v.priority) &&
    isString(v.text) &&
    Array.isArray(v.variables) &&
    v.variables.every((x) => isObject(x) && isString(x.name) && isString(x.description))
  );
}

const isClip = (v: unknown): v is BroadcastClipView => isObject(v) && isString(v.id) && isString(v.title);

/**
 * The broadcast messages of `/ws` (docs/broadcast.md "WebSocket"), checked for shape; null for
 * any other type or a malformed one. api.ts's parseServerMessage chains it.
 */
export function parseBroadcastMessage(msg: Record<string, unknown>): BroadcastServerMessage | null {
  switch (msg.type) {
    case 'broadcasts.snapshot':
      return Array.isArray(msg.broadcasts) ? { type: 'broadcasts.snapshot', broadcasts: msg.broadcasts.filter(isBroadcastJob) } : null;
    case 'broadcast.created':
    case 'broadcast.updated':
    case 'broadcast.finished':
      return isBroadcastJob(msg.broadcast) ? { type: msg.type, broadcast: msg.broadcast } : null;
    case 'broadcast.progress':
      return isString(msg.id) && isNumber(msg.run) && isNumber(msg.total) && isDeliveryCounts(msg.counts) && Array.isArray(msg.changes)
        ? { type: 'broadcast.progress', id: msg.id, run: msg.run, total: msg.total, counts: msg.counts, changes: msg.changes.filter(isPoleChange) }
        : null;
    default:
      return null;
  }
}

// ---- words ------------------------------------------------------------------------------------------

/** "now", "at 2025-04-01 08:00", "daily 08:00–09:00 until …" */
export function describeSchedule(i18n: I18n, job: BroadcastJob): string {
  const s = job.schedule;
  if (s.type === 'at') return i18n.t('bc.schedule.atText', { time: i18n.dateTime(s.at) });
  if (s.type === 'daily') return i18n.t('bc.schedule.dailyText', { start: s.start, end: s.end, until: i18n.dateTime(s.until) });
  return i18n.t('bc.schedule.now');
}

// ---- API ----------------------------------------------------------------------------------------

function badShape(path: string): ApiError {
  return new ApiError(0, 'BAD_RESPONSE', `unexpected response shape from ${path}`);
}

export interface BroadcastCatalogue {
  templates: BroadcastTemplateView[];
  clips: BroadcastClipView[];
  groups: Array<{ name: string; poles: number }>;
  /** The gateway's current template values (today's fire danger level), filled in when a request leaves them out. */
  values: Record<string, string | number>;
}

export async function fetchCatalogue(signal?: AbortSignal): Promise<BroadcastCatalogue> {
  const path = '/api/broadcasts/templates';
  const body = await requestJson(path, { signal });
  if (!isObject(body) || !Array.isArray(body.templates) || !Array.isArray(body.clips) || !Array.isArray(body.groups)) throw badShape(path);
  const values: Record<string, string | number> = {};
  if (isObject(body.values)) for (const [k, v] of Object.entries(body.values)) if (isString(v) || isNumber(v)) values[k] = v;
  return {
    templates: body.templates.filter(isTemplate),
    clips: body.clips.filter(isClip),
    groups: body.groups.filter((g): g is { name: string; poles: number } => isObject(g) && isString(g.name) && isNumber(g.poles)),
    values,
  };
}

export interface ResolvedTarget {
  /** The target in words, e.g. `网格 G08`. */
  label: string;
  count: number;
  byStatus: { online: number; offline: number; unknown: number };
  poles: ResolvedPole[];
}

export async function resolveTarget(target: BroadcastTarget, signal?: AbortSignal): Promise<ResolvedTarget> {
  const path = '/api/broadcasts/resolve-targets';
  const body = await requestJson(path, { method: 'POST', body: { target }, signal });
  if (!isObject(body) || !isString(body.label) || !isNumber(body.count) || !isObject(body.byStatus) || !Array.isArray(body.poles)) throw badShape(path);
  const s = body.byStatus;
  return {
    label: body.label,
    count: body.count,
    byStatus: { online: isNumber(s.online) ? s.online : 0, offline: isNumber(s.offline) ? s.offline : 0, unknown: isNumber(s.unknown) ? s.unknown : 0 },
    poles: body.poles.filter(isResolvedPole),
  };
}

/** A dry run: everything checked and the job as it would be created, nothing stored or sent. */
export async function previewBroadcast(request: BroadcastRequest): Promise<{ broadcast: BroadcastJob; poles: ResolvedPole[] }> {
  const path = '/api/broadcasts?dryRun=true';
  const body = await requestJson(path, { method: 'POST', body: request });
  if (!isObject(body) || !isBroadcastJob(body.broadcast) || !Array.isArray(body.poles)) throw badShape(path);
  return { broadcast: body.broadcast, poles: body.poles.filter(isResolvedPole) };
}

export async function createBroadcast(request: BroadcastRequest): Promise<BroadcastJob> {
  const path = '/api/broadcasts';
  const body = await requestJson(path, { method: 'POST', body: request });
  if (!isObject(body) || !isBroadcastJob(body.broadcast)) throw badShape(path);
  return body.broadcast;
}

export interface BroadcastQuery {
  /** One or more statuses (none: all). */
  status?: readonly BroadcastStatus[];
  priority?: BroadcastPriority;
  incidentId?: string;
  limit?: number;
  offset?: number;
}

export async function listBroadcasts(query: BroadcastQuery, signal?: AbortSignal): Promise<{ broadcasts: BroadcastJob[]; total: number }> {
  const q = new URLSearchParams();
  if (query.status?.length) q.set('status', query.status.join(','));
  if (query.priority) q.set('priority', query.priority);
  if (query.incidentId) q.set('incidentId', query.incidentId);
  q.set('limit', String(query.limit ?? 50));
  if (query.offset) q.set('offset', String(query.offset));
  const path = `/api/broadcasts?${q.toString()}`;
  const body = await requestJson(path, { signal });
  if (!isObject(body) || !Array.isArray(body.broadcasts) || !isNumber(body.total)) throw badShape('/api/broadcasts');
  return { broadcasts: body.broadcasts.filter(isBroadcastJob), total: body.total };
}

export async function fetchBroadcast(id: string, signal?: AbortSignal): Promise<{ broadcast: BroadcastJob; deliveries: BroadcastDelivery[] }> {
  const path = `/api/broadcasts/${encodeURIComponent(id)}`;
  const body = await requestJson(path, { signal });
  if (!isObject(body) || !isBroadcastJob(body.broadcast) || !Array.isArray(body.deliveries)) throw badShape(path);
  return { broadcast: body.broadcast, deliveries: body.deliveries.filter(isDelivery) };
}

export async function cancelBroadcast(id: string, reason: string): Promise<BroadcastJob> {
  const path = `/api/broadcasts/${encodeURIComponent(id)}/cancel`;
  const body = await requestJson(path, { method: 'POST', body: reason.trim() ? { reason: reason.trim() } : {} });
  if (!isObject(body) || !isBroadcastJob(body.broadcast)) throw badShape(path);
  return body.broadcast;
}

/** A new job with the same content to the poles of the last run that failed, expired or were pre-empted. */
export async function retryBroadcast(id: string): Promise<BroadcastJob> {
  const path = `/api/broadcasts/${encodeURIComponent(id)}/retry`;
  const body = await requestJson(path, { method: 'POST' });
  if (!isObject(body) || !isBroadcastJob(body.broadcast)) throw badShape(path);
  return body.broadcast;
}

// ---- the live set -------------------------------------------------------------------------------

/** What changed in the live set: a job (created, updated, finished), its progress, or everything. */
export type JobEvent =
  | { kind: 'snapshot' }
  | { kind: 'job'; job: BroadcastJob; created: boolean }
  | { kind: 'progress'; id: string; run: number; total: number; changes: PoleChange[] };

/**
 * The jobs `/ws` reports: scheduled and active ones, and those ended in the last hour (the
 * snapshot), plus every job created, changed or ended while the page is open.
 */
export class BroadcastJobs {
  readonly #jobs = new Map<string, BroadcastJob>();
  readonly #listeners = new Set<(e: JobEvent) => void>();
  #snapshotSeen = false;

  get snapshotSeen(): boolean {
    return this.#snapshotSeen;
  }

  get(id: string): BroadcastJob | undefined {
    return this.#jobs.get(id);
  }

  /** Newest first. */
  all(): BroadcastJob[] {
    return [...this.#jobs.values()].sort((a, b) => b.createdAt - a.createdAt);
  }

  /** Jobs running or waiting for their run. */
  open(): BroadcastJob[] {
    return this.all().filter(isOpenJob);
  }

  /** A job learnt from the REST API (a create, cancel or detail answer); newer WS news wins. */
  remember(job: BroadcastJob): void {
    const known = this.#jobs.get(job.id);
    if (known && !isNewer(job, known)) return;
    this.#jobs.set(job.id, job);
    this.#emit({ kind: 'job', job, created: !known });
  }

  /** Applies one broadcast message; false for any other message. */
  handle(msg: { type: string }): boolean {
    const m = msg as BroadcastServerMessage;
    switch (m.type) {
      case 'broadcasts.snapshot': {
        // An open job the snapshot leaves out ended over an hour ago, while this page was not
        // listening (the snapshot has every open job): drop it rather than show it running.
        const fresh = new Set(m.broadcasts.map((j) => j.id));
        for (const [id, job] of this.#jobs) if (!fresh.has(id) && isOpenJob(job)) this.#jobs.delete(id);
        for (const job of m.broadcasts) this.#jobs.set(job.id, job);
        this.#snapshotSeen = true;
        this.#emit({ kind: 'snapshot' });
        return true;
      }
      case 'broadcast.created':
      case 'broadcast.updated':
      case 'broadcast.finished': {
        const known = this.#jobs.get(m.broadcast.id);
        // A REST answer can overtake its own WS message; never step back to an older record.
        if (known && !isNewer(m.broadcast, known) && m.type !== 'broadcast.finished') return true;
        this.#jobs.set(m.broadcast.id, m.broadcast);
        this.#emit({ kind: 'job', job: m.broadcast, created: m.type === 'broadcast.created' });
        return true;
      }
      case 'broadcast.progress': {
        const known = this.#jobs.get(m.id);
        if (known && m.run >= known.run) this.#jobs.set(m.id, { ...known, run: m.run, counts: m.counts });
        this.#emit({ kind: 'progress', id: m.id, run: m.run, total: m.total, changes: m.changes });
        return true;
      }
      default:
        return false;
    }
  }

  onChange(listener: (e: JobEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  clear(): void {
    this.#jobs.clear();
    this.#snapshotSeen = false;
    this.#emit({ kind: 'snapshot' });
  }

  #emit(e: JobEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(e);
      } catch (err) {
        console.error('broadcast listener failed', err);
      }
    }
  }
}

/** Status only moves forward (an end is final); a later run is newer; within a run, more poles have ended. */
function isNewer(next: BroadcastJob, prev: BroadcastJob): boolean {
  const ended = (j: BroadcastJob) => j.status === 'finished' || j.status === 'cancelled';
  if (ended(prev) && !ended(next)) return false;
  if (next.run !== prev.run) return next.run > prev.run;
  return finalCount(next) >= finalCount(prev);
}

function finalCount(job: BroadcastJob): number {
  let n = 0;
  for (const s of FINAL_STATES) n += job.counts[s];
  return n;
}
