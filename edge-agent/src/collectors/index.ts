/**
 * Builds the collectors for the devices an agent speaks for. Device addresses come from the
 * ledger; `tankEndpoints` and `poleEndpoints` override them (the demo and tests point the agent
 * at simulators).
 */
import type { Logger } from 'pino';
import type { LedgerDevice } from '../../../config/ledger.js';
import type { AgentConfig } from '../../../config/schema.js';
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
  const collectors: Collector[] = [];
  if (tankTargets.length > 0) {
    collectors.push(new WaterTankCollector(tankTargets, { pollIntervalMs: config.tanks.pollIntervalMs, timeoutMs: config.tanks.timeoutMs }));
  }
  if (poleTargets.length > 0) {
    collectors.push(new VoicePoleCollector(poleTargets, { pollIntervalMs: config.poles.pollIntervalMs, timeoutMs: config.poles.timeoutMs }));
  }
  const polled = new Set([...tankTargets, ...poleTargets].map((t) => t.device.id));
  return { collectors, devices: mine.filter((d) => polled.has(d.id)) };
}
