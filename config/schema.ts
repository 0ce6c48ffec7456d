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

const GridId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' });
const Seconds = (def: number, max = 7 * 24 * 3600) => Type.Integer({ minimum: 1, maximum: max, default: def });
/** Seconds an incident of a category waits at each level for an acknowledgement before moving up. */
const EscalationSteps = (grid: number, community: number, street: number) =>
  Type.Object({ grid: Seconds(grid), community: Seconds(community), street: Seconds(street) }, { ...strict, default: {} });

/**
 * Fire alerts: the rules that turn device signals into incidents, and who gets them (docs/alerts.md).
 * Defaults follow the 2025 Yongchuan drill (a video alarm looked at within 1 minute, a ranger on
 * site within 3) and GB 50974 practice for tanks.
 */
export const AlertsConfig = Type.Object(
  {
    enabled: Type.Boolean({ default: true }),
    camera: Type.Object(
      {
        /** Fire/smoke alarms below this confidence are counted but raise nothing. */
        minConfidence: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
        /** ...lowered to this when today's fire danger level is 4 or 5 (high, extreme). */
        minConfidenceHighDanger: Type.Number({ minimum: 0, maximum: 1, default: 0.35 }),
        /** A camera repeating the same alarm within this many seconds adds to a count, not to the timeline. */
        repeatWindowSec: Seconds(60, 3600),
      },
      { ...strict, default: {} },
    ),
    correlation: Type.Object(
      {
        /** A signal joins an open incident whose latest signal is at most this old. */
        windowSec: Seconds(1800),
        /** A camera whose bearing passes within this distance of a located fire is seeing the same fire. */
        joinDistanceM: Type.Number({ minimum: 50, maximum: 20_000, default: 1000 }),
        /** Two bearings crossing at less than this angle are too close to parallel for a fix. */
        minCrossingAngleDeg: Type.Number({ minimum: 1, maximum: 60, default: 10 }),
      },
      { ...strict, default: {} },
    ),
    tank: Type.Object(
      {
        /** A low/critical tank alarm clears only once the level is this many % above its threshold. */
        hysteresisPercent: Type.Number({ minimum: 0, maximum: 50, default: 5 }),
        /** The level falling faster than this (% of height per hour)... */
        fallRatePercentPerHour: Type.Number({ minimum: 1, maximum: 1000, default: 15 }),
        /** ...over at least this window raises a "draining" alarm (a leak or unauthorised use). */
        fallWindowMin: Type.Integer({ minimum: 1, maximum: 24 * 60, default: 10 }),
      },
      { ...strict, default: {} },
    ),
    offline: Type.Object(
      {
        /** A device offline this long is a blind spot and raises a device incident. */
        camera: Seconds(1800),
        voice_pole: Seconds(3600),
        water_tank: Seconds(3600),
      },
      { ...strict, default: {} },
    ),
    nearby: Type.Object(
      {
        tanks: Type.Integer({ minimum: 0, maximum: 20, default: 3 }),
        poles: Type.Integer({ minimum: 0, maximum: 50, default: 5 }),
        withinM: Type.Number({ minimum: 100, maximum: 50_000, default: 5000 }),
      },
      { ...strict, default: {} },
    ),
    escalation: Type.Object(
      {
        fire: EscalationSteps(60, 120, 300),
        water: EscalationSteps(1800, 3600, 7200),
        device: EscalationSteps(3600, 4 * 3600, 12 * 3600),
      },
      { ...strict, default: {} },
    ),
    /**
     * Who is notified at each level besides the signed-in users of the dashboard: grid workers
     * and leaders by grid, community and street duty staff, the district duty desk. A contact
     * with a `username` also rings on that user's phone view.
     */
    roster: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1, maxLength: 80 }),
          level: Type.Union([Type.Literal('grid'), Type.Literal('community'), Type.Literal('street'), Type.Literal('district')]),
          role: Type.Optional(Type.String({ maxLength: 40, description: 'e.g. grid leader, full-time grid worker' })),
          username: Type.Optional(Type.String({ maxLength: 64 })),
          phone: Type.Optional(Type.String({ pattern: '^\\+?[0-9 -]{5,20}$' })),
          /** Grids (level grid) or communities (level community) covered; street and district cover the site. */
          grids: Type.Optional(Type.Array(GridId)),
          communities: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 80 }))),
        },
        strict,
      ),
      { default: [] },
    ),
    /** Each dispatch and escalation is POSTed as JSON to these (SMS or work-chat gateways). */
    webhooks: Type.Array(
      Type.Object(
        {
          url: Url,
          /** Only these levels (default all). */
          levels: Type.Optional(Type.Array(Type.Union([Type.Literal('grid'), Type.Literal('community'), Type.Literal('street'), Type.Literal('district')]))),
          /** HMAC-SHA256 of the body, hex, in the X-GreenShield-Signature header. */
          secret: Type.Optional(Type.String({ minLength: 8 })),
          timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 }),
          /** Attempts before a notification counts as failed (backoff 1 s, 2 s, 4 s ...). */
          attempts: Type.Integer({ minimum: 1, maximum: 10, default: 4 }),
        },
        strict,
      ),
      { default: [] },
    ),
  },
  { ...strict, default: {} },
);

