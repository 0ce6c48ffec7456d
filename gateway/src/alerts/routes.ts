/**
 * Incidents over HTTP: list and filter, one incident with its timeline and dispatches, the
 * decisions people make (acknowledge, arrived, resolve, false alarm, note, escalate) and a CSV
 * export. Viewers read; grid workers act on incidents of their own grids; duty officers on all.
 */
import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { INCIDENT_CATEGORIES, INCIDENT_STATUSES, OPEN_STATUSES, type Incident, type IncidentStatus } from '../../../protocol/incidents.js';
import type { RequireRole } from '../http/auth-routes.js';
import type { OperationalStore } from '../store/store.js';
import type { FireDangerService } from './fire-danger.js';
import { ApiError } from '../errors.js';
import { localDecisions, NoLeaderError, type IncidentDecisions } from './decisions.js';
import { PHOTO_MAX_BYTES, type IncidentAction, type IncidentService } from './incidents.js';

const IncidentParams = Type.Object({ id: Type.String({ pattern: '^INC-[0-9]{8}-[0-9]{4,}$' }) });
const ListQuery = Type.Object(
  {
    status: Type.Optional(
      Type.String({ pattern: `^(open|closed|${INCIDENT_STATUSES.join('|')})(,(open|closed|${INCIDENT_STATUSES.join('|')}))*$`, description: 'comma-separated statuses; `open` and `closed` are shorthands' }),
    ),
    category: Type.Optional(Type.Union(INCIDENT_CATEGORIES.map((c) => Type.Literal(c)))),
    grid: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(,[A-Za-z0-9][A-Za-z0-9_.-]{0,63})*$', description: 'comma-separated grid ids' })),
    from: Type.Optional(Type.Integer({ minimum: 0, description: 'created at or after, ms since epoch' })),
    to: Type.Optional(Type.Integer({ minimum: 0, description: 'created at or before, ms since epoch' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  },
  { additionalProperties: false },
);
const ExportQuery = Type.Omit(ListQuery, ['limit', 'offset']);
const NoteBody = Type.Object({ note: Type.Optional(Type.String({ maxLength: 2000 })) }, { additionalProperties: false });
const RequiredNoteBody = Type.Object({ note: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false });
const ReasonBody = Type.Object({ reason: Type.String({ minLength: 1, maxLength: 500, description: 'e.g. 云雾, 炊烟, 车灯, 施工烧荒' }) }, { additionalProperties: false });
const PhotoQuery = Type.Object({ note: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
const EscalateBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });

type ListQuery = Static<typeof ListQuery>;

const ACTIONS: Array<{ path: string; action: IncidentAction; body: typeof NoteBody | typeof RequiredNoteBody | typeof ReasonBody | typeof EscalateBody; role: 'grid_worker' | 'duty_officer'; summary: string }> = [
  { path: 'acknowledge', action: 'acknowledge', body: NoteBody, role: 'grid_worker', summary: 'Acknowledge: I have seen it and I am on it (stops escalation)' },
  { path: 'on-site', action: 'on_site', body: NoteBody, role: 'grid_worker', summary: 'Report arrival on site (acknowledges too)' },
  { path: 'resolve', action: 'resolve', body: NoteBody, role: 'grid_worker', summary: 'Resolve, with what was found and done' },
  { path: 'false-alarm', action: 'false_alarm', body: ReasonBody, role: 'grid_worker', summary: 'Dismiss as a false alarm, with the reason' },
  { path: 'notes', action: 'note', body: RequiredNoteBody, role: 'grid_worker', summary: 'Add a note to the timeline' },
  { path: 'escalate', action: 'escalate', body: EscalateBody, role: 'duty_officer', summary: 'Move up one level now' },
];

const FireDangerBody = Type.Object(
  {
    level: Type.Union([Type.Integer({ minimum: 1, maximum: 5 }), Type.Null()], { description: "today's level 1..5 (e.g. from the weather bureau); null returns to the computed level" }),
    note: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);

export function registerIncidentRoutes(
  app: FastifyInstance,
  ctx: { incidents: IncidentService; fireDanger: FireDangerService; store: OperationalStore; requireRole: RequireRole; decisions?: IncidentDecisions },
): void {
  const { incidents, fireDanger, requireRole } = ctx;
  const decisions = ctx.decisions ?? localDecisions(incidents);
  const tags = ['incidents'];

  app.get('/api/fire-danger', { preHandler: requireRole('viewer'), schema: { tags: ['fire danger'], summary: "Today's fire danger level, the weather behind it and 30 days of history" } }, async () =>
    fireDanger.status(),
  );
  app.put<{ Body: Static<typeof FireDangerBody> }>(
    '/api/fire-danger',
    { preHandler: requireRole('duty_officer'), schema: { tags: ['fire danger'], summary: "Set today's level by hand (wins over the computed one; audited)", body: FireDangerBody } },
    async (req) => {
      const status = fireDanger.setManual(req.body.level, req.user!.username, req.body.note ?? null);
      ctx.store.audit({ ts: Date.now(), actor: req.user!.username, action: 'fire_danger.set', subject: status.day, detail: { level: req.body.level, note: req.body.note ?? null } });
      return status;
    },
  );

  const query = (q: Static<typeof ExportQuery>, limit: number, offset: number) => ({
    ...(q.status ? { status: expandStatuses(q.status) } : {}),
    ...(q.category ? { category: q.category } : {}),
    ...(q.grid ? { grids: q.grid.split(',') } : {}),
    ...(q.from !== undefined ? { from: q.from } : {}),
    ...(q.to !== undefined ? { to: q.to } : {}),
    limit,
    offset,
  });

  app.get<{ Querystring: ListQuery }>(
    '/api/incidents',
    { preHandler: requireRole('viewer'), schema: { tags, summary: 'List incidents, newest first (a grid worker sees their grids only)', querystring: ListQuery } },
    async (req) => incidents.list(query(req.query, req.query.limit ?? 100, req.query.offset ?? 0), req.user!),
  );

  app.get<{ Querystring: Static<typeof ExportQuery> }>(
    '/api/incidents.csv',
    { preHandler: requireRole('viewer'), schema: { tags, summary: 'Export incidents as CSV (UTF-8 with BOM, opens in Excel/WPS)', querystring: ExportQuery } },
    async (req, reply) => {
      const rows: Incident[] = [];
      for (let offset = 0; ; offset += 1000) {
        const page = incidents.list(query(req.query, 1000, offset), req.user!);
        rows.push(...page.incidents);
        if (page.incidents.length < 1000 || rows.length >= 100_000) break;
      }
      reply.header('content-type', 'text/csv; charset=utf-8');
      reply.header('content-disposition', `attachment; filename="incidents-${new Date().toISOString().slice(0, 10)}.csv"`);
      return incidentsToCsv(rows);
    },
  );

  app.get<{ Params: Static<typeof IncidentParams> }>(
    '/api/incidents/:id',
    { preHandler: requireRole('viewer'), schema: { tags, summary: 'One incident with its timeline and dispatches', params: IncidentParams } },
    async (req) => incidents.get(req.params.id, req.user!),
  );

  // Photos from the field: the body is the image itself (Content-Type image/jpeg, png or webp).
  app.addContentTypeParser(['image/jpeg', 'image/png', 'image/webp'], { parseAs: 'buffer', bodyLimit: PHOTO_MAX_BYTES }, (_req, body, done) => done(null, body));
  app.post<{ Params: Static<typeof IncidentParams>; Querystring: Static<typeof PhotoQuery>; Body: Buffer }>(
    '/api/incidents/:id/photos',
    {
      preHandler: requireRole('grid_worker'),
      schema: { tags, summary: 'Add a photo from the field (body: the JPEG/PNG/WebP image, at most 8 MiB)', params: IncidentParams, querystring: PhotoQuery },
    },
    async (req) => {
      if (!Buffer.isBuffer(req.body)) throw new ApiError('BAD_REQUEST', 'send the image as the body with Content-Type image/jpeg, image/png or image/webp');
      return incidents.addPhoto(req.params.id, req.user!, req.headers['content-type'] ?? '', req.body, req.query.note ?? null);
    },
  );
  app.get<{ Params: Static<typeof IncidentParams> & { name: string } }>(
    '/api/incidents/:id/photos/:name',
    { preHandler: requireRole('viewer'), schema: { tags, summary: 'One field photo', params: Type.Object({ id: IncidentParams.properties.id, name: Type.String({ maxLength: 64 }) }) } },
    async (req, reply) => {
      const { file, contentType } = incidents.photoFile(req.params.id, req.params.name, req.user!);
      reply.header('content-type', contentType);
      reply.header('cache-control', 'private, max-age=86400');
      return reply.send(createReadStream(file));
    },
  );

  for (const a of ACTIONS) {
    app.post<{ Params: Static<typeof IncidentParams>; Body: { note?: string; reason?: string } }>(
      `/api/incidents/:id/${a.path}`,
      { preHandler: requireRole(a.role), schema: { tags, summary: a.summary, params: IncidentParams, body: a.body } },
      async (req, reply) => {
        try {
          return await decisions.act(req.params.id, a.action, req.user!, req.body ?? {});
        } catch (err) {
          // In a cluster: no instance leads just now (a failover takes a few seconds).
          if (err instanceof NoLeaderError) return reply.status(err.status).header('retry-after', '2').send({ code: err.code, message: err.message });
          throw err;
        }
      },
    );
  }
}

function expandStatuses(list: string): IncidentStatus[] {
  const out = new Set<IncidentStatus>();
  for (const s of list.split(',')) {
    if (s === 'open') OPEN_STATUSES.forEach((x) => out.add(x));
    else if (s === 'closed') (['resolved', 'false_alarm'] as const).forEach((x) => out.add(x));
    else out.add(s as IncidentStatus);
  }
  return Array.from(out);
}

const CSV_COLUMNS: Array<[string, (i: Incident) => string | number | null]> = [
  ['id', (i) => i.id],
  ['category', (i) => i.category],
  ['kind', (i) => i.kind],
  ['severity', (i) => i.severity],
  ['status', (i) => i.status],
  ['title', (i) => i.title],
  ['created_at', (i) => new Date(i.createdAt).toISOString()],
  ['grid', (i) => i.grid],
  ['grid_name', (i) => i.gridName],
  ['community', (i) => i.community],
  ['location_method', (i) => i.location?.method ?? null],
  ['lat', (i) => (i.location && 'lat' in i.location ? i.location.lat.toFixed(6) : null)],
  ['lon', (i) => (i.location && 'lon' in i.location ? i.location.lon.toFixed(6) : null)],
  ['uncertainty_m', (i) => (i.location?.method === 'triangulated' ? i.location.uncertaintyM : null)],
  ['devices', (i) => i.devices.join(' ')],
  ['signal_count', (i) => i.signalCount],
  ['level', (i) => i.level],
  ['acknowledged_at', (i) => (i.acknowledgedAt ? new Date(i.acknowledgedAt).toISOString() : null)],
  ['acknowledged_by', (i) => i.acknowledgedBy],
  ['closed_at', (i) => (i.closedAt ? new Date(i.closedAt).toISOString() : null)],
  ['closed_by', (i) => i.closedBy],
  ['close_reason', (i) => i.closeReason],
];

/** RFC 4180 CSV; cells that a spreadsheet would run as a formula are prefixed with '. */
export function incidentsToCsv(rows: readonly Incident[]): string {
  const cell = (v: string | number | null) => {
    if (v === null) return '';
    let s = String(v);
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [CSV_COLUMNS.map(([name]) => name).join(',')];
  for (const r of rows) lines.push(CSV_COLUMNS.map(([, get]) => cell(get(r))).join(','));
  return `\uFEFF${lines.join('\r\n')}\r\n`;
}
