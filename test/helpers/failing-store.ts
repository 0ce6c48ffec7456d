/**
 * An operational store that fails on demand the way the PostgreSQL store does in an outage: every
 * call throws `StoreUnavailableError` while `down` is set, and `commitTimesOut()` makes the next
 * transaction commit and then throw `StoreTimeoutError` (a commit whose answer never came: it may
 * have been done, as here). A stand-in for unit tests of what the gateway's timers do then, on a
 * fake clock; the real outage (PostgreSQL stopped, a locked table) is in
 * test/integration/incidents-postgres-outage.test.ts and gateway-postgres.test.ts.
 */
import { StoreTimeoutError, StoreUnavailableError } from '../../gateway/src/store/errors.js';
import type { OperationalStore } from '../../gateway/src/store/store.js';

export interface FailingStore {
  store: OperationalStore;
  /** While true, every call fails at once. */
  down: boolean;
  /** The next transaction commits, then throws as a commit that timed out. */
  commitTimesOut(): void;
  /** Calls refused so far. */
  refused: number;
}

export function failingStore(inner: OperationalStore): FailingStore {
  let commitTimeouts = 0;
  let depth = 0;
  const state: FailingStore = {
    store: undefined as unknown as OperationalStore,
    down: false,
    refused: 0,
    commitTimesOut: () => void commitTimeouts++,
  };
  const check = (what: string) => {
    if (!state.down) return;
    state.refused++;
    throw new StoreUnavailableError(`PostgreSQL at postgres://test/gs is unreachable (test outage, ${what}); reconnecting in the background`);
  };
  // Methods run on the real object (its #private fields), not on the proxy.
  const wrap = <T extends object>(target: T, path: string): T =>
    new Proxy(target, {
      get(t, prop) {
        const value = Reflect.get(t, prop, t) as unknown;
        const name = `${path}${String(prop)}`;
        if (prop === 'incidents' || prop === 'broadcasts' || prop === 'fireDanger') return wrap(value as object, `${name}.`);
        if (typeof value !== 'function') return value;
        if (name === 'transaction') {
          return <R>(fn: () => R): R => {
            check(name);
            depth++;
            let result: R;
            try {
              result = (inner.transaction as (f: () => R) => R).call(inner, fn);
            } finally {
              depth--;
            }
            if (depth === 0 && commitTimeouts > 0) {
              commitTimeouts--;
              throw new StoreTimeoutError('PostgreSQL at postgres://test/gs did not answer within 5000 ms (commit); the call was abandoned and the connection is reset');
            }
            return result;
          };
        }
        if (name === 'close') return (value as () => void).bind(t);
        return (...args: unknown[]) => {
          check(name);
          return (value as (...a: unknown[]) => unknown).apply(t, args);
        };
      },
    });
  state.store = wrap(inner, '');
  return state;
}
