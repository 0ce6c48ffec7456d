// Entry of the PostgreSQL store's worker thread (pg-bridge.ts). The gateway runs from TypeScript
// sources through tsx, which a worker thread does not inherit, so it is registered here first.
// If the worker cannot load, it says so on the call channel: the main thread is blocked waiting
// for a reply and would otherwise only see its timeout.
import { workerData } from 'node:worker_threads';

try {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./pg-worker.ts');
} catch (err) {
  const { port, signal } = workerData;
  port.postMessage({ id: 0, fatal: { message: `the PostgreSQL store's worker did not load: ${err instanceof Error ? err.message : String(err)}` } });
  const words = new Int32Array(signal);
  Atomics.add(words, 0, 1);
  Atomics.notify(words, 0);
}
