/**
 * One simulated thermal PTZ camera: its identity, PTZ head, alarm properties and pull-point
 * subscriptions. No I/O here — the fleet server (fleet.ts) speaks HTTP for it — so the scenario
 * player and tests drive it directly: raise a fire, take it offline, flood its event queue.
 */
import { createHash } from 'node:crypto';
import type { Credentials } from './auth.js';
import { notification, PullPoint, type NotificationMessage, type PropertyOperation } from './events.js';
import { DEFAULT_PRESETS, PtzHead, mod360, type PtzLimits, type PtzPreset, type PtzStatus } from './ptz.js';
import {
  ALARM_KINDS,
  MOTION_TOPIC,
  VENDOR_PROFILES,
  type AlarmKind,
  type AlarmTopic,
  type CameraVendor,
  type VendorProfile,
} from './vendors.js';

/** What the simulator needs to know about a camera; `cameraSpecsFromLedger` builds these. */
export interface CameraSpec {
  id: string;
  name?: string;
  /** bearing (° true) the camera faces at pan x = 0 — the ledger's heading_deg; default 0 */
  headingDeg?: number;
  /** where the camera points at start; default its heading */
  initialBearingDeg?: number;
  /** default: the fleet's vendor */
  vendor?: CameraVendor;
  /** WGS-84, shown in scopes */
  lat?: number;
  lon?: number;
  /** this camera's clock runs ahead (+) or behind (−) the fleet clock; clients must time-shift */
  clockOffsetMs?: number;
  /** this camera's own account instead of the fleet's */
  credentials?: Credentials;
}

export interface RaiseFireInput {
  kind: AlarmKind;
  /**
   * Bearing (° true) from the camera to the fire. The camera stops and centres it (pan is set to
   * this bearing), as fire cameras stop their cruise on an alarm. Default: where it points now.
   */
  bearingDeg?: number;
  /** 0–1; default 0.9 */
  confidence?: number;
  /** hot-spot temperature, °C; default 120 for kind 'temperature', otherwise not reported */
  temperatureC?: number;
}

export interface ActiveAlarm {
  kind: AlarmKind;
  bearingDeg: number;
  confidence: number;
  temperatureC?: number;
  sinceMs: number;
}

export interface RaisedAlarm {
  topic: string;
  /** false when the kind's detection is switched off (nothing was sent) */
  reported: boolean;
  bearingDeg: number;
  /** the Data items as sent, e.g. [['IsFireAlarm','true'],['Azimuth','635'],…] */
  data: ReadonlyArray<readonly [string, string]>;
}

/** 'silent': requests hang unanswered (power loss); 'reset': connections are reset at once. */
export type OfflineMode = 'silent' | 'reset';

export interface SimCamera {
  readonly id: string;
  readonly name: string;
  readonly vendor: VendorProfile;
  readonly headingDeg: number;
  readonly serialNumber: string;
  /** WS-Discovery endpoint reference, `urn:uuid:…` */
  readonly endpointReference: string;
  readonly offline: OfflineMode | false;
  readonly activeAlarms: ReadonlyMap<AlarmKind, ActiveAlarm>;
  readonly subscriptionCount: number;
  readonly stats: CameraStats;
  /** Raises (or updates) an alarm property: one `Changed` message with state true. */
  raiseFire(input: RaiseFireInput): RaisedAlarm;
  /** Clears one kind, or every active alarm: `Changed` with state false. */
  clearFire(kind?: AlarmKind): void;
  /** Switches a detection rule off (`Deleted`) or on again (`Initialized`). */
  setDetection(kind: AlarmKind, enabled: boolean): void;
  setOffline(offline: boolean, mode?: OfflineMode): void;
  /** Offline ('reset') for `downMs`, every subscription lost, as after a power cycle. */
  reboot(downMs: number): void;
  /**
   * Event flood fault: `n` motion changes (wind in the trees), or `n` fire on/off flaps with
   * kind 'fire'. Each subscription keeps its newest `maxQueuedMessages`; older ones are dropped.
   */
  flood(n: number, opts?: { kind?: 'motion' | 'fire' }): void;
  /** Current pan bearing, ° true. */
  readonly panBearingDeg: number;
  /** Points the camera at a bearing at once. */
  setPanBearing(bearingDeg: number): void;
  /** Pans continuously at `degPerSec` (negative: anticlockwise) until stopped; 0 stops. */
  cruise(degPerSec: number): void;
  ptzStatus(): PtzStatus;
  /** The camera's clock, ms. */
  clock(): number;
}

export interface CameraStats {
  soapRequests: number;
  subscriptionsCreated: number;
  pulls: number;
  eventsSent: number;
  eventsDropped: number;
}

