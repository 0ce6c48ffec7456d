/**
 * Runs the load generator (bench/lib/loadgen.ts) in one or more child processes and aggregates
 * what they report. Each generator takes a contiguous share of the clients and of the rate.
 */
import type { ChildProcess } from 'node:child_process';
import { LogHistogram } from './histogram.js';
import type { LoadgenDone, LoadgenInit } from './loadgen.js';
import { ProcSampler, REPO, spawnTs, stderrTail } from './proc.js';

type Common = Omit<LoadgenInit, 'type' | 'from' | 'count' | 'rate' | 'connectRate' | 'maxPendingConnects'>;

export interface LoadOptions extends Common {
  clients: number;
  generators: number;
  /** Totals, split evenly over the generators. */
  rate: number;
  connectRate: number;
  maxPendingConnects: number;
  label: string;
}

export interface ConnectResult {
  opened: number;
  connected: number;
  failed: number;
  firstFailure: string | null;
  seconds: number;
}

export interface LoadResult {
  sent: number;
  acked: number;
  sentInWindow: number;
  ackedInWindow: number;
  windowSec: number;
  perSecond: number[];
  histogram: LogHistogram;
  inflightAtEnd: number;
  disconnects: number;
  firstDisconnect: string | null;
  unexpectedAcks: number;
  loadgenCpuPercent: number | null;
}

interface Gen {
  child: ChildProcess;
  sampler: ProcSampler;
  progress: { opened: number; connected: number; failed: number; firstFailure: string | null };
  tick: { sent: number; acked: number; inflight: number; ackedPerSec: number };
  connected?: ConnectResult & { ms: number };
  done?: LoadgenDone;
  exited: boolean;
}

export class LoadDriver {
  readonly #opts: LoadOptions;
  readonly #gens: Gen[] = [];
  #onSample: ((s: { device: string; ts: number; sentAtMs: number }) => void) | undefined;
  #failure: string | undefined;

  constructor(opts: LoadOptions) {
    this.#opts = opts;
  }

  /** Per-publish samples (device, ts, send time) for the publish->queryable measurement. */
  onSample(fn: (s: { device: string; ts: number; sentAtMs: number }) => void): void {
    this.#onSample = fn;
  }

  get progress() {
    const sum = { opened: 0, connected: 0, failed: 0, firstFailure: null as string | null };
    for (const g of this.#gens) {
      sum.opened += g.progress.opened;
      sum.connected += g.progress.connected;
      sum.failed += g.progress.failed;
      sum.firstFailure ??= g.progress.firstFailure;
    }
    return sum;
  }

  get tick() {
    const sum = { sent: 0, acked: 0, inflight: 0, ackedPerSec: 0 };
    for (const g of this.#gens) {
      sum.sent += g.tick.sent;
      sum.acked += g.tick.acked;
      sum.inflight += g.tick.inflight;
      sum.ackedPerSec += g.tick.ackedPerSec;
    }
    return sum;
  }

  get pids(): number[] {
    return this.#gens.map((g) => g.child.pid ?? 0);
  }

  /** Starts the generators and opens every connection (bounded rate); resolves when all are settled. */
  async connect(timeoutMs: number, onProgress?: (p: LoadDriver['progress']) => void): Promise<ConnectResult> {
    const o = this.#opts;
    const per = Math.ceil(o.clients / o.generators);
    for (let i = 0; i < o.generators; i++) {
      const from = i * per;
      const count = Math.min(per, o.clients - from);
      if (count <= 0) break;
      const child = spawnTs(`${REPO}/bench/lib/loadgen.ts`, { ipc: true, label: `${o.label}-gen${i}` });
      const gen: Gen = {
        child,
        sampler: new ProcSampler(child.pid ?? 0),
        progress: { opened: 0, connected: 0, failed: 0, firstFailure: null },
        tick: { sent: 0, acked: 0, inflight: 0, ackedPerSec: 0 },
        exited: false,
      };
      child.stdin?.end();
      child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
      child.on('message', (raw) => this.#onMessage(gen, raw as Record<string, unknown>));
      child.once('exit', (code, signal) => {
        gen.exited = true;
        if (!gen.done && !this.#closing) this.#failure ??= `load generator ${i} exited (${signal ?? code}):\n${stderrTail(child)}`;
      });
      const { clients: _c, generators: _g, label: _l, ...common } = o;
      const init: LoadgenInit = {
        ...common,
        type: 'init',
        from,
        count,
        rate: o.rate / o.generators,
        connectRate: o.connectRate / o.generators,
        maxPendingConnects: Math.max(1, Math.floor(o.maxPendingConnects / o.generators)),
      };
      child.send(init);
      this.#gens.push(gen);
    }
    const started = performance.now();
    let lastPrint = started;
    await this.#until(() => this.#gens.every((g) => g.connected !== undefined), timeoutMs, 'connections', () => {
      onProgress?.(this.progress);
      if (performance.now() - lastPrint < 2000) return;
      lastPrint = performance.now();
      const p = this.progress;
      process.stderr.write(`[${o.label}] connecting: ${p.connected}/${o.clients} connected, ${p.failed} failed${p.firstFailure ? ` (first: ${p.firstFailure})` : ''}\n`);
    });
    const r: ConnectResult = { opened: 0, connected: 0, failed: 0, firstFailure: null, seconds: (performance.now() - started) / 1000 };
    for (const g of this.#gens) {
      const c = g.connected!;
      r.opened += c.opened;
      r.connected += c.connected;
      r.failed += c.failed;
      r.firstFailure ??= c.firstFailure;
    }
    return r;
  }

