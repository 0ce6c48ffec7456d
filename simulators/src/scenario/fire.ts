/**
 * The fire scenario: ignite a fire at a point, and the cameras that can see it report smoke and
 * then fire, each with its own bearing to the fire, after delays a forest-fire camera network
 * really has: a PTZ camera only looks at the fire when its 360° cruise (3–5 min, LY/T 2581 field
 * practice) sweeps past it, smoke must have grown big enough to be seen at that distance, and
 * recognition takes a few seconds. Nearby water tanks are drawn down as crews pump from them.
 * Planning is a pure function of the ledger, the point and a seed; playing it drives simulators.
 */
import type { LedgerDevice } from '../../../config/ledger.js';
import { prng } from '../fleet/geography.js';
import { bearingDeg, distanceM, type LatLon } from '../geo.js';

export interface FireDetection {
  cameraId: string;
  kind: 'smoke' | 'fire';
  /** Scenario time of the report, ms after ignition. */
  atMs: number;
  /** Bearing the camera reports (true bearing plus the camera's pointing error). */
  bearingDeg: number;
  trueBearingDeg: number;
  distanceM: number;
  confidence: number;
}

export interface FirePlan {
  ignition: LatLon;
  detections: FireDetection[];
  /** Tanks within reach of the fire, drawn down once the fire is confirmed. */
  tanks: Array<{ tankId: string; distanceM: number; drawFromMs: number }>;
}

export interface FirePlanOptions {
  seed?: number;
  /** Full 360° cruise of a PTZ fire camera, s (default 240). */
  cruisePeriodS?: number;
  /** Seconds a fire must burn per km of distance before its smoke is visible (default 20). */
  smokeGrowthSPerKm?: number;
  /** Thermal (fire) detection reaches this share of the camera's view range (default 0.6). */
  thermalRangeShare?: number;
  /** Camera pointing error, degrees (1 σ; default 0.3). */
  bearingErrorDeg?: number;
  /** Tanks within this distance are drawn down (default 1500 m). */
  tankReachM?: number;
  /** Consider only the nearest N cameras that can see it (default all). */
  maxCameras?: number;
}

/**
 * Long-range cameras (view range ≥ 3 km) are PTZ towers that cruise all round; short-range
 * sensing cameras are fixed, with a 90° field of view centred on their heading.
 */
function inFieldOfView(camera: Extract<LedgerDevice, { kind: 'camera' }>, target: LatLon): boolean {
  if (camera.settings.viewRangeM >= 3000 || camera.settings.headingDeg === undefined) return true;
  const off = Math.abs(((bearingDeg(camera, target) - camera.settings.headingDeg + 540) % 360) - 180);
  return off <= 45;
}

export function planFire(ledger: readonly LedgerDevice[], ignition: LatLon, opts: FirePlanOptions = {}): FirePlan {
  const rand = prng(opts.seed ?? 1);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const cruiseMs = (opts.cruisePeriodS ?? 240) * 1000;
  const growthMsPerM = (opts.smokeGrowthSPerKm ?? 20);
  const thermalShare = opts.thermalRangeShare ?? 0.6;
  const errDeg = opts.bearingErrorDeg ?? 0.3;
  const cameras = ledger
    .filter((d): d is Extract<LedgerDevice, { kind: 'camera' }> => d.kind === 'camera')
    .map((d) => ({ device: d, distanceM: distanceM(d, ignition) }))
    .filter((c) => c.distanceM <= c.device.settings.viewRangeM && inFieldOfView(c.device, ignition))
    .sort((a, b) => a.distanceM - b.distanceM)
    .slice(0, opts.maxCameras ?? Number.POSITIVE_INFINITY);
  const detections: FireDetection[] = [];
  for (const { device, distanceM: dist } of cameras) {
    const trueBearing = bearingDeg(device, ignition);
    const visibleFromMs = dist * growthMsPerM; // ms: growth s/km × m
    // The cruise passes the fire's bearing at a random phase, then every cruise period.
    let sweep = rand() * cruiseMs;
    while (sweep < visibleFromMs) sweep += cruiseMs;
    const recognitionMs = 3000 + rand() * 9000;
    const report = (kind: 'smoke' | 'fire', atMs: number) =>
      detections.push({
        cameraId: device.id,
        kind,
        atMs: Math.round(atMs),
        bearingDeg: (trueBearing + gauss() * errDeg + 360) % 360,
        trueBearingDeg: trueBearing,
        distanceM: Math.round(dist),
        confidence: Math.round(Math.max(0.5, 0.97 - (dist / device.settings.viewRangeM) * 0.4) * 100) / 100,
      });
    report('smoke', sweep + recognitionMs);
    // The camera has stopped on the smoke; flames or a hot spot show once the fire is big enough.
    if (dist <= device.settings.viewRangeM * thermalShare) report('fire', sweep + recognitionMs + 30_000 + rand() * 60_000);
  }
  detections.sort((a, b) => a.atMs - b.atMs);
  const firstFire = detections.find((d) => d.kind === 'fire')?.atMs ?? detections[0]?.atMs ?? 0;
  const tanks = ledger
    .filter((d) => d.kind === 'water_tank')
    .map((d) => ({ tankId: d.id, distanceM: Math.round(distanceM(d, ignition)) }))
    .filter((t) => t.distanceM <= (opts.tankReachM ?? 1500))
    .map((t) => ({ ...t, drawFromMs: firstFire + 10 * 60_000 })); // crews arrive ~10 min after confirmation
  return { ignition, detections, tanks };
}

/** What playing a plan needs from the simulators (kept narrow so tests can pass fakes). */
export interface FireStage {
  raise(cameraId: string, d: FireDetection): void;
  clear(cameraId: string): void;
  drawTank?(tankId: string, flowM3PerHour: number, minutes: number): void;
}

export interface PlayingFire {
  readonly plan: FirePlan;
  /** Extinguished: clears every camera alarm and cancels what is still to come. */
  stop(): void;
}

/** Plays a plan in real time divided by `timeScale` (60 = one scenario minute per real second). */
export function playFire(plan: FirePlan, stage: FireStage, opts: { timeScale?: number } = {}): PlayingFire {
  const scale = opts.timeScale ?? 1;
  const timers: NodeJS.Timeout[] = [];
  const raised = new Set<string>();
  for (const d of plan.detections) {
    timers.push(
      setTimeout(() => {
        raised.add(d.cameraId);
        stage.raise(d.cameraId, d);
      }, d.atMs / scale),
    );
  }
  for (const t of plan.tanks) {
    timers.push(setTimeout(() => stage.drawTank?.(t.tankId, 30, 90), t.drawFromMs / scale));
  }
  return {
    plan,
    stop() {
      for (const t of timers) clearTimeout(t);
      for (const id of raised) stage.clear(id);
      raised.clear();
    },
  };
}
