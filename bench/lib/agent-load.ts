/**
 * Drives bench/lib/agent-loadgen.ts (one child process): background telemetry from edge-agent
 * style connections, each carrying many devices. See that file for the traffic it makes.
 */
import type { ChildProcess } from 'node:child_process';
import type { AgentLoadInit, AgentLoadMeasured } from './agent-loadgen.js';
import { LogHistogram } from './histogram.js';
import { ProcSampler, REPO, spawnTs, stderrTail } from './proc.js';

export interface AgentLoadTick {
  sent: number;
  acked: number;
  inflight: number;
  ackedPerSec: number;
  disconnects: number;
  firstDisconnect: string | null;
}

export interface AgentLoadWindow {
  sent: number;
  acked: number;
  seconds: number;
  ackedPerSec: number;
  minPerSec: number | null;
  histogram: LogHistogram;
  stalls: number;
}

export class AgentLoad {
  readonly #opts: Omit<AgentLoadInit, 'type'>;
  #child: ChildProcess | undefined;
  #sampler: ProcSampler | undefined;
  #failure: string | undefined;
  #closing = false;
  #waiters = new Map<string, (msg: Record<string, unknown>) => void>();
  tick: AgentLoadTick = { sent: 0, acked: 0, inflight: 0, ackedPerSec: 0, disconnects: 0, firstDisconnect: null };

  constructor(opts: Omit<AgentLoadInit, 'type'>) {
    this.#opts = opts;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** CPU of the generator over the marked span, percent of one core. */
  get cpuPercent(): number | null {
    return this.#sampler?.cpuPercent ?? null;
  }

  /** Opens every agent connection; rejects if any fails. */
  async connect(timeoutMs: number): Promise<{ ms: number }> {
    const child = spawnTs(`${REPO}/bench/lib/agent-loadgen.ts`, { ipc: true, label: 'agents' });
    this.#child = child;
    this.#sampler = new ProcSampler(child.pid ?? 0);
    child.stdin?.end();
    child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
    child.on('message', (raw) => {
      const msg = raw as Record<string, unknown>;
      if (msg.type === 'tick') this.tick = msg as unknown as AgentLoadTick;
      else if (msg.type === 'fatal') this.#failure ??= `agent load: ${String(msg.reason)}`;
      const waiter = this.#waiters.get(String(msg.type));
      if (waiter) {
        this.#waiters.delete(String(msg.type));
        waiter(msg);
      }
    });
    child.once('exit', (code, signal) => {
      if (!this.#closing) this.#failure ??= `agent load generator exited (${signal ?? code}):\n${stderrTail(child)}`;
      for (const w of this.#waiters.values()) w({ type: 'exit' });
      this.#waiters.clear();
    });
    const reply = this.#await('connected', timeoutMs);
    child.send({ type: 'init', ...this.#opts } satisfies AgentLoadInit);
    const msg = (await reply) as { connected: number; failed: number; firstFailure: string | null; ms: number };
    if (msg.connected !== this.#opts.agents) {
      throw new Error(`agent load: ${msg.connected}/${this.#opts.agents} connections (first failure: ${msg.firstFailure})`);
    }
    return { ms: msg.ms };
  }

  go(): void {
    this.#child?.send({ type: 'go' });
  }

  measureStart(): void {
    this.#sampler?.markStart();
    this.#child?.send({ type: 'measure-start' });
  }

  async measureEnd(): Promise<AgentLoadWindow> {
    this.#sampler?.markEnd();
    const reply = this.#await('measured', 10_000);
    this.#child?.send({ type: 'measure-end' });
    const m = (await reply) as unknown as AgentLoadMeasured;
    const histogram = new LogHistogram(m.histogram);
    histogram.maxUs = m.maxLatencyUs;
    const seconds = m.ms / 1000;
    return {
      sent: m.sent,
      acked: m.acked,
      seconds,
      ackedPerSec: seconds > 0 ? m.acked / seconds : 0,
      minPerSec: m.perSecond.length > 0 ? Math.min(...m.perSecond) : null,
      histogram,
      stalls: m.stalls,
    };
  }

  /** Stops publishing and waits (up to 30 s) for outstanding PUBACKs. */
  async stop(): Promise<AgentLoadTick> {
    const reply = this.#await('stopped', 40_000);
    this.#child?.send({ type: 'stop' });
    return (await reply) as unknown as AgentLoadTick;
  }

  /** Disconnects every agent and waits for the generator to exit. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#sampler?.stop();
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    if (child.connected) child.send({ type: 'close' });
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(kill);
  }

  /** Throws if the generator died or reported a fatal error. */
  check(): void {
    if (this.#failure) throw new Error(this.#failure);
  }

  #await(type: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(type);
        reject(new Error(`agent load: no "${type}" within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.#waiters.set(type, (msg) => {
        clearTimeout(timer);
        if (msg.type === 'exit') reject(new Error(this.#failure ?? 'agent load generator exited'));
        else resolve(msg);
      });
    });
  }
}