/** Pole, group, clip and template ids (the protocol's id pattern). */
const BROADCAST_ID = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';

/**
 * Voice broadcast jobs (docs/broadcast.md): how long a broadcast may still start, how deliveries
 * are retried, pole groups, the clips the poles hold and site templates besides the built-in ones.
 */
export const BroadcastConfig = Type.Object(
  {
    /**
     * Default expiry, minutes after the start, per priority: a pole that has not started the
     * broadcast by then never plays it (a routine reminder an hour late is noise). A request may
     * set its own `expiresAt`.
     */
    expiryMin: Type.Object(
      {
        routine: Type.Integer({ minimum: 1, maximum: 24 * 60, default: 30 }),
        warning: Type.Integer({ minimum: 1, maximum: 24 * 60, default: 60 }),
        emergency: Type.Integer({ minimum: 1, maximum: 24 * 60, default: 60 }),
      },
      { ...strict, default: {} },
    ),
    /**
     * A command with no ack after this long is published again with the same command id (the
     * agent and the pole drop a duplicate, so nothing plays twice)...
     */
    ackTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
    /** ...at most this many times; then the pole waits until it is next heard online. */
    maxResends: Type.Integer({ minimum: 0, maximum: 20, default: 3 }),
    /**
     * After a pole could not carry a broadcast out (unreachable from its agent, busy with a higher
     * priority), a new attempt this much later, doubling each time up to `retryMaxDelayMs` — or at
     * once when the pole is heard online again...
     */
    retryDelayMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 15_000 }),
    retryMaxDelayMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 300_000 }),
    /** ...at most this many attempts in all (each with a new command id), all within the expiry (10: about 28 min of retries). */
    maxAttempts: Type.Integer({ minimum: 1, maximum: 50, default: 10 }),
    /** A pole that took a broadcast and reports no end within this many minutes is marked failed. */
    maxPlayMin: Type.Integer({ minimum: 1, maximum: 24 * 60, default: 30 }),
    /** Dashboards get a job's per-pole progress at most this often (end of a job: at once). */
    progressIntervalMs: Type.Integer({ minimum: 16, maximum: 10_000, default: 250 }),
    /** How often the scheduler checks due runs, retries, ack timeouts and expiries. */
    tickMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000 }),
    /** Named pole groups for targets (`{ "type": "group", "group": "scenic-area" }`): name → pole ids. */
    groups: Type.Record(Type.String({ pattern: BROADCAST_ID }), Type.Array(Type.String({ pattern: BROADCAST_ID }), { minItems: 1 }), { default: {} }),
    /** Recordings every pole holds (the vendor's built-in clips); a clip broadcast must name one. */
    clips: Type.Array(Type.Object({ id: Type.String({ pattern: BROADCAST_ID }), title: Type.String({ minLength: 1, maxLength: 80 }) }, strict), {
      default: [
        { id: 'fire-warning-01', title: '防火宣传' },
        { id: 'fire-ban-01', title: '高火险禁火令' },
        { id: 'evacuation-01', title: '紧急疏散' },
        { id: 'test-tone-01', title: '设备测试音' },
      ],
    }),
    /** Site templates besides the built-in ones (same id: replaces it). `{name}` is a variable. */
    templates: Type.Array(
      Type.Object(
        {
          id: Type.String({ pattern: BROADCAST_ID }),
          title: Type.String({ minLength: 1, maxLength: 80 }),
          priority: Type.Union([Type.Literal('routine'), Type.Literal('warning'), Type.Literal('emergency')]),
          text: Type.String({ minLength: 1, maxLength: 500 }),
          /** Variable name → what to fill in (shown in the console). */
          variables: Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,39}$' }), Type.String({ maxLength: 200 }), { default: {} }),
        },
        strict,
      ),
      { default: [] },
    ),
  },
  { ...strict, default: {} },
);

/**
 * Live video, alarm snapshots and PTZ (docs/video.md). The relay opens a camera's RTSP stream
 * only while someone watches it: one ffmpeg per camera and format, shared by all its viewers.
 */
