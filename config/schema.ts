/**
 * The one configuration schema. Defaults live here; unknown keys are rejected; `loadConfig`
 * turns every violation into `path: reason`. A file may hold any of the sections: a gateway
 * machine needs `site`, `ledger` and `gateway`; an edge agent needs `ledger` and `agent`.
 * Relative paths are resolved against the directory of the config file.
 */
import { Type, type Static } from '@sinclair/typebox';

const port = (defaultPort: number) => Type.Integer({ minimum: 0, maximum: 65535, default: defaultPort });
const Url = Type.String({ format: 'uri' });
const LogLevel = Type.Union(
  [
    Type.Literal('fatal'),
    Type.Literal('error'),
    Type.Literal('warn'),
    Type.Literal('info'),
    Type.Literal('debug'),
    Type.Literal('trace'),
    Type.Literal('silent'),
  ],
  { default: 'info' },
);
const strict = { additionalProperties: false } as const;

export const InfluxConfig = Type.Object(
  {
    /** false runs without time-series storage (the dashboard says so). */
    enabled: Type.Boolean({ default: true }),
    /**
     * 'v1': InfluxDB 1.x (/write, InfluxQL), user/password. 'v2': InfluxDB 2.x/3.x or Cloud
     * (/api/v2/write with org, bucket and token; InfluxQL through the v1-compatible /query).
     */
    api: Type.Union([Type.Literal('v1'), Type.Literal('v2')], { default: 'v1' }),
    url: Type.String({ format: 'uri', default: 'http://127.0.0.1:8086', description: 'InfluxDB HTTP API' }),
    /** v1: the database; v2: the database name mapped to the bucket (DBRP) for InfluxQL queries. */
    database: Type.String({ default: 'greenshield', pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    org: Type.Optional(Type.String({ minLength: 1 })),
    bucket: Type.Optional(Type.String({ minLength: 1 })),
    token: Type.Optional(Type.String({ minLength: 1 })),
    username: Type.Optional(Type.String()),
    password: Type.Optional(Type.String()),
    /** Flush when this many points are buffered... */
    batchSize: Type.Integer({ minimum: 1, maximum: 100_000, default: 5000 }),
    /** ...or when the oldest buffered point is this old. */
    flushIntervalMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000 }),
    /** Compress write bodies (worth it across a network; costs CPU on loopback). */
    gzip: Type.Boolean({ default: true }),
    /** A write not answered in this time is retried. */
    timeoutMs: Type.Integer({ minimum: 100, maximum: 300_000, default: 10_000 }),
    /** Create the database at start if it does not exist (needs admin rights on 1.x). */
    createDatabase: Type.Boolean({ default: true }),
  },
  { ...strict, default: {} },
);

