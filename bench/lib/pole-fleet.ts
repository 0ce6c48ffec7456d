/**
 * Many voice poles without many processes, for the broadcast benchmark: a few MQTT "agents"
 * (one connection each, as real edge agents have) that subscribe to their poles' exact command
 * topics and answer for each pole with the simulator's own PoleModel (priorities, pre-emption,
 * idempotent job ids, start delay and duration on its time scale). What is simulated: the agent's
 * HTTP round trip to each pole (the real collector's job-watch poll adds up to 500 ms per ack);
 * what is real: the MQTT traffic through the gateway's broker, the command payloads (checked with
 * the protocol's validator and the collector's own param parser) and the ack sequence the real
 * collector sends (accepted → playing → done | preempted, `pole busy`, `rejected`, `expired`).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { parsePlayParams, parseStopParams } from '../../edge-agent/src/collectors/voice-pole.js';
import type { AckStatus, AgentState, CommandAck, DeviceState } from '../../protocol/payloads.js';
import { parseTopic, topics } from '../../protocol/topics.js';
import { validate } from '../../protocol/validate.js';
import { PoleError, PoleModel, START_DELAY_MS } from '../../simulators/src/voice-pole/model.js';

interface SimPole {
  id: string;
  agent: SimAgent;
  model: PoleModel;
  offline: boolean;
  seq: number;
  lastAckTs: number;
  seen: Set<string>;
  timers: Map<string, NodeJS.Timeout>;
}

interface SimAgent {
  id: string;
  client: MqttClient;
  poles: SimPole[];
}

export interface FleetStats {
  commands: number;
  plays: number;
  stops: number;
  duplicates: number;
  /** Commands that reached a pole its agent reports offline (the gateway should not send any). */
  toOfflinePoles: number;
  acksSent: number;
  invalid: number;
}

export class SimulatedPoleFleet {
  readonly #poles = new Map<string, SimPole>();
  readonly #agents: SimAgent[] = [];
  readonly #timeScale: number;
  readonly stats: FleetStats = { commands: 0, plays: 0, stops: 0, duplicates: 0, toOfflinePoles: 0, acksSent: 0, invalid: 0 };
  /** cmdId → when the fleet published its `playing` ack (Date.now()). */
  readonly playingAckedAt = new Map<string, number>();

  constructor(opts: { byAgent: ReadonlyMap<string, readonly string[]>; offline: ReadonlySet<string>; timeScale: number }) {
    this.#timeScale = opts.timeScale;
    for (const [agentId, ids] of opts.byAgent) {
      const agent = { id: agentId, client: undefined as unknown as MqttClient, poles: [] as SimPole[] };
      for (const id of ids) {
        const pole: SimPole = { id, agent, model: new PoleModel({ timeScale: opts.timeScale }), offline: opts.offline.has(id), seq: 0, lastAckTs: 0, seen: new Set(), timers: new Map() };
        agent.poles.push(pole);
        this.#poles.set(id, pole);
      }
      this.#agents.push(agent);
    }
  }

  pole(id: string): { model: PoleModel; offline: boolean } | undefined {
    return this.#poles.get(id);
  }

