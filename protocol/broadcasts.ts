/**
 * Broadcast jobs as the API and the dashboard see them (REST bodies and `/ws` messages).
 *
 * A broadcast job is one message from the command center to many voice poles: a target (poles,
 * a group, grids, communities, a circle or a polygon on the map, or all), content (text spoken by
 * the pole's TTS, a clip stored on the pole, or a template the gateway fills in), a priority, a
 * repeat count, a volume, a schedule and an expiry. The gateway resolves the target to a list of
 * poles when the job is created and tracks one delivery per pole and run (a daily job runs once
 * a day). See docs/broadcast.md.
 *
 * The request schemas are TypeBox (validated by the HTTP API and published in its OpenAPI
 * document); the views are plain types.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN } from './topics.js';

export const BROADCAST_PRIORITIES = ['routine', 'warning', 'emergency'] as const;
/** routine < warning < emergency: a same-or-higher priority pre-empts what a pole is playing. */
export type BroadcastPriority = (typeof BROADCAST_PRIORITIES)[number];

export const DELIVERY_STATES = ['queued', 'sent', 'accepted', 'playing', 'done', 'failed', 'expired', 'preempted', 'cancelled'] as const;
/**
 * One pole's progress with one run of a job:
 * queued → sent → accepted → playing → done | failed | expired | preempted | cancelled.
 */
export type DeliveryState = (typeof DELIVERY_STATES)[number];
export const FINAL_DELIVERY_STATES = ['done', 'failed', 'expired', 'preempted', 'cancelled'] as const satisfies readonly DeliveryState[];
export type FinalDeliveryState = (typeof FINAL_DELIVERY_STATES)[number];

export const BROADCAST_STATUSES = ['scheduled', 'active', 'finished', 'cancelled'] as const;
/**
 * scheduled: waiting for its (next) run; active: a run is being delivered; finished: no run
 * left (the counts say how it went); cancelled: stopped by an operator.
 */
export type BroadcastStatus = (typeof BROADCAST_STATUSES)[number];

const Id = Type.String({ pattern: ID_PATTERN });
const Lat = Type.Number({ minimum: -90, maximum: 90 });
const Lon = Type.Number({ minimum: -180, maximum: 180 });
const epochMs = (description = 'ms since the Unix epoch (UTC)') => Type.Integer({ minimum: 946_684_800_000, maximum: 4_102_444_800_000, description });
const HhMm = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'local time of day at the site, HH:MM (24 h)' });
export const MAX_TEXT_CHARS = 500;
export const MAX_REPEAT = 10;
export const TEMPLATE_VARIABLE_PATTERN = '^[A-Za-z][A-Za-z0-9_]{0,39}$';

// Unknown keys are errors everywhere (a misspelt `priorty` must not quietly make an emergency
// routine): the broadcast routes validate with removeAdditional off, so `additionalProperties:
// false` on union members is safe (a stripping validator would mangle the members tried later).
const closed = { additionalProperties: false } as const;
export const BroadcastTarget = Type.Union(
  [
    Type.Object({ type: Type.Literal('poles'), poles: Type.Array(Id, { minItems: 1, maxItems: 100_000, description: 'voice pole ids from the ledger' }) }, { ...closed, title: 'poles' }),
    Type.Object({ type: Type.Literal('group'), group: Type.String({ minLength: 1, maxLength: 64, description: 'a pole group from gateway.broadcast.groups' }) }, { ...closed, title: 'group' }),
    Type.Object({ type: Type.Literal('grids'), grids: Type.Array(Id, { minItems: 1, maxItems: 1000, description: 'grid (网格) ids' }) }, { ...closed, title: 'grids' }),
    Type.Object(
      { type: Type.Literal('communities'), communities: Type.Array(Type.String({ minLength: 1, maxLength: 80 }), { minItems: 1, maxItems: 200, description: 'community (社区) names' }) },
      { ...closed, title: 'communities' },
    ),
    Type.Object(
      {
        type: Type.Literal('radius'),
        center: Type.Object({ lat: Lat, lon: Lon }, { ...closed, description: 'WGS-84' }),
        radiusM: Type.Number({ exclusiveMinimum: 0, maximum: 100_000, description: 'metres' }),
      },
      { ...closed, title: 'radius' },
    ),
    Type.Object(
      {
        type: Type.Literal('polygon'),
        ring: Type.Array(Type.Tuple([Lon, Lat]), { minItems: 3, maxItems: 5000, description: 'a ring of [lon, lat] positions (WGS-84, GeoJSON order), closed or not' }),
      },
      { ...closed, title: 'polygon' },
    ),
    Type.Object({ type: Type.Literal('all') }, { ...closed, title: 'all' }),
  ],
  { description: 'which poles: resolved to a list of pole ids when the job is created' },
);
export type BroadcastTarget = Static<typeof BroadcastTarget>;

