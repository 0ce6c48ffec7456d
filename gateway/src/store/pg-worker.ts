/**
 * The PostgreSQL store's worker thread: it owns the one `pg` connection and runs the main
 * thread's calls on it one at a time, in order (pg-bridge.ts waits for each reply). It keeps the
 * transaction state, so that work meant for a transaction never runs outside one: when the
 * connection is lost inside a transaction (PostgreSQL rolls it back), every call of that
 * transaction fails until the main thread rolls back. A lost connection is re-opened in the
 * background with back-off, and the state word in the shared buffer says whether it is up.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import {
  SIGNAL_SEQ,
  SIGNAL_STATE,
  STATE_DOWN,
  STATE_UP,
  type Call,
  type Reply,
  type StatusMessage,
  type WireError,
  type WorkerInit,
} from './pg-protocol.js';

const init = workerData as WorkerInit;
const signal = new Int32Array(init.signal);
const port = init.port;

// Rows look like SQLite's (rows.ts maps both): bigint (ms timestamps, ids, counts) as a number,
// json/jsonb as its text. Every value the store keeps in a bigint is far below 2^53.
const INT8 = 20;
const JSON_OID = 114;
const JSONB = 3802;
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8) return (v: string) => Number(v);
    if (oid === JSON_OID || oid === JSONB) return (v: string) => v;
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

const RETRY_MAX_MS = 2000;

let client: pg.Client | undefined;
let connecting: Promise<pg.Client> | undefined;
/** 'lost': the connection dropped inside a transaction; its calls fail until the rollback. */
let tx: 'none' | 'open' | 'lost' = 'none';
let retryMs = 0;
let retryTimer: NodeJS.Timeout | undefined;
let closing = false;
let queue: Promise<void> = Promise.resolve();
/** Calls up to this id were given up by the main thread: not started, not continued. */
let abandoned = 0;

function reply(r: Reply): void {
  port.postMessage(r);
  Atomics.add(signal, SIGNAL_SEQ, 1);
  Atomics.notify(signal, SIGNAL_SEQ);
}

function status(s: StatusMessage): void {
  parentPort?.postMessage(s);
}

function connect(): Promise<pg.Client> {
  if (client) return Promise.resolve(client);
  connecting ??= open().finally(() => {
    connecting = undefined;
  });
  return connecting;
}

async function open(): Promise<pg.Client> {
  const c = new pg.Client({
    connectionString: init.connectionString,
    connectionTimeoutMillis: init.connectTimeoutMs,
    statement_timeout: init.statementTimeoutMs,
    application_name: init.applicationName,
    keepAlive: true,
    types,
  });
  // Without listeners an idle connection's error would be an uncaught exception.
  c.on('error', (err) => lost(c, err));
  c.on('end', () => lost(c, new Error('the server closed the connection')));
  const started = performance.now();
  try {
    await c.connect();
  } catch (err) {
    c.end().catch(() => {});
    // pg's own connect timeout says only "timeout expired": say which.
    const timedOut = performance.now() - started >= init.connectTimeoutMs - 10;
    const reason = timedOut ? Object.assign(new Error(`no connection within ${init.connectTimeoutMs} ms (${(err as Error).message})`), { code: 'ETIMEDOUT' }) : (err as Error);
    down(reason);
    throw reason;
  }
  if (closing) {
    await c.end().catch(() => {});
    throw new Error('the PostgreSQL store is closed');
  }
  client = c;
  retryMs = 0;
  Atomics.store(signal, SIGNAL_STATE, STATE_UP);
  status({ state: 'up' });
  return c;
}

function lost(c: pg.Client, err: Error): void {
  if (client !== c) return;
  client = undefined;
  if (tx === 'open') tx = 'lost';
  c.end().catch(() => {});
  down(err);
}

function down(err: Error): void {
  if (closing) return;
  const wasDown = Atomics.exchange(signal, SIGNAL_STATE, STATE_DOWN) === STATE_DOWN;
  if (!wasDown) status({ state: 'down', error: err.message });
  if (retryTimer) return;
  retryTimer = setTimeout(() => {
    retryTimer = undefined;
    connect().catch(() => {}); // a failure calls down() again, which schedules the next try
  }, retryMs);
  retryMs = Math.min(Math.max(retryMs * 2, 100), RETRY_MAX_MS);
}

