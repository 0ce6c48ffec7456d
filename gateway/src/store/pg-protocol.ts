/**
 * What the PostgreSQL store's main thread (pg-bridge.ts) and its worker (pg-worker.ts) say to each
 * other. Calls and replies go over a MessagePort the main thread reads with
 * `receiveMessageOnPort`; the worker wakes it through a SharedArrayBuffer (`Atomics.notify` on
 * SIGNAL_SEQ), whose second word is the connection state the main thread reads without a call.
 * Connection changes also go to the main thread asynchronously (parentPort), for its log.
 */
import type { MessagePort } from 'node:worker_threads';
import type { PostgresErrorFields } from './errors.js';

/** Int32 slots of the shared buffer. */
export const SIGNAL_SEQ = 0;
export const SIGNAL_STATE = 1;
export const SIGNAL_WORDS = 2;

/** SIGNAL_STATE values. */
export const STATE_CONNECTING = 0;
export const STATE_UP = 1;
export const STATE_DOWN = 2;

export interface WorkerInit {
  port: MessagePort;
  signal: SharedArrayBuffer;
  /** The connection URL with the password in it: never logged. */
  connectionString: string;
  connectTimeoutMs: number;
  /** Server-side statement_timeout: cleans up statements the main thread gave up on. */
  statementTimeoutMs: number;
  applicationName: string;
}

export type Call =
  /** One statement, extended protocol ($1 parameters). `inTx`: the caller is inside transaction(). */
  | { id: number; op: 'query'; text: string; values: unknown[]; inTx: boolean }
  /** Several statements, simple protocol, no parameters (migrations). */
  | { id: number; op: 'exec'; text: string; inTx: boolean }
  | { id: number; op: 'begin' | 'commit' | 'rollback' | 'ping' | 'close' }
  /** The main thread stopped waiting for call `id`: it must not run (or go on), so the connection is dropped. No reply. */
  | { id: number; op: 'abort' };

export interface WireError extends PostgresErrorFields {
  message: string;
}

export type Reply =
  | { id: number; ok: true; rows: Record<string, unknown>[]; rowCount: number }
  | { id: number; ok: false; error: WireError }
  /** The worker could not load at all. */
  | { id: 0; fatal: WireError };

export type StatusMessage = { state: 'up' } | { state: 'down'; error: string };
