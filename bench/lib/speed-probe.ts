/**
 * How fast this machine's CPUs are right now, for benchmarks on a shared virtual machine.
 *
 * On this project's 2-core VM the same code costs up to a third more CPU per message in one run
 * than in another, and a CPU profile of a slow run is slower in every function alike: the host
 * gives the VM slower cores at times (other guests; the VM reports no steal time). This child
 * process runs a fixed piece of work four times a second — random reads and writes over 16 MB
 * (cache and memory, like a broker's per-connection state) mixed with integer arithmetic — and
 * prints the CPU time each one took (getrusage), so waiting for a CPU does not count, only
 * running slower does. It costs about 1 % of one core.
 *
 * Output: one line per sample on stdout, `<unix ms> <cpu µs>`. Runs until killed.
 *   node --import tsx bench/lib/speed-probe.ts
 */
const WORDS = 4 * 1024 * 1024; // 16 MB of Int32
const MASK = WORDS - 1;
const STEPS = 60_000;
const INTERVAL_MS = 250;

const mem = new Int32Array(WORDS);
for (let i = 0; i < WORDS; i++) mem[i] = i * 2654435761;

/** CPU time of this process, µs: getrusage, which (unlike /proc/…/schedstat) is exact for a running thread. */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

let seed = 0x9e3779b9;
/** The fixed work. Its writes into `mem` keep it from being optimised away. */
function kernel(): void {
  let x = seed | 0;
  let acc = 0;
  for (let i = 0; i < STEPS; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const a = (x >>> 0) & MASK;
    acc = (acc + mem[a]! * 31 + (acc >>> 3)) | 0;
    mem[(a + 4096) & MASK] = acc;
  }
  seed = x;
}

// Warm: compiled and the table paged in before the first sample counts.
for (let i = 0; i < 20; i++) kernel();

const tick = () => {
  const t0 = cpuUs();
  kernel();
  process.stdout.write(`${Date.now()} ${cpuUs() - t0}\n`);
};
setInterval(tick, INTERVAL_MS);
// The reader went away (the benchmark ended): so do we.
process.stdout.on('error', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
