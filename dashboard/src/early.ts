/**
 * What the page starts before the app bundle runs (boot.ts, loaded first by index.html) and the
 * app takes over: the session check, the site, the tank thresholds and the live feed's socket
 * with whatever it received meanwhile. The app bundle is ~450 kB: compiling and starting it takes
 * 0.3–0.6 s on a dashboard PC without a GPU, and these requests (and the gateway's device
 * snapshot) no longer wait for that. Types only here, plus the hand-over; no DOM, no imports that
 * would pull the app into boot.js.
 */
import type { DeviceView } from '../../protocol/ws.js';
import type { FeedConnection, FeedFrame } from './feed-connection.js';

/** A frame the early connection received: as it came, except the device snapshot, already decoded. */
export type EarlyFrame = FeedFrame | { kind: 'snapshot'; devices: DeviceView[] | null };

export interface EarlySocket {
  readonly conn: FeedConnection;
  /** Frames received before the app took the connection over, oldest first. */
  readonly frames: EarlyFrame[];
}

/** An HTTP answer with its body already parsed (null when there is none or it is not JSON). */
export interface JsonAnswer {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  readonly body: unknown;
}

/** Reads a response's JSON body; a missing or broken body is null (the status still tells). */
export async function readJsonAnswer(res: Response): Promise<JsonAnswer> {
  let body: unknown = null;
  if (res.status !== 204) {
    try {
      body = await res.json();
    } catch {
      // Not JSON (a proxy's error page) or cut off: the caller goes by the status.
    }
  }
  return { ok: res.ok, status: res.status, statusText: res.statusText, body };
}

export interface EarlyStart {
  /**
   * Session check, site and tank thresholds, as answered, bodies parsed as they arrive (while the
   * app bundle compiles); each rejects on a network failure and may be a 401.
   */
  readonly me: Promise<JsonAnswer>;
  readonly site: Promise<JsonAnswer>;
  readonly tanks: Promise<JsonAnswer>;
  readonly socket: EarlySocket | null;
}

declare global {
  interface Window {
    __gsEarly?: EarlyStart;
  }
}

/** Early requests in the order the app takes them; paths as the app's own requests use them. */
export const EARLY_PATHS = { me: '/api/auth/me', site: '/api/site', tanks: '/api/devices?kind=water_tank' } as const;

/** The live feed's address on this gateway. */
export function liveSocketUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/ws`;
}

/** Takes what boot.ts started (once: a later sign-in asks afresh). Undefined without boot.js. */
export function takeEarlyStart(): EarlyStart | undefined {
  const early = window.__gsEarly;
  delete window.__gsEarly;
  return early;
}
