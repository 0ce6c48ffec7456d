/**
 * The gateway's HTTP API and live WebSocket, typed with the shared protocol. Every response is
 * checked for shape before it is trusted, so a gateway/dashboard version mismatch shows up as a
 * clear error instead of `undefined` deep inside the map code.
 */
import type { FeatureCollection } from 'geojson';
import type { AuditEntry, User } from '../../gateway/src/store/store.js';
import type { DeviceSnapshotMessage, DeviceUpdate, DeviceView, ServerMessage, StorageStatus, TelemetryValue } from '../../protocol/ws.js';
import { KINDS, STATUSES, type TankThresholds } from './devices.js';
import { decodeDeviceSnapshot } from './device-snapshot.js';
import { liveSocketUrl, readJsonAnswer, type EarlyFrame, type EarlySocket, type JsonAnswer } from './early.js';
import { openFeedConnection, type FeedConnection } from './feed-connection.js';
import { parseBroadcastMessage } from './broadcast-feed.js';
import { parseIncidentMessage } from './incident-feed.js';
import { isRole, type Role } from './roles.js';
import { isNumber, isNumberOrNull, isObject, isString } from './json.js';

export type { AuditEntry, User };

export interface MapSettings {
  /** XYZ template, e.g. https://…/{z}/{x}/{y}.png; null = no base map (offline sites). */
  tileUrl: string | null;
  tileAttribution: string;
  /** Datum the tiles are drawn in; 'gcj02' for Chinese providers (Gaode, Tencent). */
  tileCrs: 'wgs84' | 'gcj02';
}

export interface SiteInfo {
  id: string;
  name: string;
  /** WGS-84. Boundaries are features whose properties.layer is 'site' | 'community' | 'grid'. */
  geojson: FeatureCollection;
  map: MapSettings;
}

export interface DeviceSeries {
  deviceId: string;
  field: string;
  /** [gateway-stored device time (ms), value], oldest first. */
  points: Array<[number, number]>;
}

/** An API failure: the gateway's `{ code, message }` with the HTTP status, or a transport/shape fault. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// ---- shape checks -----------------------------------------------------------------------------

const isTelemetryValue = (v: unknown): v is TelemetryValue =>
  isNumber(v) || typeof v === 'string' || typeof v === 'boolean';

function isValues(v: unknown): v is Record<string, TelemetryValue> {
  return isObject(v) && Object.values(v).every(isTelemetryValue);
}

function isStatus(v: unknown): v is DeviceView['status'] {
  return (STATUSES as readonly unknown[]).includes(v);
}

export function isDeviceView(v: unknown): v is DeviceView {
  return (
    isObject(v) &&
    isString(v.id) &&
    (KINDS as readonly unknown[]).includes(v.kind) &&
    isString(v.name) &&
    isNumber(v.lat) &&
    isNumber(v.lon) &&
    isString(v.grid) &&
    isString(v.community) &&
    isString(v.agent) &&
    isStatus(v.status) &&
    isNumberOrNull(v.lastSeen) &&
    isValues(v.values) &&
    isNumberOrNull(v.valuesTs)
  );
}

function isDeviceUpdate(v: unknown): v is DeviceUpdate {
  return (
    isObject(v) &&
    isString(v.id) &&
    (v.status === undefined || isStatus(v.status)) &&
    (v.lastSeen === undefined || isNumberOrNull(v.lastSeen)) &&
    (v.values === undefined || isValues(v.values)) &&
    (v.valuesTs === undefined || isNumberOrNull(v.valuesTs))
  );
}

function isStorageStatus(v: unknown): v is StorageStatus {
  return (
    isObject(v) &&
    (v.state === 'ok' || v.state === 'down' || v.state === 'disabled') &&
    (v.url === null || isString(v.url)) &&
    (v.message === null || isString(v.message))
  );
}

/** Keeps the valid devices; one bad row must not blank the whole map. */
function validDevices(list: unknown[], source: string): DeviceView[] {
  const devices = list.filter(isDeviceView);
  if (devices.length !== list.length) {
    console.warn(`${source}: ignored ${list.length - devices.length} malformed device(s)`);
  }
  return devices;
}

