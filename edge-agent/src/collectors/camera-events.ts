/**
 * ONVIF camera alarms → protocol events: the per-vendor topic table, the reading of one
 * notification as the `onvif` client delivers it, and the per-camera limiter that keeps an event
 * flood off the uplink (docs/devices/camera-agent.md).
 *
 * Real fire cameras disagree on topics, item names and units (docs/devices/camera-onvif.md,
 * "Event topics per vendor"), so alarms are mapped by (vendor, topic) — never by a pattern such
 * as "topic contains FireAlarm", which misses a generic camera's `VideoSource/RadiometryAlarm`
 * and would take a hikvision-like camera's temperature alarm for a fire.
 */
import type { EventType } from '../../../protocol/payloads.js';

// ---- the mapping table --------------------------------------------------------------------------

/** A numeric Data item: value in the protocol's unit = native value ÷ `scale`. */
export interface ScaledItem {
  item: string;
  scale: number;
}

export interface TemperatureItem {
  item: string;
  unit: 'C' | 'K' | 'F';
}

export interface TopicMapping {
  /** the protocol event type */
  type: EventType;
  /** Data item holding the boolean state */
  stateItem: string;
  /**
   * 'state' (default): a lasting condition — true opens it (`start`), false closes it (`end`).
   * 'pulse': a one-off — true sends a `pulse`, false is ignored.
   */
  kind?: 'state' | 'pulse';
  /** severity of start and pulse; `end` is always 'info'. Default: critical for fire/smoke, else warning */
  severity?: 'info' | 'warning' | 'critical';
  /** per-topic overrides of the vendor's items */
  bearing?: ScaledItem;
  confidence?: ScaledItem;
  temperature?: TemperatureItem;
}

export interface VendorEventMapping {
  /** concrete topic as the camera sends it (`tns1:` prefix) → what it means */
  topics: Readonly<Record<string, TopicMapping>>;
  /** bearing to the alarm, degrees true after ÷ scale */
  bearing?: ScaledItem;
  /** detector confidence, 0–1 after ÷ scale */
  confidence?: ScaledItem;
  /** hot-spot temperature */
  temperature?: TemperatureItem;
}

/**
 * The built-in table, one entry per ledger `vendor`. A deployment adds or corrects a vendor by
 * passing `eventMappings` to the collector (merged over these, per vendor); see
 * docs/devices/camera-agent.md. Motion (`tns1:VideoSource/MotionAlarm`) is deliberately absent:
 * wind in the trees is not a fire, and unmapped topics are dropped and counted.
 */
export const CAMERA_EVENT_MAPPINGS: Readonly<Record<string, VendorEventMapping>> = {
  generic: {
    topics: {
      'tns1:VideoSource/RadiometryAlarm': { type: 'fire', stateItem: 'State' },
      'tns1:RuleEngine/SmokeDetector/Smoke': { type: 'smoke', stateItem: 'IsSmoke' },
      'tns1:RuleEngine/Radiometry/TemperatureAlarm': { type: 'temperature_alarm', stateItem: 'State' },
    },
    bearing: { item: 'Bearing', scale: 1 },
    confidence: { item: 'Confidence', scale: 1 },
    // ONVIF radiometry reports kelvin.
    temperature: { item: 'Temperature', unit: 'K' },
  },
  'hikvision-like': {
    topics: {
      'tns1:RuleEngine/FireDetector/FireAlarm': { type: 'fire', stateItem: 'IsFireAlarm' },
      'tns1:RuleEngine/SmokeDetector/SmokeAlarm': { type: 'smoke', stateItem: 'IsSmokeAlarm' },
      'tns1:VideoSource/RadiometryAlarm': { type: 'temperature_alarm', stateItem: 'State' },
    },
    // ISAPI-style azimuth: tenths of a degree.
    bearing: { item: 'Azimuth', scale: 10 },
    confidence: { item: 'Confidence', scale: 100 },
    temperature: { item: 'CurrentTemperature', unit: 'C' },
  },
  'dahua-like': {
    topics: {
      'tns1:RuleEngine/FireWarning/FireAlarm': { type: 'fire', stateItem: 'State' },
      'tns1:RuleEngine/SmokeDetection/SmokeAlarm': { type: 'smoke', stateItem: 'State' },
      'tns1:RuleEngine/HeatImagingTemper/TemperatureAlarm': { type: 'temperature_alarm', stateItem: 'State' },
    },
    bearing: { item: 'PanAngle', scale: 1 },
    confidence: { item: 'Confidence', scale: 100 },
    temperature: { item: 'Temperature', unit: 'C' },
  },
};

