/**
 * The dashboard's device state: the latest DeviceView per id, fed by the REST snapshot, the WS
 * snapshot and coalesced WS updates. No DOM here, so it can be unit-tested and shared by the map
 * and the panel.
 */
import type { DeviceKind } from '../../protocol/payloads.js';
import type { Availability, DeviceUpdate, DeviceView } from '../../protocol/ws.js';

// Local copies of the protocol's enumerations: importing the values from protocol/payloads.ts
// would pull TypeBox into the browser bundle. The `satisfies` + exhaustiveness checks below keep
// them in step with the protocol at compile time.
export const KINDS = ['camera', 'voice_pole', 'water_tank'] as const satisfies readonly DeviceKind[];
export const STATUSES = ['online', 'offline', 'unknown'] as const satisfies readonly Availability[];
type Missing<All, Listed> = Exclude<All, Listed>;
const kindsAreComplete: Missing<DeviceKind, (typeof KINDS)[number]> extends never ? true : false = true;
const statusesAreComplete: Missing<Availability, (typeof STATUSES)[number]> extends never ? true : false = true;
void kindsAreComplete;
void statusesAreComplete;

/**
 * Tank level bands. Each tank's low/critical thresholds come from the ledger (`GET /api/devices`
 * sends them as `tankThresholds`); these are the ledger's defaults, for a tank the page has no
 * thresholds for (yet).
 */
export const TANK_LOW_PERCENT = 30;
export const TANK_CRITICAL_PERCENT = 15;
export type TankBand = 'ok' | 'warning' | 'danger' | 'none';

export interface TankThresholds {
  lowPercent: number;
  criticalPercent: number;
}
export const DEFAULT_TANK_THRESHOLDS: TankThresholds = { lowPercent: TANK_LOW_PERCENT, criticalPercent: TANK_CRITICAL_PERCENT };

export function tankBand(levelPercent: number | undefined, thresholds: TankThresholds = DEFAULT_TANK_THRESHOLDS): TankBand {
  if (levelPercent === undefined) return 'none';
  if (levelPercent < thresholds.criticalPercent) return 'danger';
  if (levelPercent < thresholds.lowPercent) return 'warning';
  return 'ok';
}

/** A finite numeric telemetry value, or undefined (absent, or a string/boolean field). */
export function numericValue(device: DeviceView, field: string): number | undefined {
  const value = device.values[field];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function tankLevel(device: DeviceView): number | undefined {
  return device.kind === 'water_tank' ? numericValue(device, 'levelPercent') : undefined;
}

export type KindCounts = Record<Availability | 'total', number>;
export type FleetCounts = Record<DeviceKind, KindCounts>;

/** Tanks by band, for the overview: below low (but not critical), below critical, no reading. */
export type TankBandCounts = Record<TankBand, number>;

/**
 * Folds `next` into `prev` the way the store applies them: later fields win, `values` merge key by
 * key. Merging (rather than replacing) `values` is correct whether the gateway sends only the
 * changed keys or the whole latest set.
 */
export function mergeUpdates(prev: DeviceUpdate, next: DeviceUpdate): DeviceUpdate {
  const merged: DeviceUpdate = { ...prev, ...next };
  if (prev.values && next.values) merged.values = { ...prev.values, ...next.values };
  return merged;
}

const zeroCounts = (): FleetCounts => ({
  camera: { total: 0, online: 0, offline: 0, unknown: 0 },
  voice_pole: { total: 0, online: 0, offline: 0, unknown: 0 },
  water_tank: { total: 0, online: 0, offline: 0, unknown: 0 },
});

/**
 * The latest DeviceView per id. Counts per kind and status are kept up to date as updates arrive
 * and tanks are indexed apart, so the panel and the overview cost nothing per update batch that
 * grows with the fleet (50,000 devices, a batch per animation frame).
 */
export class DeviceStore {
  readonly #byId = new Map<string, DeviceView>();
  readonly #tanks = new Map<string, DeviceView>();
  #counts: FleetCounts = zeroCounts();
  #thresholds = new Map<string, TankThresholds>();

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): DeviceView | undefined {
    return this.#byId.get(id);
  }

  all(): IterableIterator<DeviceView> {
    return this.#byId.values();
  }

  /** The water tanks only (a few percent of the fleet). */
  tanks(): IterableIterator<DeviceView> {
    return this.#tanks.values();
  }

  /** Replaces everything (a snapshot is the whole truth; devices missing from it are gone). */
  replaceAll(devices: readonly DeviceView[]): void {
    this.#byId.clear();
    this.#tanks.clear();
    const counts = zeroCounts();
    for (const d of devices) {
      const prev = this.#byId.get(d.id);
      if (prev) {
        // A duplicate id in one snapshot: the later row wins, counted once.
        counts[prev.kind].total--;
        counts[prev.kind][prev.status]--;
      }
      this.#byId.set(d.id, d);
      if (d.kind === 'water_tank') this.#tanks.set(d.id, d);
      counts[d.kind].total++;
      counts[d.kind][d.status]++;
    }
    this.#counts = counts;
  }

  /** Ledger thresholds per tank id (replaces what was there). */
  setTankThresholds(thresholds: ReadonlyMap<string, TankThresholds>): void {
    this.#thresholds = new Map(thresholds);
  }

  thresholds(id: string): TankThresholds {
    return this.#thresholds.get(id) ?? DEFAULT_TANK_THRESHOLDS;
  }

  /** The tank's level band by its own thresholds ('none' for other kinds or no reading). */
  band(device: DeviceView): TankBand {
    return tankBand(tankLevel(device), this.thresholds(device.id));
  }

  /**
   * Applies updates and returns the devices that changed. Updates for ids the store does not hold
   * are dropped: without ledger facts (position, kind) there is nothing to draw, and the next
   * snapshot brings the device in.
   */
  applyUpdates(updates: Iterable<DeviceUpdate>): DeviceView[] {
    const changed = new Map<string, DeviceView>();
    for (const u of updates) {
      const prev = this.#byId.get(u.id);
      if (!prev) continue;
      const next: DeviceView = {
        ...prev,
        ...(u.status !== undefined ? { status: u.status } : {}),
        ...(u.lastSeen !== undefined ? { lastSeen: u.lastSeen } : {}),
        ...(u.valuesTs !== undefined ? { valuesTs: u.valuesTs } : {}),
        ...(u.values !== undefined ? { values: { ...prev.values, ...u.values } } : {}),
      };
      if (next.status !== prev.status) {
        this.#counts[prev.kind][prev.status]--;
        this.#counts[next.kind][next.status]++;
      }
      this.#byId.set(u.id, next);
      if (next.kind === 'water_tank') this.#tanks.set(u.id, next);
      changed.set(u.id, next);
    }
    return [...changed.values()];
  }

  /** Counts per kind and status (a copy). */
  counts(): FleetCounts {
    const c = this.#counts;
    return { camera: { ...c.camera }, voice_pole: { ...c.voice_pole }, water_tank: { ...c.water_tank } };
  }

  /** Tanks per band by their own thresholds; iterates the tanks only. */
  tankBands(): TankBandCounts {
    const out: TankBandCounts = { ok: 0, warning: 0, danger: 0, none: 0 };
    for (const d of this.#tanks.values()) out[this.band(d)]++;
    return out;
  }
}
