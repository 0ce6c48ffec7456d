/**
 * Incidents as the API and the dashboard see them (REST bodies and `/ws` messages).
 *
 * An incident is what the command center handles: one or more device signals (camera fire and
 * smoke alarms, a tank running dry, a camera gone dark) that belong together, located on the
 * map, dispatched to the grid that owns the place and followed until it is closed. See
 * docs/alerts.md for the rules, the states and escalation.
 */

export const INCIDENT_CATEGORIES = ['fire', 'water', 'device'] as const;
/** fire: smoke/fire seen by cameras; water: a tank low, dry or draining; device: a blind spot. */
export type IncidentCategory = (typeof INCIDENT_CATEGORIES)[number];

export const SIGNAL_KINDS = [
  'camera_fire',
  'camera_smoke',
  'camera_temperature',
  'tank_low',
  'tank_critical',
  'tank_falling',
  'device_offline',
] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];

export const INCIDENT_STATUSES = ['new', 'dispatched', 'acknowledged', 'on_site', 'resolved', 'false_alarm'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];
/** Statuses in which an incident is still open (on the inbox, escalating or being worked). */
export const OPEN_STATUSES: readonly IncidentStatus[] = ['new', 'dispatched', 'acknowledged', 'on_site'];

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const ESCALATION_LEVELS = ['grid', 'community', 'street', 'district'] as const;
/** grid worker → community governance center → street command center → district. */
export type EscalationLevel = (typeof ESCALATION_LEVELS)[number];

export interface LatLon {
  lat: number;
  lon: number;
}

/** Where the incident is. `triangulated` from two or more camera bearings; `bearing_line` from one. */
export type IncidentLocation =
  | { method: 'triangulated'; lat: number; lon: number; uncertaintyM: number; residualM: number; cameras: string[] }
  | { method: 'bearing_line'; cameraId: string; from: LatLon; to: LatLon; bearingDeg: number }
  /** The device's own position (tanks, a camera that went dark, an alarm without a bearing). */
  | { method: 'device'; lat: number; lon: number; deviceId: string };

export interface NearbyDevice {
  id: string;
  name: string;
  distanceM: number;
  status: 'online' | 'offline' | 'unknown';
  /** Tanks: live level, % (null if never heard). */
  levelPercent?: number | null;
}

/** One camera's view of a fire incident: its latest bearing. */
export interface IncidentCamera {
  id: string;
  name: string;
  lat: number;
  lon: number;
  bearingDeg: number | null;
  lastSignalAt: number;
  signals: number;
}

export interface Incident {
  id: string;
  category: IncidentCategory;
  /** The strongest signal kind seen so far (fire beats smoke). */
  kind: SignalKind;
  severity: Severity;
  status: IncidentStatus;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** Gateway time the first and the latest signal arrived (correlation windows use it: device clocks drift). */
  firstSignalAt: number;
  lastSignalAt: number;
  signalCount: number;
  devices: string[];
  cameras: IncidentCamera[];
  location: IncidentLocation | null;
  grid: string | null;
  gridName: string | null;
  community: string | null;
  nearestTanks: NearbyDevice[];
  nearestPoles: NearbyDevice[];
  /** Current escalation level and when it moves up if nobody acknowledges (null: stopped). */
  level: EscalationLevel;
  escalateAt: number | null;
  acknowledgedAt: number | null;
  acknowledgedBy: string | null;
  closedAt: number | null;
  closedBy: string | null;
  /** Why it was closed: the false-alarm reason, the resolution note, or `cleared` for a system close. */
  closeReason: string | null;
}

export const TIMELINE_ACTIONS = [
  'created',
  'signal',
  'located',
  'dispatched',
  'escalated',
  'acknowledged',
  'on_site',
  'note',
  'photo',
  'resolved',
  'false_alarm',
  'cleared',
  'reopened',
] as const;
export type TimelineAction = (typeof TIMELINE_ACTIONS)[number];

export interface TimelineEntry {
  id: number;
  incidentId: string;
  ts: number;
  /** Username, or `system` for the gateway's own steps. */
  actor: string;
  action: TimelineAction;
  detail: Record<string, unknown>;
}

export interface Dispatch {
  id: number;
  incidentId: string;
  ts: number;
  level: EscalationLevel;
  /** A username, or a roster contact's name when the contact has no account. */
  recipient: string;
  channel: string;
  status: 'sent' | 'failed';
  detail: string | null;
}

export interface IncidentDetail extends Incident {
  timeline: TimelineEntry[];
  dispatches: Dispatch[];
}

/** One day's fire danger rating (docs/alerts.md, "Fire danger"). */
export interface FireDangerDay {
  /** Site-local date, YYYY-MM-DD. */
  day: string;
  /** Site values at about 13:00 (median over weather stations); null without readings. */
  temperatureC: number | null;
  humidityPercent: number | null;
  dewPointC: number | null;
  rain24hMm: number | null;
  stations: number;
  angstrom: number | null;
  nesterov: number | null;
  /** The computed level 1..5 (null: no readings that day). */
  computedLevel: number | null;
  /** A duty officer's level for the day (from the weather bureau), which wins over the computed one. */
  manualLevel: number | null;
  manualBy: string | null;
  manualNote: string | null;
  updatedAt: number;
}

export interface FireDangerStatus {
  day: string;
  /** The level in force: manual if set, else computed; null before any rating exists. */
  level: number | null;
  source: 'manual' | 'computed' | 'previous_day' | 'none';
  name: { zh: string; en: string } | null;
  color: string | null;
  today: FireDangerDay | null;
  /** The latest site weather (median of the stations' latest readings within 2 h). */
  current: { temperatureC: number; humidityPercent: number; angstrom: number; stations: number } | null;
  history: FireDangerDay[];
}

export type IncidentServerMessage =
  /** On connect (and after a resync): every open incident this user may see. */
  | { type: 'incidents.snapshot'; incidents: Incident[] }
  /** An incident was created or changed; `isNew` is true exactly once per incident. */
  | { type: 'incident'; incident: Incident; isNew: boolean }
  /** A dispatch or escalation addressed to the signed-in user (their phone view rings). */
  | { type: 'incident.dispatch'; incidentId: string; level: EscalationLevel; title: string; ts: number }
  /** Today's fire danger level changed (a new day rated, or set by hand); also sent on connect. */
  | { type: 'fireDanger'; fireDanger: FireDangerStatus };
