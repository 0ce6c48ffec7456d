/**
 * The incident part of the operational store: incidents (a row per incident with its current
 * state), the signals that made them, their timeline and every dispatch. Writes that belong
 * together run inside `OperationalStore.transaction`.
 */
import type {
  Dispatch,
  FireDangerDay,
  Incident,
  IncidentCategory,
  IncidentStatus,
  SignalKind,
  TimelineEntry,
} from '../../../protocol/incidents.js';

export interface IncidentQuery {
  status?: readonly IncidentStatus[];
  category?: IncidentCategory;
  /** Only incidents in these grids (a grid worker's scope). */
  grids?: readonly string[];
  /** createdAt range, ms. */
  from?: number;
  to?: number;
  limit: number;
  offset: number;
}

export interface StoredSignal {
  incidentId: string;
  deviceId: string;
  kind: SignalKind;
  /** Device time of the signal. */
  ts: number;
  receivedAt: number;
  bearingDeg: number | null;
  confidence: number | null;
  value: number | null;
}

export interface IncidentStore {
  /** The next incident number of a day (1, 2, ...), for ids like INC-20261126-0001. */
  nextNumber(day: string): number;
  insert(incident: Incident): void;
  /** Replaces the stored state of an existing incident. */
  update(incident: Incident): void;
  get(id: string): Incident | undefined;
  list(q: IncidentQuery): { incidents: Incident[]; total: number };
  /** Every incident not yet resolved or dismissed, oldest first. */
  open(): Incident[];
  addSignal(signal: StoredSignal): void;
  signals(incidentId: string, limit: number): StoredSignal[];
  addTimeline(entry: Omit<TimelineEntry, 'id'>): TimelineEntry;
  timeline(incidentId: string): TimelineEntry[];
  addDispatch(dispatch: Omit<Dispatch, 'id'>): Dispatch;
  dispatches(incidentId: string): Dispatch[];
  readonly fireDanger: FireDangerStore;
}

export interface FireDangerStore {
  saveDay(day: FireDangerDay): void;
  getDay(day: string): FireDangerDay | undefined;
  /** Most recent first. */
  days(limit: number): FireDangerDay[];
}
