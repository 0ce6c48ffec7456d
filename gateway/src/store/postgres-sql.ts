/**
 * Runs the stores' shared SQL (queries.ts: `?` positional or `@name` named parameters, as SQLite
 * takes them) on PostgreSQL, which numbers its parameters (`$1`). Each text is translated once.
 * The translation is textual: the store's SQL has no `?` or `@` in string literals, and uses no
 * jsonb `?` operator.
 */
import type { PgBridge, PgResult } from './pg-bridge.js';

type Params = readonly unknown[] | Readonly<Record<string, unknown>>;

interface Translated {
  text: string;
  /** For `@name` parameters: the name of $1, $2, …; null for `?` parameters. */
  names: string[] | null;
}

const PARAM = /\?|@([A-Za-z_][A-Za-z0-9_]*)/g;

function translate(sql: string): Translated {
  let position = 0;
  const names: string[] = [];
  const text = sql.replace(PARAM, (_m, name: string | undefined) => {
    if (name === undefined) return `$${++position}`;
    const at = names.indexOf(name);
    return `$${at >= 0 ? at + 1 : names.push(name)}`;
  });
  return { text, names: names.length > 0 ? names : null };
}

export class PgSql {
  readonly #pg: PgBridge;
  readonly #translated = new Map<string, Translated>();

  constructor(pg: PgBridge) {
    this.#pg = pg;
  }

  all<R>(sql: string, params: Params = []): R[] {
    return this.#query<R>(sql, params).rows;
  }

  get<R>(sql: string, params: Params = []): R | undefined {
    return this.all<R>(sql, params)[0];
  }

  /** A statement run for its effect: the number of rows it changed. */
  run(sql: string, params: Params = []): number {
    return this.#query(sql, params).rowCount;
  }

  #query<R>(sql: string, params: Params): PgResult<R> {
    let t = this.#translated.get(sql);
    if (!t) this.#translated.set(sql, (t = translate(sql)));
    const values = t.names ? t.names.map((n) => (params as Readonly<Record<string, unknown>>)[n]) : (params as readonly unknown[]);
    return this.#pg.query<R>(t.text, values);
  }
}
