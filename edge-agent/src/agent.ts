/**
 * `buildAgent` wires collectors -> outbox -> uplink. One agent speaks for the devices the ledger
 * assigns to it (column `agent`); collectors are handed to it ready-made (see collectors.ts), so
 * tests and the demo can point them at simulators.
 */
import type { Logger } from 'pino';
import type { AgentConfig } from '../../config/schema.js';
import type { Collector, Reading } from './collectors/collector.js';
import { Outbox } from './outbox.js';
import { Uplink } from './uplink.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  collectors: Collector[];
  /** Devices this agent speaks for (for its state message). */
  deviceCount: number;
}

export interface EdgeAgent {
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): ReturnType<Uplink['stats']>;
  /** For collectors-in-tests and the scenario player: inject a reading as if a collector made it. */
  emit(reading: Reading): void;
}

export function buildAgent(opts: AgentOptions): EdgeAgent {
  const { config, log } = opts;
  const outbox = new Outbox(config.outboxFile, { maxMessages: config.outboxMaxMessages });
  const uplink = new Uplink(
    {
      agentId: config.id,
      brokerUrl: config.brokerUrl,
      ...(config.username ? { username: config.username } : {}),
      ...(config.password ? { password: config.password } : {}),
      maxInflight: config.maxInflight,
      devices: opts.deviceCount,
      version: AGENT_VERSION,
    },
    outbox,
    log.child({ module: 'uplink' }),
  );
  let pumpScheduled = false;
  const emit = (reading: Reading) => {
    outbox.append(reading);
    // Coalesce: many readings in one tick cost one pump.
    if (!pumpScheduled) {
      pumpScheduled = true;
      setImmediate(() => {
        pumpScheduled = false;
        uplink.pump();
      });
    }
  };
  const started: Collector[] = [];
  return {
    emit,
    stats: () => uplink.stats(),
    async start() {
      const queued = outbox.stats().queued;
      if (queued > 0) log.info({ queued }, 'outbox holds readings from before; they will be sent first');
      uplink.start();
      for (const c of opts.collectors) {
        await c.start({ log: log.child({ collector: c.name }), emit });
        started.push(c);
      }
      log.info({ agent: config.id, collectors: started.map((c) => c.name), devices: opts.deviceCount }, 'edge agent started');
    },
    async stop() {
      for (const c of started.splice(0).reverse()) await c.stop();
      await uplink.stop();
      outbox.close();
    },
  };
}
