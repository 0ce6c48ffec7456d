/**
 * Incidents in the browser: the live set from `/ws` (snapshot, then every change), today's fire
 * danger, the ring when a dispatch names the signed-in user, and the API calls for decisions.
 * Views (inbox, incident card, phone view, map layer) subscribe to one feed.
 *
 * New incidents "stay until handled": an incident is in the open set while its status is open,
 * whatever the user clicks; a new one is marked unseen until its card was opened, and rings.
 */
import type { FireDangerStatus, Incident, IncidentDetail, IncidentServerMessage } from '../../protocol/incidents.js';
import { requestJson } from './api.js';
import { isObject, type Json } from './json.js';

const OPEN = new Set(['new', 'dispatched', 'acknowledged', 'on_site']);
export const isOpenIncident = (i: Incident) => OPEN.has(i.status);


/** Enough of a shape check that a version mismatch shows as a dropped message, not a broken page. */
export function isIncident(v: unknown): v is Incident {
  return (
    isObject(v) &&
    typeof v.id === 'string' &&
    typeof v.status === 'string' &&
    typeof v.category === 'string' &&
    typeof v.kind === 'string' &&
    typeof v.title === 'string' &&
    typeof v.createdAt === 'number' &&
    Array.isArray(v.devices) &&
    Array.isArray(v.cameras) &&
    Array.isArray(v.nearestTanks) &&
    Array.isArray(v.nearestPoles)
  );
}

function isFireDanger(v: unknown): v is FireDangerStatus {
  return isObject(v) && typeof v.day === 'string' && (v.level === null || typeof v.level === 'number') && typeof v.source === 'string';
}

/** The incident messages of `/ws` (called by api.ts for types it does not know itself). */
export function parseIncidentMessage(msg: Json): IncidentServerMessage | null {
  switch (msg.type) {
    case 'incidents.snapshot':
      return Array.isArray(msg.incidents) ? { type: 'incidents.snapshot', incidents: msg.incidents.filter(isIncident) } : null;
    case 'incident':
      return isIncident(msg.incident) ? { type: 'incident', incident: msg.incident, isNew: msg.isNew === true } : null;
    case 'incident.dispatch':
      return typeof msg.incidentId === 'string' && typeof msg.level === 'string' && typeof msg.title === 'string' && typeof msg.ts === 'number'
        ? { type: 'incident.dispatch', incidentId: msg.incidentId, level: msg.level as never, title: msg.title, ts: msg.ts }
        : null;
    case 'fireDanger':
      return isFireDanger(msg.fireDanger) ? { type: 'fireDanger', fireDanger: msg.fireDanger } : null;
    default:
      return null;
  }
}

// ---- sound ------------------------------------------------------------------------------------

const MUTE_KEY = 'greenshield.mute';

/**
 * A short two-tone alarm made with Web Audio (no file to load). Browsers allow sound only after
 * the user interacted with the page; signing in is such a gesture, so it normally just works.
 */
export class AlarmSound {
  #ctx: AudioContext | null = null;
  /** The AudioContext time when the alarm that is sounding ends. */
  #soundingUntil = 0;
  #muted: boolean;
  /** How many times it sounded (the browser tests read it: headless Chromium has no speakers). */
  played = 0;

  constructor() {
    let saved: string | null = null;
    try {
      saved = window.localStorage.getItem(MUTE_KEY);
    } catch {
      // no storage: not muted
    }
    this.#muted = saved === '1';
  }

  get muted(): boolean {
    return this.#muted;
  }

  setMuted(muted: boolean): void {
    this.#muted = muted;
    try {
      window.localStorage.setItem(MUTE_KEY, muted ? '1' : '0');
    } catch {
      // not remembered
    }
  }