export const VideoConfig = Type.Object(
  {
    /** false: no live video and no snapshots (PTZ still works, it goes through the agents). */
    enabled: Type.Boolean({ default: true }),
    /** An ffmpeg build with the rtsp demuxer, mp4 muxer and (for mpeg1) the mpeg1video encoder. */
    ffmpegPath: Type.String({ minLength: 1, default: 'ffmpeg' }),
    /**
     * Camera streams open at once for MSE (remuxed, ~1–3 % of a core each); a viewer of a camera
     * beyond it is refused with VIDEO_STREAM_LIMIT. A stream kept only by its linger counts until
     * it closes, but gives way to a camera someone wants to watch.
     */
    maxStreams: Type.Integer({ minimum: 0, maximum: 1000, default: 32 }),
    /** MPEG-1 transcodes (the jsmpeg fallback) at once: each decodes and re-encodes (~4 % of a core at 640x360, far more at 1080p). */
    maxTranscodes: Type.Integer({ minimum: 0, maximum: 100, default: 4 }),
    /** A stream is closed this long after its last viewer leaves (a viewer back within it starts at once). */
    lingerMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
    /**
     * When a camera raises a fire/smoke alarm its stream is opened at once and kept this long
     * without viewers, so the duty officer's first look starts from a cached key frame (0: off).
     * Uses only the lower half of maxStreams and never closes a watched stream.
     */
    prewarmOnAlarmSec: Type.Integer({ minimum: 0, maximum: 3600, default: 120 }),
    /** Longest media fragment (fmp4); a fragment also starts at every key frame. Lower: less delay. */
    fragmentMs: Type.Integer({ minimum: 20, maximum: 5000, default: 100 }),
    /**
     * How much of the camera's stream ffmpeg reads to learn its parameters before sending. Short
     * is a fast first frame (cameras announce SPS/PPS in their SDP); a stream that fails for want
     * of parameters is retried with 2 s.
     */
    probeMs: Type.Integer({ minimum: 20, maximum: 10_000, default: 100 }),
    /** A stream that sends nothing for this long is taken as dropped and re-opened. */
    stallTimeoutMs: Type.Integer({ minimum: 1000, maximum: 120_000, default: 8000 }),
    /** Re-open back-off after the camera's stream drops: first delay, doubling up to the max. */
    retryInitialMs: Type.Integer({ minimum: 50, maximum: 60_000, default: 500 }),
    retryMaxMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000 }),
    /** Failing for this long (or the camera known offline) turns viewers' state from reconnecting to offline. */
    offlineAfterMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 20_000 }),
    /** Unsent bytes per viewer before its media is dropped up to the next key frame (a slow link). */
    viewerBufferBytes: Type.Integer({ minimum: 64 * 1024, maximum: 256 * 1024 * 1024, default: 2 * 1024 * 1024 }),
    /** The latest group of pictures kept per stream for a viewer that joins (a fast first frame). */
    gopCacheBytes: Type.Integer({ minimum: 0, maximum: 256 * 1024 * 1024, default: 4 * 1024 * 1024 }),
    /** The jsmpeg fallback: MPEG-1 at this bitrate, frame rate (MPEG-1 allows 24, 25, 30, 50, 60) and width. */
    mpeg1: Type.Object(
      {
        bitrateKbps: Type.Integer({ minimum: 100, maximum: 20_000, default: 1000 }),
        fps: Type.Union([Type.Literal(24), Type.Literal(25), Type.Literal(30), Type.Literal(50), Type.Literal(60)], { default: 25 }),
        /** Scale to this width (height keeps the aspect); null keeps the camera's size. */
        width: Type.Union([Type.Integer({ minimum: 160, maximum: 4096, multipleOf: 2 }), Type.Null()], { default: 640 }),
      },
      { ...strict, default: {} },
    ),
    /** Camera credentials for a camera whose onvif_url / rtsp_url in the ledger carries none. */
    cameraUsername: Type.Optional(Type.String()),
    cameraPassword: Type.Optional(Type.String()),
    /** ONVIF requests the gateway makes itself (presets, snapshot and stream URIs). */
    onvifTimeoutMs: Type.Integer({ minimum: 500, maximum: 60_000, default: 5000 }),
    snapshots: Type.Object(
      {
        /** Take a snapshot when a camera raises or repeats a fire/smoke alarm on an incident. */
        enabled: Type.Boolean({ default: true }),
        /** At most one snapshot per camera per incident this often. */
        minIntervalSec: Type.Integer({ minimum: 1, maximum: 86_400, default: 30 }),
        /** Kept under <dataDir>/snapshots: the oldest go first past either limit. */
        maxBytes: Type.Integer({ minimum: 1024 * 1024, default: 2 * 1024 * 1024 * 1024 }),
        maxAgeDays: Type.Number({ minimum: 0.001, maximum: 3650, default: 90 }),
        timeoutMs: Type.Integer({ minimum: 500, maximum: 60_000, default: 8000 }),
        /** Snapshot requests to cameras at once (an alarm burst queues). */
        concurrency: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
      },
      { ...strict, default: {} },
    ),
    ptz: Type.Object(
      {
        /** A PTZ request is answered 504 if the agent has not acked the command by then. */
        ackTimeoutMs: Type.Integer({ minimum: 200, maximum: 60_000, default: 5000 }),
        /** ...or, with `wait: "done"`, has not reported the move finished by then. */
        doneTimeoutMs: Type.Integer({ minimum: 500, maximum: 300_000, default: 35_000 }),
      },
      { ...strict, default: {} },
    ),
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
        /**
         * Embedded broker: QoS1 publishes held in memory while they wait for the spool commit.
         * Past it, readable connections are not read until half are acknowledged (their bytes
         * wait in the kernel; TCP backpressure). Well above throughput x commit time.
         */
        maxWaitingPublishes: Type.Integer({ minimum: 100, maximum: 1_000_000, default: 2000 }),
        /**
         * Embedded broker: MQTT connections (TCP, TLS and WebSocket together) held at most; past
         * it a new connection is closed at once and counted. 'auto': the process's open-file limit
         * less a reserve (a quarter of it, at most 1024) for the HTTP API, dashboards, InfluxDB,
         * the spool and video, so that a flood of device connections cannot take the descriptors
         * they need (docs/operations.md).
         */
        maxConnections: Type.Union([Type.Integer({ minimum: 1, maximum: 100_000_000 }), Type.Literal('auto')], { default: 'auto' }),
        /**
         * 'embedded': the gateway is the broker (aedes; host, port, tls, credentialsFile and
         * websocketPath above apply). 'external': the gateway is a client of a broker cluster
         * (EMQX, Mosquitto) and takes its share of device traffic through an MQTT 5 shared
         * subscription; device auth and ACL are the broker's job then (docs/architecture.md).
         */
        mode: Type.Union([Type.Literal('embedded'), Type.Literal('external')], { default: 'embedded' }),
        external: Type.Object(
          {
            /** mqtt://host:port or mqtts://host:port; required when mode is external. */
            url: Type.Optional(Type.String({ pattern: '^mqtts?://[^\\s/?#]+/?$' })),
            username: Type.Optional(Type.String({ minLength: 1 })),
            password: Type.Optional(Type.String()),
            /** A file holding the password (first line), relative to the config file; instead of `password`. */
            passwordFile: Type.Optional(Type.String({ minLength: 1 })),
            /** PEM CA bundle for an mqtts broker whose certificate a private CA signed; relative to the config file. */
            caFile: Type.Optional(Type.String({ minLength: 1 })),
            /** Instances with the same group split the device traffic ($share/<group>/...). */
            shareGroup: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', default: 'greenshield' }),
            /**
             * Must be unique per instance and stable across its restarts (the broker keeps its
             * session by it). Default: `gateway-<hostname>-<pid>` chosen at first start and kept
             * in <dataDir>/mqtt-client-id.
             */
            clientId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' })),
            /**
             * How long the broker keeps this instance's session (its share of QoS1 messages
             * queued) while it is away; 0 ends the session at disconnect.
             */
            sessionExpirySec: Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600, default: 3600 }),
            /**
             * QoS1 messages the broker may have in flight to this instance, unacknowledged (MQTT 5
             * Receive Maximum). A message is acknowledged once it is in the spool, so a slow disk
             * or a full spool stops the broker sending rather than filling memory.
             */
            receiveMaximum: Type.Integer({ minimum: 1, maximum: 65535, default: 1000 }),
            /**
             * MQTT keepalive towards the broker: how soon a connection that went silent (a lost
             * network, a half-open socket) is noticed — by this instance, which then reconnects
             * (to another node of a broker cluster behind one address), and by the broker (1.5x
             * this with nothing from the instance). Lower is sooner, at the cost of more PINGREQs.
             */
            keepaliveSec: Type.Integer({ minimum: 5, maximum: 3600, default: 30 }),
            /** Reconnect back-off: first delay, doubling (with jitter) up to the max. */
            reconnectMinMs: Type.Integer({ minimum: 50, maximum: 60_000, default: 500 }),
            reconnectMaxMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000 }),
            /** Share device updates with the other instances so every dashboard sees every device (cluster fan-out). */
            fanout: Type.Boolean({ default: true }),
          },
          { ...strict, default: {} },
        ),
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
        /**
         * Group commits start at least this far apart (ms). After a quiet spell a reading is committed
         * at once; under load each commit holds this long's readings, so each connection's PUBACKs
         * for that span go out in one write (a batch in which one connection already has 16 messages
         * goes at once). The most a PUBACK waits for its batch to start (docs/storage.md).
         */
        commitIntervalMs: Type.Integer({ minimum: 0, maximum: 1000, default: 20 }),
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
        /**
         * Device updates are coalesced and sent at most this often per client. The interval is a
         * floor under how late a change reaches a screen (a change waits 0..interval): 50 ms keeps
         * delivery to 500 dashboards under 100 ms at p99 (docs/BENCHMARKS.md, ws-fanout), for ~20
         * messages a second per client; raise it for many clients on a busy gateway.
         */
        flushIntervalMs: Type.Integer({ minimum: 16, maximum: 10_000, default: 50 }),
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
    /** The operational store (users, sessions, audit, incidents, broadcasts); docs/operations.md. */
    store: Type.Object(
      {
        /**
         * 'sqlite': one file, one gateway (the default). 'postgres': a PostgreSQL database that
         * several gateway instances share (users, sessions, incidents and broadcasts seen by all).
         */
        kind: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], { default: 'sqlite' }),
        /** SQLite file; relative to the config file; default <dataDir>/greenshield.sqlite. */
        file: Type.Optional(Type.String()),
        postgres: Type.Object(
          {
            /**
             * postgres://user@host:5432/database, TLS options as query parameters (sslmode,
             * sslrootcert); required when kind is postgres. No password in it (it is logged).
             */
            url: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
            password: Type.Optional(Type.String()),
            /** A file holding the password (first line), relative to the config file; instead of `password`. */
            passwordFile: Type.Optional(Type.String({ minLength: 1 })),
            /**
             * The store's calls are synchronous (they block the event loop for a round trip); past
             * this a call fails and the connection is reset, so a hung database cannot stall the gateway.
             */
            callTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 5000 }),
            /** Opening a connection; default callTimeoutMs. */
            connectTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000 })),
            /** Shown in pg_stat_activity; set one per instance to tell them apart. */
            applicationName: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,63}$', default: 'greenshield-gateway' }),
          },
          { ...strict, default: {} },
        ),
      },
      { ...strict, default: {} },
    ),
    /**
     * Several instances on one PostgreSQL store (store.kind postgres): the work that must happen
     * once (incident correlation and escalation, offline checks, broadcast jobs) runs on the instance holding a
     * PostgreSQL advisory lock, the leader; docs/architecture.md, docs/operations.md. Ignored
     * with SQLite (one gateway, always the leader).
     */
    cluster: Type.Object(
      {
        /** How often every instance tries to take the lease (and the leader confirms it holds it). */
        leaseIntervalMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000 }),
        /**
         * A leader that has not heard its lease connection answer for this long stops leading; the
         * server ends that silent session (and frees the lock) a second later. Covers a silent
         * network; a dead process frees the lock at once. Longer than the store's callTimeoutMs, so
         * one slow store call does not hand leadership over.
         */
        leaseTtlMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 10_000 }),
        /** Advisory lock key; default derived from site.id, so sites sharing a database each have a leader. */
        leaseKey: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1 })),
        /** An incident decision or a broadcast command taken on a follower waits this long for the leader, then answers 503 NO_LEADER. */
        actionTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 5000 }),
        /** The leader reads the queue (signals, decisions, broadcast commands, acks) this often besides on NOTIFY (a lost notification waits at most this). */
        queuePollMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 2000 }),
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
    alerts: AlertsConfig,
    broadcast: BroadcastConfig,
    video: VideoConfig,
    /** Where the gateway keeps its files (spool, operational store, alarm snapshots). */
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
        /** IANA time zone of the site: incident numbers, daily schedules and the fire danger day follow it. */
        timeZone: Type.String({ default: 'Asia/Shanghai', minLength: 1 }),
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
export type AlertsConfig = Static<typeof AlertsConfig>;
export type BroadcastConfig = Static<typeof BroadcastConfig>;
export type VideoConfig = Static<typeof VideoConfig>;
export type AgentConfig = Static<typeof AgentConfig>;
export type SimulatorConfig = Static<typeof SimulatorConfig>;