  /** Tells the generators to stop opening new connections (another one hit a failure). */
  stopConnecting(): void {
    for (const g of this.#gens) if (!g.exited) g.child.send({ type: 'stop-connecting' });
  }

  /** Publishes for warm-up + measured window, then waits for outstanding PUBACKs. */
  async run(
    timeoutMs: number,
    hooks: { progress?: () => string; windowStart?: () => void; windowEnd?: () => void } = {},
  ): Promise<LoadResult> {
    for (const g of this.#gens) g.child.send({ type: 'go' });
    // The generators time their window from 'go'; the parent's /proc and metrics readings follow
    // the same clock (a few ms apart).
    const startTimer = setTimeout(() => {
      for (const g of this.#gens) g.sampler.markStart();
      hooks.windowStart?.();
    }, this.#opts.warmupMs);
    const endTimer = setTimeout(() => {
      for (const g of this.#gens) g.sampler.markEnd();
      hooks.windowEnd?.();
    }, this.#opts.warmupMs + this.#opts.measureMs);
    let lastPrint = performance.now();
    await this.#until(() => this.#gens.every((g) => g.done !== undefined), timeoutMs, 'load run', () => {
      if (performance.now() - lastPrint < 5000) return;
      lastPrint = performance.now();
      const t = this.tick;
      process.stderr.write(
        `[${this.#opts.label}] ${Math.round(t.ackedPerSec)} msg/s acked, sent ${t.sent}, acked ${t.acked}, in flight ${t.inflight}${hooks.progress?.() ?? ''}\n`,
      );
    }).finally(() => {
      clearTimeout(startTimer);
      clearTimeout(endTimer);
    });
    let cpu = 0;
    for (const g of this.#gens) cpu += g.sampler.cpuPercent ?? 0;
    const histogram = new LogHistogram();
    const r: LoadResult = {
      sent: 0,
      acked: 0,
      sentInWindow: 0,
      ackedInWindow: 0,
      windowSec: this.#opts.measureMs / 1000,
      perSecond: [],
      histogram,
      inflightAtEnd: 0,
      disconnects: 0,
      firstDisconnect: null,
      unexpectedAcks: 0,
      loadgenCpuPercent: cpu,
    };
    for (const g of this.#gens) {
      const d = g.done!;
      r.sent += d.sent;
      r.acked += d.acked;
      r.sentInWindow += d.sentInWindow;
      r.ackedInWindow += d.ackedInWindow;
      d.perSecond.forEach((n, i) => (r.perSecond[i] = (r.perSecond[i] ?? 0) + n));
      histogram.merge(d.histogram);
      histogram.maxUs = Math.max(histogram.maxUs, d.maxLatencyUs);
      r.inflightAtEnd += d.inflightAtEnd;
      r.disconnects += d.disconnects;
      r.firstDisconnect ??= d.firstDisconnect;
      r.unexpectedAcks += d.unexpectedAcks;
    }
    return r;
  }

  #closing = false;

  /** Disconnects every client and waits for the generators to exit. */
  async close(): Promise<void> {
    this.#closing = true;
    for (const g of this.#gens) {
      g.sampler.stop();
      if (!g.exited) g.child.send({ type: 'close' });
    }
    const deadline = performance.now() + 15_000;
    while (this.#gens.some((g) => !g.exited) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const g of this.#gens) if (!g.exited) g.child.kill('SIGKILL');
  }

  #onMessage(gen: Gen, msg: Record<string, unknown>): void {
    switch (msg.type) {
      case 'connect-progress':
        gen.progress = msg as unknown as Gen['progress'];
        break;
      case 'connected':
        gen.progress = msg as unknown as Gen['progress'];
        gen.connected = msg as unknown as ConnectResult & { ms: number };
        break;
      case 'tick':
        gen.tick = msg as unknown as Gen['tick'];
        break;
      case 'sample':
        this.#onSample?.(msg as unknown as { device: string; ts: number; sentAtMs: number });
        break;
      case 'done':
        gen.done = msg as unknown as LoadgenDone;
        break;
      case 'fatal':
        this.#failure ??= `load generator: ${String(msg.reason)}`;
        break;
    }
  }

  async #until(cond: () => boolean, timeoutMs: number, what: string, each: () => void): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!cond()) {
      if (this.#failure) throw new Error(this.#failure);
      if (performance.now() > deadline) throw new Error(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s`);
      each();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