const TemplateValue = Type.Union([Type.String({ maxLength: 100 }), Type.Number()]);
export const BroadcastContent = Type.Union(
  [
    Type.Object({ type: Type.Literal('text'), text: Type.String({ minLength: 1, maxLength: MAX_TEXT_CHARS, description: 'spoken by the pole (TTS)' }) }, { ...closed, title: 'text' }),
    Type.Object({ type: Type.Literal('clip'), clipId: Type.String({ pattern: ID_PATTERN, description: 'a recording stored on the poles (GET /api/broadcasts/templates lists them)' }) }, { ...closed, title: 'clip' }),
    Type.Object(
      {
        type: Type.Literal('template'),
        template: Type.String({ pattern: ID_PATTERN, description: 'template id' }),
        values: Type.Optional(
          Type.Record(Type.String({ pattern: TEMPLATE_VARIABLE_PATTERN }), TemplateValue, { description: 'values for the template variables; they win over the gateway’s current values' }),
        ),
      },
      { ...closed, title: 'template' },
    ),
  ],
  { description: 'what the poles say' },
);
export type BroadcastContent = Static<typeof BroadcastContent>;

export const BroadcastSchedule = Type.Union(
  [
    Type.Object({ type: Type.Literal('now') }, { ...closed, title: 'now' }),
    Type.Object({ type: Type.Literal('at'), at: epochMs('start time, ms since the epoch') }, { ...closed, title: 'at' }),
    Type.Object(
      {
        type: Type.Literal('daily'),
        start: HhMm,
        end: HhMm,
        from: Type.Optional(epochMs('no run starts before this (default: now); ms since the epoch')),
        until: epochMs('no run starts after this; ms since the epoch (at most 366 days after from)'),
      },
      { ...closed, title: 'daily', description: 'every day inside the window start–end (site time zone); each run expires at the end of its window' },
    ),
  ],
  { description: 'when: now (default), once at a time, or daily inside a window' },
);
export type BroadcastSchedule = Static<typeof BroadcastSchedule>;

export const BroadcastRequest = Type.Object(
  {
    target: BroadcastTarget,
    content: BroadcastContent,
    priority: Type.Optional(
      Type.Union(
        BROADCAST_PRIORITIES.map((p) => Type.Literal(p)),
        { description: 'default: the template’s priority, else routine' },
      ),
    ),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500, description: 'why; required for an emergency broadcast' })),
    repeat: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_REPEAT, description: 'times the text or clip is played (default 1)' })),
    volume: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'default: each pole’s own setting' })),
    schedule: Type.Optional(BroadcastSchedule),
    expiresAt: Type.Optional(
      epochMs('a pole that has not started the broadcast by then never plays it; default start + gateway.broadcast.expiryMin[priority]; not with a daily schedule'),
    ),
    title: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'a label for lists (default: the template title or the start of the text)' })),
    incidentId: Type.Optional(Type.String({ pattern: ID_PATTERN, description: 'the incident this broadcast warns about, for the record' })),
  },
  { additionalProperties: false },
);
export type BroadcastRequest = Static<typeof BroadcastRequest>;

// ---- views --------------------------------------------------------------------------------------

export type DeliveryCounts = Record<DeliveryState, number>;

