/**
 * The HTTP side: JSON API, Prometheus metrics, the dashboard's static files, the `/ws`
 * WebSocket and MQTT over WebSocket (`gateway.mqtt.websocketPath`), all on one port. API errors
 * are `{ code, message }` with the catalogue's status.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError } from 'fastify';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifyWebsocket from '@fastify/websocket';
import { Type, type Static } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Config } from '../../../config/schema.js';
import { TelemetryValuesByKind, DEVICE_KINDS } from '../../../protocol/payloads.js';
import { ID_PATTERN } from '../../../protocol/topics.js';
import { ApiError, ERRORS } from '../errors.js';
import { isStoreOutage } from '../store/errors.js';
import type { Metrics } from '../metrics.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { SeriesWriter } from '../storage/types.js';
import type { PushHub } from '../push/hub.js';
import type { GatewayBroker } from '../broker/types.js';
import type { AuthService } from '../auth/auth.js';
import type { OperationalStore } from '../store/store.js';
import type { FireDangerService } from '../alerts/fire-danger.js';
import type { IncidentDecisions } from '../alerts/decisions.js';
import type { IncidentService } from '../alerts/incidents.js';
import { registerIncidentRoutes } from '../alerts/routes.js';
import type { BroadcastService } from '../broadcast/service.js';
import { registerBroadcastRoutes } from '../broadcast/routes.js';
import { redactSettings } from '../video/credentials.js';
import { registerVideoRoutes } from '../video/routes.js';
import type { VideoService } from '../video/service.js';
import { registerAuth } from './auth-routes.js';

/** Retry-After of a 503 for an unavailable operational store, s: the store retries its connection every 2 s at most. */
const STORE_RETRY_AFTER_SEC = 5;

/** Requests refused for an unavailable store: logged once a minute at most, with how many since. */
function outageLog(intervalMs = 60_000) {
  let loggedAt = -Infinity;
  let since = 0;
  return {
    failed(req: { log: FastifyBaseLogger; method: string; url: string }, err: Error): void {
      since++;
      const now = Date.now();
      if (now - loggedAt < intervalMs) return;
      req.log.warn({ err: err.message, method: req.method, url: req.url, refused: since }, 'API requests refused (503): operational store unavailable');
      loggedAt = now;
      since = 0;
    },
  };
}

export const DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

export interface HttpContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  registry: DeviceRegistry;
  writer: SeriesWriter;
  hub: PushHub;
  broker: GatewayBroker;
  startedAt: number;
  auth: AuthService;
  store: OperationalStore;
  incidents: IncidentService;
  /** Who applies incident decisions: default this instance; in a cluster, the leader. */
  incidentDecisions?: IncidentDecisions;
  fireDanger: FireDangerService;
  broadcasts: BroadcastService;
  video: VideoService;
  dashboardDir?: string;
}

const DeviceParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });
const DevicesQuery = Type.Object(
  {
    kind: Type.Optional(Type.Union(DEVICE_KINDS.map((k) => Type.Literal(k)))),
    status: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')])),
    grid: Type.Optional(Type.String({ pattern: ID_PATTERN })),
  },
  { additionalProperties: false },
);
const SeriesQuerystring = Type.Object(
  {
    field: Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,39}$' }),
    from: Type.Optional(Type.Integer({ minimum: 0, description: 'ms since epoch; default to - 24 h' })),
    to: Type.Optional(Type.Integer({ minimum: 0, description: 'ms since epoch; default now' })),
    maxPoints: Type.Optional(Type.Integer({ minimum: 10, maximum: 10_000, default: 1000 })),
  },
  { additionalProperties: false },
);

/** Numeric telemetry fields per kind, read from the contract so the API never drifts from it. */
const NUMERIC_FIELDS = Object.fromEntries(
  DEVICE_KINDS.map((kind) => {
    const props = (TelemetryValuesByKind[kind] as { properties: Record<string, { type?: string }> }).properties;
    return [kind, Object.keys(props).filter((k) => props[k]?.type === 'number' || props[k]?.type === 'integer')];
  }),
) as Record<(typeof DEVICE_KINDS)[number], string[]>;

