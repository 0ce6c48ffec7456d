/**
 * Video: the live relay (RTSP → browser over WebSocket), alarm snapshots and PTZ, as one service
 * with start()/stop() (docs/video.md).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { VideoConfig } from '../../../config/schema.js';
import { OPEN_STATUSES, type Incident } from '../../../protocol/incidents.js';
import type { DeviceCommand } from '../../../protocol/payloads.js';
import type { IncidentService } from '../alerts/incidents.js';
import type { Bus } from '../bus.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { CameraOnvif } from './camera-onvif.js';
import { PtzService } from './ptz.js';
import { VideoRelay } from './relay.js';
import { SnapshotService } from './snapshots.js';

/** A camera whose alarm is older than this is not what the duty officer is about to open. */
const RECENT_SIGNAL_MS = 60_000;

export interface VideoContext {
  config: VideoConfig;
  /** snapshots go to <dataDir>/snapshots */
  dataDir: string;
  log: Logger;
  bus: Bus;
  metrics: Metrics;
  registry: DeviceRegistry;
  incidents: IncidentService;
  sendCommand(deviceId: string, command: DeviceCommand): Promise<void>;
}

export class VideoService {
  readonly config: VideoConfig;
  readonly onvif: CameraOnvif;
  readonly relay: VideoRelay;
  readonly snapshots: SnapshotService;
  readonly ptz: PtzService;
  readonly #ctx: VideoContext;
  #offIncidents: (() => void) | undefined;

  constructor(ctx: VideoContext) {
    this.#ctx = ctx;
    const { config, log, metrics, registry } = ctx;
    this.config = config;
    const defaultCredentials =
      config.cameraUsername !== undefined || config.cameraPassword !== undefined ? { username: config.cameraUsername ?? '', password: config.cameraPassword ?? '' } : undefined;
    this.onvif = new CameraOnvif({ registry, defaultCredentials, timeoutMs: config.onvifTimeoutMs });
    this.relay = new VideoRelay({ config, log, metrics, registry, onvif: this.onvif });
    this.snapshots = new SnapshotService({ config: config.snapshots, dir: join(ctx.dataDir, 'snapshots'), log, metrics, onvif: this.onvif });
    this.ptz = new PtzService({ config: config.ptz, log, bus: ctx.bus, metrics, sendCommand: ctx.sendCommand });
  }

  start(): void {
    this.ptz.start();
    if (!this.config.enabled) return;
    this.relay.start();
    this.snapshots.start();
    this.#offIncidents = this.#ctx.incidents.onIncident((incident) => {
      this.snapshots.onIncident(incident);
      this.#prewarm(incident);
    });
  }

  /** The streams of cameras alarming right now are opened before anyone clicks (video.prewarmOnAlarmSec). */
  #prewarm(incident: Incident): void {
    const ms = this.config.prewarmOnAlarmSec * 1000;
    if (ms === 0 || incident.category !== 'fire' || !OPEN_STATUSES.includes(incident.status)) return;
    const now = Date.now();
    for (const camera of incident.cameras) if (now - camera.lastSignalAt < RECENT_SIGNAL_MS) this.relay.prewarm(camera.id, ms);
  }

  async stop(): Promise<void> {
    this.#offIncidents?.();
    this.ptz.stop();
    await this.relay.stop();
    await this.snapshots.stop();
  }
}