export interface BroadcastJob {
  id: string;
  title: string;
  status: BroadcastStatus;
  priority: BroadcastPriority;
  reason: string | null;
  /** As requested. */
  content: BroadcastContent;
  /** What the poles speak (text, or a template as rendered); null for a clip. */
  text: string | null;
  clipId: string | null;
  repeat: number;
  volume: number | null;
  /** As requested, for the record; `poles` is what it selected. */
  target: BroadcastTarget;
  /** The target in words, e.g. `网格 G08`, `半径 500 m（29.4300, 105.8800）`. */
  targetLabel: string;
  /** How many poles the target selected at creation. */
  poleCount: number;
  schedule: BroadcastSchedule;
  incidentId: string | null;
  /** The job this one re-sends to the poles that missed it (POST /api/broadcasts/{id}/retry). */
  retryOf: string | null;
  createdAt: number;
  /** Username and display name of the operator. */
  createdBy: string;
  createdByName: string;
  /** The current (or last) run, 0 before the first; runs count from 1. */
  run: number;
  runStartedAt: number | null;
  /** No pole starts this run after this time. */
  runExpiresAt: number | null;
  /** Start of the next run, for a scheduled job. */
  nextRunAt: number | null;
  /** Deliveries of the current (or last) run by state; all zero before the first run. */
  counts: DeliveryCounts;
  finishedAt: number | null;
  cancelledAt: number | null;
  cancelledBy: string | null;
  cancelReason: string | null;
}

export interface BroadcastDelivery {
  pole: string;
  run: number;
  state: DeliveryState;
  /** Why it failed, expired, was pre-empted or retried; the pole's own words where it gave them. */
  reason: string | null;
  /** Command id of the latest attempt (the pole's job id); null before the first send. */
  cmdId: string | null;
  /** Attempt of the current command id: 1, then 2, 3 … after the pole could not carry it out (each a new command id). */
  attempt: number;
  /** Times a command was published, re-sends with the same id included. */
  sends: number;
  sentAt: number | null;
  acceptedAt: number | null;
  playingAt: number | null;
  endedAt: number | null;
  updatedAt: number;
}

export interface BroadcastTemplateView {
  id: string;
  title: string;
  priority: BroadcastPriority;
  /** With `{variable}` placeholders. */
  text: string;
  variables: Array<{ name: string; description: string }>;
}

export interface BroadcastClipView {
  id: string;
  title: string;
}

export interface ResolvedPole {
  id: string;
  name: string;
  grid: string;
  community: string;
  lat: number;
  lon: number;
  status: 'online' | 'offline' | 'unknown';
  /** From the circle's centre, for a radius target. */
  distanceM?: number;
}

/** One pole's new state: `[poleId, state]`, or `[poleId, state, reason]` for a final state with a reason. */
export type PoleChange = [pole: string, state: DeliveryState] | [pole: string, state: DeliveryState, reason: string];

export type BroadcastServerMessage =
  /** On connect (and after a slow client drained): scheduled and active jobs, and those ended in the last hour. */
  | { type: 'broadcasts.snapshot'; broadcasts: BroadcastJob[] }
  | { type: 'broadcast.created'; broadcast: BroadcastJob }
  /** A job's status, run or schedule changed (a run started; a daily run ended and the next is scheduled). */
  | { type: 'broadcast.updated'; broadcast: BroadcastJob }
  /**
   * Per-pole progress, coalesced per job (at most one every gateway.broadcast.progressIntervalMs):
   * the counts of the run after the changes, and the latest state of each pole that changed.
   */
  | { type: 'broadcast.progress'; id: string; run: number; total: number; counts: DeliveryCounts; changes: PoleChange[] }
  /** The job ended (finished or cancelled): always sent, never coalesced away. */
  | { type: 'broadcast.finished'; broadcast: BroadcastJob };

export function emptyCounts(): DeliveryCounts {
  return { queued: 0, sent: 0, accepted: 0, playing: 0, done: 0, failed: 0, expired: 0, preempted: 0, cancelled: 0 };
}