function isSiteInfo(v: unknown): v is SiteInfo {
  if (!isObject(v) || !isString(v.id) || !isString(v.name) || !isObject(v.map) || !isObject(v.geojson)) return false;
  const m = v.map;
  const g = v.geojson;
  return (
    (m.tileUrl === null || isString(m.tileUrl)) &&
    isString(m.tileAttribution) &&
    (m.tileCrs === 'wgs84' || m.tileCrs === 'gcj02') &&
    g.type === 'FeatureCollection' &&
    Array.isArray(g.features)
  );
}

function isSeries(v: unknown): v is DeviceSeries {
  return (
    isObject(v) &&
    isString(v.deviceId) &&
    isString(v.field) &&
    Array.isArray(v.points) &&
    v.points.every((p) => Array.isArray(p) && p.length === 2 && isNumber(p[0]) && isNumber(p[1]))
  );
}

export function isUser(v: unknown): v is User {
  return (
    isObject(v) &&
    isNumber(v.id) &&
    isString(v.username) &&
    isString(v.displayName) &&
    isRole(v.role) &&
    Array.isArray(v.grids) &&
    v.grids.every(isString) &&
    typeof v.disabled === 'boolean' &&
    isNumber(v.createdAt)
  );
}

function isAuditEntry(v: unknown): v is AuditEntry {
  return (
    isObject(v) &&
    isNumber(v.id) &&
    isNumber(v.ts) &&
    isString(v.actor) &&
    isString(v.action) &&
    (v.subject === null || isString(v.subject)) &&
    isObject(v.detail)
  );
}

// ---- HTTP -------------------------------------------------------------------------------------

/**
 * Sessions, as the page sees them. The session itself is the HttpOnly `gs_session` cookie, which
 * the page cannot read; it only learns that the cookie stopped working from a 401. Each sign-in
 * starts a new epoch, so a 401 answered to a request of an earlier session (one still in flight
 * when the user signed in again) is not taken for the new session expiring.
 */
let epoch = 0;
const unauthenticatedListeners = new Set<(epoch: number) => void>();

/** Call when a session begins (sign-in, or a session found on load). */
export function beginSessionEpoch(): number {
  return ++epoch;
}

export function currentSessionEpoch(): number {
  return epoch;
}

/** `listener(epoch)` runs when a request of session `epoch` is answered 401 (signed out or expired). */
export function onUnauthenticated(listener: (epoch: number) => void): () => void {
  unauthenticatedListeners.add(listener);
  return () => unauthenticatedListeners.delete(listener);
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'PUT';
  body?: unknown;
  signal?: AbortSignal | undefined;
  /** False for sign-in itself, whose 401 means a wrong password, not an expired session. */
  reportUnauthenticated?: boolean;
  /** The same request, already sent before the app started (boot.ts): its answer is used instead. */
  sent?: Promise<JsonAnswer> | undefined;
}

