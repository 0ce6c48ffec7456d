/**
 * The whole simulated site in one process: water tanks (Modbus TCP), voice poles (vendor HTTP),
 * cameras (ONVIF, one HTTP server for all) and their streams (RTSP, encoders only while watched),
 * plus the fire scenario and fault injection. `siteLedger()` gives the ledger with each device's
 * simulated address filled in, which is what an edge agent reads.
 */
import type { LedgerDevice } from '../../../config/ledger.js';
import { startCameraFleet, cameraSpecsFromLedger, type CameraFleet } from '../camera/index.js';
import { startRtspServer, type RtspServer } from '../rtsp/server.js';
import { planFire, playFire, type FirePlanOptions, type PlayingFire } from '../scenario/fire.js';
import { startPoleFleet, type PoleFault, type PoleFleet } from '../voice-pole/simulator.js';
import { startTankFleet, type TankFault, type TankFleet } from '../water-tank/simulator.js';
import type { LatLon } from '../geo.js';

export const CAMERA_CREDENTIALS = { username: 'admin', password: 'onvif-sim' };

export interface SiteFleetOptions {
  seed: number;
  /** Simulated seconds per real second for tank levels. */
  timeScale: number;
  host: string;
  /** Which kinds to simulate (default all). */
  kinds?: ReadonlyArray<'water_tank' | 'voice_pole' | 'camera'>;
  /** Called as each part comes up, for a progress display. */
  onProgress?: (part: string, detail: string) => void;
}

export interface SiteFleet {
  tanks: TankFleet | undefined;
  poles: PoleFleet | undefined;
  cameras: CameraFleet | undefined;
  rtsp: RtspServer | undefined;
  /** The ledger with modbus_host/port, api_url, onvif_url and rtsp_url of the simulators. */
  siteLedger(): LedgerDevice[];
  igniteFire(at: LatLon, opts?: FirePlanOptions & { timeScale?: number }): PlayingFire;
  injectFault(deviceId: string, fault: string): Promise<void>;
  close(): Promise<void>;
}

export async function startSiteFleet(ledger: readonly LedgerDevice[], opts: SiteFleetOptions): Promise<SiteFleet> {
  const kinds = new Set(opts.kinds ?? ['water_tank', 'voice_pole', 'camera']);
  const progress = opts.onProgress ?? (() => undefined);
  const closers: Array<() => Promise<void>> = [];
  const fires: PlayingFire[] = [];
  try {
    let tanks: TankFleet | undefined;
    let poles: PoleFleet | undefined;
    let cameras: CameraFleet | undefined;
    let rtsp: RtspServer | undefined;
    if (kinds.has('water_tank')) {
      const t0 = performance.now();
      tanks = await startTankFleet(ledger, { seed: opts.seed, timeScale: opts.timeScale, host: opts.host });
      closers.push(() => tanks!.close());
      progress('water tanks', `${tanks.endpoints.size} Modbus TCP transmitters in ${Math.round(performance.now() - t0)} ms`);
    }
    if (kinds.has('voice_pole')) {
      const t0 = performance.now();
      poles = await startPoleFleet(ledger, { host: opts.host });
      closers.push(() => poles!.close());
      progress('voice poles', `${poles.endpoints.size} broadcast terminals in ${Math.round(performance.now() - t0)} ms`);
    }
    if (kinds.has('camera')) {
      const t0 = performance.now();
      const specs = cameraSpecsFromLedger(ledger);
      const known = new Set(specs.map((s) => s.id));
      rtsp = await startRtspServer({ host: opts.host, port: 0, isKnown: (id) => known.has(id) });
      closers.push(() => rtsp!.close());
      const rtspServer = rtsp;
      cameras = await startCameraFleet(specs, {
        host: opts.host,
        port: 0,
        seed: opts.seed,
        ...CAMERA_CREDENTIALS,
        streamUrlFor: (id) => rtspServer.urlFor(id),
        discovery: false,
      });
      closers.push(() => cameras!.close());
      progress('cameras', `${specs.length} ONVIF cameras on :${cameras.port}, streams on rtsp://${opts.host}:${rtsp.port}/ in ${Math.round(performance.now() - t0)} ms`);
    }

    const fleet: SiteFleet = {
      tanks,
      poles,
      cameras,
      rtsp,
      siteLedger() {
        return ledger.map((d): LedgerDevice => {
          if (d.kind === 'water_tank') {
            const ep = tanks?.endpoints.get(d.id);
            return ep ? { ...d, settings: { ...d.settings, modbusHost: ep.host, modbusPort: ep.port, modbusUnit: ep.unitId } } : d;
          }
          if (d.kind === 'voice_pole') {
            const url = poles?.endpoints.get(d.id);
            return url ? { ...d, settings: { ...d.settings, apiUrl: url } } : d;
          }
          if (cameras && rtsp && cameras.ids.includes(d.id)) {
            const onvif = new URL(cameras.deviceServiceUrl(d.id));
            onvif.username = CAMERA_CREDENTIALS.username;
            onvif.password = CAMERA_CREDENTIALS.password;
            return { ...d, settings: { ...d.settings, onvifUrl: onvif.toString(), rtspUrl: rtsp.urlFor(d.id) } };
          }
          return d;
        });
      },
      igniteFire(at, fireOpts = {}) {
        const plan = planFire(ledger, at, { seed: opts.seed, ...fireOpts });
        const playing = playFire(
          plan,
          {
            raise: (id, d) => cameras?.camera(id).raiseFire({ kind: d.kind, bearingDeg: d.bearingDeg, confidence: d.confidence }),
            clear: (id) => cameras?.camera(id).clearFire(),
            drawTank: (id, flow, minutes) => tanks?.simulators.get(id)?.model.startDraw(flow, minutes),
          },
          { timeScale: fireOpts.timeScale ?? 1 },
        );
        fires.push(playing);
        return playing;
      },
      async injectFault(deviceId, fault) {
        const device = ledger.find((d) => d.id === deviceId);
        if (!device) throw new Error(`no device "${deviceId}" in the ledger`);
        if (device.kind === 'water_tank') {
          const sim = tanks?.simulators.get(deviceId) ?? fail(`${deviceId} is not simulated`);
          sim.setFault(fault as TankFault);
        } else if (device.kind === 'voice_pole') {
          const sim = poles?.poles.get(deviceId) ?? fail(`${deviceId} is not simulated`);
          await sim.setFault(fault as PoleFault);
        } else {
          const cam = cameras?.camera(deviceId) ?? fail(`${deviceId} is not simulated`);
          if (fault === 'offline') cam.setOffline(true, 'silent');
          else if (fault === 'none') {
            cam.setOffline(false, 'silent');
            rtsp?.restoreStream(deviceId);
          } else if (fault === 'flood') cam.flood(1000);
          else if (fault === 'stream_down') await rtsp?.stopStream(deviceId);
          else fail(`camera faults: offline, flood, stream_down, none (not "${fault}")`);
        }
      },
      async close() {
        for (const f of fires) f.stop();
        for (const c of closers.reverse()) await c();
      },
    };
    return fleet;
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    throw err;
  }
}

function fail(message: string): never {
  throw new Error(message);
}
