/**
 * MQTT payload schemas, version 1 (JSON, UTF-8). These schemas are the contract: the gateway
 * validates every inbound payload against them, the agent and simulators build payloads from the
 * same types, and docs/protocol.md is written from them.
 *
 * Every upstream payload carries `ts` (device-assigned, milliseconds since the Unix epoch, UTC)
 * and `seq` (per-device counter). (deviceId, ts) identifies a reading: a replay or a retry writes
 * the same InfluxDB point again instead of adding one.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN } from './topics.js';

export const DEVICE_KINDS = ['camera', 'voice_pole', 'water_tank'] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];

/** Payloads larger than this are rejected before parsing. */
export const MAX_PAYLOAD_BYTES = 16 * 1024;

/** 2000-01-01 .. 2100-01-01: anything outside is a device clock that was never set. */
const Ts = Type.Integer({
  minimum: 946_684_800_000,
  maximum: 4_102_444_800_000,
  description: 'device time, ms since the Unix epoch (UTC)',
});
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'per-device counter' });
const Id = Type.String({ pattern: ID_PATTERN });
const ShortText = Type.String({ maxLength: 500 });

// ---- telemetry values per device kind -------------------------------------------------------

export const WaterTankValues = Type.Object(
  {
    levelMm: Type.Number({ minimum: 0, maximum: 20_000, description: 'water level above tank floor, mm' }),
    levelPercent: Type.Number({ minimum: 0, maximum: 100, description: 'level as % of full height' }),
    volumeM3: Type.Number({ minimum: 0, maximum: 10_000, description: 'water volume, m³' }),
    temperatureC: Type.Optional(Type.Number({ minimum: -50, maximum: 80, description: 'water temperature, °C' })),
    sensorStatus: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 0xffff, description: 'transmitter status bits (see docs/protocol.md)' }),
    ),
    // From a weather sensor on the transmitter's cabinet, where the tank has one.
    airTemperatureC: Type.Optional(Type.Number({ minimum: -50, maximum: 60, description: 'air temperature at the tank, °C' })),
    humidityPercent: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'relative humidity of the air, %' })),
    rainTodayMm: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1000, description: "rain since local midnight (the gauge's daily counter), mm" }),
    ),
  },
  { additionalProperties: false },
);
export type WaterTankValues = Static<typeof WaterTankValues>;

export const CameraValues = Type.Object(
  {
    panDeg: Type.Optional(Type.Number({ minimum: 0, maximum: 360, description: 'PTZ pan bearing, degrees from north' })),
    tiltDeg: Type.Optional(Type.Number({ minimum: -90, maximum: 90 })),
    zoom: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
    streamOk: Type.Optional(Type.Boolean({ description: 'RTSP stream reachable at last check' })),
    fps: Type.Optional(Type.Number({ minimum: 0, maximum: 240 })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type CameraValues = Static<typeof CameraValues>;

export const VoicePoleValues = Type.Object(
  {
    playback: Type.Optional(Type.Union([Type.Literal('idle'), Type.Literal('playing'), Type.Literal('fault')])),
    volume: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    currentCommandId: Type.Optional(Id),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type VoicePoleValues = Static<typeof VoicePoleValues>;

export const TelemetryValuesByKind = {
  camera: CameraValues,
  voice_pole: VoicePoleValues,
  water_tank: WaterTankValues,
} as const satisfies Record<DeviceKind, TSchema>;

export interface TelemetryValuesMap {
  camera: CameraValues;
  voice_pole: VoicePoleValues;
  water_tank: WaterTankValues;
}

// ---- envelopes ---------------------------------------------------------------------------------

export function telemetrySchema<K extends DeviceKind>(kind: K) {
  return Type.Object(
    { ts: Ts, seq: Seq, values: TelemetryValuesByKind[kind] },
    { additionalProperties: false, $id: `telemetry.${kind}` },
  );
}
export interface Telemetry<K extends DeviceKind = DeviceKind> {
  ts: number;
  seq: number;
  values: TelemetryValuesMap[K];
}

export const EVENT_TYPES = [
  'fire',
  'smoke',
  'temperature_alarm',
  'motion',
  'tamper',
  'video_loss',
  'sensor_fault',
  'level_alarm',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const DeviceEvent = Type.Object(
  {
    ts: Ts,
    seq: Seq,
    type: Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))),
    /** 'start' for a condition that began, 'end' when it cleared, 'pulse' for a one-off. */
    phase: Type.Union([Type.Literal('start'), Type.Literal('end'), Type.Literal('pulse')], { default: 'pulse' }),
    severity: Type.Optional(Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('critical')])),
    bearingDeg: Type.Optional(Type.Number({ minimum: 0, maximum: 360, description: 'camera bearing to the source' })),
    confidence: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    temperatureC: Type.Optional(Type.Number({ minimum: -100, maximum: 2000 })),
    message: Type.Optional(ShortText),
    source: Type.Optional(Type.String({ maxLength: 200, description: 'native topic or code, e.g. ONVIF topic' })),
  },
  { additionalProperties: false, $id: 'event' },
);
export type DeviceEvent = Static<typeof DeviceEvent>;

export const DeviceState = Type.Object(
  {
    ts: Ts,
    seq: Seq,
    status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    reason: Type.Optional(ShortText),
  },
  { additionalProperties: false, $id: 'state' },
);
export type DeviceState = Static<typeof DeviceState>;

/**
 * An agent's own state, retained. Its last will is the same shape with status 'offline'; a will's
 * `ts` is the time the will was registered (at connect), so the gateway stamps receipt time too.
 */
export const AgentState = Type.Object(
  {
    ts: Ts,
    seq: Seq,
    status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    version: Type.Optional(Type.String({ maxLength: 40 })),
    devices: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false, $id: 'agentState' },
);
export type AgentState = Static<typeof AgentState>;

export const COMMAND_NAMES = [
  'broadcast.play',
  'broadcast.stop',
  'ptz.goto_preset',
  'ptz.move',
  'ptz.stop',
  'snapshot.capture',
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

const Scalar = Type.Union([Type.String({ maxLength: 2000 }), Type.Number(), Type.Boolean(), Type.Null()]);

export const DeviceCommand = Type.Object(
  {
    id: Id,
    ts: Ts,
    name: Type.Union(COMMAND_NAMES.map((n) => Type.Literal(n))),
    params: Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,39}$' }), Scalar, { maxProperties: 32 }),
    /** A command not started by this time must not be executed. */
    expiresAt: Type.Optional(Ts),
  },
  { additionalProperties: false, $id: 'command' },
);
export type DeviceCommand = Static<typeof DeviceCommand>;

export const ACK_STATUSES = ['accepted', 'playing', 'done', 'failed', 'rejected', 'preempted', 'expired'] as const;
export type AckStatus = (typeof ACK_STATUSES)[number];

export const CommandAck = Type.Object(
  {
    ts: Ts,
    seq: Seq,
    cmdId: Id,
    status: Type.Union(ACK_STATUSES.map((s) => Type.Literal(s))),
    reason: Type.Optional(ShortText),
  },
  { additionalProperties: false, $id: 'ack' },
);
export type CommandAck = Static<typeof CommandAck>;
