/**
 * The few ONVIF requests the gateway makes itself, with the `onvif` client: the preset list (the
 * agents do not publish it), the snapshot URI and, for a camera without `rtsp_url` in the ledger,
 * the stream URI. Like any VMS the gateway needs network reach to the cameras for video anyway;
 * PTZ moves still go through the agent (docs/video.md, "Network").
 *
 * One connected client per camera, kept while it works (connect() costs four or five requests);
 * dropped on the first error so the next request connects afresh.
 */
import onvif, { type Cam } from 'onvif';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { CameraPreset } from '../../../protocol/video.js';
import { ApiError } from '../errors.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { credentialsIn, scrub, withoutCredentials, type CameraCredentials } from './credentials.js';
import { fetchWithCameraAuth } from './http-auth.js';

type CameraDevice = Extract<LedgerDevice, { kind: 'camera' }>;

export interface CameraOnvifOptions {
  registry: DeviceRegistry;
  /** for cameras whose URLs carry none */
  defaultCredentials: CameraCredentials | undefined;
  timeoutMs: number;
  /** presets are re-read after this long */
  presetCacheMs?: number;
}

/** One client call as a promise that settles once, or rejects after `timeoutMs`. */
function call<T>(fn: (cb: (err: Error | null, data?: T) => void) => void, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      fn((err, data) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(data as T);
      });
    } catch (err) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err as Error);
    }
  });
}

const round1 = (v: number) => Math.round(v * 10) / 10;

export class CameraOnvif {
  readonly #opts: CameraOnvifOptions;
  readonly #clients = new Map<string, Promise<Cam>>();
  readonly #snapshotUris = new Map<string, string>();
  readonly #presets = new Map<string, { at: number; presets: CameraPreset[] }>();

  constructor(opts: CameraOnvifOptions) {
    this.#opts = opts;
  }

  camera(cameraId: string): CameraDevice {
    const d = this.#opts.registry.get(cameraId);
    if (!d || d.kind !== 'camera') throw new ApiError('DEVICE_NOT_FOUND', `no camera "${cameraId}" in the ledger`);
    return d;
  }

  /** The camera's credentials: from its onvif_url, else its rtsp_url, else the config's defaults. */
  credentials(cameraId: string): CameraCredentials | undefined {
    const s = this.camera(cameraId).settings;
    return (s.onvifUrl ? credentialsIn(s.onvifUrl) : undefined) ?? (s.rtspUrl ? credentialsIn(s.rtspUrl) : undefined) ?? this.#opts.defaultCredentials;
  }

  /** Secrets to mask in any text about this camera. */
  secrets(cameraId: string): string[] {
    const c = this.credentials(cameraId);
    return c ? [c.password] : [];
  }

  #client(cameraId: string): Promise<Cam> {
    const existing = this.#clients.get(cameraId);
    if (existing) return existing;
    const device = this.camera(cameraId);
    const raw = device.settings.onvifUrl;
    if (!raw) return Promise.reject(new ApiError('CAMERA_NO_ONVIF', `camera "${cameraId}" has no onvif_url in the ledger`));
    const u = new URL(raw);
    const creds = this.credentials(cameraId);
    const secure = u.protocol === 'https:';
    const cam = new onvif.Cam({
      hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port ? Number(u.port) : secure ? 443 : 80,
      path: u.pathname && u.pathname !== '/' ? u.pathname : '/onvif/device_service',
      ...(creds ? { username: creds.username, password: creds.password } : {}),
      ...(secure ? { useSecure: true } : {}),
      timeout: this.#opts.timeoutMs,
      autoconnect: false,
    });
    const connected = call<unknown>((cb) => cam.connect(cb), this.#opts.timeoutMs * 6).then(() => cam);
    this.#clients.set(cameraId, connected);
    connected.catch(() => this.#drop(cameraId, connected));
    return connected;
  }

  #drop(cameraId: string, client?: Promise<Cam>): void {
    if (client === undefined || this.#clients.get(cameraId) === client) this.#clients.delete(cameraId);
    this.#snapshotUris.delete(cameraId);
  }

  /** Runs a request on the camera's client; a failure drops the client and becomes CAMERA_UNREACHABLE. */
  async #request<T>(cameraId: string, fn: (cam: Cam) => Promise<T>): Promise<T> {
    let client: Promise<Cam> | undefined;
    try {
      client = this.#client(cameraId);
      return await fn(await client);
    } catch (err) {
      if (err instanceof ApiError) throw err;
      this.#drop(cameraId, client);
      throw new ApiError('CAMERA_UNREACHABLE', `camera "${cameraId}" did not answer over ONVIF: ${scrub((err as Error).message, this.secrets(cameraId))}`);
    }
  }

