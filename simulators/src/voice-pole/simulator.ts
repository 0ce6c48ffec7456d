/**
 * Voice-broadcast pole simulators: the vendor-style HTTP/JSON API of docs/devices/voice-pole-api.md
 * in front of a PoleModel. One HTTP server per pole, as each pole in the field is its own IP
 * terminal (over fibre or a 4G router); that also lets one pole go `offline` for real — its port
 * stops listening and connections are refused — while the others carry on.
 *
 * Faults: `offline` refuses connections (the port is closed and reopened on the same number when
 * the fault clears; the model keeps playing meanwhile, as a terminal that lost its link does);
 * `fault` is an amplifier fault (jobs are accepted, then fail when they would start; the active
 * one fails at once); `slow` delays every request by `slowMs` before it is handled (a congested
 * 4G link).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LedgerDevice } from '../../../config/ledger.js';
import { BUILT_IN_CLIPS, PoleError, PoleModel, PRIORITIES, type PlayRequest, type PolePriority } from './model.js';

export type PoleFault = 'none' | 'offline' | 'fault' | 'slow';

export interface PoleAuth {
  username: string;
  password: string;
}

export const DEFAULT_POLE_AUTH: PoleAuth = { username: 'admin', password: 'pole-sim' };

export interface PoleSimulatorOptions {
  deviceId: string;
  /** playback runs this many times faster than real time; default 1 */
  timeScale?: number;
  host?: string;
  /** 0 (default) picks a free port */
  port?: number;
  /** HTTP Basic credentials the pole demands; null: no auth. Default DEFAULT_POLE_AUTH. */
  auth?: PoleAuth | null;
  defaultVolume?: number;
  /** how long `slow` holds each request, ms; default 2000 */
  slowMs?: number;
  now?: () => number;
}

export interface PoleRequestRecord {
  at: number;
  method: string;
  path: string;
  status: number;
  /** the play request's jobId, for a play */
  jobId?: string;
}

export interface PoleSimulator {
  readonly deviceId: string;
  readonly host: string;
  readonly port: number;
  /** base URL with the credentials in it, as the ledger's api_url carries them */
  readonly url: string;
  readonly model: PoleModel;
  readonly fault: PoleFault;
  /** every request answered, oldest first (capped at 1000) */
  readonly requests: readonly PoleRequestRecord[];
  setFault(fault: PoleFault): Promise<void>;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 8 * 1024;
const MAX_TEXT_CHARS = 500;
const MAX_REPEAT = 10;
const JOB_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const FIRMWARE = 'GS-SIM-IPA-2.1.0';

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const invalid = (field: string, message: string) => new ApiError(422, 'INVALID_PARAM', `${field}: ${message}`, { field });

/** Checks a play body field by field; the first problem is the answer. */
function parsePlay(body: unknown): PlayRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'BAD_REQUEST', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  const known = new Set(['jobId', 'type', 'text', 'clipId', 'priority', 'volume', 'repeat']);
  for (const k of Object.keys(b)) if (!known.has(k)) throw invalid(k, 'unknown field');
  if (typeof b.jobId !== 'string' || !JOB_ID_RE.test(b.jobId)) throw invalid('jobId', 'required, 1–64 of A–Z a–z 0–9 _ . - (not starting with _ . -)');
  if (b.type !== 'tts' && b.type !== 'clip') throw invalid('type', 'must be "tts" or "clip"');
  const req: PlayRequest = { jobId: b.jobId, type: b.type, priority: 'routine', repeat: 1 };
  if (b.type === 'tts') {
    if (typeof b.text !== 'string' || b.text.trim() === '') throw invalid('text', 'required for type "tts"');
    if ([...b.text].length > MAX_TEXT_CHARS) throw invalid('text', `at most ${MAX_TEXT_CHARS} characters`);
    if (b.clipId !== undefined) throw invalid('clipId', 'not allowed with type "tts"');
    req.text = b.text;
  } else {
    if (typeof b.clipId !== 'string' || b.clipId === '') throw invalid('clipId', 'required for type "clip"');
    if (b.text !== undefined) throw invalid('text', 'not allowed with type "clip"');
    req.clipId = b.clipId;
  }
  if (b.priority !== undefined) {
    if (!(PRIORITIES as readonly unknown[]).includes(b.priority)) throw invalid('priority', `one of ${PRIORITIES.join(', ')}`);
    req.priority = b.priority as PolePriority;
  }
  if (b.volume !== undefined) {
    if (typeof b.volume !== 'number' || !Number.isInteger(b.volume) || b.volume < 0 || b.volume > 100) throw invalid('volume', 'an integer 0–100');
    req.volume = b.volume;
  }
  if (b.repeat !== undefined) {
    if (typeof b.repeat !== 'number' || !Number.isInteger(b.repeat) || b.repeat < 1 || b.repeat > MAX_REPEAT) throw invalid('repeat', `an integer 1–${MAX_REPEAT}`);
    req.repeat = b.repeat;
  }
  return req;
}

