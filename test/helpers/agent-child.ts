/**
 * An edge agent in its own process, for fault tests that kill it. argv[2] is a JSON document:
 * { agent: <agent config doc>, devices: string[], periodMs, t0, journal }.
 * Its collector is a metronome: every `periodMs` it emits one tank reading per device, numbered
 * by wall time since t0 (so a restarted agent continues the numbering), and appends the number to
 * `journal` after the reading is in the outbox: the journal is what the agent promised to deliver.
 */
import { appendFileSync } from 'node:fs';
import { resolveConfig } from '../../config/load.js';
import { buildAgent } from '../../edge-agent/src/agent.js';
import type { Collector, CollectorContext } from '../../edge-agent/src/collectors/collector.js';
import { createLogger } from '../../gateway/src/log.js';
import { CONFIG_DIR } from './gateway.js';

interface ChildSpec {
  agent: Record<string, unknown>;
  devices: string[];
  periodMs: number;
  t0: number;
  journal: string;
}
const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
const { config } = resolveConfig({ log: { level: 'warn' }, agent: spec.agent }, { source: 'argv', baseDir: CONFIG_DIR });

class Metronome implements Collector {
  readonly name = 'metronome';
  #timer: NodeJS.Timeout | undefined;
  async start(ctx: CollectorContext) {
    let last = Math.floor((Date.now() - spec.t0) / spec.periodMs);
    this.#timer = setInterval(() => {
      const i = Math.floor((Date.now() - spec.t0) / spec.periodMs);
      if (i <= last) return;
      last = i;
      for (const deviceId of spec.devices) {
        ctx.emit({ channel: 'telemetry', kind: 'water_tank', deviceId, ts: spec.t0 + i * spec.periodMs, values: { levelMm: i % 20000, levelPercent: 50, volumeM3: 20 } });
        appendFileSync(spec.journal, `${deviceId} ${i}\n`);
      }
    }, Math.max(1, Math.floor(spec.periodMs / 4)));
  }
  async stop() {
    clearInterval(this.#timer);
  }
}

const agent = buildAgent({ config: config.agent!, log: createLogger(config.log.level), collectors: [new Metronome()], deviceCount: spec.devices.length });
await agent.start();
process.stdout.write('{"ready":true}\n');
process.on('SIGTERM', () => void agent.stop().then(() => process.exit(0)));