/** What a camera needs from its fleet. */
export interface CameraContext {
  now: () => number;
  seed: number;
  defaultVendor: CameraVendor;
  ptzLimits: PtzLimits;
  maxQueuedMessages: number;
  maxSubscriptions: number;
}

export const VIDEO_SOURCE_TOKEN = 'VideoSource_1';
export const VIDEO_SOURCE_CONFIG_TOKEN = 'VideoSourceConfig_1';
export const ANALYTICS_CONFIG_TOKEN = 'VideoAnalyticsConfig_1';

function hashHex(seed: number, text: string): string {
  return createHash('sha1').update(`${seed >>> 0}:${text}`).digest('hex');
}

function formatScaled(value: number, decimals: number): string {
  return String(Number(value.toFixed(decimals)));
}

export class SimCameraImpl implements SimCamera {
  readonly id: string;
  readonly name: string;
  readonly vendor: VendorProfile;
  readonly headingDeg: number;
  readonly serialNumber: string;
  readonly endpointReference: string;
  readonly macAddress: string;
  readonly ptz: PtzHead;
  readonly stats: CameraStats = { soapRequests: 0, subscriptionsCreated: 0, pulls: 0, eventsSent: 0, eventsDropped: 0 };
  readonly #ctx: CameraContext;
  readonly #clockOffsetMs: number;
  readonly credentials: Credentials | undefined;
  readonly spec: CameraSpec;
  #alarms = new Map<AlarmKind, ActiveAlarm>();
  #disabled: Set<AlarmKind> | undefined;
  #motion = false;
  #subscriptions: Map<number, PullPoint> | undefined;
  #nextSubscription = 1;
  #offline: OfflineMode | false = false;
  #rebootTimer: NodeJS.Timeout | undefined;
  /** undefined until a preset is set or removed: then a private copy of the defaults */
  #presets: PtzPreset[] | undefined;
  #home: { bearingDeg: number; tiltDeg: number; zoom: number };
  /** set by the fleet: told when the camera goes dark, to reset connections in flight */
  onOffline: ((mode: OfflineMode) => void) | undefined;