/**
 * The main thread gave up on a call: drop the connection (pg destroys the socket of a busy
 * client), so a hung statement cannot hold the next calls, and say the store is down until a new
 * connection is up, so the main thread fails fast instead of waiting out a timeout per call.
 */
function abort(id: number): void {
  abandoned = Math.max(abandoned, id);
  const c = client;
  client = undefined;
  if (tx === 'open') tx = 'lost';
  c?.end().catch(() => {});
  down(new Error('a call did not finish within the call timeout'));
}

/** Between the awaits of a call: stop if the main thread has given up on it. */
function live(call: { id: number }): void {
  if (call.id <= abandoned) throw new Error('abandoned by the main thread (call timeout)');
}

class TransactionLost extends Error {
  readonly code = 'GS_STORE_TX_LOST';
}

const txLost = () =>
  new TransactionLost('the connection to PostgreSQL was lost inside a transaction; PostgreSQL rolled it back, and its remaining work is refused');

/** Calls of a transaction run only inside it; a call outside one clears what a lost transaction left. */
async function checkTx(inTx: boolean): Promise<void> {
  if (inTx) {
    if (tx !== 'open') throw txLost();
    return;
  }
  if (tx === 'open') await client?.query('ROLLBACK').catch(() => {});
  tx = 'none';
}

const ok = (id: number, r?: pg.QueryResult): Reply => ({ id, ok: true, rows: r?.rows ?? [], rowCount: r?.rowCount ?? 0 });

/** The connection for a call, once the call may still run. */
async function connectFor(call: { id: number }): Promise<pg.Client> {
  live(call);
  const c = await connect();
  live(call);
  return c;
}

async function run(call: Exclude<Call, { op: 'abort' }>): Promise<Reply> {
  switch (call.op) {
    case 'query': {
      await checkTx(call.inTx);
      return ok(call.id, await (await connectFor(call)).query({ text: call.text, values: call.values }));
    }
    case 'exec': {
      await checkTx(call.inTx);
      return ok(call.id, await (await connectFor(call)).query(call.text));
    }
    case 'begin': {
      await checkTx(false);
      await (await connectFor(call)).query('BEGIN');
      tx = 'open';
      return ok(call.id);
    }
    case 'commit': {
      if (tx !== 'open') {
        tx = 'none';
        throw txLost();
      }
      try {
        const r = await client!.query('COMMIT');
        // After an error inside the transaction PostgreSQL answers COMMIT with ROLLBACK.
        if (r.command === 'ROLLBACK') throw new Error('the transaction was rolled back: a statement in it failed (PostgreSQL aborts the whole transaction)');
      } finally {
        tx = 'none';
      }
      return ok(call.id);
    }
    case 'rollback': {
      if (tx === 'open' && client) {
        const c = client;
        await c.query('ROLLBACK').catch(() => lost(c, new Error('ROLLBACK failed')));
      }
      tx = 'none';
      return ok(call.id);
    }
    case 'ping':
      return ok(call.id, await (await connectFor(call)).query('SELECT 1'));
    case 'close': {
      closing = true;
      clearTimeout(retryTimer);
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
      return ok(call.id);
    }
  }
}

function wire(err: unknown): WireError {
  const e = err as pg.DatabaseError & { code?: string };
  // Connecting to a name with several addresses fails with an AggregateError whose own message is empty.
  const inner = err instanceof AggregateError ? err.errors.map((x: unknown) => (x as Error)?.message).filter(Boolean) : [];
  return {
    message: e?.message || inner.join('; ') || e?.code || String(err),
    code: e?.code,
    detail: e?.detail,
    hint: e?.hint,
    constraint: e?.constraint,
    table: e?.table,
    column: e?.column,
    severity: e?.severity,
  };
}

port.on('message', (call: Call) => {
  if (call.op === 'abort') return abort(call.id);
  queue = queue.then(async () => {
    let r: Reply;
    try {
      r = await run(call);
    } catch (err) {
      r = { id: call.id, ok: false, error: wire(err) };
    }
    reply(r);
    if (call.op === 'close') port.close();
  });
});

// Connect at once: the first call (the migrations) is already waiting.
connect().catch(() => {});
