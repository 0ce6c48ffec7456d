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
 * Tank level bands. The ledger has per-tank low/critical thresholds, but DeviceView does not carry
 * them yet, so the ledger's defaults (30 % / 15 %) apply to every tank until the API exposes them.
 */
export const TANK_LOW_PERCENT = 30;
export const TANK_CRITICAL_PERCENT = 15;
export type TankBand = 'ok' | 'warning' | 'danger' | 'none';

export function tankBand(levelPercent: number | undefined): TankBand {
  if (levelPercent === undefined) return 'none';
  if (levelPercent < TANK_CRITICAL_PERCENT) return 'danger';
  if (levelPercent < TANK_LOW_PERCENT) return 'warning';
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

export class DeviceStore {
  readonly #byId = new Map<string, DeviceView>();

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): DeviceView | undefined {
    return this.#byId.get(id);
  }

  all(): IterableIterator<DeviceView> {
    return this.#byId.values();
  }

  /** Replaces everything (a snapshot is the whole truth; devices missing from it are gone). */
  replaceAll(devices: readonly DeviceView[]): void {
    this.#byId.clear();
    for (const d of devices) this.#byId.set(d.id, d);
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
      this.#byId.set(u.id, next);
      changed.set(u.id, next);
    }
    return [...changed.values()];
  }

  counts(): FleetCounts {
    const zero = (): KindCounts => ({ total: 0, online: 0, offline: 0, unknown: 0 });
    const counts: FleetCounts = { camera: zero(), voice_pole: zero(), water_tank: zero() };
    for (const d of this.#byId.values()) {
      const c = counts[d.kind];
      c.total++;
      c[d.status]++;
    }
    return counts;
  }
}
