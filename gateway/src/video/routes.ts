/**
 * Video over HTTP: the live WebSocket, the list of open streams, alarm snapshots and PTZ.
 * Everything needs a signed-in user; PTZ needs a duty officer or above and is audited.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN } from '../../../protocol/topics.js';
import { VIDEO_FORMATS, type CameraPresetsResponse, type IncidentSnapshotsResponse, type PtzRequest, type PtzResponse, type VideoStreamsResponse } from '../../../protocol/video.js';
import type { IncidentService } from '../alerts/incidents.js';
import { ApiError } from '../errors.js';
import type { RequireRole } from '../http/auth-routes.js';
import type { OperationalStore } from '../store/store.js';
import type { VideoService } from './service.js';
import { SNAPSHOT_NAME_PATTERN } from './snapshots.js';

const tags = ['video'];

const CameraParams = Type.Object({ cameraId: Type.String({ pattern: ID_PATTERN }) });
const DeviceParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });
const LiveQuery = Type.Object(
  {
    format: Type.Optional(
      Type.Union(VIDEO_FORMATS.map((f) => Type.Literal(f)), { description: 'fmp4 (default): H.264 fragmented MP4 for Media Source Extensions; mpeg1: MPEG-TS for jsmpeg' }),
    ),
  },
  { additionalProperties: false },
);
const IncidentParams = Type.Object({ id: Type.String({ pattern: '^INC-[0-9]{8}-[0-9]{4,}$' }) });
const SnapshotParams = Type.Object({ name: Type.String({ pattern: SNAPSHOT_NAME_PATTERN }) });
/** One flat object rather than a union: a union with `additionalProperties: false` validates badly under fastify's ajv settings. */
const PtzBody = Type.Object(
  {
    action: Type.Union([Type.Literal('goto_preset'), Type.Literal('move'), Type.Literal('stop')]),
    preset: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64, pattern: '^[^<>&]+$' }), Type.Integer({ minimum: 0 })], { description: 'goto_preset: a preset token or name' })),
    speed: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'goto_preset: share of the camera’s top speed' })),
    pan: Type.Optional(Type.Number({ minimum: -1, maximum: 1, description: 'move: velocity, positive = clockwise seen from above' })),
    tilt: Type.Optional(Type.Number({ minimum: -1, maximum: 1, description: 'move: velocity, positive = up' })),
    zoom: Type.Optional(Type.Number({ minimum: -1, maximum: 1, description: 'move: velocity, positive = in' })),
    durationMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, description: 'move: how long (default 1000)' })),
    wait: Type.Optional(Type.Union([Type.Literal('accepted'), Type.Literal('done')], { description: 'answer at the first ack (default) or once the move is finished' })),
  },
  { additionalProperties: false },
);

function ptzRequest(body: Static<typeof PtzBody>): PtzRequest {
  const wait = body.wait !== undefined ? { wait: body.wait } : {};
  const extra = (allowed: string[]) => Object.keys(body).filter((k) => k !== 'action' && k !== 'wait' && !allowed.includes(k));
  const refuse = (msg: string) => new ApiError('BAD_REQUEST', `body ${msg}`);
  switch (body.action) {
    case 'goto_preset': {
      if (body.preset === undefined) throw refuse('goto_preset needs a preset');
      if (extra(['preset', 'speed']).length) throw refuse(`goto_preset takes preset and speed, not ${extra(['preset', 'speed']).join(', ')}`);
      return { action: 'goto_preset', preset: body.preset, ...(body.speed !== undefined ? { speed: body.speed } : {}), ...wait };
    }
    case 'move': {
      if (extra(['pan', 'tilt', 'zoom', 'durationMs']).length) throw refuse(`move takes pan, tilt, zoom and durationMs, not ${extra(['pan', 'tilt', 'zoom', 'durationMs']).join(', ')}`);
      const pan = body.pan ?? 0;
      const tilt = body.tilt ?? 0;
      if (pan === 0 && tilt === 0 && !body.zoom) throw refuse('move needs a non-zero pan, tilt or zoom velocity');
      return { action: 'move', pan, tilt, ...(body.zoom !== undefined ? { zoom: body.zoom } : {}), ...(body.durationMs !== undefined ? { durationMs: body.durationMs } : {}), ...wait };
    }
    case 'stop':
      if (extra([]).length) throw refuse(`stop takes no parameters, not ${extra([]).join(', ')}`);
      return { action: 'stop', ...wait };
  }
}