export const GatewayConfig = Type.Object(
  {
    mqtt: Type.Object(
      {
        host: Type.String({ default: '0.0.0.0' }),
        port: port(1883),
        /** Development only: lets clients connect without credentials. */
        allowAnonymous: Type.Boolean({ default: false }),
        /**
         * Hashed MQTT secrets per agent or device (written by `npm run credentials`); relative to
         * the config file. Missing file = no credentials.
         */
        credentialsFile: Type.String({ default: 'credentials.yaml' }),
        /** MQTT over TLS (mqtts); off unless a port is set. */
        tls: Type.Object(
          {
            port: Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()], { default: null }),
            certFile: Type.Optional(Type.String()),
            keyFile: Type.Optional(Type.String()),
          },
          { ...strict, default: {} },
        ),
        /** MQTT over WebSocket on the HTTP port, at this path; null turns it off. */
        websocketPath: Type.Union([Type.String({ pattern: '^/[A-Za-z0-9/_-]*$' }), Type.Null()], { default: '/mqtt' }),
      },
      { ...strict, default: {} },
    ),
    /**
     * The gateway's write-ahead spool: a QoS1 PUBACK is sent only once the message is on disk
     * here, and InfluxDB is fed from it; what InfluxDB has acknowledged is trimmed.
     */
    spool: Type.Object(
      {
        /** Relative to the config file; default <dataDir>/spool. */
        dir: Type.Optional(Type.String()),
        /** Disk cap; past it new telemetry is refused (not acknowledged) until InfluxDB catches up. */
        maxBytes: Type.Integer({ minimum: 1024 * 1024, default: 2 * 1024 * 1024 * 1024 }),
        /** fsync each group commit (off only for benchmarks of the bare path). */
        fsync: Type.Boolean({ default: true }),
        /** Longest a message waits for its group commit. */
        commitIntervalMs: Type.Integer({ minimum: 0, maximum: 1000, default: 2 }),
      },
      { ...strict, default: {} },
    ),
    http: Type.Object(
      {
        host: Type.String({ default: '0.0.0.0' }),
        port: port(8080),
      },
      { ...strict, default: {} },
    ),
    influx: InfluxConfig,
    availability: Type.Object(
      {
        /** Seconds without any message before a device is considered offline, per kind. */
        silenceTimeoutSec: Type.Object(
          {
            camera: Type.Integer({ minimum: 5, default: 300 }),
            voice_pole: Type.Integer({ minimum: 5, default: 300 }),
            water_tank: Type.Integer({ minimum: 5, default: 900 }),
          },
          { ...strict, default: {} },
        ),
        checkIntervalMs: Type.Integer({ minimum: 100, default: 5000 }),
        /**
         * Flap damping: after a device's status changes, a further change within this many
         * seconds is held back and applied (if still true) when the time is up, so a device on a
         * bad link shows at most one change per interval on the map and in InfluxDB.
         */
        flapDampingSec: Type.Integer({ minimum: 0, maximum: 3600, default: 30 }),
      },
      { ...strict, default: {} },
    ),
    push: Type.Object(
      {
        /** Device updates are coalesced and sent at most this often per client. */
        flushIntervalMs: Type.Integer({ minimum: 16, maximum: 10_000, default: 250 }),
        /** A client whose unsent bytes exceed this is skipped until it catches up. */
        maxBufferedBytes: Type.Integer({ minimum: 64 * 1024, default: 8 * 1024 * 1024 }),
      },
      { ...strict, default: {} },
    ),
    map: Type.Object(
      {
        /** XYZ tile URL template for sites with a tile server; null draws only the shipped GeoJSON. */
        tileUrl: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null }),
        tileAttribution: Type.String({ default: '' }),
        /** Coordinate system of the tiles: GCJ-02 for AMap/Tencent, WGS-84 for OSM/Tianditu. */
        tileCrs: Type.Union([Type.Literal('wgs84'), Type.Literal('gcj02')], { default: 'wgs84' }),
      },
      { ...strict, default: {} },
    ),
    /** The operational store (users, sessions, audit; incidents and broadcasts later). */
    store: Type.Object(
      {
        /** SQLite file; relative to the config file; default <dataDir>/greenshield.sqlite. */
        file: Type.Optional(Type.String()),
      },
      { ...strict, default: {} },
    ),
    auth: Type.Object(
      {
        /** A login lasts this long (a duty shift plus handover), then the user signs in again. */
        sessionHours: Type.Number({ minimum: 0.01, maximum: 24 * 30, default: 12 }),
        /**
         * Users created at start if they do not exist yet (a first deployment); afterwards an
         * admin manages users in the dashboard. Hashes come from `npm run users -- hash`.
         */
        users: Type.Array(
          Type.Object(
            {
              username: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$' }),
              displayName: Type.String({ minLength: 1, maxLength: 80 }),
              role: Type.Union([Type.Literal('viewer'), Type.Literal('grid_worker'), Type.Literal('duty_officer'), Type.Literal('admin')]),
              grids: Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }), { default: [] }),
              passwordHash: Type.String({ pattern: '^scrypt\\$' }),
            },
            strict,
          ),
          { default: [] },
        ),
      },
      { ...strict, default: {} },
    ),
    /** Where the gateway keeps its files (spool, operational store). */
    dataDir: Type.String({ default: '../.data/gateway' }),
  },
  { ...strict, default: {} },
);

