/**
 * Live video, alarm snapshots and PTZ as the browser sees them (docs/video.md): the messages of
 * the `GET /api/video/:cameraId/live` WebSocket and the REST bodies of the video routes.
 *
 * The live socket carries two kinds of frames, server → client only:
 * - **text** frames: one JSON `VideoServerMessage` each;
 * - **binary** frames: media. For `fmp4`, the first binary frame after a `codec` message is the
 *   init segment (ftyp+moov); every later one is one media segment (moof+mdat), the first of them
 *   starting at a key frame. For `mpeg1`, each binary frame is a run of whole 188-byte MPEG-TS
 *   packets (MPEG-1 video, no audio) for jsmpeg.
 */
import type { AckStatus } from './payloads.js';

export const VIDEO_FORMATS = ['fmp4', 'mpeg1'] as const;
/** fmp4: H.264 remuxed (not re-encoded) for Media Source Extensions; mpeg1: transcoded for jsmpeg. */
export type VideoFormat = (typeof VIDEO_FORMATS)[number];

export const VIDEO_STATES = ['connecting', 'live', 'reconnecting', 'offline'] as const;
/**
 * connecting: the gateway is opening the camera's stream; live: media is flowing; reconnecting:
 * the camera's stream dropped and is being re-opened (with back-off); offline: it has failed for a
 * while (or the camera is known to be offline) and is still retried, more slowly.
 */
export type VideoState = (typeof VIDEO_STATES)[number];

/** Error codes a live socket can end with (also in the API error catalogue, docs/protocol.md). */
export type VideoErrorCode = 'DEVICE_NOT_FOUND' | 'VIDEO_NO_STREAM' | 'VIDEO_STREAM_LIMIT' | 'VIDEO_CODEC_UNSUPPORTED' | 'VIDEO_UNAVAILABLE';

/** WebSocket close codes of the live socket (4000–4999 is the application range). */
export const VIDEO_CLOSE_CODES = {
  /** the gateway is stopping */
  GOING_AWAY: 1001,
  DEVICE_NOT_FOUND: 4404,
  VIDEO_NO_STREAM: 4409,
  VIDEO_CODEC_UNSUPPORTED: 4415,
  /** the relay is switched off in the config */
  VIDEO_UNAVAILABLE: 4500,
  VIDEO_STREAM_LIMIT: 4503,
} as const satisfies Record<string, number>;

export type VideoServerMessage =
  /** Sent first, then on every change. `retryInMs`: when the next attempt to open the camera is due. */
  | {
      type: 'state';
      cameraId: string;
      format: VideoFormat;
      state: VideoState;
      /** Why, for people ("the camera closed the stream"); never contains addresses or credentials. */
      reason?: string;
      retryInMs?: number;
    }
  /**
   * What the following media is. Sent before the first media and again after each re-open of the
   * camera's stream: then build a new decoder pipeline (a new MediaSource / SourceBuffer), since
   * the timeline restarts and the codec may have changed. `epoch` counts the stream's (re)opens.
   */
  | {
      type: 'codec';
      format: VideoFormat;
      epoch: number;
      /** `video/mp4; codecs="avc1.42C01E"` (fmp4), `video/mp2t` (mpeg1) */
      mimeType: string;
      /** RFC 6381 codec string for fmp4 (`avc1.42C01E`); `mpeg1video` for mpeg1 */
      codec: string;
      width: number | null;
      height: number | null;
    }
  /** The socket is about to close with this reason (the close code is in VIDEO_CLOSE_CODES). */
  | { type: 'error'; code: VideoErrorCode; message: string };

/** One running camera stream, for `GET /api/video/streams`. */
export interface VideoStreamInfo {
  cameraId: string;
  format: VideoFormat;
  state: VideoState;
  viewers: number;
  /** ms since epoch the stream was first opened */
  since: number;
  /** times the camera's stream was re-opened after it dropped */
  restarts: number;
  /** ms until the stream is closed for lack of viewers (null while watched) */
  closesInMs: number | null;
}

export interface VideoStreamsResponse {
  streams: VideoStreamInfo[];
  limits: { fmp4: number; mpeg1: number };
}

/** A still frame taken from a camera when it raised (or repeated) a fire/smoke alarm. */
export interface IncidentSnapshot {
  /** file name; fetch it at `url` */
  name: string;
  url: string;
  incidentId: string;
  cameraId: string;
  cameraName: string;
  /** gateway time the frame was taken, ms */
  ts: number;
  /** the alarm's bearing from the camera, degrees from north (null: the alarm had none) */
  bearingDeg: number | null;
  bytes: number;
}

export interface IncidentSnapshotsResponse {
  incidentId: string;
  snapshots: IncidentSnapshot[];
}

export interface CameraPreset {
  /** what `ptz` `goto_preset` takes */
  token: string;
  name: string;
  /** compass bearing of the preset's pan position (needs the ledger heading); null if unknown */
  panDeg: number | null;
}

export interface CameraPresetsResponse {
  cameraId: string;
  presets: CameraPreset[];
}

export type PtzRequest =
  | { action: 'goto_preset'; preset: string | number; speed?: number; wait?: 'accepted' | 'done' }
  /** velocities −1..1 (positive pan: clockwise seen from above; tilt: up; zoom: in) for `durationMs` */
  | { action: 'move'; pan: number; tilt: number; zoom?: number; durationMs?: number; wait?: 'accepted' | 'done' }
  | { action: 'stop'; wait?: 'accepted' | 'done' };

export interface PtzResponse {
  cameraId: string;
  commandId: string;
  action: PtzRequest['action'];
  /** the agent's ack: `accepted` (moving), or a final `done` when `wait` is `done` */
  status: AckStatus;
  reason: string | null;
  /** ms from sending the command to this ack */
  elapsedMs: number;
}
