/**
 * `buildAgent` wires collectors -> outbox -> uplink. One agent speaks for the devices the ledger
 * assigns to it (column `agent`); collectors are handed to it ready-made (see collectors.ts), so
 * tests and the demo can point them at simulators.
 */
import type { Logger } from 'pino';
import type { AgentConfig } from '../../config/schema.js';
import type { AckStatus } from '../../protocol/payloads.js';
import { validate } from '../../protocol/validate.js';
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
      commandDevices: opts.collectors.flatMap((c) => c.commandDevices ?? []),
      onCommand: (deviceId, payload) => onCommand(deviceId, payload),
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
  const commandOwners = new Map<string, Collector>();
  for (const c of opts.collectors) for (const id of c.commandDevices ?? []) commandOwners.set(id, c);
  const commandLog = log.child({ module: 'commands' });
  // A re-sent command (QoS1 redelivery, a gateway retry) must not run twice: remember recent ids.
  const seenCommands = new Map<string, number>();
  const onCommand = (deviceId: string, payload: Buffer) => {
    const owner = commandOwners.get(deviceId);
    const r = validate.command(payload);
    if (!r.ok) {
      commandLog.warn({ device: deviceId, reason: r.reason, detail: r.detail }, 'invalid command ignored');
      return;
    }
    const command = r.value;
    const key = `${deviceId}\u0000${command.id}`;
    if (seenCommands.has(key)) {
      commandLog.debug({ device: deviceId, cmd: command.id }, 'duplicate command ignored');
      return;
    }
    seenCommands.set(key, Date.now());
    if (seenCommands.size > 10_000) seenCommands.delete(seenCommands.keys().next().value as string);
    const ack = (status: AckStatus, reason?: string) =>
      emit({ channel: 'ack', deviceId, ts: Date.now(), cmdId: command.id, status, ...(reason ? { reason } : {}) });
    if (!owner?.handleCommand) return ack('rejected', 'this agent has no collector that executes commands for the device');
    if (command.expiresAt !== undefined && command.expiresAt < Date.now()) return ack('expired', 'arrived after its expiry');
    try {
      owner.handleCommand(deviceId, command);
    } catch (err) {
      ack('failed', (err as Error).message.slice(0, 200));
    }
  };
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
