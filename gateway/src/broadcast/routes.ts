/**
 * The broadcast API (docs/broadcast.md). Anyone signed in may look; a duty officer (or admin)
 * creates, cancels and re-sends. Every route has a schema, so the OpenAPI document at
 * /api/openapi.json describes it for integrators (the district emergency platform).
 */
import type { FastifyInstance, FastifyReply, FastifySchema, FastifySchemaCompiler } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import {
  BROADCAST_PRIORITIES,
  BROADCAST_STATUSES,
  BroadcastRequest,
  BroadcastTarget,
  DELIVERY_STATES,
  type BroadcastStatus,
} from '../../../protocol/broadcasts.js';
import { ID_PATTERN } from '../../../protocol/topics.js';
import { NoLeaderError } from '../alerts/decisions.js';
import type { RequireRole } from '../http/auth-routes.js';
import type { BroadcastService, Operator } from './service.js';

const tags = ['broadcast'];
const literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const Counts = Type.Object(Object.fromEntries(DELIVERY_STATES.map((s) => [s, Type.Integer()])), { description: 'deliveries of the current run by state' });

const BroadcastJobSchema = Type.Object(
  {
    id: Type.String(),
    title: Type.String(),
    status: literals(BROADCAST_STATUSES),
    priority: literals(BROADCAST_PRIORITIES),
    reason: Nullable(Type.String()),
    content: Type.Unknown({ description: 'as requested' }),
    text: Nullable(Type.String({ description: 'what the poles speak (text, or the template filled in); null for a clip' })),
    clipId: Nullable(Type.String()),
    repeat: Type.Integer(),
    volume: Nullable(Type.Integer()),
    target: Type.Unknown({ description: 'as requested' }),
    targetLabel: Type.String(),
    poleCount: Type.Integer({ description: 'poles the target selected at creation' }),
    schedule: Type.Unknown({ description: 'as requested (default {"type":"now"})' }),
    incidentId: Nullable(Type.String()),
    retryOf: Nullable(Type.String()),
    createdAt: Type.Integer(),
    createdBy: Type.String(),
    createdByName: Type.String(),
    run: Type.Integer({ description: 'current or last run, from 1; 0 before the first' }),
    runStartedAt: Nullable(Type.Integer()),
    runExpiresAt: Nullable(Type.Integer({ description: 'no pole starts the run after this' })),
    nextRunAt: Nullable(Type.Integer()),
    counts: Counts,
    finishedAt: Nullable(Type.Integer()),
    cancelledAt: Nullable(Type.Integer()),
    cancelledBy: Nullable(Type.String()),
    cancelReason: Nullable(Type.String()),
  },
  { $id: 'BroadcastJob' },
);

const DeliverySchema = Type.Object({
  pole: Type.String(),
  run: Type.Integer(),
  state: literals(DELIVERY_STATES),
  reason: Nullable(Type.String()),
  cmdId: Nullable(Type.String()),
  attempt: Type.Integer(),
  sends: Type.Integer(),
  sentAt: Nullable(Type.Integer()),
  acceptedAt: Nullable(Type.Integer()),
  playingAt: Nullable(Type.Integer()),
  endedAt: Nullable(Type.Integer()),
  updatedAt: Type.Integer(),
});

const ResolvedPoleSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  grid: Type.String(),
  community: Type.String(),
  lat: Type.Number(),
  lon: Type.Number(),
  status: literals(['online', 'offline', 'unknown'] as const),
  distanceM: Type.Optional(Type.Number()),
});

