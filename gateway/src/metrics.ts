/**
 * Prometheus metrics for the gateway, in one registry per gateway instance (so tests can build
 * several gateways in one process). Exposed at GET /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gs_' });
  return {
    registry,
    messagesIn: new Counter({
      name: 'gs_mqtt_messages_in_total',
      help: 'MQTT messages received on device and agent topics, by channel',
      labelNames: ['channel'] as const,
      registers: [registry],
    }),
    messagesRejected: new Counter({
      name: 'gs_mqtt_messages_rejected_total',
      help: 'Messages rejected by ingest, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    duplicates: new Counter({
      name: 'gs_mqtt_messages_duplicate_total',
      help: 'Messages dropped as duplicates of (device, seq, ts) already seen',
      registers: [registry],
    }),
    pointsWritten: new Counter({
      name: 'gs_influx_points_written_total',
      help: 'Points InfluxDB acknowledged',
      registers: [registry],
    }),
    pointsDropped: new Counter({
      name: 'gs_influx_points_dropped_total',
      help: 'Points InfluxDB refused as invalid (e.g. a field type conflict); retrying cannot store them',
      registers: [registry],
    }),
    writeErrors: new Counter({
      name: 'gs_influx_write_errors_total',
      help: 'Failed InfluxDB write attempts (each is retried)',
      registers: [registry],
    }),
    writeLatency: new Histogram({
      name: 'gs_influx_write_seconds',
      help: 'Duration of successful InfluxDB batch writes',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    bufferedPoints: new Gauge({
      name: 'gs_influx_buffered_points',
      help: 'Points accepted (in the spool) and not yet written to InfluxDB',
      registers: [registry],
    }),
    spoolBytes: new Gauge({ name: 'gs_spool_bytes', help: 'Bytes in the write-ahead spool on disk', registers: [registry] }),
    spoolCommitSeconds: new Histogram({
      name: 'gs_spool_commit_seconds',
      help: 'Duration of spool group commits (write + fdatasync)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
    spoolRefused: new Counter({
      name: 'gs_spool_refused_total',
      help: 'Publishes refused (connection closed, not acknowledged) because the spool was full or failed',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    mqttClients: new Gauge({ name: 'gs_mqtt_clients', help: 'Connected MQTT clients', registers: [registry] }),
    mqttWaitingPublishes: new Gauge({
      name: 'gs_mqtt_waiting_publishes',
      help: 'Embedded broker: QoS1 publishes held in memory waiting for the spool commit (capped by gateway.mqtt.maxWaitingPublishes)',
      registers: [registry],
    }),
    mqttReadsDeferred: new Counter({
      name: 'gs_mqtt_reads_deferred_total',
      help: 'Embedded broker: times a readable connection was left unread because gateway.mqtt.maxWaitingPublishes publishes were waiting',
      registers: [registry],
    }),
    mqttBrokerConnected: new Gauge({
      name: 'gs_mqtt_broker_connected',
      help: 'External broker mode: 1 while connected and subscribed to the broker, else 0',
      registers: [registry],
    }),
    mqttBrokerDisconnects: new Counter({
      name: 'gs_mqtt_broker_disconnects_total',
      help: 'External broker mode: connections to the broker lost, and connection attempts that failed',
      registers: [registry],
    }),
    mqttBrokerInflight: new Gauge({
      name: 'gs_mqtt_broker_inflight',
      help: 'External broker mode: messages received and not yet acknowledged (waiting for the spool)',
      registers: [registry],
    }),
    clusterMessages: new Counter({
      name: 'gs_cluster_messages_total',
      help: 'Cluster fan-out messages between gateway instances, by direction (sent, received, rejected) and kind (delta, snapshot, hello)',
      labelNames: ['direction', 'kind'] as const,
      registers: [registry],
    }),
    clusterDeviceUpdates: new Counter({
      name: 'gs_cluster_device_updates_total',
      help: 'Device updates from other gateway instances applied to this registry (a change here) or ignored (nothing new)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    clusterLeader: new Gauge({
      name: 'gs_cluster_leader',
      help: '1 while this instance leads (runs incident correlation, escalations and offline checks), else 0; a single SQLite gateway is always 1',
      registers: [registry],
    }),
    clusterLeaderChanges: new Counter({
      name: 'gs_cluster_leader_changes_total',
      help: 'Times this instance started (to="leader") or stopped (to="follower") leading',
      labelNames: ['to'] as const,
      registers: [registry],
    }),
    clusterQueue: new Counter({
      name: 'gs_cluster_queue_total',
      help: 'Signals, incident decisions, broadcast commands and pole acks handed to the leader, by kind (signal, action, broadcast, ack) and outcome (queued, applied, duplicate, refused, dropped, timeout)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    wsClients: new Gauge({ name: 'gs_ws_clients', help: 'Connected dashboard WebSocket clients', registers: [registry] }),
    devicesByStatus: new Gauge({
      name: 'gs_devices',
      help: 'Ledger devices by kind and availability',
      labelNames: ['kind', 'status'] as const,
      registers: [registry],
    }),
    mqttAuthDenied: new Counter({
      name: 'gs_mqtt_auth_denied_total',
      help: 'Refused MQTT CONNECTs, by reason (anonymous, unknown_user, bad_password, client_id, will, rate_limited)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    mqttConnectionsRefused: new Counter({
      name: 'gs_mqtt_connections_refused_total',
      help: 'Embedded broker: MQTT connections closed on arrival because gateway.mqtt.maxConnections were open, by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    mqttMaxConnections: new Gauge({
      name: 'gs_mqtt_max_connections',
      help: 'Embedded broker: MQTT connections it holds at most (gateway.mqtt.maxConnections, resolved); -1: no cap (the open-file limit is unknown)',
      registers: [registry],
    }),
    mqttAclDenied: new Counter({
      name: 'gs_mqtt_acl_denied_total',
      help: 'PUBLISHes dropped and SUBSCRIBEs refused by the broker ACL, by action',
      labelNames: ['action'] as const,
      registers: [registry],
    }),
    mqttAuthVerifications: new Counter({
      name: 'gs_mqtt_auth_verifications_total',
      help: 'Secret checks on CONNECT, by method (cache: remembered from an earlier success; scrypt) and result',
      labelNames: ['method', 'result'] as const,
      registers: [registry],
    }),
    alertSignals: new Counter({
      name: 'gs_alert_signals_total',
      help: 'Signals the alert rules produced, by kind and outcome (new_incident, joined, repeat, cleared, ignored_low_confidence)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    incidentsOpen: new Gauge({
      name: 'gs_incidents_open',
      help: 'Open incidents by category and status',
      labelNames: ['category', 'status'] as const,
      registers: [registry],
    }),
    incidentEscalations: new Counter({
      name: 'gs_incident_escalations_total',
      help: 'Incidents moved up a level because nobody acknowledged them in time, by the level reached',
      labelNames: ['level'] as const,
      registers: [registry],
    }),
    incidentNotifications: new Counter({
      name: 'gs_incident_notifications_total',
      help: 'Dispatch notifications by channel and result (sent, failed)',
      labelNames: ['channel', 'result'] as const,
      registers: [registry],
    }),
    alertLatency: new Histogram({
      name: 'gs_alert_latency_seconds',
      help: 'Gateway receipt of a device signal to the incident change being pushed to dashboards',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: 'gs_store_errors_total',
      help: 'Operational store calls that failed the gateway’s own timed work (escalation, fire danger rating, broadcast runs and progress, deferred signals), by operation; the work is retried',
      labelNames: ['operation'] as const,
      registers: [registry],
    }),
    broadcastJobs: new Counter({
      name: 'gs_broadcast_jobs_total',
      help: 'Broadcast jobs created, by priority',
      labelNames: ['priority'] as const,
      registers: [registry],
    }),
    broadcastDeliveries: new Counter({
      name: 'gs_broadcast_deliveries_total',
      help: 'Per-pole broadcast deliveries by final state (done, failed, expired, preempted, cancelled), counted when their run ends',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    broadcastTimeToPlaying: new Histogram({
      name: 'gs_broadcast_time_to_playing_seconds',
      help: 'From the start of a broadcast run to a pole acking playing, by priority (an offline pole that plays on its return counts its wait)',
      labelNames: ['priority'] as const,
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800],
      registers: [registry],
    }),
    broadcastCommands: new Counter({
      name: 'gs_broadcast_commands_total',
      help: 'Broadcast commands published to poles, by kind (play: first send of a command id; resend: same id again; stop)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    broadcastJobsOpen: new Gauge({
      name: 'gs_broadcast_jobs_open',
      help: 'Broadcast jobs scheduled or being delivered',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    videoStreams: new Gauge({
      name: 'gs_video_streams',
      help: 'Camera streams the video relay holds open (one ffmpeg each), by format (fmp4 remux, mpeg1 transcode) and state',
      labelNames: ['format', 'state'] as const,
      registers: [registry],
    }),
    videoViewers: new Gauge({ name: 'gs_video_viewers', help: 'Browsers watching live video, by format', labelNames: ['format'] as const, registers: [registry] }),
    videoBytesOut: new Counter({ name: 'gs_video_bytes_out_total', help: 'Bytes of live video (and its messages) sent to viewers, by format', labelNames: ['format'] as const, registers: [registry] }),
    videoRestarts: new Counter({ name: 'gs_video_stream_restarts_total', help: 'Camera streams re-opened after they dropped, by format', labelNames: ['format'] as const, registers: [registry] }),
    videoDropped: new Counter({ name: 'gs_video_segments_dropped_total', help: 'Media segments skipped for slow viewers (each resumes at the next key frame)', registers: [registry] }),
    videoRefused: new Counter({ name: 'gs_video_refused_total', help: 'Live video requests refused, by reason (stream_limit, not_found, no_stream, codec)', labelNames: ['reason'] as const, registers: [registry] }),
    videoSnapshots: new Counter({ name: 'gs_video_snapshots_total', help: 'Alarm snapshots, by result (stored, failed, skipped)', labelNames: ['result'] as const, registers: [registry] }),
    ptzCommands: new Counter({ name: 'gs_ptz_commands_total', help: 'PTZ requests sent to cameras through their agents, by action and result (ack status, or timeout)', labelNames: ['action', 'result'] as const, registers: [registry] }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
