/**
 * Runtime validation of MQTT payloads at the trust boundary. Used by the gateway on every inbound
 * message and by the agent's tests; never trusts a payload's own claims about its shape.
 */
import { Ajv, type ValidateFunction, type ErrorObject } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import {
  AgentState,
  CommandAck,
  DeviceCommand,
  DeviceEvent,
  DeviceState,
  DEVICE_KINDS,
  MAX_PAYLOAD_BYTES,
  telemetrySchema,
  type DeviceKind,
  type Telemetry,
} from './payloads.js';

export type RejectReason = 'too_large' | 'not_json' | 'schema';

export type Validated<T> = { ok: true; value: T } | { ok: false; reason: RejectReason; detail: string };

const ajv = new Ajv({ allErrors: false, useDefaults: true, coerceTypes: false, strict: true });

function compile<T>(schema: TSchema): ValidateFunction<T> {
  return ajv.compile<T>(schema);
}

export function describeAjvError(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid';
  const where = e.instancePath === '' ? '(root)' : e.instancePath.slice(1).replaceAll('/', '.');
  if (e.keyword === 'additionalProperties') {
    return `${where}: unknown property "${String((e.params as { additionalProperty?: string }).additionalProperty)}"`;
  }
  return `${where}: ${e.message ?? 'invalid'}`;
}

/** Parses JSON safely: size-capped, and `__proto__`/`constructor` keys can never reach a prototype. */
export function parseJsonPayload(payload: Uint8Array | string): Validated<unknown> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > MAX_PAYLOAD_BYTES) return { ok: false, reason: 'too_large', detail: `${size} bytes > ${MAX_PAYLOAD_BYTES}` };
  const text = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, size).toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, reason: 'not_json', detail: (err as Error).message.slice(0, 120) };
  }
}

function validator<T>(fn: ValidateFunction<T>) {
  return (payload: Uint8Array | string): Validated<T> => {
    const parsed = parseJsonPayload(payload);
    if (!parsed.ok) return parsed;
    if (fn(parsed.value)) return { ok: true, value: parsed.value };
    return { ok: false, reason: 'schema', detail: describeAjvError(fn.errors) };
  };
}

const telemetryValidators = Object.fromEntries(
  DEVICE_KINDS.map((kind) => [kind, validator(compile<Telemetry>(telemetrySchema(kind)))]),
) as Record<DeviceKind, (payload: Uint8Array | string) => Validated<Telemetry>>;

export const validate = {
  telemetry: (kind: DeviceKind, payload: Uint8Array | string): Validated<Telemetry> => telemetryValidators[kind](payload),
  event: validator(compile<DeviceEvent>(DeviceEvent)),
  state: validator(compile<DeviceState>(DeviceState)),
  agentState: validator(compile<AgentState>(AgentState)),
  command: validator(compile<DeviceCommand>(DeviceCommand)),
  ack: validator(compile<CommandAck>(CommandAck)),
};
