import type { InfluxConfig } from '../../../config/schema.js';
import { InfluxV1Target } from './influx-v1.js';
import { InfluxV2Target } from './influx-v2.js';
import type { SeriesTarget } from './types.js';

/** `api: 'v2'` (InfluxDB 2.x/3.x) throws here when org, bucket or token is missing, so the gateway does not start. */
export function createTarget(influx: InfluxConfig): SeriesTarget {
  return influx.api === 'v2' ? new InfluxV2Target(influx) : new InfluxV1Target(influx);
}
