/**
 * Measuring other processes from outside (Linux /proc) and keeping every child the benchmark
 * starts on a list, so that each one is killed on exit, on SIGINT/SIGTERM and on a crash.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { openFileLimit } from '../../gateway/src/broker/descriptors.js';

/** Clock ticks per second for utime/stime in /proc/<pid>/stat (USER_HZ; 100 on Linux/x86 and arm64). */
const CLK_TCK = 100;

export interface ProcSnapshot {
  at: number;
  cpuSec: number;
  rssKb: number;
  hwmKb: number;
}

/** utime+stime (seconds) and VmRSS/VmHWM (kB) of a live process; undefined once it is gone. */
export function readProc(pid: number): ProcSnapshot | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces; fields after the closing paren are positional.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { at: performance.now(), cpuSec: (utime + stime) / CLK_TCK, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** The soft RLIMIT_NOFILE of a process, as the kernel holds it (Infinity: unlimited). Parsed as the gateway parses its own. */
export function readNofile(pid: number | 'self'): number | undefined {
  let limits: string;
  try {
    limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  } catch {
    return undefined;
  }
  return /^Max open files\s+unlimited/m.test(limits) ? Infinity : openFileLimit(limits);
}

/** Direct children of `ppid` whose command name is `comm` (e.g. the influxd that startInfluxd spawned). */
export function findChildren(ppid: number, comm: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const c = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (c === comm && Number(fields[1]) === ppid) out.push(Number(name));
    } catch {
      // raced with an exiting process
    }
  }
  return out;
}

/**
 * Samples a process once a second; between `markStart()` and `markEnd()` it keeps the CPU delta
 * and the highest VmRSS seen.
 */
export class ProcSampler {
  readonly pid: number;
  #timer: NodeJS.Timeout | undefined;
  #start: ProcSnapshot | undefined;
  #end: ProcSnapshot | undefined;
  #peakRssKb = 0;
  #inWindow = false;
  last: ProcSnapshot | undefined;

  constructor(pid: number) {
    this.pid = pid;
    this.last = readProc(pid);
    this.#timer = setInterval(() => this.sample(), 1000);
    this.#timer.unref();
  }

  sample(): ProcSnapshot | undefined {
    const s = readProc(this.pid);
    if (s) {
      this.last = s;
      if (this.#inWindow && s.rssKb > this.#peakRssKb) this.#peakRssKb = s.rssKb;
    }
    return s;
  }

  markStart(): void {
    this.#start = this.sample();
    this.#peakRssKb = this.#start?.rssKb ?? 0;
    this.#inWindow = true;
  }

  markEnd(): void {
    this.#end = this.sample();
    this.#inWindow = false;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** CPU over the window in percent of one core (200 % = both cores of this machine). */
  get cpuPercent(): number | null {
    if (!this.#start || !this.#end) return null;
    const wallSec = (this.#end.at - this.#start.at) / 1000;
    return wallSec > 0 ? (100 * (this.#end.cpuSec - this.#start.cpuSec)) / wallSec : null;
  }

  get peakRssMb(): number | null {
    return this.#peakRssKb > 0 ? this.#peakRssKb / 1024 : null;
  }

  get hwmMb(): number | null {
    const s = this.#end ?? this.last;
    return s ? s.hwmKb / 1024 : null;
  }
}

// ---- children and clean-up ---------------------------------------------------------------------

const children = new Set<ChildProcess>();
const cleanups: Array<() => void | Promise<void>> = [];
const tempDirs = new Set<string>();
let exiting = false;

export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn);
}

export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
}

/** Kills every child still running (SIGKILL, by pid), runs clean-ups, removes temp dirs. */
export async function cleanupAll(): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`clean-up failed: ${(err as Error).message}\n`);
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Installs SIGINT/SIGTERM/crash handlers once; the process always leaves through cleanupAll(). */
export function installExitHandlers(): void {
  const bail = (code: number, why: string) => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`${why}; stopping children and removing temp files\n`);
    const hard = setTimeout(() => process.exit(code), 20_000);
    hard.unref();
    cleanupAll().finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail(130, 'SIGINT'));
  process.on('SIGTERM', () => bail(143, 'SIGTERM'));
  process.on('uncaughtException', (err) => bail(1, `bench failed: ${err.stack ?? err.message}`));
  process.on('unhandledRejection', (err) => bail(1, `bench failed: ${(err as Error)?.stack ?? String(err)}`));
  // Last resort if something exits without the handlers above: SIGKILL by pid, synchronously.
  process.on('exit', () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Every bench has an overall deadline: past it, it fails and cleans up rather than hang. */
export function hardDeadline(ms: number): NodeJS.Timeout {
  const t = setTimeout(() => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`bench exceeded its overall deadline (${Math.round(ms / 1000)} s) during "${currentPhase}"; aborting\n`);
    cleanupAll().finally(() => process.exit(1));
  }, ms);
  t.unref();
  return t;
}

