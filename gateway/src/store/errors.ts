/**
 * Errors the operational store throws beyond the database's own. A PostgreSQL error reaches the
 * caller as a `PostgresError` with PostgreSQL's message and SQLSTATE `code` (23505 for a unique
 * violation), as a SQLite error does with better-sqlite3's (`SQLITE_CONSTRAINT_UNIQUE`).
 */
import type { Logger } from 'pino';

export interface PostgresErrorFields {
  /** SQLSTATE (e.g. 23505), or a Node.js error code (ECONNREFUSED) for a connection failure. */
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
  constraint?: string | undefined;
  table?: string | undefined;
  column?: string | undefined;
  severity?: string | undefined;
}

export class PostgresError extends Error {
  readonly code: string | undefined;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly constraint: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;
  readonly severity: string | undefined;

  constructor(message: string, fields: PostgresErrorFields = {}) {
    super(message);
    this.name = 'PostgresError';
    this.code = fields.code;
    this.detail = fields.detail;
    this.hint = fields.hint;
    this.constraint = fields.constraint;
    this.table = fields.table;
    this.column = fields.column;
    this.severity = fields.severity;
  }
}

/** A call did not finish within `callTimeoutMs`; it was abandoned and the connection reset. */
export class StoreTimeoutError extends Error {
  readonly code = 'GS_STORE_TIMEOUT';
  constructor(message: string) {
    super(message);
    this.name = 'StoreTimeoutError';
  }
}

/** The database is unreachable right now; the store reconnects in the background. */
export class StoreUnavailableError extends Error {
  readonly code = 'GS_STORE_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/** True for a unique (or primary key) violation from either store. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** SQLSTATE classes and codes that say the connection, not the statement, failed. */
const CONNECTION_SQLSTATE = /^(08|57P0[1-3])/;

/**
 * True when the store could not be reached or did not answer (an outage: retrying later may
 * work), as opposed to a statement the database refused (a bug, a constraint). Besides the
 * store's own two errors, a call that was running when the connection dropped fails with
 * PostgreSQL's connection error (ECONNRESET, 57P01 admin_shutdown, 08006, "Connection
 * terminated unexpectedly") before the store knows it is down.
 */
export function isStoreOutage(err: unknown): boolean {
  if (err instanceof StoreUnavailableError || err instanceof StoreTimeoutError) return true;
  if (!(err instanceof PostgresError)) return false;
  const { code } = err;
  if (code === undefined) return /connection|not queryable/i.test(err.message);
  // Not a SQLSTATE: a Node.js socket error (ECONNREFUSED…) or the worker's GS_STORE_TX_LOST.
  return !/^[0-9A-Z]{5}$/.test(code) || CONNECTION_SQLSTATE.test(code);
}

/** While an operation keeps failing, a reminder this often at most. */
const REMINDER_MS = 5 * 60_000;

/**
 * How the gateway's own timers (escalation, fire danger rating, broadcast runs) report a store
 * that fails them: every failure is counted (`gs_store_errors_total{operation}`); the log says
 * so once when an operation starts failing, every five minutes while it goes on, and once when
 * it works again, so an outage of the database is a few lines, not one per tick.
 */
export class StoreErrorReporter {
  readonly #log: Pick<Logger, 'warn' | 'error' | 'info'>;
  readonly #count: ((operation: string) => void) | undefined;
  readonly #now: () => number;
  readonly #failing = new Map<string, { since: number; failures: number; loggedAt: number }>();

  constructor(opts: { log: Pick<Logger, 'warn' | 'error' | 'info'>; count?: (operation: string) => void; now?: () => number }) {
    this.#log = opts.log;
    this.#count = opts.count;
    this.#now = opts.now ?? Date.now;
  }

  /** Operations failing now (for tests and logs). */
  get failing(): string[] {
    return [...this.#failing.keys()];
  }

  /** One failure of `operation`; `what` says what will happen (e.g. "retried every second"). */
  failed(operation: string, err: unknown, what: string): void {
    this.#count?.(operation);
    const now = this.#now();
    const streak = this.#failing.get(operation);
    const outage = isStoreOutage(err);
    const fields = { operation, err: (err as Error)?.message ?? String(err) };
    if (!streak) {
      this.#failing.set(operation, { since: now, failures: 1, loggedAt: now });
      if (outage) this.#log.warn(fields, `operational store unavailable: ${operation} failed; ${what}`);
      else this.#log.error({ ...fields, stack: (err as Error)?.stack }, `${operation} failed on a store error; ${what}`);
      return;
    }
    streak.failures++;
    if (now - streak.loggedAt >= REMINDER_MS) {
      streak.loggedAt = now;
      this.#log[outage ? 'warn' : 'error']({ ...fields, failures: streak.failures, sinceMs: now - streak.since }, `${operation} still failing; ${what}`);
    }
  }

  /** `operation` worked: after a streak of failures, says so once. */
  succeeded(operation: string): void {
    const streak = this.#failing.get(operation);
    if (!streak) return;
    this.#failing.delete(operation);
    this.#log.info({ operation, failures: streak.failures, afterMs: this.#now() - streak.since }, `${operation} works again`);
  }

  /** Runs `fn`; on an error reports it and returns false (for timer callbacks, which must not throw). */
  attempt(operation: string, fn: () => void, what: string): boolean {
    try {
      fn();
    } catch (err) {
      this.failed(operation, err, what);
      return false;
    }
    this.succeeded(operation);
    return true;
  }
}