/** A JSON API call with the session cookie; failures become ApiError, a 401 ends the session. */
export async function requestJson(path: string, opts: RequestOptions = {}): Promise<unknown> {
  const sentIn = epoch;
  const init: RequestInit = {
    method: opts.method ?? 'GET',
    headers: opts.body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
    credentials: 'same-origin',
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
  let res: JsonAnswer;
  try {
    res = await (opts.sent ?? fetch(path, init).then(readJsonAnswer));
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', err instanceof Error ? err.message : String(err));
  }
  const { body } = res;
  if (!res.ok) {
    const code = isObject(body) && isString(body.code) ? body.code : `HTTP_${res.status}`;
    const message = isObject(body) && isString(body.message) ? body.message : res.statusText || `HTTP ${res.status}`;
    if (res.status === 401 && opts.reportUnauthenticated !== false) {
      for (const listener of unauthenticatedListeners) {
        try {
          listener(sentIn);
        } catch (err) {
          console.error('unauthenticated listener failed', err);
        }
      }
    }
    throw new ApiError(res.status, code, message);
  }
  return body;
}

const getJson = (path: string, signal?: AbortSignal, sent?: Promise<JsonAnswer>) => requestJson(path, { signal, sent });

function badShape(path: string): ApiError {
  return new ApiError(0, 'BAD_RESPONSE', `unexpected response shape from ${path}`);
}

/** `sent`: the same request already sent (boot.ts). */
export async function fetchSite(signal?: AbortSignal, sent?: Promise<JsonAnswer>): Promise<SiteInfo> {
  const body = await getJson('/api/site', signal, sent);
  if (!isSiteInfo(body)) throw badShape('/api/site');
  return body;
}

export interface DeviceList {
  devices: DeviceView[];
  /** Ledger low/critical thresholds per tank id (absent from an older gateway: empty). */
  tankThresholds: Map<string, TankThresholds>;
}

function isThresholds(v: unknown): v is TankThresholds {
  return isObject(v) && isNumber(v.lowPercent) && isNumber(v.criticalPercent);
}

/** The ledger's devices with their live state; `kind` narrows it (the tanks alone are a few percent). */
export async function fetchDevices(opts: { kind?: DeviceView['kind']; signal?: AbortSignal; sent?: Promise<JsonAnswer> } = {}): Promise<DeviceList> {
  const path = opts.kind ? `/api/devices?${new URLSearchParams({ kind: opts.kind }).toString()}` : '/api/devices';
  const body = await getJson(path, opts.signal, opts.sent);
  if (!isObject(body) || !Array.isArray(body.devices)) throw badShape(path);
  const tankThresholds = new Map<string, TankThresholds>();
  if (isObject(body.tankThresholds)) {
    for (const [id, t] of Object.entries(body.tankThresholds)) if (isThresholds(t)) tankThresholds.set(id, t);
  }
  return { devices: validDevices(body.devices, path), tankThresholds };
}

/**
 * Stored history of one numeric field, at most `maxPoints` (the gateway averages into windows).
 * A 503 (ApiError.status) means InfluxDB is down or not configured.
 */
export async function fetchSeries(
  deviceId: string,
  field: string,
  fromMs: number,
  toMs: number,
  opts: { signal?: AbortSignal; maxPoints?: number } = {},
): Promise<DeviceSeries> {
  const query = new URLSearchParams({ field, from: String(Math.floor(fromMs)), to: String(Math.ceil(toMs)) });
  if (opts.maxPoints !== undefined) query.set('maxPoints', String(Math.max(10, Math.min(10_000, Math.round(opts.maxPoints)))));
  const path = `/api/devices/${encodeURIComponent(deviceId)}/series?${query.toString()}`;
  const body = await getJson(path, opts.signal);
  if (!isSeries(body)) throw badShape(path);
  return body;
}

// ---- sign-in, users, audit --------------------------------------------------------------------

export interface LoginResult {
  user: User;
  expiresAt: number;
}

/**
 * Signs in; the gateway sets the session cookie. The token in the answer is not kept: the page
 * needs none (requests and the WebSocket upgrade carry the cookie) and script cannot leak what it
 * does not hold. Fails with ApiError BAD_LOGIN (401) or TOO_MANY_ATTEMPTS (429).
 */
export async function login(username: string, password: string): Promise<LoginResult> {
  const body = await requestJson('/api/auth/login', { method: 'POST', body: { username, password }, reportUnauthenticated: false });
  if (!isObject(body) || !isUser(body.user) || !isNumber(body.expiresAt)) throw badShape('/api/auth/login');
  return { user: body.user, expiresAt: body.expiresAt };
}

/** Ends the session (the gateway also clears the cookie). A 401 means it had already ended. */
export async function logout(): Promise<void> {
  await requestJson('/api/auth/logout', { method: 'POST', reportUnauthenticated: false });
}

/** The signed-in user; ApiError 401 when there is no live session. */
export async function fetchMe(opts: { reportUnauthenticated?: boolean; sent?: Promise<JsonAnswer> } = {}): Promise<User> {
  const body = await requestJson('/api/auth/me', { reportUnauthenticated: opts.reportUnauthenticated ?? true, sent: opts.sent });
  if (!isObject(body) || !isUser(body.user)) throw badShape('/api/auth/me');
  return body.user;
}

export async function fetchUsers(signal?: AbortSignal): Promise<User[]> {
  const body = await getJson('/api/users', signal);
  if (!isObject(body) || !Array.isArray(body.users) || !body.users.every(isUser)) throw badShape('/api/users');
  return body.users;
}

export interface NewUserInput {
  username: string;
  displayName: string;
  role: Role;
  grids: string[];
  password: string;
}

export async function createUser(input: NewUserInput): Promise<User> {
  const body = await requestJson('/api/users', { method: 'POST', body: input });
  if (!isObject(body) || !isUser(body.user)) throw badShape('/api/users');
  return body.user;
}

export interface UserPatch {
  displayName?: string;
  role?: Role;
  grids?: string[];
  disabled?: boolean;
  password?: string;
}

export async function updateUser(id: number, patch: UserPatch): Promise<User> {
  const path = `/api/users/${encodeURIComponent(String(id))}`;
  const body = await requestJson(path, { method: 'PATCH', body: patch });
  if (!isObject(body) || !isUser(body.user)) throw badShape(path);
  return body.user;
}

/** The newest audit entries first. */
export async function fetchAudit(limit: number, signal?: AbortSignal): Promise<AuditEntry[]> {
  const path = `/api/audit?${new URLSearchParams({ limit: String(limit) }).toString()}`;
  const body = await getJson(path, signal);
  if (!isObject(body) || !Array.isArray(body.entries) || !body.entries.every(isAuditEntry)) throw badShape('/api/audit');
  return body.entries;
}

// ---- WebSocket ----------------------------------------------------------------------------------

/** A `/ws` message as the page uses it: the device snapshot's columns decoded into DeviceView rows. */
export type LiveMessage = Exclude<ServerMessage, DeviceSnapshotMessage> | { type: 'devices.snapshot'; devices: DeviceView[] };

const utf8 = new TextDecoder();

/**
 * A frame's JSON text: text frames as they are, binary frames (the device snapshot) decoded as
 * UTF-8. Null for anything else.
 */
export function frameText(data: unknown): string | null {
  if (typeof data === 'string') return data;
  return data instanceof ArrayBuffer ? utf8.decode(data) : null;
}

/** Parses one frame's text. Returns null for anything that is not a message this client knows. */
export function parseServerMessage(text: string): LiveMessage | null {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return null;
  }
  return liveMessage(msg);
}

