/**
 * Shape checks for JSON from the gateway (REST bodies, `/ws` frames). Every module that trusts a
 * response checks it with these first, so a version mismatch is a clear error, not `undefined`.
 */
export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
export const isString = (v: unknown): v is string => typeof v === 'string';
export const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
export const isStringOrNull = (v: unknown): v is string | null => v === null || isString(v);
export const isNumberOrNull = (v: unknown): v is number | null => v === null || isNumber(v);
