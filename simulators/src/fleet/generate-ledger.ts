/**
 * Writes the simulated site's GeoJSON and device ledger CSV:
 *   npm run ledger:generate [-- --seed N --out config]
 * The shipped files under config/ were made with the defaults; re-running gives the same bytes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ledgerToCsv } from '../../../config/ledger.js';
import { buildGeography, CHASHAN_FLEET, generateFleet, siteGeoJson } from './geography.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '20250401' },
    out: { type: 'string', default: 'config' },
    agent: { type: 'string', default: 'agent-chashan' },
  },
});
const seed = Number(values.seed);
const geo = buildGeography(seed);
const devices = generateFleet(geo, CHASHAN_FLEET, { seed, agent: values.agent });
mkdirSync(join(values.out, 'sites'), { recursive: true });
mkdirSync(join(values.out, 'ledger'), { recursive: true });
writeFileSync(join(values.out, 'sites', 'chashan-zhuhai.geojson'), `${JSON.stringify(siteGeoJson(geo, { id: 'chashan-zhuhai', name: '茶山竹海街道' }))}\n`);
writeFileSync(join(values.out, 'ledger', 'chashan-zhuhai.csv'), ledgerToCsv(devices));
process.stdout.write(
  `wrote ${geo.cells.length} grids in ${geo.communities.length} communities and ${devices.length} devices to ${values.out}/\n`,
);
