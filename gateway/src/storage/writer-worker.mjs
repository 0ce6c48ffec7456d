// Entry of the storage worker thread (worker-writer.ts): the gateway runs from TypeScript
// sources through tsx, which a worker thread does not inherit, so it is registered here first.
import { register } from 'tsx/esm/api';

register();
await import('./writer-worker.ts');
