import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ledgerToCsv, parseLedgerCsv } from '../../config/ledger.js';
import { buildGeography, CHASHAN_FLEET, generateFleet } from '../../simulators/src/fleet/geography.js';

const HEADER = 'id,kind,name,lat,lon,grid,community,agent,capacity_m3,height_mm';

describe('device ledger CSV', () => {
  it('reads devices with kind-specific settings and defaults', () => {
    const { devices, problems } = parseLedgerCsv(
      `${HEADER}\ntank-9,water_tank,"水池, 东",29.41,105.9,G01,茶山社区,agent-1,50,2500\ncam-9,camera,塔,29.4,105.88,G01,茶山社区,agent-1,,\n`,
    );
    expect(problems).toEqual([]);
    expect(devices[0]).toMatchObject({ id: 'tank-9', kind: 'water_tank', name: '水池, 东', settings: { capacityM3: 50, heightMm: 2500, lowPercent: 30, criticalPercent: 15, modbusUnit: 1 } });
    expect(devices[1]).toMatchObject({ id: 'cam-9', kind: 'camera', settings: { viewRangeM: 5000 } });
  });

  it('reports every bad row by line number and keeps the good ones', () => {
    const csv = [
      HEADER,
      'tank-1,water_tank,A,29.41,105.9,G01,c,agent-1,50,2500',
      'tank-2,water_tank,B,91,105.9,G01,c,agent-1,50,2500',
      'tank-3,toaster,C,29.41,105.9,G01,c,agent-1,,',
      'tank-1,water_tank,D,29.41,105.9,G01,c,agent-1,50,2500',
      'tank 5,water_tank,E,29.41,east,G01,c,agent-1,,2500',
      'cam-6,camera,F,29.41,105.9,G01,c,agent-1,50,',
    ].join('\n');
    const { devices, problems } = parseLedgerCsv(csv);
    expect(devices.map((d) => d.id)).toEqual(['tank-1']);
    expect(problems).toEqual([
      'line 3: lat: 91 is outside -90..90',
      'line 4: kind: "toaster" is not one of camera, voice_pole, water_tank',
      'line 5: id: "tank-1" already used on line 2',
      `line 6: id: "tank 5" may hold only letters, digits, '_', '.', '-' (max 64)`,
      'line 6: lon: "east" is not a number',
      'line 6: capacity_m3: is required',
      'line 7: capacity_m3: does not apply to a camera',
    ]);
  });

  it('rejects unknown columns and accepts Chinese headers and kinds', () => {
    expect(parseLedgerCsv('id,kind,colour\n').problems[0]).toMatch(/^line 1: unknown column "colour"/);
    const { devices, problems } = parseLedgerCsv('设备编号,类型,名称,纬度,经度,网格,社区,代理\npole-1,广播,一号,29.4,105.9,G02,竹海社区,agent-1\n');
    expect(problems).toEqual([]);
    expect(devices[0]).toMatchObject({ id: 'pole-1', kind: 'voice_pole', grid: 'G02' });
  });

  it('round-trips through CSV, and the shipped ledger is the generator output', () => {
    const geo = buildGeography(20250401);
    const fleet = generateFleet(geo, CHASHAN_FLEET, { seed: 20250401, agent: 'agent-chashan' });
    const csv = ledgerToCsv(fleet);
    expect(parseLedgerCsv(csv)).toEqual({ devices: fleet, problems: [] });
    expect(readFileSync(join(import.meta.dirname, '../../config/ledger/chashan-zhuhai.csv'), 'utf8')).toBe(csv);
    const kinds = fleet.reduce<Record<string, number>>((n, d) => ({ ...n, [d.kind]: (n[d.kind] ?? 0) + 1 }), {});
    expect(kinds).toEqual({ camera: 1657, voice_pole: 73, water_tank: 58 });
    for (const d of fleet) {
      expect(d.lat).toBeGreaterThanOrEqual(29.38);
      expect(d.lat).toBeLessThanOrEqual(29.48);
      expect(d.lon).toBeGreaterThanOrEqual(105.82);
      expect(d.lon).toBeLessThanOrEqual(105.95);
    }
  });
});
