/**
 * The gateway's HTTP API and live WebSocket, typed with the shared protocol. Every response is
 * checked for shape before it is trusted, so a gateway/dashboard version mismatch shows up as a
 * clear error instead of `undefined` deep inside the map code.
 */
import type { FeatureCollection } from 'geojson';
import type { DeviceUpdate, DeviceView, ServerMessage, StorageStatus, TelemetryValue } from '../../protocol/ws.js';
import { KINDS, STATUSES } from './devices.js';

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

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isNumberOrNull = (v: unknown): v is number | null => v === null || isNumber(v);
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

// ---- HTTP -------------------------------------------------------------------------------------

async function getJson(path: string, signal?: AbortSignal): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(path, { headers: { accept: 'application/json' }, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', err instanceof Error ? err.message : String(err));
  }
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    // Non-JSON body: fall through; a failed status still reports below.
  }
  if (!res.ok) {
    const code = isObject(body) && isString(body.code) ? body.code : `HTTP_${res.status}`;
    const message = isObject(body) && isString(body.message) ? body.message : res.statusText || `HTTP ${res.status}`;
    throw new ApiError(res.status, code, message);
  }
  return body;
}

function badShape(path: string): ApiError {
  return new ApiError(0, 'BAD_RESPONSE', `unexpected response shape from ${path}`);
}

export async function fetchSite(signal?: AbortSignal): Promise<SiteInfo> {
  const body = await getJson('/api/site', signal);
  if (!isSiteInfo(body)) throw badShape('/api/site');
  return body;
}

export async function fetchDevices(signal?: AbortSignal): Promise<DeviceView[]> {
  const body = await getJson('/api/devices', signal);
  if (!isObject(body) || !Array.isArray(body.devices)) throw badShape('/api/devices');
  return validDevices(body.devices, '/api/devices');
}

/** Stored history of one numeric field. A 503 (ApiError.status) means InfluxDB is down. */
export async function fetchSeries(
  deviceId: string,
  field: string,
  fromMs: number,
  toMs: number,
  signal?: AbortSignal,
): Promise<DeviceSeries> {
  const query = new URLSearchParams({ field, from: String(Math.floor(fromMs)), to: String(Math.ceil(toMs)) });
  const path = `/api/devices/${encodeURIComponent(deviceId)}/series?${query.toString()}`;
  const body = await getJson(path, signal);
  if (!isSeries(body)) throw badShape(path);
  return body;
}

// ---- WebSocket ----------------------------------------------------------------------------------

/** Parses one text frame. Returns null for anything that is not a message this client knows. */
export function parseServerMessage(text: string): ServerMessage | null {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(msg)) return null;
  switch (msg.type) {
    case 'hello':
      return msg.protocol === 1 && isNumber(msg.serverTime) && isString(msg.site) && isStorageStatus(msg.storage)
        ? { type: 'hello', protocol: 1, serverTime: msg.serverTime, site: msg.site, storage: msg.storage }
        : null;
    case 'devices.snapshot':
      return Array.isArray(msg.devices)
        ? { type: 'devices.snapshot', devices: validDevices(msg.devices, 'devices.snapshot') }
        : null;
    case 'devices.update':
      return Array.isArray(msg.updates) ? { type: 'devices.update', updates: msg.updates.filter(isDeviceUpdate) } : null;
    case 'storage':
      return isStorageStatus(msg.storage) ? { type: 'storage', storage: msg.storage } : null;
    default:
      return null;
  }
}

export type ConnState = 'connecting' | 'live' | 'reconnecting';

export interface LiveSocketOptions {
  url: string;
  onMessage: (message: ServerMessage) => void;
  /** `attempt` counts reconnect attempts since the connection was last live (0 while live). */
  onState: (state: ConnState, attempt: number) => void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export function defaultWsUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/ws`;
}

/**
 * The `/ws` feed with automatic reconnect. The connection counts as live only once `hello`
 * arrives (an open socket to a proxy that never forwards is not live). Backoff doubles up to
 * `maxBackoffMs` with ±20 % jitter so a restarted gateway is not hit by every browser at once.
 */
export class LiveSocket {
  readonly #opts: Required<LiveSocketOptions>;
  #ws: WebSocket | null = null;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #stopped = true;
  #unknownTypesSeen = new Set<string>();

  constructor(options: LiveSocketOptions) {
    this.#opts = { initialBackoffMs: 500, maxBackoffMs: 15_000, ...options };
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#ws?.close(1000, 'client stopped');
    this.#ws = null;
  }

  #connect(): void {
    this.#opts.onState(this.#attempt === 0 ? 'connecting' : 'reconnecting', this.#attempt);
    const ws = new WebSocket(this.#opts.url);
    this.#ws = ws;
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== 'string') return;
      const msg = parseServerMessage(event.data);
      if (!msg) {
        this.#warnUnknown(event.data);
        return;
      }
      if (msg.type === 'hello') {
        this.#attempt = 0;
        this.#opts.onState('live', 0);
      }
      this.#opts.onMessage(msg);
    };
    // 'error' is always followed by 'close', which does the retry.
    ws.onclose = () => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (this.#stopped) return;
      this.#attempt++;
      this.#opts.onState('reconnecting', this.#attempt);
      const base = Math.min(this.#opts.maxBackoffMs, this.#opts.initialBackoffMs * 2 ** (this.#attempt - 1));
      const delay = base * (0.8 + Math.random() * 0.4);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        this.#connect();
      }, delay);
    };
  }

  /** Logs each unknown or malformed message type once, so a newer gateway does not flood the console. */
  #warnUnknown(text: string): void {
    const type = /"type"\s*:\s*"([^"]{1,40})"/.exec(text)?.[1] ?? '(unparseable)';
    if (this.#unknownTypesSeen.has(type)) return;
    this.#unknownTypesSeen.add(type);
    console.warn(`/ws: ignored unknown or malformed message of type ${type}`);
  }
}