  async presets(cameraId: string): Promise<CameraPreset[]> {
    const cached = this.#presets.get(cameraId);
    if (cached && Date.now() - cached.at < (this.#opts.presetCacheMs ?? 60_000)) return cached.presets;
    const heading = this.camera(cameraId).settings.headingDeg;
    const presets = await this.#request(cameraId, async (cam) => {
      await call<unknown>((cb) => cam.getPresets({}, cb), this.#opts.timeoutMs);
      const raw = (cam.presets ?? {}) as Record<string, unknown>;
      const out: CameraPreset[] = [];
      for (const [token, p] of Object.entries(raw)) {
        const preset = (typeof p === 'object' && p !== null ? p : {}) as { name?: unknown; PTZPosition?: { panTilt?: { $?: { x?: unknown } } } };
        const x = preset.PTZPosition?.panTilt?.$?.x;
        const panDeg = typeof x === 'number' && heading !== undefined ? round1((((heading + 180 * x) % 360) + 360) % 360) : null;
        out.push({ token, name: preset.name === undefined ? '' : String(preset.name), panDeg });
      }
      return out;
    });
    this.#presets.set(cameraId, { at: Date.now(), presets });
    return presets;
  }

  /** The camera's main RTSP stream, from ONVIF GetStreamUri (RTSP over TCP). */
  async streamUri(cameraId: string): Promise<string> {
    return this.#request(cameraId, async (cam) => {
      const r = await call<{ uri: string }>((cb) => cam.getStreamUri({ protocol: 'RTSP' }, cb), this.#opts.timeoutMs);
      if (!r?.uri) throw new Error('GetStreamUri gave no URI');
      return r.uri;
    });
  }

  /** One JPEG from the camera's ONVIF snapshot URI (Digest, or Basic if that is all it offers). */
  async snapshot(cameraId: string, timeoutMs: number): Promise<Buffer> {
    let uri = this.#snapshotUris.get(cameraId);
    if (!uri) {
      uri = await this.#request(cameraId, async (cam) => {
        const r = await call<{ uri: string }>((cb) => cam.getSnapshotUri({}, cb), this.#opts.timeoutMs);
        if (!r?.uri) throw new Error('GetSnapshotUri gave no URI');
        return r.uri;
      });
      this.#snapshotUris.set(cameraId, uri);
    }
    const creds = credentialsIn(uri) ?? this.credentials(cameraId);
    let fetched;
    try {
      fetched = await fetchWithCameraAuth(withoutCredentials(uri), creds, { timeoutMs, maxBytes: 16 * 1024 * 1024 });
    } catch (err) {
      this.#snapshotUris.delete(cameraId);
      throw new ApiError('CAMERA_UNREACHABLE', `camera "${cameraId}" snapshot failed: ${scrub((err as Error).message, this.secrets(cameraId))}`);
    }
    if (fetched.status !== 200) {
      if (fetched.status === 404) this.#snapshotUris.delete(cameraId);
      throw new ApiError('CAMERA_UNREACHABLE', `camera "${cameraId}" answered the snapshot request with HTTP ${fetched.status}`);
    }
    if (fetched.body.length < 4 || fetched.body[0] !== 0xff || fetched.body[1] !== 0xd8) {
      throw new ApiError('CAMERA_UNREACHABLE', `camera "${cameraId}" sent something that is not a JPEG (${fetched.contentType || 'no content type'})`);
    }
    return fetched.body;
  }

  forget(cameraId: string): void {
    this.#drop(cameraId);
    this.#presets.delete(cameraId);
  }
}
