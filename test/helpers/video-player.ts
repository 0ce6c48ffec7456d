/**
 * A minimal MSE player for `/api/video/:cameraId/live`, as a page the browser tests (and
 * bench/video.ts) serve from the gateway itself (through `dashboardDir`, so the session cookie
 * is same-origin). It is also the smallest complete example of the protocol in docs/video.md:
 * a `codec` message starts a new MediaSource, binary frames are appended in order, the player
 * keeps near the live edge and trims what it has played.
 *
 * What it saw is in `window.__video`; `window.__grab(x, y, w, h)` returns the pixels of a region
 * of the current frame (to see the camera's drawn clock change).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PLAYER_HTML = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>video test player</title></head>
<body style="margin:0;background:#111">
<video id="v" muted playsinline style="width:640px;height:360px"></video>
<script>
const video = document.getElementById('v');
const seen = (window.__video = { states: [], codecs: [], errors: [], frames: 0, firstFrameMs: null, openedMs: null, mediaTimes: [], bytes: 0, closed: null });

/** Opens the live socket (of this page's origin unless another gateway host is given) and plays it; watch window.__video. */
window.startPlayer = (cameraId, format, host) => {
  const t0 = performance.now();
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + (host || location.host) + '/api/video/' + encodeURIComponent(cameraId) + '/live' + (format ? '?format=' + format : ''));
  ws.binaryType = 'arraybuffer';
  window.__ws = ws;
  let sourceBuffer = null;
  let queue = [];
  const pump = () => {
    if (!sourceBuffer || sourceBuffer.updating || queue.length === 0) return;
    sourceBuffer.appendBuffer(queue.shift());
  };
  const keepLive = () => {
    const b = video.buffered;
    if (b.length === 0) return;
    const end = b.end(b.length - 1);
    // Start where the data starts (the first fragment's decode time is not 0), and stay within ~1 s of live.
    if (video.currentTime < b.start(0) || end - video.currentTime > 1.5) video.currentTime = Math.max(b.start(b.length - 1), end - 0.3);
    // Trim what was played long ago so the SourceBuffer does not fill up.
    if (!sourceBuffer.updating && video.currentTime - b.start(0) > 30) sourceBuffer.remove(b.start(0), video.currentTime - 10);
    if (video.paused) video.play().catch(() => undefined);
  };
  // A codec message begins a stream epoch: a fresh MediaSource for the init segment that follows.
  const newEpoch = (codec) => {
    queue = [];
    sourceBuffer = null;
    const ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    ms.addEventListener('sourceopen', () => {
      sourceBuffer = ms.addSourceBuffer(codec.mimeType);
      sourceBuffer.mode = 'segments';
      sourceBuffer.addEventListener('updateend', () => { keepLive(); pump(); });
      pump();
    }, { once: true });
  };
  ws.onopen = () => (seen.openedMs = performance.now() - t0);
  ws.onclose = (e) => (seen.closed = { code: e.code, reason: e.reason });
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      const m = JSON.parse(e.data);
      if (m.type === 'state') seen.states.push(m.state);
      else if (m.type === 'codec') { seen.codecs.push(m); newEpoch(m); }
      else if (m.type === 'error') seen.errors.push(m);
      return;
    }
    seen.bytes += e.data.byteLength;
    queue.push(e.data);
    pump();
  };
  const onFrame = (_now, meta) => {
    seen.frames++;
    if (seen.firstFrameMs === null) seen.firstFrameMs = performance.now() - t0;
    seen.mediaTimes.push(meta.mediaTime);
    if (seen.mediaTimes.length > 1000) seen.mediaTimes.shift();
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
};

/** RGBA bytes of a region of the current frame, at the video's own resolution. */
window.__grab = (x, y, w, h) => {
  const c = document.createElement('canvas');
  c.width = video.videoWidth;
  c.height = video.videoHeight;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(video, 0, 0);
  return Array.from(g.getImageData(x, y, w, h).data);
};
</script>
</body>
</html>
`;

/** A directory holding the player as index.html, to pass as the gateway's `dashboardDir`. */
export function writePlayerDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), PLAYER_HTML);
  return dir;
}
