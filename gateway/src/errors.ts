/**
 * The error catalogue: each API error has a stable code, an HTTP status and a message that a
 * user can act on. Clients receive `{ code, message }`.
 */
export const ERRORS = {
  NOT_FOUND: { status: 404, message: 'no such resource' },
  DEVICE_NOT_FOUND: { status: 404, message: 'no device with this id in the ledger' },
  BAD_REQUEST: { status: 400, message: 'the request is not valid' },
  UNKNOWN_FIELD: { status: 400, message: 'this device kind has no such telemetry field' },
  BAD_TIME_RANGE: { status: 400, message: 'from must be before to, and the range at most 366 days' },
  STORAGE_UNAVAILABLE: { status: 503, message: 'time-series storage (InfluxDB) is not reachable' },
  STORAGE_DISABLED: { status: 503, message: 'time-series storage is disabled in the config' },
  STORE_UNAVAILABLE: { status: 503, message: 'the operational store (users, sessions, incidents, broadcasts) is not reachable; try again shortly' },
  UNAUTHENTICATED: { status: 401, message: 'sign in first (session cookie or Authorization: Bearer token)' },
  FORBIDDEN: { status: 403, message: 'your role does not allow this' },
  BAD_LOGIN: { status: 401, message: 'wrong username or password' },
  TOO_MANY_ATTEMPTS: { status: 429, message: 'too many failed sign-ins; wait a few minutes' },
  USER_EXISTS: { status: 409, message: 'a user with this username exists' },
  USER_NOT_FOUND: { status: 404, message: 'no such user' },
  BROADCAST_NOT_FOUND: { status: 404, message: 'no broadcast with this id' },
  BROADCAST_BAD_TARGET: { status: 400, message: 'the target names something that does not exist, or selects no voice pole' },
  BROADCAST_BAD_CONTENT: { status: 400, message: 'the content cannot be broadcast (unknown template or clip, a template variable without a value, text too long)' },
  BROADCAST_REASON_REQUIRED: { status: 400, message: 'an emergency broadcast needs a reason' },
  BROADCAST_BAD_SCHEDULE: { status: 400, message: 'the schedule or the expiry is not possible' },
  BROADCAST_ENDED: { status: 409, message: 'the broadcast has already ended' },
  BROADCAST_NOTHING_TO_RETRY: { status: 409, message: 'no pole of the broadcast’s last run missed it' },
  INCIDENT_NOT_FOUND: { status: 404, message: 'no such incident (or it is outside your grids)' },
  NO_LEADER: { status: 503, message: 'no gateway instance applied the decision in time (a leader is being chosen); try again in a few seconds' },
  INCIDENT_STATE: { status: 409, message: 'the incident is not in a state that allows this' },
  REASON_REQUIRED: { status: 400, message: 'this decision needs a reason' },
  VIDEO_NO_STREAM: { status: 409, message: 'the camera has no stream address in the ledger (rtsp_url or onvif_url)' },
  VIDEO_STREAM_LIMIT: { status: 503, message: 'the gateway has as many camera streams open as it may; close a player or try again shortly' },
  VIDEO_CODEC_UNSUPPORTED: { status: 415, message: 'the camera’s codec cannot be played in the browser as is; use format=mpeg1' },
  VIDEO_UNAVAILABLE: { status: 503, message: 'live video and snapshots are switched off in the config (gateway.video.enabled)' },
  CAMERA_NO_ONVIF: { status: 409, message: 'the camera has no onvif_url in the ledger' },
  CAMERA_UNREACHABLE: { status: 502, message: 'the camera did not answer' },
  PTZ_REJECTED: { status: 409, message: 'the camera’s agent refused the PTZ command (the message says why)' },
  PTZ_FAILED: { status: 502, message: 'the camera could not carry out the PTZ command' },
  PTZ_TIMEOUT: { status: 504, message: 'the camera’s agent did not answer the PTZ command in time (agent or camera offline?)' },
  SNAPSHOT_NOT_FOUND: { status: 404, message: 'no such snapshot (or it is outside your grids)' },
  INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? ERRORS[code].message);
    this.code = code;
    this.status = ERRORS[code].status;
  }
}