let currentPhase = 'setup';
export function phase(name: string): void {
  currentPhase = name;
  process.stderr.write(`== ${name}\n`);
}

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export const REPO = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

/**
 * Starts `node --import tsx <file>` (one process: /proc/<pid> is the program itself, not a tsx
 * wrapper), through `bash -c 'ulimit -n …; exec …'` when a file-descriptor limit is asked for.
 */
/** The Node flags `npm run gateway` runs the gateway with (package.json); benchmarks use them too. */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

export function spawnTs(
  file: string,
  opts: { args?: string[]; env?: NodeJS.ProcessEnv; nofile?: number; nodeFlags?: string[]; ipc?: boolean; label: string },
): ChildProcess {
  const nodeArgv = [...(opts.nodeFlags ?? []), '--import', 'tsx', file, ...(opts.args ?? [])];
  const stdio: SpawnOptions['stdio'] = opts.ipc ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['pipe', 'pipe', 'pipe'];
  let child: ChildProcess;
  if (opts.nofile !== undefined) {
    // Raise the soft limit as far as asked, or to the hard limit if that is lower; exec keeps the pid.
    const script = `want=${opts.nofile}; [ "$(ulimit -n)" -lt "$want" ] && { ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }; exec "$0" "$@"`;
    child = spawn('bash', ['-c', script, process.execPath, ...nodeArgv], { cwd: REPO, env: opts.env ?? process.env, stdio });
  } else {
    child = spawn(process.execPath, nodeArgv, { cwd: REPO, env: opts.env ?? process.env, stdio });
  }
  track(child);
  forwardStderr(child, opts.label);
  return child;
}

const stderrTails = new WeakMap<ChildProcess, string[]>();

function forwardStderr(child: ChildProcess, label: string): void {
  const tail: string[] = [];
  stderrTails.set(child, tail);
  if (!child.stderr) return;
  createInterface({ input: child.stderr }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    process.stderr.write(`[${label}] ${line}\n`);
  });
}

export function stderrTail(child: ChildProcess): string {
  return (stderrTails.get(child) ?? []).join('\n');
}

/** JSON lines a child prints on stdout (one reader per child); anything else goes to our stderr. */
const lineListeners = new WeakMap<ChildProcess, Set<(msg: Record<string, unknown>) => void>>();

export function onJsonLine(child: ChildProcess, label: string, fn: (msg: Record<string, unknown>) => void): () => void {
  let set = lineListeners.get(child);
  if (!set) {
    const listeners = new Set<(msg: Record<string, unknown>) => void>();
    lineListeners.set(child, listeners);
    set = listeners;
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          process.stderr.write(`[${label}:stdout] ${line}\n`);
          return;
        }
        if (typeof msg === 'object' && msg !== null) for (const l of [...listeners]) l(msg as Record<string, unknown>);
      });
    }
  }
  set.add(fn);
  return () => set.delete(fn);
}

/** Resolves with the first JSON line for which `pick` returns a value; rejects on exit or timeout. */
export function waitForLine<T>(child: ChildProcess, label: string, pick: (msg: Record<string, unknown>) => T | undefined, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      child.off('exit', onExit);
      off();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${label} did not report within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`${label} exited (${signal ?? code}) before reporting:\n${stderrTail(child)}`));
    };
    const off = onJsonLine(child, label, (m) => {
      const v = pick(m);
      if (v === undefined) return;
      done();
      resolve(v);
    });
    child.once('exit', onExit);
  });
}

/** Sends a line to a child's stdin (commands for gateway-child / bare-broker-child). */
export function command(child: ChildProcess, line: string): void {
  child.stdin?.write(`${line}\n`);
}

