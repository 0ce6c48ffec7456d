/**
 * Builds the collectors for the devices an agent speaks for. Device addresses come from the
 * ledger; `tankEndpoints`, `poleEndpoints` and `cameraEndpoints` override them (the demo and
 * tests point the agent at simulators).
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { AgentConfig } from '../../../config/schema.js';
import { CameraCollector, cameraTargetFromUrl, cameraTargetsFromLedger, type CameraDevice, type CameraTarget } from './camera.js';
import type { Collector } from './collector.js';
import { poleTargetsFromLedger, VoicePoleCollector, type VoicePoleDevice, type VoicePoleTarget } from './voice-pole.js';
import { WaterTankCollector, tankTargetsFromLedger, type WaterTankDevice, type WaterTankTarget } from './water-tank.js';

export interface CollectorSetup {
  collectors: Collector[];
  /** Devices of this agent that have a collector. */
  devices: LedgerDevice[];
}

export function buildCollectors(
  config: AgentConfig,
  ledger: readonly LedgerDevice[],
  log: Logger,
  overrides: {
    tankEndpoints?: ReadonlyMap<string, { host: string; port: number; unitId: number }>;
    /** deviceId → the pole's API base URL (user:password in it become HTTP Basic credentials) */
    poleEndpoints?: ReadonlyMap<string, string>;
    /**
     * deviceId → the camera's ONVIF device service URL (user:password in it win over
     * agent.cameras.username/password), or that URL with an RTSP URL to check instead of the
     * camera's GetStreamUri answer
     */
    cameraEndpoints?: ReadonlyMap<string, string | { onvifUrl: string; rtspUrl?: string }>;
  } = {},
): CollectorSetup {
  const mine = ledger.filter((d) => d.agent === config.id);
  let tankTargets: WaterTankTarget[];
  if (overrides.tankEndpoints) {
    tankTargets = mine
      .filter((d): d is WaterTankDevice => d.kind === 'water_tank')
      .flatMap((device) => {
        const ep = overrides.tankEndpoints?.get(device.id);
        return ep ? [{ device, ...ep }] : [];
      });
  } else {
    const { targets, missing } = tankTargetsFromLedger(mine);
    if (missing.length > 0) log.warn({ tanks: missing.length, first: missing.slice(0, 5) }, 'water tanks without modbus_host in the ledger are not polled');
    tankTargets = targets;
  }
  let poleTargets: VoicePoleTarget[];
  if (overrides.poleEndpoints) {
    poleTargets = mine
      .filter((d): d is VoicePoleDevice => d.kind === 'voice_pole')
      .flatMap((device) => {
        const url = overrides.poleEndpoints?.get(device.id);
        return url ? [{ device, url }] : [];
      });
  } else {
    const { targets, missing } = poleTargetsFromLedger(mine);
    if (missing.length > 0) log.warn({ poles: missing.length, first: missing.slice(0, 5) }, 'voice poles without api_url in the ledger are not polled');
    poleTargets = targets;
  }
  const cameraCredentials = { username: config.cameras.username, password: config.cameras.password };
  let cameraTargets: CameraTarget[];
  if (overrides.cameraEndpoints) {
    cameraTargets = mine
      .filter((d): d is CameraDevice => d.kind === 'camera')
      .flatMap((device) => {
        const ep = overrides.cameraEndpoints?.get(device.id);
        if (ep === undefined) return [];
        const { onvifUrl, rtspUrl } = typeof ep === 'string' ? { onvifUrl: ep, rtspUrl: undefined } : ep;
        return [cameraTargetFromUrl(device, onvifUrl, cameraCredentials, rtspUrl)];
      });
  } else {
    const { targets, missing, invalid } = cameraTargetsFromLedger(mine, cameraCredentials);
    if (missing.length > 0) log.warn({ cameras: missing.length, first: missing.slice(0, 5) }, 'cameras without onvif_url in the ledger are not watched');
    if (invalid.length > 0) log.warn({ cameras: invalid.length, first: invalid.slice(0, 5) }, 'cameras with an unusable onvif_url are not watched');
    cameraTargets = targets;
  }
  const collectors: Collector[] = [];
  if (tankTargets.length > 0) {
    collectors.push(new WaterTankCollector(tankTargets, { pollIntervalMs: config.tanks.pollIntervalMs, timeoutMs: config.tanks.timeoutMs }));
  }
  if (poleTargets.length > 0) {
    collectors.push(new VoicePoleCollector(poleTargets, { pollIntervalMs: config.poles.pollIntervalMs, timeoutMs: config.poles.timeoutMs }));
  }
  if (cameraTargets.length > 0) {
    collectors.push(
      new CameraCollector(cameraTargets, {
        ptzStatusIntervalMs: config.cameras.ptzStatusIntervalMs,
        streamCheckIntervalMs: config.cameras.streamCheckIntervalMs,
        maxBackoffMs: config.cameras.maxBackoffMs,
      }),
    );
  }
  const polled = new Set([...tankTargets, ...poleTargets, ...cameraTargets].map((t) => t.device.id));
  return { collectors, devices: mine.filter((d) => polled.has(d.id)) };
}