const JobRef = Type.Ref('BroadcastJob');
const IdParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });
const CreateQuery = Type.Object({ dryRun: Type.Optional(Type.Boolean({ description: 'check and preview only; nothing is stored or sent' })) });
const ListQuery = Type.Object({
  status: Type.Optional(Type.String({ pattern: `^(${BROADCAST_STATUSES.join('|')})(,(${BROADCAST_STATUSES.join('|')}))*$`, description: 'one or more, comma-separated' })),
  priority: Type.Optional(literals(BROADCAST_PRIORITIES)),
  createdBy: Type.Optional(Type.String({ maxLength: 64 })),
  incidentId: Type.Optional(Type.String({ pattern: ID_PATTERN })),
  pole: Type.Optional(Type.String({ pattern: ID_PATTERN, description: 'jobs that went to this pole' })),
  from: Type.Optional(Type.Integer({ minimum: 0, description: 'created at or after, ms' })),
  to: Type.Optional(Type.Integer({ minimum: 0, description: 'created at or before, ms' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
});
const GetQuery = Type.Object({ run: Type.Optional(Type.Integer({ minimum: 0, description: 'default: the current (or last) run' })) });
const CancelBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
const ResolveBody = Type.Object({ target: BroadcastTarget }, { additionalProperties: false });
const ErrorSchema = Type.Object({ code: Type.String(), message: Type.String() });

// fastify's default validator removes unknown keys silently; a broadcast request with a misspelt
// key (`priorty`) must be refused instead. Querystrings keep fastify's type coercion (`?dryRun=true`).
// The target, content and schedule unions are validated by their `type` (ajv's discriminator), so
// an error names what is wrong with the member asked for, not every member's complaint.
const ajvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false, discriminator: true, verbose: true } as const;
const strictAjv = new Ajv({ ...ajvOptions, coerceTypes: false });
const coercingAjv = new Ajv({ ...ajvOptions, coerceTypes: 'array' });
const validatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strictAjv : coercingAjv).compile(discriminated(JSON.parse(JSON.stringify(schema)) as unknown));

type JsonSchema = Record<string, unknown>;
const isObj = (v: unknown): v is JsonSchema => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeTag = (member: unknown): unknown => (isObj(member) && isObj(member.properties) && isObj(member.properties.type) ? member.properties.type.const : undefined);

/** Unions whose every member has a constant `type` become `oneOf` with a discriminator (in place). */
function discriminated(schema: unknown): JsonSchema {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!isObj(node)) return;
    const members = node.anyOf;
    if (Array.isArray(members) && members.length > 1 && members.every((m) => typeof typeTag(m) === 'string')) {
      delete node.anyOf;
      node.oneOf = members;
      node.discriminator = { propertyName: 'type' };
    }
    Object.values(node).forEach(visit);
  };
  visit(schema);
  return schema as JsonSchema;
}

/** One readable line for an invalid request: unknown keys by name, unions by what they allow. */
export function describeValidation(errors: readonly ErrorObject[], dataVar: string): string {
  const literals = (e: ErrorObject): unknown[] | undefined => {
    const members = isObj(e.parentSchema) ? e.parentSchema.anyOf : undefined;
    return Array.isArray(members) && members.every((m) => isObj(m) && m.const !== undefined) ? members.map((m) => (m as JsonSchema).const) : undefined;
  };
  const literalUnions = new Set(errors.filter((e) => e.keyword === 'anyOf' && literals(e)).map((e) => e.instancePath));
  const out: string[] = [];
  for (const e of errors) {
    const at = `${dataVar}${e.instancePath}`;
    if (e.keyword === 'const' && literalUnions.has(e.instancePath)) continue;
    if (e.keyword === 'anyOf' && literals(e)) out.push(`${at} must be one of ${literals(e)!.join(', ')}`);
    else if (e.keyword === 'additionalProperties') out.push(`${at}: unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`);
    else if (e.keyword === 'discriminator') {
      const members = isObj(e.parentSchema) && Array.isArray(e.parentSchema.oneOf) ? e.parentSchema.oneOf : [];
      out.push(`${at}/type must be one of ${members.map(typeTag).join(', ')}`);
    } else out.push(`${at} ${e.message ?? 'is invalid'}`);
  }
  return [...new Set(out)].join('; ');
}
const schemaErrorFormatter = (errors: ErrorObject[], dataVar: string) => new Error(describeValidation(errors, dataVar));
const strict = { validatorCompiler, schemaErrorFormatter };

/** In a cluster no instance applied the command in time (a failover takes a few seconds): 503 NO_LEADER, try again in 2 s, as incident decisions. */
async function viaLeader<T>(reply: FastifyReply, command: () => Promise<T>): Promise<T> {
  try {
    return await command();
  } catch (err) {
    if (err instanceof NoLeaderError) void reply.header('retry-after', '2');
    throw err;
  }
}

const operatorOf = (user: { username: string; displayName: string }): Operator => ({ username: user.username, displayName: user.displayName });

