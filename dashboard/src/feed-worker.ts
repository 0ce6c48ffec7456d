/**
 * The dedicated worker that holds the live feed's WebSocket (feed-connection.ts): it receives
 * frames on its own thread, parses binary frames of JSON (the device snapshot) here, and passes
 * everything on to the page in order. One worker per connection; it ends when the socket closes.
 */
import { binaryFrame, packSnapshotColumns, type FeedFrame, type FromFeedWorker, type ToFeedWorker } from './feed-connection.js';

/** The dedicated worker's global scope, as much of it as this uses (the project's lib is DOM). */
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<ToFeedWorker>) => void) | null;
  postMessage(message: FromFeedWorker, transfer?: Transferable[]): void;
  close(): void;
};

let ws: WebSocket | null = null;

function post(frame: FeedFrame): void {
  const transfer = frame.kind === 'binary' ? [frame.data] : frame.kind === 'json' ? packSnapshotColumns(frame.value) : [];
  scope.postMessage({ type: 'frame', frame }, transfer);
}

scope.onmessage = (event) => {
  const m = event.data;
  if (m.type === 'connect' && ws === null) {
    try {
      ws = new WebSocket(m.url);
    } catch {
      scope.postMessage({ type: 'closed' });
      scope.close();
      return;
    }
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e: MessageEvent) => {
      if (typeof e.data === 'string') post({ kind: 'text', text: e.data });
      else if (e.data instanceof ArrayBuffer) post(binaryFrame(e.data));
    };
    // 'error' is always followed by 'close'.
    ws.onclose = () => {
      scope.postMessage({ type: 'closed' });
      scope.close();
    };
  } else if (m.type === 'close') {
    ws?.close(m.code, m.reason);
  }
};