  constructor(spec: CameraSpec, ctx: CameraContext) {
    this.spec = spec;
    this.id = spec.id;
    this.name = spec.name ?? spec.id;
    this.#ctx = ctx;
    this.vendor = VENDOR_PROFILES[spec.vendor ?? ctx.defaultVendor];
    this.headingDeg = mod360(spec.headingDeg ?? 0);
    this.#clockOffsetMs = spec.clockOffsetMs ?? 0;
    this.credentials = spec.credentials;
    const h = hashHex(ctx.seed, spec.id);
    this.serialNumber = `${this.vendor.model}-${h.slice(0, 10).toUpperCase()}`;
    // RFC 4122 layout (version 5 style) from the hash: stable across runs for the same seed.
    this.endpointReference = `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
    this.macAddress = `02:${h.slice(32, 34)}:${h.slice(34, 36)}:${h.slice(36, 38)}:${h.slice(38, 40)}:${h.slice(0, 2)}`;
    this.ptz = new PtzHead(this.headingDeg, ctx.ptzLimits, ctx.now, spec.initialBearingDeg ?? this.headingDeg);
    this.#home = { bearingDeg: this.headingDeg, tiltDeg: 0, zoom: 0 };
  }

  clock(): number {
    return this.#ctx.now() + this.#clockOffsetMs;
  }

  get offline(): OfflineMode | false {
    return this.#offline;
  }
  get activeAlarms(): ReadonlyMap<AlarmKind, ActiveAlarm> {
    return this.#alarms;
  }
  get subscriptionCount(): number {
    return this.#subscriptions?.size ?? 0;
  }
  get panBearingDeg(): number {
    return this.ptz.bearingDeg;
  }
  setPanBearing(bearingDeg: number): void {
    this.ptz.setBearing(bearingDeg);
  }
  cruise(degPerSec: number): void {
    if (degPerSec === 0) this.ptz.stop(true, false);
    else this.ptz.continuousMove({ x: degPerSec / this.#ctx.ptzLimits.maxPanDegPerSec });
  }
  ptzStatus(): PtzStatus {
    return this.ptz.status();
  }

  // ---- presets ---------------------------------------------------------------------------------

  get presets(): readonly PtzPreset[] {
    return this.#presets ?? DEFAULT_PRESETS;
  }
  #ownPresets(): PtzPreset[] {
    this.#presets ??= DEFAULT_PRESETS.map((p) => ({ ...p }));
    return this.#presets;
  }
  setPreset(name: string | undefined, token: string | undefined): string {
    const presets = this.#ownPresets();
    const s = this.ptz.status();
    const at = { bearingDeg: s.bearingDeg, tiltDeg: s.tiltDeg, zoom: s.zoom };
    const existing = token === undefined ? undefined : presets.find((p) => p.token === token);
    if (existing) {
      Object.assign(existing, at, name ? { name } : {});
      return existing.token;
    }
    let n = presets.length + 1;
    while (presets.some((p) => p.token === String(n))) n++;
    const newToken = token ?? String(n);
    presets.push({ token: newToken, name: name ?? `Preset ${newToken}`, ...at });
    return newToken;
  }
  removePreset(token: string): boolean {
    const presets = this.#ownPresets();
    const i = presets.findIndex((p) => p.token === token);
    if (i < 0) return false;
    presets.splice(i, 1);
    return true;
  }
  get home(): { bearingDeg: number; tiltDeg: number; zoom: number } {
    return this.#home;
  }
  setHome(): void {
    const s = this.ptz.status();
    this.#home = { bearingDeg: s.bearingDeg, tiltDeg: s.tiltDeg, zoom: s.zoom };
  }

  // ---- alarms and events -----------------------------------------------------------------------

  topicOf(kind: AlarmKind): AlarmTopic {
    return this.vendor.topics[kind];
  }

  sourceItems(t: AlarmTopic): Array<readonly [string, string]> {
    return t.source === 'rule'
      ? [
          ['VideoSourceConfigurationToken', VIDEO_SOURCE_CONFIG_TOKEN],
          ['VideoAnalyticsConfigurationToken', ANALYTICS_CONFIG_TOKEN],
          ['Rule', t.rule],
        ]
      : [['Source', VIDEO_SOURCE_TOKEN]];
  }

  alarmData(kind: AlarmKind, alarm: ActiveAlarm | undefined): Array<readonly [string, string]> {
    const v = this.vendor;
    const data: Array<readonly [string, string]> = [[v.topics[kind].stateItem, alarm ? 'true' : 'false']];
    if (!alarm) return data;
    const scaled = Number((mod360(alarm.bearingDeg) * v.bearing.scale).toFixed(v.bearing.decimals));
    data.push([v.bearing.item, formatScaled(scaled >= 360 * v.bearing.scale ? 0 : scaled, v.bearing.decimals)]);
    data.push([v.confidence.item, formatScaled(alarm.confidence * v.confidence.scale, v.confidence.decimals)]);
    if (alarm.temperatureC !== undefined) {
      const t = v.temperature.unit === 'K' ? alarm.temperatureC + 273.15 : alarm.temperatureC;
      data.push([v.temperature.item, formatScaled(t, v.temperature.decimals)]);
    }
    return data;
  }

  #publish(message: NotificationMessage): void {
    if (!this.#subscriptions) return;
    for (const sub of this.#subscriptions.values()) {
      const dropped = sub.stats.dropped;
      sub.push(message);
      this.stats.eventsDropped += sub.stats.dropped - dropped;
    }
  }

  #property(t: AlarmTopic, operation: PropertyOperation, data: Array<readonly [string, string]> | undefined): NotificationMessage {
    return notification(t.topic, this.clock(), operation, this.sourceItems(t), data);
  }

  /** The Initialized messages a new subscription (or a SetSynchronizationPoint) starts with. */
  initialMessages(): NotificationMessage[] {
    const out: NotificationMessage[] = [];
    for (const kind of ALARM_KINDS) {
      if (this.#disabled?.has(kind)) continue;
      out.push(this.#property(this.topicOf(kind), 'Initialized', this.alarmData(kind, this.#alarms.get(kind))));
    }
    out.push(this.#property(MOTION_TOPIC, 'Initialized', [[MOTION_TOPIC.stateItem, String(this.#motion)]]));
    return out;
  }

  raiseFire(input: RaiseFireInput): RaisedAlarm {
    if (input.bearingDeg !== undefined) {
      if (!Number.isFinite(input.bearingDeg)) throw new RangeError(`bearingDeg ${input.bearingDeg}`);
      this.ptz.setBearing(input.bearingDeg);
    }
    const confidence = input.confidence ?? 0.9;
    if (!(confidence >= 0 && confidence <= 1)) throw new RangeError(`confidence ${confidence} is outside 0..1`);
    const temperatureC = input.temperatureC ?? (input.kind === 'temperature' ? 120 : undefined);
    const alarm: ActiveAlarm = {
      kind: input.kind,
      bearingDeg: this.ptz.bearingDeg,
      confidence,
      ...(temperatureC !== undefined ? { temperatureC } : {}),
      sinceMs: this.#alarms.get(input.kind)?.sinceMs ?? this.clock(),
    };
    this.#alarms.set(input.kind, alarm);
    const t = this.topicOf(input.kind);
    const data = this.alarmData(input.kind, alarm);
    const reported = !this.#disabled?.has(input.kind);
    if (reported) this.#publish(this.#property(t, 'Changed', data));
    return { topic: t.topic, reported, bearingDeg: alarm.bearingDeg, data };
  }

  clearFire(kind?: AlarmKind): void {
    for (const k of kind ? [kind] : [...this.#alarms.keys()]) {
      if (!this.#alarms.delete(k)) continue;
      if (!this.#disabled?.has(k)) this.#publish(this.#property(this.topicOf(k), 'Changed', this.alarmData(k, undefined)));
    }
  }

  setDetection(kind: AlarmKind, enabled: boolean): void {
    const disabled = this.#disabled?.has(kind) ?? false;
    if (enabled === !disabled) return;
    const t = this.topicOf(kind);
    if (enabled) {
      this.#disabled?.delete(kind);
      this.#publish(this.#property(t, 'Initialized', this.alarmData(kind, this.#alarms.get(kind))));
    } else {
      (this.#disabled ??= new Set()).add(kind);
      this.#publish(this.#property(t, 'Deleted', undefined));
    }
  }

  flood(n: number, opts: { kind?: 'motion' | 'fire' } = {}): void {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`flood(${n})`);
    for (let i = 0; i < n; i++) {
      if (opts.kind === 'fire') {
        if (this.#alarms.has('fire')) this.clearFire('fire');
        else this.raiseFire({ kind: 'fire', confidence: 0.35 });
      } else {
        this.#motion = !this.#motion;
        this.#publish(this.#property(MOTION_TOPIC, 'Changed', [[MOTION_TOPIC.stateItem, String(this.#motion)]]));
      }
    }
  }

  // ---- subscriptions ---------------------------------------------------------------------------

  /** Undefined when the camera already has its maximum number of subscriptions. */
  createSubscription(accepts: (topic: string) => boolean, terminationMs: number): PullPoint | undefined {
    this.expireSubscriptions();
    this.#subscriptions ??= new Map();
    if (this.#subscriptions.size >= this.#ctx.maxSubscriptions) return undefined;
    const sub = new PullPoint(this.#nextSubscription++, accepts, terminationMs, this.#ctx.maxQueuedMessages);
    this.#subscriptions.set(sub.id, sub);
    this.stats.subscriptionsCreated++;
    for (const m of this.initialMessages()) sub.push(m);
    return sub;
  }

  /** A live subscription, or undefined if it never existed, was unsubscribed or has expired. */
  subscription(id: number): PullPoint | undefined {
    const sub = this.#subscriptions?.get(id);
    if (sub && sub.terminationMs <= this.clock()) {
      this.dropSubscription(id);
      return undefined;
    }
    return sub;
  }

  dropSubscription(id: number): boolean {
    const sub = this.#subscriptions?.get(id);
    if (!sub) return false;
    sub.close();
    this.#subscriptions!.delete(id);
    if (this.#subscriptions!.size === 0) this.#subscriptions = undefined;
    return true;
  }

  expireSubscriptions(): void {
    if (!this.#subscriptions) return;
    const now = this.clock();
    for (const [id, sub] of this.#subscriptions) if (sub.terminationMs <= now) this.dropSubscription(id);
  }

  /** Re-sends Initialized messages to one subscription (SetSynchronizationPoint). */
  synchronize(sub: PullPoint): void {
    for (const m of this.initialMessages()) sub.push(m);
  }

  // ---- faults ----------------------------------------------------------------------------------

  setOffline(offline: boolean, mode: OfflineMode = 'silent'): void {
    this.#offline = offline ? mode : false;
    if (!offline) return;
    if (this.#subscriptions) for (const sub of this.#subscriptions.values()) sub.abandonWaiter();
    this.onOffline?.(mode);
  }

  reboot(downMs: number): void {
    if (this.#subscriptions) for (const id of [...this.#subscriptions.keys()]) this.dropSubscription(id);
    this.setOffline(true, 'reset');
    if (this.#rebootTimer) clearTimeout(this.#rebootTimer);
    this.#rebootTimer = setTimeout(() => {
      this.#rebootTimer = undefined;
      this.setOffline(false);
    }, downMs);
    this.#rebootTimer.unref();
  }

  dispose(): void {
    if (this.#rebootTimer) clearTimeout(this.#rebootTimer);
    if (this.#subscriptions) for (const id of [...this.#subscriptions.keys()]) this.dropSubscription(id);
  }
}