/** Asks a child to stop (stdin closed), then SIGTERM, then SIGKILL; resolves when it is gone. */
export async function stopChild(child: ChildProcess, graceMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin?.end();
  const term = setTimeout(() => child.kill('SIGTERM'), graceMs);
  const kill = setTimeout(() => child.kill('SIGKILL'), graceMs + 5000);
  await exited;
  clearTimeout(term);
  clearTimeout(kill);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The commit measured, plus what differs from it in the code under test (others may be editing
 * the working tree): the changed paths and a hash of their diff and untracked contents.
 */
export function gitCommit(): { commit: string; dirty: string[]; diffSha: string | null } {
  // A tree exported with `git archive` has no .git: the runner names the commit.
  if (process.env.GS_BENCH_COMMIT) return { commit: process.env.GS_BENCH_COMMIT, dirty: [], diffSha: null };
  // Everything a benchmark's figures can depend on: the gateway and what it loads, the benchmarks
  // themselves (load generators, fleets), the dashboard (bench:map), the agent and simulators
  // (bench:replay, bench:video) and the dependency lock.
  const paths = ['gateway', 'config', 'protocol', 'scripts', 'bench', 'dashboard', 'edge-agent', 'simulators', 'package.json', 'package-lock.json'];
  try {
    const git = (...a: string[]) => execFileSync('git', ['-C', REPO, ...a], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    const dirty = git('status', '--porcelain', '--untracked-files=all', '--', ...paths)
      .split('\n')
      .filter((l) => l.trim() !== '');
    if (dirty.length === 0) return { commit, dirty, diffSha: null };
    const hash = createHash('sha256').update(git('diff', 'HEAD', '--', ...paths));
    for (const line of dirty) {
      if (!line.startsWith('??')) continue;
      const file = line.slice(3);
      hash.update(file);
      try {
        hash.update(readFileSync(`${REPO}/${file}`));
      } catch {
        // removed meanwhile
      }
    }
    return { commit, dirty, diffSha: hash.digest('hex').slice(0, 16) };
  } catch {
    return { commit: 'unknown', dirty: [], diffSha: null };
  }
}

export function round(n: number | null | undefined, digits = 1): number | null {
  if (n === null || n === undefined || !Number.isFinite(n)) return null;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function parseIntArg(value: string | undefined, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name}: expected a whole number in ${min}..${max}, got ${value}`);
  return n;
}

/** Whole-machine CPU busy time (all cores, seconds) from /proc/stat, to see what else ran. */
export function readMachineBusySec(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const [, ...fields] = line.trim().split(/\s+/);
  const n = fields.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (n[3] ?? 0) + (n[4] ?? 0);
  return (total - idle) / CLK_TCK;
}

/**
 * The CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status, e.g. "0-3,6"), in
 * order; under a cpuset that need not start at 0. Falls back to 0..availableParallelism()-1.
 */
export function allowedCpus(statusText?: string): number[] {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      text = '';
    }
  }
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(text)?.[1];
  const cpus: number[] = [];
  for (const part of list?.split(',') ?? []) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    for (let c = a; c <= (b !== undefined && Number.isInteger(b) ? b : a); c++) cpus.push(c);
  }
  return cpus.length > 0 ? cpus : Array.from({ length: availableParallelism() }, (_, i) => i);
}

/**
 * Time a process's main thread ran and time it was runnable but waited for a CPU (ns), from
 * /proc/<pid>/schedstat (the thread-group leader's own line, not its other threads).
 */
function readSchedstat(pid: number | 'self'): { runNs: number; waitNs: number } | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return run !== undefined && wait !== undefined ? { runNs: run, waitNs: wait } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A main thread's share of wall time over a window: running, and runnable but waiting for a CPU
 * (what the other processes on the machine cost it). What is left is time it slept (nothing to do).
 * A V8 CPU profile cannot tell these apart: its "(idle)" is the whole poll phase outside
 * JavaScript, read() syscalls and time off the CPU included.
 */
export class MainThreadSched {
  #start: { at: number; s: { runNs: number; waitNs: number } } | undefined;
  #end: { at: number; s: { runNs: number; waitNs: number } } | undefined;
  constructor(readonly pid: number | 'self') {}
  markStart(): void {
    const s = readSchedstat(this.pid);
    this.#start = s ? { at: performance.now(), s } : undefined;
  }
  markEnd(): void {
    const s = readSchedstat(this.pid);
    this.#end = s ? { at: performance.now(), s } : undefined;
  }
  #percent(key: 'runNs' | 'waitNs'): number | null {
    if (!this.#start || !this.#end) return null;
    return (100 * (this.#end.s[key] - this.#start.s[key])) / 1e6 / (this.#end.at - this.#start.at);
  }
  /** Percent of wall time the main thread ran. */
  get runPercent(): number | null {
    return this.#percent('runNs');
  }
  /** Percent of wall time the main thread was runnable but not running. */
  get waitPercent(): number | null {
    return this.#percent('waitNs');
  }
}

/**
 * A process's read and write system calls over a window (`syscr`, `syscw` in /proc/<pid>/io; all
 * threads, sockets and files alike). Per message they show how a broker batches: with a window of
 * 2 in flight per connection, ~0.5 means both of a connection's messages came in one read and
 * their PUBACKs went out in one write; ~1 means one each.
 */
export class ProcSyscalls {
  #start: { reads: number; writes: number } | undefined;
  #end: { reads: number; writes: number } | undefined;
  constructor(readonly pid: number) {}
  static #read(pid: number): { reads: number; writes: number } | undefined {
    try {
      const text = readFileSync(`/proc/${pid}/io`, 'utf8');
      const reads = Number(/^syscr:\s*(\d+)/m.exec(text)?.[1]);
      const writes = Number(/^syscw:\s*(\d+)/m.exec(text)?.[1]);
      return Number.isFinite(reads) && Number.isFinite(writes) ? { reads, writes } : undefined;
    } catch {
      return undefined;
    }
  }
  markStart(): void {
    this.#start = ProcSyscalls.#read(this.pid);
  }
  markEnd(): void {
    this.#end = ProcSyscalls.#read(this.pid);
  }
  /** Calls over the window divided by `messages`; null where /proc/<pid>/io was not readable. */
  perMessage(messages: number): { reads: number; writes: number } | null {
    if (!this.#start || !this.#end || messages <= 0) return null;
    return { reads: (this.#end.reads - this.#start.reads) / messages, writes: (this.#end.writes - this.#start.writes) / messages };
  }
}

/**
 * The machine's speed over a window: the median CPU time of bench/lib/speed-probe.ts's fixed
 * piece of work (µs; higher = slower cores). Phases of one run, or runs of an A/B, compare fairly
 * only where these are close; see docs/BENCHMARKS.md ("Conditions").
 */
export class SpeedProbe {
  readonly #samples: { at: number; us: number }[] = [];
  #child: ChildProcess | undefined;

  start(): void {
    const child = spawnTs(`${REPO}/bench/lib/speed-probe.ts`, { label: 'speed-probe' });
    this.#child = child;
    child.stdin?.end();
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const [at, us] = line.split(' ').map(Number);
        if (Number.isFinite(at) && Number.isFinite(us)) this.#samples.push({ at: at!, us: us! });
      });
    }
    onCleanup(() => this.stop());
  }

  /** Median µs per probe over [fromMs, toMs] (Date.now() times); null with fewer than 5 samples. */
  medianUs(fromMs: number, toMs: number): number | null {
    const xs = this.#samples.filter((s) => s.at >= fromMs && s.at <= toMs).map((s) => s.us);
    if (xs.length < 5) return null;
    xs.sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  }

  stop(): void {
    this.#child?.kill('SIGTERM');
    this.#child = undefined;
  }
}

/**
 * Machine-wide CPU over a window and the part of it no process of ours used: other sessions on
 * a shared machine show up here and make a run noisy.
 */
export class MachineCpu {
  #start: { at: number; busy: number; self: number } | undefined;
  #end: { at: number; busy: number; self: number } | undefined;

  static #selfSec(): number {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }

  markStart(): void {
    this.#start = { at: performance.now(), busy: readMachineBusySec(), self: MachineCpu.#selfSec() };
  }

  markEnd(): void {
    this.#end = { at: performance.now(), busy: readMachineBusySec(), self: MachineCpu.#selfSec() };
  }

  /** Percent of one core; 200 % = both cores of a 2-core machine busy. */
  get busyPercent(): number | null {
    if (!this.#start || !this.#end) return null;
    return (100 * (this.#end.busy - this.#start.busy)) / ((this.#end.at - this.#start.at) / 1000);
  }

  /** This orchestrator process's own CPU over the window, percent of one core. */
  get selfPercent(): number | null {
    if (!this.#start || !this.#end) return null;
    return (100 * (this.#end.self - this.#start.self)) / ((this.#end.at - this.#start.at) / 1000);
  }

  /** Busy time not accounted for by the given percentages (ours), percent of one core. */
  otherPercent(ours: Array<number | null | undefined>): number | null {
    const busy = this.busyPercent;
    const self = this.selfPercent;
    if (busy === null || self === null) return null;
    return busy - self - ours.reduce<number>((a, b) => a + (b ?? 0), 0);
  }
}
