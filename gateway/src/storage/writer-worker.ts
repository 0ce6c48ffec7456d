/**
 * The storage worker thread: hosts the spool and the InfluxDB writer (InlineSeriesWriter) off the
 * ingest thread. The main thread sends batches of lines; this thread appends them to the spool,
 * says when each batch is on disk (the broker then sends its PUBACKs), and drains the spool to
 * InfluxDB. Logs, metrics and status changes go back to the main thread as messages.
 * Protocol: worker-writer.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createTarget } from './target.js';
import type { WriterLog, WriterLogFn, WriterMetrics } from './types.js';
import type { FromWorker, Progress, ToWorker, WorkerInit } from './worker-writer.js';
import { InlineSeriesWriter } from './writer.js';

const port = parentPort;
if (!port) throw new Error('writer-worker.ts runs as a worker thread (see worker-writer.ts)');
const init = workerData as WorkerInit;
const post = (m: FromWorker) => port.postMessage(m);

function forwardingLog(bindings: Record<string, unknown>): WriterLog {
  const fn =
    (level: 'debug' | 'info' | 'warn' | 'error'): WriterLogFn =>
    (obj: object | string, msg?: string) => {
      if (typeof obj === 'string') post({ t: 'log', level, bindings, obj: {}, msg: obj });
      else post({ t: 'log', level, bindings, obj, msg });
    };
  return { debug: fn('debug'), info: fn('info'), warn: fn('warn'), error: fn('error'), child: (more) => forwardingLog({ ...bindings, ...more }) };
}

let received = 0;
let receivedBytes = 0;
let progressQueued = false;
let writer: InlineSeriesWriter | undefined;

const progress = (): Progress => ({ backlog: writer?.buffered ?? 0, bytes: writer?.bytes ?? 0, received, receivedBytes });
/**
 * Backlog and spool size for the main thread's gauges, `buffered` and `full`: once per turn of
 * this thread's work (a write acknowledged, a batch appended), not once per call.
 */
let appending = false;
function scheduleProgress(): void {
  // An append's progress goes out with its 'committed' answer.
  if (progressQueued || appending) return;
  progressQueued = true;
  queueMicrotask(() => {
    progressQueued = false;
    post({ t: 'progress', progress: progress() });
  });
}

const metric = (name: 'spoolCommitSeconds' | 'writeLatency' | 'pointsWritten' | 'pointsDropped' | 'writeErrors') => (value: number) =>
  post({ t: 'metric', name, value });
const metrics: WriterMetrics = {
  spoolCommitSeconds: { observe: metric('spoolCommitSeconds') },
  writeLatency: { observe: metric('writeLatency') },
  pointsWritten: { inc: (n = 1) => metric('pointsWritten')(n) },
  pointsDropped: { inc: (n = 1) => metric('pointsDropped')(n) },
  writeErrors: { inc: (n = 1) => metric('writeErrors')(n) },
  bufferedPoints: { set: scheduleProgress },
  spoolBytes: { set: scheduleProgress },
};

port.on('message', (m: ToWorker) => {
  if (m.t === 'append') {
    const w = writer;
    if (!w) return post({ t: 'commitFailed', group: m.group, message: 'storage worker not started', progress: progress() });
    appending = true;
    try {
      w.appendChunk(m.bytes, m.lines);
    } finally {
      appending = false;
    }
    received += m.lines;
    receivedBytes += m.bytes.byteLength;
    const barrier = w.barrier();
    if (!barrier) return post({ t: 'commitFailed', group: m.group, message: 'storage is stopping', progress: progress() });
    barrier.then(
      () => post({ t: 'committed', group: m.group, progress: progress() }),
      (err: Error) => post({ t: 'commitFailed', group: m.group, message: err.message, progress: progress() }),
    );
  } else if (m.t === 'stop') {
    void (writer?.stop() ?? Promise.resolve()).then(
      () => {
        post({ t: 'stopped', progress: progress() });
      },
      (err: Error) => post({ t: 'stopped', progress: progress(), error: err.message }),
    );
  }
});

try {
  writer = new InlineSeriesWriter({
    config: init.config,
    // The main thread already gathers each batch for commitIntervalMs: commit what arrives at once.
    spool: { ...init.spool, commitIntervalMs: 0 },
    log: forwardingLog({}),
    onStatus: (status) => post({ t: 'status', status }),
    metrics,
    target: createTarget(init.config),
  });
  await writer.start();
  post({ t: 'started', status: writer.status, progress: progress() });
} catch (err) {
  post({ t: 'startFailed', message: (err as Error).message });
}
