/**
 * The page's first script (index.html loads it before the stylesheets and the app bundle): asks
 * for the session, the site and the tank thresholds and opens the live feed (in its worker,
 * feed-connection.ts) at once, so that these round trips and the gateway's device snapshot overlap
 * the app bundle's download, compile and start instead of following them. The snapshot, parsed by
 * the worker, is decoded into devices as soon as it arrives. The app takes all of it over
 * (early.ts); without a session every request is refused (401) and the app drops it all.
 *
 * Kept small and free of app imports: it runs before anything else on the page.
 */
import { decodeDeviceSnapshot } from './device-snapshot.js';
import { EARLY_PATHS, liveSocketUrl, readJsonAnswer, type EarlyFrame, type EarlySocket, type JsonAnswer } from './early.js';
import { openFeedConnection, type FeedFrame } from './feed-connection.js';

function get(path: string): Promise<JsonAnswer> {
  return fetch(path, { headers: { accept: 'application/json' }, credentials: 'same-origin' }).then(readJsonAnswer);
}

/** The device snapshot (parsed by the feed worker) decoded into devices now; anything else kept as it came. */
function early(frame: FeedFrame): EarlyFrame {
  if (frame.kind !== 'json' || frame.value.type !== 'devices.snapshot') return frame;
  const started = performance.now();
  const devices = decodeDeviceSnapshot(frame.value);
  // As LiveSocket measures it (bench/map.ts reads it): the page's part; the worker's parse apart.
  performance.measure('gs:snapshot-parse', { start: started });
  performance.measure('gs:snapshot-worker-parse', { start: started - frame.parseMs, end: started });
  return { kind: 'snapshot', devices };
}

function openSocket(): EarlySocket | null {
  let conn;
  try {
    conn = openFeedConnection(liveSocketUrl());
  } catch {
    return null;
  }
  const frames: EarlyFrame[] = [];
  // Replaced by the app's own handlers when it takes the connection over (LiveSocket).
  conn.onframe = (frame) => frames.push(early(frame));
  return { conn, frames };
}

// The socket first: the gateway encodes the device snapshot as soon as it accepts the upgrade,
// and that is the longest of these on its side.
performance.mark('gs:boot');
const socket = openSocket();
window.__gsEarly = {
  me: get(EARLY_PATHS.me),
  site: get(EARLY_PATHS.site),
  tanks: get(EARLY_PATHS.tanks),
  socket,
};
// A rejected request is handled when the app takes it; until then it must not count as unhandled.
for (const r of [window.__gsEarly.me, window.__gsEarly.site, window.__gsEarly.tanks]) r.catch(() => undefined);