function parseStop(body: unknown): string | undefined {
  if (body === undefined) return undefined;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'BAD_REQUEST', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (k !== 'jobId') throw invalid(k, 'unknown field');
  if (b.jobId === undefined || b.jobId === null) return undefined;
  if (typeof b.jobId !== 'string' || !JOB_ID_RE.test(b.jobId)) throw invalid('jobId', 'not a job id');
  return b.jobId;
}

const POLE_ERROR_STATUS: Record<PoleError['code'], number> = { BUSY: 409, JOB_ID_CONFLICT: 409, UNKNOWN_CLIP: 422, JOB_NOT_FOUND: 404 };

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiError(413, 'PAYLOAD_TOO_LARGE', `body over ${MAX_BODY_BYTES} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('close', () => reject(new ApiError(400, 'BAD_REQUEST', 'connection closed before the body ended')));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text) as unknown);
      } catch {
        reject(new ApiError(400, 'BAD_REQUEST', 'body is not valid JSON'));
      }
    });
  });
}

export async function startPoleSimulator(opts: PoleSimulatorOptions): Promise<PoleSimulator> {
  const now = opts.now ?? Date.now;
  const model = new PoleModel({
    ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
    ...(opts.defaultVolume !== undefined ? { defaultVolume: opts.defaultVolume } : {}),
    now,
  });
  const auth = opts.auth === undefined ? DEFAULT_POLE_AUTH : opts.auth;
  const expectedAuth = auth ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` : undefined;
  const slowMs = opts.slowMs ?? 2000;
  const host = opts.host ?? '127.0.0.1';
  const bootedAt = now();
  const requests: PoleRequestRecord[] = [];
  let fault: PoleFault = 'none';
  const pending = new Set<NodeJS.Timeout>();

  const route = async (req: IncomingMessage): Promise<{ status: number; body: unknown; jobId?: string }> => {
    const url = new URL(req.url ?? '/', 'http://pole');
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (expectedAuth && req.headers.authorization !== expectedAuth) throw new ApiError(401, 'UNAUTHORIZED', 'missing or wrong credentials');
    const only = (m: string) => {
      if (method !== m) throw new ApiError(405, 'METHOD_NOT_ALLOWED', `${method} not allowed on ${path}; use ${m}`);
    };
    if (path === '/api/v1/status') {
      only('GET');
      return { status: 200, body: { deviceId: opts.deviceId, firmware: FIRMWARE, uptimeS: Math.floor((now() - bootedAt) / 1000), ...model.status() } };
    }
    if (path === '/api/v1/play') {
      only('POST');
      const play = parsePlay(await readBody(req));
      const { job, created } = model.play(play);
      return { status: created ? 201 : 200, body: { job, duplicate: !created }, jobId: play.jobId };
    }
    if (path === '/api/v1/stop') {
      only('POST');
      const jobId = parseStop(await readBody(req));
      return { status: 200, body: model.stop(jobId) };
    }
    if (path === '/api/v1/clips') {
      only('GET');
      return { status: 200, body: { clips: BUILT_IN_CLIPS } };
    }
    const m = /^\/api\/v1\/jobs\/([^/]+)$/.exec(path);
    if (m) {
      only('GET');
      const id = decodeURIComponent(m[1]!);
      const job = model.job(id);
      if (!job) throw new ApiError(404, 'JOB_NOT_FOUND', `no job ${id}`);
      return { status: 200, body: { job, remainingMs: model.status().jobId === id ? model.remainingMs() : null } };
    }
    throw new ApiError(404, 'NOT_FOUND', `no such endpoint: ${method} ${path}`);
  };

  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    let status: number;
    let body: unknown;
    let jobId: string | undefined;
    try {
      ({ status, body, jobId } = await route(req));
    } catch (err) {
      if (err instanceof ApiError) {
        status = err.status;
        body = { code: err.code, message: err.message, ...err.extra };
      } else if (err instanceof PoleError) {
        status = POLE_ERROR_STATUS[err.code];
        body = { code: err.code, message: err.message, ...err.detail };
      } else {
        status = 500;
        body = { code: 'INTERNAL', message: (err as Error).message };
      }
    }
    requests.push({ at: now(), method: req.method ?? '', path: req.url ?? '', status, ...(jobId !== undefined ? { jobId } : {}) });
    if (requests.length > 1000) requests.shift();
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) };
    if (status === 401) headers['www-authenticate'] = 'Basic realm="broadcast-terminal"';
    if (!res.destroyed) res.writeHead(status, headers).end(text);
  };

  const server: Server = createServer((req, res) => {
    if (fault === 'slow') {
      const t = setTimeout(() => {
        pending.delete(t);
        // A client that gave up meanwhile took the request with it: it is never handled.
        if (req.destroyed || res.destroyed || req.socket.destroyed) {
          requests.push({ at: now(), method: req.method ?? '', path: req.url ?? '', status: 499 });
          return;
        }
        void answer(req, res);
      }, slowMs);
      pending.add(t);
      return;
    }
    void answer(req, res);
  });
  server.keepAliveTimeout = 5000;

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      for (const t of pending) clearTimeout(t);
      pending.clear();
      server.close(() => resolve());
      server.closeAllConnections();
    });

  const port = await listen(opts.port ?? 0);
  const credentials = auth ? `${encodeURIComponent(auth.username)}:${encodeURIComponent(auth.password)}@` : '';
  let closed = false;

  return {
    deviceId: opts.deviceId,
    host,
    port,
    url: `http://${credentials}${host}:${port}/`,
    model,
    requests,
    get fault() {
      return fault;
    },
    async setFault(next: PoleFault) {
      if (closed) throw new Error('simulator closed');
      const was = fault;
      fault = next;
      model.setAmplifierFault(next === 'fault');
      if (next === 'offline' && was !== 'offline') await unlisten();
      if (next !== 'offline' && was === 'offline') await listen(port);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (fault !== 'offline') await unlisten();
    },
  };
}