  /**
   * Starts the audio output ahead of the first alarm (left suspended until one plays): creating it
   * is the slow part, 20–300 ms of the page's main thread, and the first alarm would stall the map.
   */
  warm(): void {
    if (this.#muted || this.#ctx) return;
    try {
      this.#ctx = new AudioContext();
      void this.#ctx.suspend();
    } catch (err) {
      console.warn('alarm sound unavailable', err);
    }
  }

  play(urgent: boolean): void {
    if (this.#muted) return;
    // One alarm at a time: a burst of new incidents (tens a second when many tanks run low) would
    // otherwise stack hundreds of overlapping beeps, and build an audio graph for each.
    if (this.#ctx && this.#ctx.currentTime < this.#soundingUntil) return;
    this.played++;
    try {
      this.#ctx ??= new AudioContext();
      const ctx = this.#ctx;
      void ctx.resume();
      const beeps = urgent ? 3 : 1;
      this.#soundingUntil = ctx.currentTime + (beeps - 1) * 0.5 + 0.35;
      for (let i = 0; i < beeps; i++) {
        for (const [j, freq] of [880, 660].entries()) {
          const start = ctx.currentTime + i * 0.5 + j * 0.18;
          const osc = ctx.createOscillator();
          const gain = ctx.createGain();
          osc.frequency.value = freq;
          gain.gain.setValueAtTime(0.0001, start);
          gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
          gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.16);
          osc.connect(gain).connect(ctx.destination);
          osc.start(start);
          osc.stop(start + 0.17);
        }
      }
    } catch (err) {
      console.warn('alarm sound unavailable', err);
    }
  }
}

// ---- the feed ---------------------------------------------------------------------------------

export type FeedEvent =
  | { kind: 'snapshot' }
  | { kind: 'incident'; incident: Incident; isNew: boolean }
  | { kind: 'ring'; incidentId: string; title: string }
  | { kind: 'fireDanger'; status: FireDangerStatus };

export class IncidentFeed {
  /** Open incidents, plus those closed while this page was open (until the page reloads). */
  readonly incidents = new Map<string, Incident>();
  readonly unseen = new Set<string>();
  fireDanger: FireDangerStatus | null = null;
  readonly sound = new AlarmSound();
  readonly #listeners = new Set<(e: FeedEvent) => void>();

  /** Takes a `/ws` message; false when it is not an incident message. */
  handle(msg: { type: string }): boolean {
    const m = msg as IncidentServerMessage;
    switch (m.type) {
      case 'incidents.snapshot': {
        const fresh = new Set(m.incidents.map((i) => i.id));
        for (const [id, i] of this.incidents) if (!fresh.has(id) && isOpenIncident(i)) this.incidents.delete(id);
        for (const i of m.incidents) this.incidents.set(i.id, i);
        this.#emit({ kind: 'snapshot' });
        return true;
      }
      case 'incident': {
        const prev = this.incidents.get(m.incident.id);
        // Out-of-order safety: never go back to an older state of the same incident.
        if (prev && prev.updatedAt > m.incident.updatedAt) return true;
        this.incidents.set(m.incident.id, m.incident);
        if (m.isNew) {
          this.unseen.add(m.incident.id);
          this.sound.play(m.incident.severity === 'critical');
        }
        if (!isOpenIncident(m.incident)) this.unseen.delete(m.incident.id);
        this.#emit({ kind: 'incident', incident: m.incident, isNew: m.isNew });
        return true;
      }
      case 'incident.dispatch':
        this.sound.play(true);
        this.#emit({ kind: 'ring', incidentId: m.incidentId, title: m.title });
        return true;
      case 'fireDanger':
        this.fireDanger = m.fireDanger;
        this.#emit({ kind: 'fireDanger', status: m.fireDanger });
        return true;
      default:
        return false;
    }
  }

  /** Open incidents, most urgent first: unacknowledged before acknowledged, critical first, newest first. */
  open(): Incident[] {
    const rank = (i: Incident) => (i.status === 'new' || i.status === 'dispatched' ? 0 : 1) * 10 + (i.severity === 'critical' ? 0 : i.severity === 'warning' ? 1 : 2);
    return Array.from(this.incidents.values())
      .filter(isOpenIncident)
      .sort((a, b) => rank(a) - rank(b) || b.createdAt - a.createdAt);
  }

  markSeen(id: string): void {
    if (this.unseen.delete(id)) this.#emit({ kind: 'snapshot' });
  }

  onChange(listener: (e: FeedEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  clear(): void {
    this.incidents.clear();
    this.unseen.clear();
    this.fireDanger = null;
    this.#emit({ kind: 'snapshot' });
  }

  #emit(e: FeedEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        console.error('incident listener failed', err);
      }
    }
  }
}

// ---- API --------------------------------------------------------------------------------------

export type IncidentActionPath = 'acknowledge' | 'on-site' | 'resolve' | 'false-alarm' | 'notes' | 'escalate';

export async function fetchIncident(id: string, signal?: AbortSignal): Promise<IncidentDetail> {
  const body = await requestJson(`/api/incidents/${encodeURIComponent(id)}`, { signal });
  if (!isIncident(body) || !Array.isArray((body as unknown as Json).timeline)) throw new Error(`unexpected incident shape for ${id}`);
  return body as IncidentDetail;
}

export async function actOnIncident(id: string, action: IncidentActionPath, body: { note?: string; reason?: string } = {}): Promise<IncidentDetail> {
  return (await requestJson(`/api/incidents/${encodeURIComponent(id)}/${action}`, { method: 'POST', body })) as IncidentDetail;
}

/** Sends a photo from the phone: the file is the request body. */
export async function uploadIncidentPhoto(id: string, file: Blob, note: string): Promise<IncidentDetail> {
  const query = note ? `?${new URLSearchParams({ note }).toString()}` : '';
  const res = await fetch(`/api/incidents/${encodeURIComponent(id)}/photos${query}`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': file.type || 'image/jpeg' },
    body: file,
  });
  const body = (await res.json().catch(() => null)) as Json | null;
  if (!res.ok) throw new Error(typeof body?.message === 'string' ? body.message : `HTTP ${res.status}`);
  return body as unknown as IncidentDetail;
}

export async function setFireDanger(level: number | null, note?: string): Promise<FireDangerStatus> {
  return (await requestJson('/api/fire-danger', { method: 'PUT', body: { level, ...(note ? { note } : {}) } })) as FireDangerStatus;
}

export function photoUrl(incidentId: string, name: string): string {
  return `/api/incidents/${encodeURIComponent(incidentId)}/photos/${encodeURIComponent(name)}`;
}

/** Where an incident is, as one point (the fix, the device, or the middle of a bearing line). */
export function incidentPoint(i: Incident): { lat: number; lon: number } | null {
  const l = i.location;
  if (!l) return null;
  if (l.method === 'bearing_line') return { lat: (l.from.lat + l.to.lat) / 2, lon: (l.from.lon + l.to.lon) / 2 };
  return { lat: l.lat, lon: l.lon };
}