/** The built-in table with a deployment's additions: per vendor, its topics merged over ours. */
export function mergeEventMappings(
  extra: Readonly<Record<string, Partial<VendorEventMapping>>> | undefined,
  base: Readonly<Record<string, VendorEventMapping>> = CAMERA_EVENT_MAPPINGS,
): Record<string, VendorEventMapping> {
  const out: Record<string, VendorEventMapping> = { ...base };
  for (const [vendor, m] of Object.entries(extra ?? {})) {
    const prev = out[vendor];
    out[vendor] = {
      ...prev,
      ...m,
      topics: { ...prev?.topics, ...m.topics },
    };
    for (const [topic, t] of Object.entries(out[vendor].topics)) {
      if (typeof t.stateItem !== 'string' || t.stateItem === '') throw new TypeError(`event mapping ${vendor} ${topic}: stateItem is required`);
    }
    for (const s of [out[vendor].bearing, out[vendor].confidence]) {
      if (s && !(s.scale > 0)) throw new RangeError(`event mapping ${vendor}: scale must be positive`);
    }
  }
  return out;
}

// ---- one notification ---------------------------------------------------------------------------

export interface OnvifNotification {
  topic: string;
  /** PropertyOperation: Initialized | Changed | Deleted (or absent for non-property events) */
  operation: string | undefined;
  /** Data SimpleItems by name, values as the client typed them (booleans, numbers, strings) */
  data: Map<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const listOf = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

/**
 * Reads a message as `cam.on('event', m)` delivers it: `m.topic._` (or a plain string when the
 * element had no attributes), `m.message.message.$.PropertyOperation`, and
 * `m.message.message.data.simpleItem` — an object for one item, an array for several.
 */
export function readNotification(raw: unknown): OnvifNotification | undefined {
  if (!isObject(raw)) return undefined;
  const topicEl = raw.topic;
  const topic = typeof topicEl === 'string' ? topicEl : isObject(topicEl) && typeof topicEl._ === 'string' ? topicEl._ : undefined;
  if (!topic) return undefined;
  const outer = isObject(raw.message) ? raw.message : undefined;
  const msg = outer && isObject(outer.message) ? outer.message : undefined;
  const attrs = msg && isObject(msg.$) ? msg.$ : undefined;
  const operation = typeof attrs?.PropertyOperation === 'string' ? attrs.PropertyOperation : undefined;
  const data = new Map<string, unknown>();
  const dataEl = msg && isObject(msg.data) ? msg.data : undefined;
  for (const item of listOf(dataEl?.simpleItem)) {
    if (!isObject(item) || !isObject(item.$)) continue;
    const name = item.$.Name;
    if (typeof name === 'string') data.set(name, item.$.Value);
  }
  return { topic: topic.trim(), operation, data };
}

export interface AlarmDetails {
  bearingDeg?: number;
  confidence?: number;
  temperatureC?: number;
}

export type Interpretation =
  | { kind: 'alarm'; topic: string; mapping: TopicMapping; operation: string | undefined; active: boolean; details: AlarmDetails }
  | { kind: 'deleted'; topic: string; mapping: TopicMapping }
  | { kind: 'unmapped'; topic: string }
  | { kind: 'invalid'; topic: string; reason: string };

function asBoolean(v: unknown): boolean | undefined {
  if (v === true || v === 'true' || v === 1 || v === '1') return true;
  if (v === false || v === 'false' || v === 0 || v === '0') return false;
  return undefined;
}
function asNumber(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/** Degrees true in [0, 360), to 0.1°. */
export function normaliseBearing(deg: number): number {
  const r = round(((deg % 360) + 360) % 360, 1);
  return r >= 360 ? 0 : r;
}

function toCelsius(v: number, unit: TemperatureItem['unit']): number {
  return unit === 'K' ? v - 273.15 : unit === 'F' ? ((v - 32) * 5) / 9 : v;
}

/** What a notification means for one camera of `mapping`'s vendor. */
export function interpret(mapping: VendorEventMapping, n: OnvifNotification): Interpretation {
  const t = mapping.topics[n.topic];
  if (!t) return { kind: 'unmapped', topic: n.topic };
  if (n.operation === 'Deleted') return { kind: 'deleted', topic: n.topic, mapping: t };
  const active = asBoolean(n.data.get(t.stateItem));
  if (active === undefined) return { kind: 'invalid', topic: n.topic, reason: `no boolean ${t.stateItem} item` };
  const details: AlarmDetails = {};
  if (active) {
    const b = t.bearing ?? mapping.bearing;
    const bv = b ? asNumber(n.data.get(b.item)) : undefined;
    if (b && bv !== undefined) details.bearingDeg = normaliseBearing(bv / b.scale);
    const c = t.confidence ?? mapping.confidence;
    const cv = c ? asNumber(n.data.get(c.item)) : undefined;
    if (c && cv !== undefined) {
      const conf = cv / c.scale;
      if (conf >= 0 && conf <= 1) details.confidence = round(conf, 3);
    }
    const tm = t.temperature ?? mapping.temperature;
    const tv = tm ? asNumber(n.data.get(tm.item)) : undefined;
    if (tm && tv !== undefined) {
      const c2 = round(toCelsius(tv, tm.unit), 1);
      if (c2 >= -100 && c2 <= 2000) details.temperatureC = c2;
    }
  }
  return { kind: 'alarm', topic: n.topic, mapping: t, operation: n.operation, active, details };
}

// ---- the per-camera limiter ---------------------------------------------------------------------

export interface LimitedEvent {
  type: EventType;
  phase: 'start' | 'end' | 'pulse';
  /** when the underlying change was received (ms) */
  ts: number;
  details: AlarmDetails;
  source: string;
  severity: 'info' | 'warning' | 'critical';
  /** why, for ends and updates */
  note?: string;
}

export interface AlarmInput {
  type: EventType;
  kind: 'state' | 'pulse';
  active: boolean;
  details: AlarmDetails;
  source: string;
  severity: 'info' | 'warning' | 'critical';
  /** Initialized (a (re)subscription's current state) rather than a change */
  initialized: boolean;
  ts: number;
}

export interface LimiterCounters {
  /** mapped alarm messages seen */
  received: number;
  /** events handed on */
  forwarded: number;
  /** changes folded into a later event or flapped away by the rate limit */
  rateLimited: number;
  /** messages that changed nothing (a state already known, the same bearing again) */
  unchanged: number;
}

interface Deviation {
  ts: number;
  details: AlarmDetails;
  source: string;
  initialized: boolean;
}

interface Channel {
  type: EventType;
  severity: 'info' | 'warning' | 'critical';
  /** what the gateway was last told */
  reported: boolean;
  reportedDetails: AlarmDetails;
  /** what the camera says now */
  actual: boolean;
  actualDetails: AlarmDetails;
  actualSince: number;
  actualSource: string;
  /** the first change away from `reported` since the last event, not yet sent */
  deviation: Deviation | undefined;
  /** a bearing update not yet sent: when it arrived */
  updateTs: number | undefined;
  lastEmitAt: number;
  timer: NodeJS.Timeout | undefined;
  /** significant changes waiting for the next window */
  pending: number;
}

const bearingMoved = (a: AlarmDetails, b: AlarmDetails) =>
  a.bearingDeg !== undefined && b.bearingDeg !== undefined ? Math.abs(a.bearingDeg - b.bearingDeg) >= 0.1 : a.bearingDeg !== b.bearingDeg;

/**
 * At most one event per event type per `minGapMs` for one camera. Transitions are never lost:
 * an alarm that starts and ends inside one window is still sent as a start and, a window later,
 * an end. What a flood folds away are the flaps in between and intermediate bearings; the
 * gateway always ends up with the camera's current state and latest bearing.
 */
export class AlarmLimiter {
  readonly counters: LimiterCounters = { received: 0, forwarded: 0, rateLimited: 0, unchanged: 0 };
  readonly #channels = new Map<EventType, Channel>();
  readonly #minGapMs: number;
  readonly #emit: (e: LimitedEvent) => void;
  readonly #now: () => number;
  #closed = false;

  constructor(opts: { minGapMs: number; emit: (e: LimitedEvent) => void; now?: () => number }) {
    this.#minGapMs = Math.max(0, opts.minGapMs);
    this.#emit = opts.emit;
    this.#now = opts.now ?? Date.now;
  }

  /** Types with an alarm the gateway was told is open. */
  openTypes(): EventType[] {
    return [...this.#channels.values()].filter((c) => c.reported).map((c) => c.type);
  }

  input(a: AlarmInput): void {
    if (this.#closed) return;
    this.counters.received++;
    if (a.kind === 'pulse') return this.#pulse(a);
    let ch = this.#channels.get(a.type);
    if (!ch) {
      ch = {
        type: a.type,
        severity: a.severity,
        reported: false,
        reportedDetails: {},
        actual: false,
        actualDetails: {},
        actualSince: a.ts,
        actualSource: a.source,
        deviation: undefined,
        updateTs: undefined,
        lastEmitAt: -Infinity,
        timer: undefined,
        pending: 0,
      };
      this.#channels.set(a.type, ch);
    }
    ch.severity = a.severity;
    const flipped = a.active !== ch.actual;
    const moved = a.active && ch.actual && bearingMoved(a.details, ch.actualDetails);
    if (!flipped && !moved) {
      // Same state again; keep fresher confidence/temperature for the next event.
      if (a.active) ch.actualDetails = { ...ch.actualDetails, ...a.details };
      this.counters.unchanged++;
      return;
    }
    ch.actual = a.active;
    ch.actualSource = a.source;
    if (a.active) ch.actualDetails = a.details;
    if (flipped) ch.actualSince = a.ts;
    if (ch.actual !== ch.reported) {
      if (!ch.deviation) ch.deviation = { ts: a.ts, details: a.details, source: a.source, initialized: a.initialized };
      else if (a.active) ch.deviation.details = a.details; // a start carries the latest bearing
    } else if (moved) {
      ch.updateTs = a.ts;
    }
    ch.pending++;
    this.#flushOrWait(ch);
  }

  /** Sends whatever is waiting, ignoring the rate limit (the collector is stopping). */
  flushAll(): void {
    for (const ch of this.#channels.values()) {
      clearTimeout(ch.timer);
      ch.timer = undefined;
      for (let i = 0; i < 2 && (ch.deviation || ch.updateTs !== undefined); i++) this.#flush(ch);
    }
  }

  close(): void {
    this.#closed = true;
    for (const ch of this.#channels.values()) clearTimeout(ch.timer);
  }

  #pulseLast = new Map<EventType, number>();
  #pulse(a: AlarmInput): void {
    if (!a.active) {
      this.counters.unchanged++;
      return;
    }
    const now = this.#now();
    if (now - (this.#pulseLast.get(a.type) ?? -Infinity) < this.#minGapMs) {
      this.counters.rateLimited++;
      return;
    }
    this.#pulseLast.set(a.type, now);
    this.counters.forwarded++;
    this.#emit({ type: a.type, phase: 'pulse', ts: a.ts, details: a.details, source: a.source, severity: a.severity });
  }

  #flushOrWait(ch: Channel): void {
    const wait = ch.lastEmitAt + this.#minGapMs - this.#now();
    if (wait <= 0 && !ch.timer) {
      this.#flush(ch);
      return;
    }
    if (ch.timer) return;
    ch.timer = setTimeout(() => {
      ch.timer = undefined;
      if (this.#closed) return;
      this.#flush(ch);
    }, Math.max(0, wait));
    ch.timer.unref?.();
  }

  #flush(ch: Channel): void {
    const now = this.#now();
    let event: LimitedEvent | undefined;
    if (ch.deviation) {
      const d = ch.deviation;
      ch.deviation = undefined;
      if (!ch.reported) {
        event = {
          type: ch.type,
          phase: 'start',
          ts: d.ts,
          details: d.details,
          source: d.source,
          severity: ch.severity,
          ...(d.initialized ? { note: 'already active when the agent subscribed' } : {}),
        };
        ch.reported = true;
        ch.reportedDetails = d.details;
      } else {
        event = {
          type: ch.type,
          phase: 'end',
          ts: d.ts,
          details: {},
          source: d.source,
          severity: 'info',
          ...(d.initialized ? { note: 'cleared while the agent was not subscribed' } : {}),
        };
        ch.reported = false;
        ch.reportedDetails = {};
      }
      ch.updateTs = undefined;
      // It flapped back meanwhile: the opposite transition goes out in the next window.
      if (ch.actual !== ch.reported) {
        ch.deviation = { ts: ch.actualSince, details: ch.actualDetails, source: ch.actualSource, initialized: false };
      } else if (ch.actual && bearingMoved(ch.actualDetails, ch.reportedDetails)) {
        ch.updateTs = ch.actualSince;
      }
    } else if (ch.updateTs !== undefined && ch.reported && ch.actual) {
      if (bearingMoved(ch.actualDetails, ch.reportedDetails)) {
        event = {
          type: ch.type,
          phase: 'pulse',
          ts: ch.updateTs,
          details: ch.actualDetails,
          source: ch.actualSource,
          severity: ch.severity,
          note: 'update: the camera reports a new bearing',
        };
        ch.reportedDetails = ch.actualDetails;
      }
      ch.updateTs = undefined;
    } else {
      ch.updateTs = undefined;
    }
    // Everything folded into this event (or flapped back to what was reported) is a drop.
    const folded = ch.pending - (event ? 1 : 0);
    const stillWaiting = ch.deviation || ch.updateTs !== undefined ? 1 : 0;
    this.counters.rateLimited += Math.max(0, folded - stillWaiting);
    ch.pending = stillWaiting;
    if (!event) return;
    ch.lastEmitAt = now;
    this.counters.forwarded++;
    this.#emit(event);
    if (stillWaiting) this.#flushOrWait(ch);
  }
}