  /** Connects every agent, subscribes its poles' command topics, reports the poles online (or offline). */
  async start(mqttUrl: string): Promise<void> {
    await Promise.all(
      this.#agents.map(async (agent) => {
        const will: AgentState = { ts: Date.now(), seq: 0, status: 'offline' };
        const client = await mqtt.connectAsync(mqttUrl, {
          clientId: agent.id,
          clean: true,
          keepalive: 60,
          reconnectPeriod: 0,
          will: { topic: topics.agentState(agent.id), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true },
        });
        agent.client = client;
        // Exact topics, as the broker's ACL makes real agents subscribe.
        for (let i = 0; i < agent.poles.length; i += 1000) {
          await client.subscribeAsync(
            agent.poles.slice(i, i + 1000).map((p) => topics.cmd(p.id)),
            { qos: 1 },
          );
        }
        client.on('message', (topic, payload) => this.#onCommand(topic, payload));
        const state: AgentState = { ts: Date.now(), seq: 1, status: 'online', version: 'bench', devices: agent.poles.length };
        await client.publishAsync(topics.agentState(agent.id), JSON.stringify(state), { qos: 1, retain: true });
        await Promise.all(
          agent.poles.map((p) => {
            const s: DeviceState = { ts: Date.now(), seq: ++p.seq, status: p.offline ? 'offline' : 'online', ...(p.offline ? { reason: 'connection refused' } : {}) };
            return client.publishAsync(topics.state(p.id), JSON.stringify(s), { qos: 1, retain: true });
          }),
        );
      }),
    );
  }

  async stop(): Promise<void> {
    for (const p of this.#poles.values()) for (const t of p.timers.values()) clearTimeout(t);
    await Promise.all(this.#agents.map((a) => a.client?.endAsync(true).catch(() => undefined)));
  }

  #ack(p: SimPole, cmdId: string, status: AckStatus, reason?: string): void {
    // Acks of one command carry strictly increasing ts (as the collector's do).
    const ts = Math.max(Date.now(), p.lastAckTs + 1);
    p.lastAckTs = ts;
    const ack: CommandAck = { ts, seq: ++p.seq, cmdId, status, ...(reason ? { reason } : {}) };
    if (status === 'playing') this.playingAckedAt.set(cmdId, Date.now());
    this.stats.acksSent++;
    p.agent.client.publish(topics.ack(p.id), JSON.stringify(ack), { qos: 1 });
  }

  #onCommand(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    const p = parsed?.scope === 'device' ? this.#poles.get(parsed.deviceId) : undefined;
    if (!p) return;
    const r = validate.command(payload);
    if (!r.ok) {
      this.stats.invalid++;
      return;
    }
    const command = r.value;
    this.stats.commands++;
    if (p.seen.has(command.id)) {
      this.stats.duplicates++;
      return;
    }
    p.seen.add(command.id);
    if (p.offline) {
      this.stats.toOfflinePoles++;
      return this.#ack(p, command.id, 'failed', 'pole offline: connection refused');
    }
    if (command.expiresAt !== undefined && command.expiresAt < Date.now()) return this.#ack(p, command.id, 'expired', 'arrived after its expiry');
    if (command.name === 'broadcast.stop') {
      this.stats.stops++;
      const stop = parseStopParams(command.params);
      if (typeof stop === 'string') return this.#ack(p, command.id, 'rejected', stop);
      try {
        const { job, stopped } = p.model.stop(stop.cmdId);
        this.#ack(p, command.id, 'accepted');
        this.#ack(p, command.id, 'done', stopped && job ? `stopped ${job.jobId}` : 'nothing stopped');
        if (stopped && job) {
          clearTimeout(p.timers.get(job.jobId));
          p.timers.delete(job.jobId);
          this.#ack(p, job.jobId, 'done', 'stopped before the end');
        }
      } catch (err) {
        if (!(err instanceof PoleError)) throw err;
        this.#ack(p, command.id, 'accepted');
        this.#ack(p, command.id, 'done', `the pole has no job ${stop.cmdId}; nothing stopped`);
      }
      return;
    }
    if (command.name !== 'broadcast.play') return this.#ack(p, command.id, 'rejected', `${command.name} is not a voice-pole command`);
    const play = parsePlayParams(command.params);
    if (typeof play === 'string') return this.#ack(p, command.id, 'rejected', play);
    this.stats.plays++;
    const before = p.model.status().jobId;
    try {
      p.model.play({ jobId: command.id, type: play.type, ...(play.text !== undefined ? { text: play.text } : {}), ...(play.clipId !== undefined ? { clipId: play.clipId } : {}), priority: play.priority, repeat: play.repeat, ...(play.volume !== undefined ? { volume: play.volume } : {}) });
    } catch (err) {
      if (!(err instanceof PoleError)) throw err;
      return this.#ack(p, command.id, err.code === 'BUSY' ? 'failed' : 'rejected', `${err.code === 'BUSY' ? 'pole busy' : 'pole refused'}: ${err.code}: ${err.message}`);
    }
    this.#ack(p, command.id, 'accepted');
    if (before) this.#settle(p, before);
    p.timers.set(
      command.id,
      setTimeout(() => this.#settle(p, command.id), START_DELAY_MS / this.#timeScale + 1),
    );
  }

  /** Acks what became of a job; keeps watching it while it plays. */
  #settle(p: SimPole, jobId: string): void {
    clearTimeout(p.timers.get(jobId));
    p.timers.delete(jobId);
    const job = p.model.job(jobId);
    if (!job) return;
    if (job.state === 'playing') {
      if (!this.playingAckedAt.has(jobId)) this.#ack(p, jobId, 'playing');
      p.timers.set(
        jobId,
        setTimeout(() => this.#settle(p, jobId), Math.max(1, (job.startedAt ?? Date.now()) + job.durationMs - Date.now() + 1)),
      );
      return;
    }
    if (job.state === 'accepted') {
      p.timers.set(jobId, setTimeout(() => this.#settle(p, jobId), 5));
      return;
    }
    if (job.state === 'done') this.#ack(p, jobId, 'done');
    else if (job.state === 'preempted') this.#ack(p, jobId, 'preempted', `pre-empted by ${job.preemptedByPriority ?? 'another'} broadcast ${job.preemptedBy ?? ''}`.trim());
    else if (job.state === 'failed') this.#ack(p, jobId, 'failed', `pole: ${job.error?.code ?? 'FAILED'}`);
  }
}