export async function buildHttp(ctx: HttpContext) {
  const { config, registry, writer, metrics, hub, broker } = ctx;
  const gw = config.gateway!;
  const app = Fastify({
    // Typed as fastify's base logger so the app is a plain FastifyInstance for the route modules.
    loggerInstance: ctx.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
  });

  const storeOutageLog = outageLog();
  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    if (err instanceof ApiError) return reply.status(err.status).send({ code: err.code, message: err.message });
    if (isStoreOutage(err)) {
      // PostgreSQL down or not answering; the store reconnects by itself (every 2 s at most).
      ctx.metrics.storeErrors.inc({ operation: 'http' });
      storeOutageLog.failed(req, err);
      return reply.status(503).header('retry-after', String(STORE_RETRY_AFTER_SEC)).send({ code: 'STORE_UNAVAILABLE', message: ERRORS.STORE_UNAVAILABLE.message });
    }
    if ((err as FastifyError).validation) {
      return reply.status(400).send({ code: 'BAD_REQUEST', message: `${(err as FastifyError).validationContext ?? 'request'}${err.message.replace(/^(querystring|params|body)/, '')}` });
    }
    const status = (err as FastifyError).statusCode ?? 500;
    if (status >= 500) req.log.error({ err }, 'request failed');
    return reply.status(status).send({ code: status >= 500 ? 'INTERNAL' : 'BAD_REQUEST', message: status >= 500 ? ERRORS.INTERNAL.message : err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  // OpenAPI 3 from the routes' own schemas, for integrators (district emergency platforms).
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'GreenShield gateway API',
        version: '1',
        description: 'Sign in with POST /api/auth/login, then send the token as `Authorization: Bearer <token>` (or the gs_session cookie). Errors are `{ code, message }`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, cookie: { type: 'apiKey', in: 'cookie', name: 'gs_session' } } },
      security: [{ bearer: [] }, { cookie: [] }],
    },
    hideUntagged: false,
  });
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: 64 * 1024,
      // MQTT clients ask for the `mqtt` subprotocol (`mqttv3.1` for 3.1) and refuse a server that
      // does not echo it; other clients (the dashboard) ask for none and get none.
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    },
  });

  // Sign-in and roles: every route below says who may use it. /health and /metrics stay open for
  // load balancers and Prometheus (keep the port on a trusted network, see docs/security.md).
  const requireRole = registerAuth(app, { auth: ctx.auth, store: ctx.store, secureCookies: false });
  const viewer = { preHandler: requireRole('viewer') };

  // Readiness for a load balancer or orchestrator: 200 only when this instance can take work —
  // the broker listens (embedded) or this instance is connected and subscribed to the external
  // broker, the operational store answers and InfluxDB is reachable (or disabled).
  // /health stays 200 while the process lives (liveness) and says what is degraded.
  app.get('/ready', async (_req, reply) => {
    const checks = {
      broker: broker.ready,
      store: ctx.store.ping(),
      influx: writer.status.state !== 'down',
    };
    const ready = Object.values(checks).every(Boolean);
    return reply.status(ready ? 200 : 503).send({ ready, checks, storage: writer.status, mqtt: broker.status() });
  });

  app.get('/health', async () => {
    const rejected: Record<string, number> = {};
    for (const v of (await metrics.messagesRejected.get()).values) rejected[String(v.labels.reason)] = v.value;
    let received = 0;
    for (const v of (await metrics.messagesIn.get()).values) received += v.value;
    const duplicates = (await metrics.duplicates.get()).values[0]?.value ?? 0;
    const storage = writer.status;
    return {
      status: storage.state === 'down' || !broker.ready ? 'degraded' : 'ok',
      uptimeSec: Math.round((Date.now() - ctx.startedAt) / 1000),
      site: config.site.id,
      // Embedded: { mode, listening, port, clients ... }; external: { mode, url, state, connected, inflight ... }.
      mqtt: broker.status(),
      storage: { ...storage, bufferedPoints: writer.buffered },
      ingest: { received, rejected, duplicates },
      devices: { total: registry.size, byKind: registry.counts() },
      dashboardClients: hub.clientCount,
    };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  const geojsonText = readFileSync(config.site.geojson, 'utf8');
  app.get('/api/site', viewer, async (_req, reply) => {
    reply.header('content-type', 'application/json; charset=utf-8');
    return `{"id":${JSON.stringify(config.site.id)},"name":${JSON.stringify(config.site.name)},"map":${JSON.stringify(gw.map)},"geojson":${geojsonText}}`;
  });

  app.get<{ Querystring: Static<typeof DevicesQuery> }>('/api/devices', { ...viewer, schema: { querystring: DevicesQuery } }, async (req) => {
    const { kind, status, grid } = req.query;
    const devices = registry.views().filter((d) => (!kind || d.kind === kind) && (!status || d.status === status) && (!grid || d.grid === grid));
    // The ledger's per-tank level thresholds (static, so not in the live DeviceView): the map's
    // tank colours, the low-tank list and the overview use each tank's own.
    const tankThresholds: Record<string, { lowPercent: number; criticalPercent: number }> = {};
    for (const d of devices) {
      const ledger = d.kind === 'water_tank' ? registry.get(d.id) : undefined;
      if (ledger?.kind === 'water_tank') tankThresholds[d.id] = { lowPercent: ledger.settings.lowPercent, criticalPercent: ledger.settings.criticalPercent };
    }
    return { devices, tankThresholds };
  });

  app.get<{ Params: Static<typeof DeviceParams> }>('/api/devices/:id', { ...viewer, schema: { params: DeviceParams } }, async (req) => {
    const view = registry.view(req.params.id);
    const device = registry.get(req.params.id);
    if (!view || !device) throw new ApiError('DEVICE_NOT_FOUND', `no device "${req.params.id}" in the ledger`);
    // Camera URLs may carry credentials: they never leave the gateway.
    return { ...view, settings: redactSettings(device.settings) };
  });

  app.get<{ Params: Static<typeof DeviceParams>; Querystring: Static<typeof SeriesQuerystring> }>(
    '/api/devices/:id/series',
    { ...viewer, schema: { params: DeviceParams, querystring: SeriesQuerystring } },
    async (req) => {
      const device = registry.get(req.params.id);
      if (!device) throw new ApiError('DEVICE_NOT_FOUND', `no device "${req.params.id}" in the ledger`);
      const { field } = req.query;
      if (!NUMERIC_FIELDS[device.kind].includes(field)) {
        throw new ApiError('UNKNOWN_FIELD', `a ${device.kind} has no numeric field "${field}" (fields: ${NUMERIC_FIELDS[device.kind].join(', ')})`);
      }
      const to = req.query.to ?? Date.now();
      const from = req.query.from ?? to - 24 * 3600_000;
      if (from >= to || to - from > 366 * 24 * 3600_000) throw new ApiError('BAD_TIME_RANGE');
      if (writer.status.state === 'disabled') throw new ApiError('STORAGE_DISABLED');
      let points: Array<[number, number]>;
      try {
        points = await writer.query({ measurement: device.kind, deviceId: device.id, field, from, to, maxPoints: req.query.maxPoints ?? 1000 });
      } catch (err) {
        req.log.warn({ err: (err as Error).message }, 'series query failed');
        throw new ApiError('STORAGE_UNAVAILABLE', `InfluxDB did not answer: ${(err as Error).message}`);
      }
      return { deviceId: device.id, field, from, to, points };
    },
  );

  registerIncidentRoutes(app, { incidents: ctx.incidents, fireDanger: ctx.fireDanger, store: ctx.store, requireRole, ...(ctx.incidentDecisions ? { decisions: ctx.incidentDecisions } : {}) });
  registerBroadcastRoutes(app, { broadcasts: ctx.broadcasts, requireRole });
  registerVideoRoutes(app, { video: ctx.video, incidents: ctx.incidents, store: ctx.store, requireRole });

  app.get('/ws', { websocket: true, ...viewer }, (socket, req) => hub.attach(socket, req.user!));
  // MQTT over WebSocket for agents and browsers that cannot open a TCP port (docs/security.md).
  const mqttPath = gw.mqtt.websocketPath;
  // Only the embedded broker takes MQTT clients itself; with an external broker they connect there.
  const attachMqtt = broker.attachWebSocket?.bind(broker);
  if (mqttPath !== null && attachMqtt) app.get(mqttPath, { websocket: true }, (socket, req) => attachMqtt(socket, req.raw));

  const dashboardDir = ctx.dashboardDir ?? DASHBOARD_DIR;
  if (existsSync(dashboardDir)) {
    await app.register(fastifyStatic, { root: dashboardDir, prefix: '/', index: 'index.html' });
  } else {
    ctx.log.warn({ dir: dashboardDir }, 'dashboard not built (run `npm run build:dashboard`); serving the API only');
    app.get('/', async (_req, reply) =>
      reply.status(503).type('text/plain; charset=utf-8').send('Dashboard not built: run `npm run build:dashboard` and restart.'),
    );
  }
  return app;
}
