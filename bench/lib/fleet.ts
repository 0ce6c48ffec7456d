/**
 * A synthetic fleet of water tanks for the benchmarks: ledger rows (written as the gateway's CSV)
 * and, per tank, the telemetry values the load generator sends. Deterministic from the index.
 */
import { writeFileSync } from 'node:fs';
import { ledgerToCsv, type LedgerDevice } from '../../config/ledger.js';

export const BENCH_AGENT = 'bench-agent';

export function tankId(i: number): string {
  return `bench-tank-${String(i).padStart(6, '0')}`;
}

export function benchTanks(count: number): LedgerDevice[] {
  const out: LedgerDevice[] = [];
  for (let i = 0; i < count; i++) {
    const grid = Math.floor(i / 100);
    out.push({
      id: tankId(i),
      kind: 'water_tank',
      name: `基准水池 ${i}`,
      // Spread over the Chashan Zhuhai box (lat 29.38–29.48 N, lon 105.82–105.95 E).
      lat: Number((29.38 + ((i * 7919) % 10_000) / 100_000).toFixed(6)),
      lon: Number((105.82 + ((i * 104_729) % 13_000) / 100_000).toFixed(6)),
      grid: `bench-grid-${String(grid).padStart(4, '0')}`,
      community: `基准社区 ${Math.floor(grid / 10)}`,
      agent: BENCH_AGENT,
      settings: { capacityM3: 200, heightMm: 3000, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 },
    });
  }
  return out;
}

export function writeLedger(file: string, devices: readonly LedgerDevice[]): void {
  writeFileSync(file, ledgerToCsv(devices));
}

/** The three required water_tank fields, consistent with a 3000 mm / 200 m³ tank. */
export function tankValuesJson(i: number): string {
  // 40.00 .. 89.99: above every tank's low threshold (30 % + 5 % hysteresis), so the load
  // measures ingest and storage, not a flood of tank-low incidents.
  const levelPercent = 40 + ((i * 37) % 5000) / 100;
  const levelMm = Math.round(levelPercent * 30);
  const volumeM3 = Number((levelPercent * 2).toFixed(2));
  return JSON.stringify({ levelMm, levelPercent, volumeM3 });
}
