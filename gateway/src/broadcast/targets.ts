/**
 * Target resolution: a broadcast's target (poles, a group, grids, communities, a circle or a
 * polygon on the map, all) becomes the list of voice poles it selects, once, when the job is
 * created — the list is stored with the job, so what a job was sent to never changes afterwards
 * (a pole added to a grid tomorrow does not join yesterday's job). Anything named that does not
 * exist is an error with the names, never silently skipped: a typo in a grid id must not leave a
 * valley without its warning.
 */
import type { LedgerDevice } from '../../../config/ledger.js';
import type { BroadcastTarget } from '../../../protocol/broadcasts.js';
import type { SiteMap } from '../alerts/site-map.js';
import { ApiError } from '../errors.js';

export type VoicePole = Extract<LedgerDevice, { kind: 'voice_pole' }>;

/** What resolution needs from the site map. */
export type SiteQueries = Pick<SiteMap, 'within' | 'inPolygon' | 'devicesInGrid' | 'devicesInCommunity' | 'grids'>;

export interface ResolvedTarget {
  /** The selected poles, without duplicates: in the order given for a list, nearest first for a circle, else ledger order. */
  poles: VoicePole[];
  /** The target in words (Chinese, as the console shows it). */
  label: string;
  /** Distance from the centre, for a circle. */
  distanceM?: Map<string, number>;
}

const MAX_NAMED = 10;
const named = (names: readonly string[]) =>
  names
    .slice(0, MAX_NAMED)
    .map((n) => `"${n}"`)
    .join(', ') + (names.length > MAX_NAMED ? ` and ${names.length - MAX_NAMED} more` : '');
const bad = (message: string): never => {
  throw new ApiError('BROADCAST_BAD_TARGET', message);
};
const isPole = (d: LedgerDevice): d is VoicePole => d.kind === 'voice_pole';

export class TargetResolver {
  readonly #site: SiteQueries;
  readonly #devices = new Map<string, LedgerDevice>();
  readonly #poles: VoicePole[];
  readonly #groups: ReadonlyMap<string, readonly string[]>;
  readonly #grids = new Set<string>();
  readonly #communities = new Set<string>();

  /** Throws (at gateway start) when a configured group names something that is not a voice pole. */
  constructor(ctx: { site: SiteQueries; devices: readonly LedgerDevice[]; groups: Readonly<Record<string, readonly string[]>> }) {
    this.#site = ctx.site;
    for (const d of ctx.devices) this.#devices.set(d.id, d);
    this.#poles = ctx.devices.filter(isPole);
    for (const g of ctx.site.grids()) {
      this.#grids.add(g.id);
      if (g.community) this.#communities.add(g.community);
    }
    for (const d of ctx.devices) {
      this.#grids.add(d.grid);
      this.#communities.add(d.community);
    }
    for (const [name, ids] of Object.entries(ctx.groups)) {
      for (const id of ids) {
        const d = this.#devices.get(id);
        if (!d || d.kind !== 'voice_pole') throw new Error(`gateway.broadcast.groups.${name}: "${id}" is not a voice pole in the ledger`);
      }
    }
    this.#groups = new Map(Object.entries(ctx.groups));
  }

  /** Every voice pole of the ledger, in ledger order. */
  get allPoles(): readonly VoicePole[] {
    return this.#poles;
  }

  pole(id: string): VoicePole | undefined {
    const d = this.#devices.get(id);
    return d && isPole(d) ? d : undefined;
  }