export function registerBroadcastRoutes(app: FastifyInstance, ctx: { broadcasts: BroadcastService; requireRole: RequireRole }): void {
  const { broadcasts: service, requireRole } = ctx;
  const viewer = requireRole('viewer');
  const officer = requireRole('duty_officer');
  app.addSchema(BroadcastJobSchema);

  app.get(
    '/api/broadcasts/templates',
    {
      preHandler: viewer,
      schema: {
        tags,
        summary: 'Templates, stored clips and pole groups a broadcast can use, with the current template values',
      },
    },
    async () => ({ ...service.templates(), values: await service.currentTemplateValues() }),
  );

  app.post<{ Body: Static<typeof ResolveBody> }>(
    '/api/broadcasts/resolve-targets',
    {
      ...strict,
      preHandler: viewer,
      schema: {
        tags,
        summary: 'Preview: the voice poles a target selects, with their availability',
        body: ResolveBody,
        response: {
          200: Type.Object({
            label: Type.String(),
            count: Type.Integer(),
            byStatus: Type.Object({ online: Type.Integer(), offline: Type.Integer(), unknown: Type.Integer() }),
            poles: Type.Array(ResolvedPoleSchema),
          }),
          400: ErrorSchema,
        },
      },
    },
    async (req) => service.resolveTargets(req.body.target),
  );

  app.post<{ Body: Static<typeof BroadcastRequest>; Querystring: Static<typeof CreateQuery> }>(
    '/api/broadcasts',
    {
      ...strict,
      preHandler: officer,
      schema: {
        tags,
        summary: 'Create a broadcast (duty officer): resolve the target, fill in the template, schedule it, send it',
        body: BroadcastRequest,
        querystring: CreateQuery,
        response: {
          200: Type.Object({ broadcast: JobRef, poles: Type.Array(ResolvedPoleSchema) }, { description: 'dry run: what would be created' }),
          201: Type.Object({ broadcast: JobRef }),
          400: ErrorSchema,
        },
      },
    },
    async (req, reply) => {
      // A dry run changes nothing and is answered here; a broadcast is created by the instance that runs them (the leader).
      if (req.query.dryRun) return reply.status(200).send(await service.create(req.body, operatorOf(req.user!), { dryRun: true }));
      return reply.status(201).send(await viaLeader(reply, () => service.commands.create(req.body, operatorOf(req.user!))));
    },
  );

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/api/broadcasts',
    {
      preHandler: viewer,
      schema: {
        tags,
        summary: 'List broadcasts, newest first, with filters and paging',
        querystring: ListQuery,
        response: { 200: Type.Object({ broadcasts: Type.Array(JobRef), total: Type.Integer(), limit: Type.Integer(), offset: Type.Integer() }) },
      },
    },
    async (req) => {
      const q = req.query;
      const limit = q.limit ?? 50;
      const offset = q.offset ?? 0;
      const result = service.list({
        limit,
        offset,
        ...(q.status ? { status: q.status.split(',') as BroadcastStatus[] } : {}),
        ...(q.priority ? { priority: q.priority } : {}),
        ...(q.createdBy ? { createdBy: q.createdBy } : {}),
        ...(q.incidentId ? { incidentId: q.incidentId } : {}),
        ...(q.pole ? { pole: q.pole } : {}),
        ...(q.from !== undefined ? { from: q.from } : {}),
        ...(q.to !== undefined ? { to: q.to } : {}),
      });
      return { ...result, limit, offset };
    },
  );

  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof GetQuery> }>(
    '/api/broadcasts/:id',
    {
      preHandler: viewer,
      schema: {
        tags,
        summary: 'One broadcast with the delivery of each pole (current run, or ?run=)',
        params: IdParams,
        querystring: GetQuery,
        response: { 200: Type.Object({ broadcast: JobRef, deliveries: Type.Array(DeliverySchema) }), 404: ErrorSchema },
      },
    },
    async (req) => service.get(req.params.id, req.query.run),
  );

  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof CancelBody> }>(
    '/api/broadcasts/:id/cancel',
    {
      ...strict,
      // The body is optional: no body is {}.
      preValidation: async (req) => {
        req.body ??= {};
      },
      preHandler: officer,
      schema: {
        tags,
        summary: 'Cancel a broadcast (duty officer): poles playing it are stopped, nothing more is sent',
        params: IdParams,
        body: CancelBody,
        response: { 200: Type.Object({ broadcast: JobRef }), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => ({ broadcast: await viaLeader(reply, () => service.commands.cancel(req.params.id, operatorOf(req.user!), req.body.reason)) }),
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/api/broadcasts/:id/retry',
    {
      preHandler: officer,
      schema: {
        tags,
        summary: 'Re-send a finished broadcast, as a new job, to the poles whose delivery failed, expired or was pre-empted (duty officer)',
        params: IdParams,
        response: { 201: Type.Object({ broadcast: JobRef }), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => reply.status(201).send(await viaLeader(reply, () => service.commands.retry(req.params.id, operatorOf(req.user!)))),
  );
}