/** A parsed frame as a message this client knows, or null. */
export function liveMessage(msg: unknown): LiveMessage | null {
  if (!isObject(msg)) return null;
  switch (msg.type) {
    case 'hello':
      return msg.protocol === 1 && isNumber(msg.serverTime) && isString(msg.site) && isStorageStatus(msg.storage)
        ? { type: 'hello', protocol: 1, serverTime: msg.serverTime, site: msg.site, storage: msg.storage }
        : null;
    case 'devices.snapshot': {
      const devices = decodeDeviceSnapshot(msg);
      return devices ? { type: 'devices.snapshot', devices } : null;
    }
    case 'devices.update':
      return Array.isArray(msg.updates) ? { type: 'devices.update', updates: msg.updates.filter(isDeviceUpdate) } : null;
    case 'storage':
      return isStorageStatus(msg.storage) ? { type: 'storage', storage: msg.storage } : null;
    default:
      return parseIncidentMessage(msg) ?? parseBroadcastMessage(msg);
  }
}

export type ConnState = 'connecting' | 'live' | 'reconnecting';

export interface LiveSocketOptions {
  url: string;
  onMessage: (message: LiveMessage) => void;
  /** `attempt` counts reconnect attempts since the connection was last live (0 while live). */
  onState: (state: ConnState, attempt: number) => void;
  /**
   * A connection closed without ever saying `hello`: the gateway is down, or it refused the
   * upgrade (401 without a live session). A browser cannot tell the two apart, so the owner asks
   * the API whether the session still holds. The socket keeps retrying until stopped.
   */
  onRefused?: () => void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * The socket boot.ts opened before the app started, with what it received meanwhile: the first
   * connection takes it over (if it is still open) instead of opening another.
   */
  early?: EarlySocket | null;
}

export function defaultWsUrl(): string {
  return liveSocketUrl();
}