// ---- a fleet -----------------------------------------------------------------------------------

export interface PoleFleetOptions {
  timeScale?: number;
  host?: string;
  /** pole i listens on basePort + i; 0 or absent: a free port each */
  basePort?: number;
  /** credentials every pole of the fleet demands; null: none. Default DEFAULT_POLE_AUTH. */
  auth?: PoleAuth | null;
  slowMs?: number;
  now?: () => number;
}

export interface PoleFleet {
  /** deviceId → the pole's base URL (credentials included), for the agent's `poleEndpoints` */
  readonly endpoints: Map<string, string>;
  readonly poles: Map<string, PoleSimulator>;
  close(): Promise<void>;
}

/** Starts one simulator per voice pole in `devices` (other kinds are skipped). */
export async function startPoleFleet(devices: readonly LedgerDevice[], opts: PoleFleetOptions = {}): Promise<PoleFleet> {
  const poles = new Map<string, PoleSimulator>();
  const endpoints = new Map<string, string>();
  const close = async () => {
    await Promise.all([...poles.values()].map((p) => p.close()));
  };
  try {
    let i = 0;
    for (const device of devices) {
      if (device.kind !== 'voice_pole') continue;
      const pole = await startPoleSimulator({
        deviceId: device.id,
        port: opts.basePort ? opts.basePort + i : 0,
        ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
        ...(opts.host !== undefined ? { host: opts.host } : {}),
        ...(opts.auth !== undefined ? { auth: opts.auth } : {}),
        ...(opts.slowMs !== undefined ? { slowMs: opts.slowMs } : {}),
        ...(opts.now ? { now: opts.now } : {}),
      });
      poles.set(device.id, pole);
      endpoints.set(device.id, pole.url);
      i++;
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { endpoints, poles, close };
}
