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
      help: 'Points dropped because the in-memory buffer was full while InfluxDB was down',
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
      help: 'Points waiting to be written to InfluxDB',
      registers: [registry],
    }),
    mqttClients: new Gauge({ name: 'gs_mqtt_clients', help: 'Connected MQTT clients', registers: [registry] }),
    wsClients: new Gauge({ name: 'gs_ws_clients', help: 'Connected dashboard WebSocket clients', registers: [registry] }),
    devicesByStatus: new Gauge({
      name: 'gs_devices',
      help: 'Ledger devices by kind and availability',
      labelNames: ['kind', 'status'] as const,
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