  groups(): Array<{ name: string; poles: number }> {
    return [...this.#groups].map(([name, ids]) => ({ name, poles: ids.length }));
  }

  /** The poles a target selects; throws BROADCAST_BAD_TARGET naming what is unknown, or when it selects none. */
  resolve(target: BroadcastTarget): ResolvedTarget {
    const out = this.#select(target);
    if (out.poles.length === 0) bad(`${out.label}: the target selects no voice pole`);
    return out;
  }

  #select(target: BroadcastTarget): ResolvedTarget {
    switch (target.type) {
      case 'poles':
        return { poles: this.#byIds(target.poles), label: poleLabel(target.poles) };
      case 'group': {
        const ids = this.#groups.get(target.group);
        if (!ids) bad(`no pole group "${target.group}" (groups: ${[...this.#groups.keys()].join(', ') || 'none configured in gateway.broadcast.groups'})`);
        return { poles: this.#byIds(ids!), label: `分组 ${target.group}` };
      }
      case 'grids': {
        const unknown = target.grids.filter((g) => !this.#grids.has(g));
        if (unknown.length > 0) bad(`no grid ${named(unknown)} on the site map or in the ledger`);
        return { poles: dedupe(target.grids.flatMap((g) => this.#site.devicesInGrid(g, 'voice_pole').filter(isPole))), label: `网格 ${target.grids.join('、')}` };
      }
      case 'communities': {
        const unknown = target.communities.filter((c) => !this.#communities.has(c));
        if (unknown.length > 0) bad(`no community ${named(unknown)} on the site map or in the ledger`);
        return {
          poles: dedupe(target.communities.flatMap((c) => this.#site.devicesInCommunity(c, 'voice_pole').filter(isPole))),
          label: `社区 ${target.communities.join('、')}`,
        };
      }
      case 'radius': {
        const hits = this.#site.within(target.center, target.radiusM, 'voice_pole');
        const distanceM = new Map(hits.map((h) => [h.device.id, Math.round(h.distanceM)]));
        const r = target.radiusM >= 1000 ? `${Number((target.radiusM / 1000).toFixed(2))} km` : `${Math.round(target.radiusM)} m`;
        return {
          poles: hits.map((h) => h.device).filter(isPole),
          label: `半径 ${r}（${target.center.lat.toFixed(5)}, ${target.center.lon.toFixed(5)}）`,
          distanceM,
        };
      }
      case 'polygon': {
        const ring = target.ring.map(([lon, lat]) => [lon, lat] as [number, number]);
        const open = ring.length > 1 && ring[0]![0] === ring.at(-1)![0] && ring[0]![1] === ring.at(-1)![1] ? ring.slice(0, -1) : ring;
        if (open.length < 3) bad('a polygon needs at least three distinct corners');
        if (Math.abs(ringArea(open)) === 0) bad('the polygon has no area (its corners are on one line)');
        return { poles: this.#site.inPolygon(ring, 'voice_pole').filter(isPole), label: `地图圈选区域（${open.length} 个顶点）` };
      }
      case 'all':
        return { poles: [...this.#poles], label: '全部广播杆' };
      default:
        return bad(`unknown target type "${(target as { type: unknown }).type}"`);
    }
  }

  #byIds(ids: readonly string[]): VoicePole[] {
    const unknown: string[] = [];
    const notPoles: string[] = [];
    const out: VoicePole[] = [];
    for (const id of new Set(ids)) {
      const d = this.#devices.get(id);
      if (!d) unknown.push(id);
      else if (!isPole(d)) notPoles.push(`${id} (${d.kind})`);
      else out.push(d);
    }
    if (unknown.length > 0) bad(`no device ${named(unknown)} in the ledger`);
    if (notPoles.length > 0) bad(`not a voice pole: ${named(notPoles)}`);
    return out;
  }
}

function dedupe(poles: VoicePole[]): VoicePole[] {
  const seen = new Set<string>();
  return poles.filter((p) => !seen.has(p.id) && seen.add(p.id));
}

function poleLabel(ids: readonly string[]): string {
  const unique = [...new Set(ids)];
  return unique.length <= 3 ? `广播杆 ${unique.join('、')}` : `指定广播杆 ${unique.length} 个`;
}

/** Shoelace area in degrees² (only its sign and zero-ness matter here). */
function ringArea(ring: ReadonlyArray<readonly [number, number]>): number {
  let a = 0;
  for (let i = 0; i < ring.length; i++) {
    const [x1, y1] = ring[i]!;
    const [x2, y2] = ring[(i + 1) % ring.length]!;
    a += x1 * y2 - x2 * y1;
  }
  return a / 2;
}