/**
 * The `/ws` feed with automatic reconnect. The connection counts as live only once `hello`
 * arrives (an open socket to a proxy that never forwards is not live). Backoff doubles up to
 * `maxBackoffMs` with ±20 % jitter so a restarted gateway is not hit by every browser at once.
 * Each connection lives in the feed worker (feed-connection.ts): a reconnect's snapshot is parsed
 * there too, not on the thread that draws the map.
 */
export class LiveSocket {
  readonly #opts: Required<Omit<LiveSocketOptions, 'early'>>;
  #early: EarlySocket | null;
  #conn: FeedConnection | null = null;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #stopped = true;
  #unknownTypesSeen = new Set<string>();

  constructor(options: LiveSocketOptions) {
    const { early, ...rest } = options;
    this.#opts = { initialBackoffMs: 500, maxBackoffMs: 15_000, onRefused: () => undefined, ...rest };
    this.#early = early ?? null;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#attempt = 0;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    this.#early?.conn.close(1000, 'client stopped');
    this.#early = null;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#conn?.close(1000, 'client stopped');
    this.#conn = null;
  }

  /** Closes the current connection as a network fault would; the socket reconnects (tests use this). */
  drop(): void {
    this.#conn?.close(4000, 'dropped by the client');
  }

  #connect(): void {
    this.#opts.onState(this.#attempt === 0 ? 'connecting' : 'reconnecting', this.#attempt);
    const early = this.#early;
    this.#early = null;
    // The early connection only while it is open or opening: a closed one is replaced at once.
    const adopted = early?.conn.live ? early : null;
    if (early && !adopted) early.conn.close();
    // In the feed worker (feed-connection.ts): a snapshot arrives whole and parsed.
    const conn = adopted?.conn ?? openFeedConnection(this.#opts.url);
    this.#conn = conn;
    let greeted = false;
    const deliver = (msg: LiveMessage | null, text: () => string) => {
      if (!msg) {
        this.#warnUnknown(text());
        return;
      }
      if (msg.type === 'hello') {
        greeted = true;
        this.#attempt = 0;
        this.#opts.onState('live', 0);
      }
      this.#opts.onMessage(msg);
    };
    const receive = (frame: EarlyFrame) => {
      switch (frame.kind) {
        case 'text':
          deliver(parseServerMessage(frame.text), () => frame.text);
          break;
        case 'json': {
          // A district's snapshot is 50,000 rows to decode: its time is worth seeing (bench/map.ts).
          const started = performance.now();
          const msg = liveMessage(frame.value);
          if (msg?.type === 'devices.snapshot') performance.measure('gs:snapshot-parse', { start: started });
          deliver(msg, () => JSON.stringify(frame.value).slice(0, 200));
          break;
        }
        case 'binary': {
          const text = utf8.decode(frame.data);
          deliver(parseServerMessage(text), () => text);
          break;
        }
        case 'snapshot':
          deliver(frame.devices ? { type: 'devices.snapshot', devices: frame.devices } : null, () => '{"type":"devices.snapshot"}');
          break;
      }
    };
    conn.onframe = (frame) => {
      if (this.#conn === conn) receive(frame);
    };
    conn.onclose = () => {
      if (this.#conn !== conn) return;
      this.#conn = null;
      if (this.#stopped) return;
      this.#attempt++;
      this.#opts.onState('reconnecting', this.#attempt);
      const base = Math.min(this.#opts.maxBackoffMs, this.#opts.initialBackoffMs * 2 ** (this.#attempt - 1));
      const delay = base * (0.8 + Math.random() * 0.4);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        this.#connect();
      }, delay);
      if (!greeted) this.#opts.onRefused();
    };
    // What the early connection received before the app took it over, in order.
    for (const frame of adopted?.frames.splice(0) ?? []) {
      if (this.#conn !== conn) break;
      receive(frame);
    }
  }

  /** Logs each unknown or malformed message type once, so a newer gateway does not flood the console. */
  #warnUnknown(text: string): void {
    const type = /"type"\s*:\s*"([^"]{1,40})"/.exec(text)?.[1] ?? '(unparseable)';
    if (this.#unknownTypesSeen.has(type)) return;
    this.#unknownTypesSeen.add(type);
    console.warn(`/ws: ignored unknown or malformed message of type ${type}`);
  }
}
