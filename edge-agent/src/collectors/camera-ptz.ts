/**
 * PTZ for the camera collector: ONVIF generic-space positions → the protocol's camera telemetry,
 * and the `ptz.*` command parameter contract (docs/devices/camera-agent.md, "PTZ commands").
 *
 * Pan ↔ bearing (docs/devices/camera-onvif.md): x ∈ [−1, 1] is ±180° from the pan head's
 * mechanical zero, which faces the ledger's `heading_deg`; bearing = (heading + 180·x) mod 360.
 */
import type { CameraValues, DeviceCommand } from '../../../protocol/payloads.js';
import { normaliseBearing } from './camera-events.js';

/** Compass bearing (° true, 0.1°) of a pan position, given the ledger heading. */
export function panXToBearing(x: number, headingDeg: number): number {
  return normaliseBearing(headingDeg + 180 * x);
}

/** The pan x that points a camera with `headingDeg` at `bearingDeg`. */
export function bearingToPanX(bearingDeg: number, headingDeg: number): number {
  let d = (((bearingDeg - headingDeg) % 360) + 360) % 360;
  if (d > 180) d -= 360;
  return d / 180;
}

const round1 = (v: number) => Math.round(v * 10) / 10;
const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/**
 * Telemetry from a GetStatus position: pan as a compass bearing (only with a heading), tilt in
 * degrees (y·90, 0 = horizon, negative = down), zoom as % of the optical range (z·100).
 */
export function ptzValues(position: { x?: unknown; y?: unknown; zoom?: unknown }, headingDeg: number | undefined): CameraValues | undefined {
  const num = (v: unknown) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  const x = num(position.x);
  const y = num(position.y);
  const z = num(position.zoom);
  const values: CameraValues = {};
  if (x !== undefined && headingDeg !== undefined) values.panDeg = panXToBearing(clamp(x, -1, 1), headingDeg);
  if (y !== undefined) values.tiltDeg = round1(clamp(y, -1, 1) * 90);
  if (z !== undefined) values.zoom = round1(clamp(z, 0, 1) * 100);
  return Object.keys(values).length > 0 ? values : undefined;
}

// ---- command parameters -------------------------------------------------------------------------

export interface GotoPresetParams {
  /** a preset token, or a preset name (tokens are tried first) */
  preset: string;
  /** 0 < speed ≤ 1 of the camera's maximum; default: the camera's own default */
  speed?: number;
}

export interface MoveParams {
  /** velocities −1..1 (positive pan = clockwise seen from above, positive tilt = up, positive zoom = in) */
  pan: number;
  tilt: number;
  zoom: number;
  /** how long to move before the agent sends Stop */
  durationMs: number;
}

export const MAX_MOVE_MS = 60_000;
export const DEFAULT_MOVE_MS = 1000;

function unknownParams(params: DeviceCommand['params'], known: readonly string[]): string | undefined {
  for (const k of Object.keys(params)) if (!known.includes(k)) return `unknown param "${k}" (known: ${known.length ? known.join(', ') : 'none'})`;
  return undefined;
}
const given = (v: unknown) => v !== undefined && v !== null;

/** `ptz.goto_preset` params, or why they are not acceptable. */
export function parseGotoPresetParams(params: DeviceCommand['params']): GotoPresetParams | string {
  const bad = unknownParams(params, ['preset', 'speed']);
  if (bad) return bad;
  const { preset, speed } = params;
  let token: string;
  if (typeof preset === 'number' && Number.isInteger(preset) && preset >= 0) token = String(preset);
  else if (typeof preset === 'string' && preset.trim() !== '' && preset.length <= 64) token = preset.trim();
  else return 'preset must be a preset token or name (a non-empty string of at most 64 characters, or an integer)';
  if (/[<>&]/.test(token)) return 'preset must not contain <, > or &';
  const out: GotoPresetParams = { preset: token };
  if (given(speed)) {
    if (typeof speed !== 'number' || !(speed > 0 && speed <= 1)) return 'speed must be a number in (0, 1]';
    out.speed = speed;
  }
  return out;
}

/** `ptz.move` params, or why they are not acceptable. */
export function parseMoveParams(params: DeviceCommand['params']): MoveParams | string {
  const bad = unknownParams(params, ['pan', 'tilt', 'zoom', 'durationMs']);
  if (bad) return bad;
  const out: MoveParams = { pan: 0, tilt: 0, zoom: 0, durationMs: DEFAULT_MOVE_MS };
  for (const axis of ['pan', 'tilt', 'zoom'] as const) {
    const v = params[axis];
    if (!given(v)) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < -1 || v > 1) return `${axis} must be a velocity in −1..1`;
    out[axis] = v;
  }
  if (out.pan === 0 && out.tilt === 0 && out.zoom === 0) return 'give at least one non-zero velocity (pan, tilt or zoom)';
  const { durationMs } = params;
  if (given(durationMs)) {
    if (typeof durationMs !== 'number' || !Number.isInteger(durationMs) || durationMs < 100 || durationMs > MAX_MOVE_MS) {
      return `durationMs must be an integer 100–${MAX_MOVE_MS}`;
    }
    out.durationMs = durationMs;
  }
  return out;
}

/** `ptz.stop` takes no params. */
export function parseStopParams(params: DeviceCommand['params']): true | string {
  return unknownParams(params, []) ?? true;
}