export const AgentConfig = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }),
    /** mqtt://host:port of the gateway's broker. */
    brokerUrl: Url,
    username: Type.Optional(Type.String()),
    password: Type.Optional(Type.String()),
    /** The on-disk outbox (store-and-forward). */
    outboxFile: Type.String({ default: '../.data/agent/outbox.sqlite' }),
    /** Outbox size cap; past it the oldest telemetry is dropped (never events). */
    outboxMaxMessages: Type.Integer({ minimum: 1000, default: 2_000_000 }),
    /** Unacknowledged QoS1 publishes in flight at once. */
    maxInflight: Type.Integer({ minimum: 1, maximum: 65535, default: 200 }),
    tanks: Type.Object(
      {
        pollIntervalMs: Type.Integer({ minimum: 200, default: 10_000 }),
        timeoutMs: Type.Integer({ minimum: 50, default: 3000 }),
      },
      { ...strict, default: {} },
    ),
    poles: Type.Object(
      {
        /** Status poll of each voice pole's vendor API. */
        pollIntervalMs: Type.Integer({ minimum: 200, default: 5000 }),
        timeoutMs: Type.Integer({ minimum: 50, default: 3000 }),
      },
      { ...strict, default: {} },
    ),
    cameras: Type.Object(
      {
        /** ONVIF credentials used for every camera unless the camera's URL carries its own. */
        username: Type.Optional(Type.String()),
        password: Type.Optional(Type.String()),
        /** PTZ position report (pan bearing) interval. */
        ptzStatusIntervalMs: Type.Integer({ minimum: 1000, default: 10_000 }),
        /** RTSP health check (ffprobe) interval per camera: slow on purpose. */
        streamCheckIntervalMs: Type.Integer({ minimum: 10_000, default: 600_000 }),
        /** Reconnect back-off ceiling after a camera stops answering. */
        maxBackoffMs: Type.Integer({ minimum: 1000, default: 60_000 }),
      },
      { ...strict, default: {} },
    ),
  },
  strict,
);

export const SimulatorConfig = Type.Object(
  {
    seed: Type.Integer({ default: 20250401 }),
    /** Simulated minutes per real minute for tank level changes (60 = an hour a minute). */
    timeScale: Type.Number({ minimum: 0.01, maximum: 10_000, default: 60 }),
    /** Address the simulators listen on. */
    host: Type.String({ default: '127.0.0.1' }),
  },
  { ...strict, default: {} },
);

export const Config = Type.Object(
  {
    site: Type.Object(
      {
        id: Type.String({ pattern: '^[a-z0-9-]{1,64}$', default: 'chashan-zhuhai' }),
        name: Type.String({ default: '茶山竹海街道' }),
        /** GeoJSON with the site outline, communities and grids (paths relative to the config file). */
        geojson: Type.String({ default: 'sites/chashan-zhuhai.geojson' }),
      },
      { ...strict, default: {} },
    ),
    ledger: Type.Object(
      {
        /** The device ledger (台账), CSV. */
        file: Type.String({ default: 'ledger/chashan-zhuhai.csv' }),
      },
      { ...strict, default: {} },
    ),
    log: Type.Object({ level: LogLevel }, { ...strict, default: {} }),
    gateway: Type.Optional(GatewayConfig),
    agent: Type.Optional(AgentConfig),
    simulators: Type.Optional(SimulatorConfig),
  },
  strict,
);

export type Config = Static<typeof Config>;
export type GatewayConfig = Static<typeof GatewayConfig>;
export type InfluxConfig = Static<typeof InfluxConfig>;
export type AgentConfig = Static<typeof AgentConfig>;
export type SimulatorConfig = Static<typeof SimulatorConfig>;
