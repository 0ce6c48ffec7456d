/**
 * API failures in words a person can act on: the gateway's `{ code, message }` translated by code
 * where the catalogue knows it (i18n keys `error.<CODE>`), else the gateway's own message; the code
 * is shown too, so a support call can quote it.
 */
import { ApiError } from './api.js';
import type { I18n } from './i18n.js';

export function describeError(i18n: I18n, err: unknown): string {
  if (err instanceof ApiError) {
    const key = `error.${err.code}`;
    const text = i18n.has(key) ? i18n.t(key, { message: err.message }) : err.message;
    return i18n.t('error.withCode', { text, code: err.code });
  }
  return err instanceof Error ? err.message : String(err);
}
