/**
 * Errors the operational store throws beyond the database's own. A PostgreSQL error reaches the
 * caller as a `PostgresError` with PostgreSQL's message and SQLSTATE `code` (23505 for a unique
 * violation), as a SQLite error does with better-sqlite3's (`SQLITE_CONSTRAINT_UNIQUE`).
 */

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