export function registerVideoRoutes(
  app: FastifyInstance,
  ctx: { video: VideoService; incidents: IncidentService; store: OperationalStore; requireRole: RequireRole },
): void {
  const { video, incidents, store, requireRole } = ctx;
  const viewer = requireRole('viewer');
  const duty = requireRole('duty_officer');

  app.get<{ Params: Static<typeof CameraParams>; Querystring: Static<typeof LiveQuery> }>(
    '/api/video/:cameraId/live',
    {
      websocket: true,
      preHandler: viewer,
      schema: {
        tags,
        summary: 'Live video of a camera (WebSocket): JSON text frames (state, codec, error) and binary media frames; see docs/video.md',
        params: CameraParams,
        querystring: LiveQuery,
      },
    },
    (socket, req) => video.relay.attach(socket, req.user!.username, req.params.cameraId, req.query.format ?? 'fmp4'),
  );

  app.get('/api/video/streams', { preHandler: viewer, schema: { tags, summary: 'Camera streams the gateway has open now, and the limits' } }, async (): Promise<VideoStreamsResponse> => ({
    streams: video.relay.streams(),
    limits: { fmp4: video.relay.limit('fmp4'), mpeg1: video.relay.limit('mpeg1') },
  }));

  app.get<{ Params: Static<typeof IncidentParams> }>(
    '/api/incidents/:id/snapshots',
    { preHandler: viewer, schema: { tags, summary: 'Snapshots the incident’s cameras took when they raised their alarms', params: IncidentParams } },
    async (req): Promise<IncidentSnapshotsResponse> => {
      incidents.get(req.params.id, req.user!); // INCIDENT_NOT_FOUND unless this user may see it
      return { incidentId: req.params.id, snapshots: video.snapshots.list(req.params.id) };
    },
  );

  app.get<{ Params: Static<typeof SnapshotParams> }>(
    '/api/snapshots/:name',
    { preHandler: viewer, schema: { tags, summary: 'One alarm snapshot (image/jpeg)', params: SnapshotParams } },
    async (req, reply) => {
      const found = video.snapshots.read(req.params.name);
      if (!found) throw new ApiError('SNAPSHOT_NOT_FOUND');
      try {
        incidents.get(found.snapshot.incidentId, req.user!);
      } catch {
        throw new ApiError('SNAPSHOT_NOT_FOUND');
      }
      reply.header('content-type', 'image/jpeg');
      reply.header('cache-control', 'private, max-age=86400');
      return reply.send(found.jpeg);
    },
  );

  app.get<{ Params: Static<typeof DeviceParams> }>(
    '/api/cameras/:id/presets',
    { preHandler: duty, schema: { tags, summary: 'The camera’s PTZ presets, read over ONVIF (cached for a minute)', params: DeviceParams } },
    async (req): Promise<CameraPresetsResponse> => ({ cameraId: req.params.id, presets: await video.onvif.presets(req.params.id) }),
  );

  app.post<{ Params: Static<typeof DeviceParams>; Body: Static<typeof PtzBody> }>(
    '/api/cameras/:id/ptz',
    {
      preHandler: duty,
      schema: {
        tags,
        summary: 'Turn a PTZ camera: go to a preset, move (nudge) or stop; sent through the camera’s agent and answered on its ack (504 without one)',
        params: DeviceParams,
        body: PtzBody,
      },
    },
    async (req): Promise<PtzResponse> => {
      const cameraId = req.params.id;
      video.onvif.camera(cameraId); // DEVICE_NOT_FOUND for anything but a camera
      const request = ptzRequest(req.body);
      const { wait: _wait, ...detail } = request;
      let outcome: Record<string, unknown> = {};
      try {
        const result = await video.ptz.send(cameraId, request);
        outcome = { commandId: result.commandId, status: result.status, ...(result.reason ? { reason: result.reason } : {}) };
        return result;
      } catch (err) {
        outcome = { error: err instanceof ApiError ? err.code : 'INTERNAL', message: (err as Error).message };
        throw err;
      } finally {
        store.audit({ ts: Date.now(), actor: req.user!.username, action: 'camera.ptz', subject: cameraId, detail: { ...detail, ...outcome } });
      }
    },
  );
}
