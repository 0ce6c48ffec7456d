/**
 * One browser watching one camera stream. Media is never queued without bound: when the socket's
 * unsent bytes would pass the limit, the viewer skips media up to the next key frame and resumes
 * there once its link has drained. For fmp4 the skipped time is taken out of this viewer's
 * timeline (its fragments' decode times are shifted back by it), so its player sees one
 * continuous stream that jumps ahead in content rather than a gap it would stall at.
 */
import type { WebSocket } from 'ws';
import type { VideoServerMessage } from '../../../protocol/video.js';
import { withDecodeTime, type FragmentInfo } from './fmp4.js';

export interface MediaSegment {
  data: Buffer;
  keyframe: boolean;
  /** fmp4 only */
  fragment?: FragmentInfo;
}

export interface ViewerHooks {
  maxBufferedBytes: number;
  onBytes(n: number): void;
  onDrop(): void;
}

const OPEN = 1;

export class Viewer {
  readonly socket: WebSocket;
  readonly username: string;
  readonly since = Date.now();
  #hooks: ViewerHooks;
  /** media waits for a key frame: at the start of each stream epoch and after a drop */
  #waitKey = true;
  #sentMedia = false;
  /** decode-time units taken out of this viewer's timeline by drops */
  #shift = 0;
  #dropFrom: number | null = null;
  /** answered the last ping */
  alive = true;
  dropped = 0;

  constructor(socket: WebSocket, username: string, hooks: ViewerHooks) {
    this.socket = socket;
    this.username = username;
    this.#hooks = hooks;
    socket.on('pong', () => (this.alive = true));
  }

  get open(): boolean {
    return this.socket.readyState === OPEN;
  }

  send(message: VideoServerMessage): void {
    if (!this.open) return;
    const text = JSON.stringify(message);
    this.socket.send(text);
    this.#hooks.onBytes(Buffer.byteLength(text));
  }

  /** A new stream epoch: what the media is (and its init segment), then media from a key frame. */
  startEpoch(codec: VideoServerMessage, init: Buffer | null): void {
    this.#waitKey = true;
    this.#sentMedia = false;
    this.#shift = 0;
    this.#dropFrom = null;
    this.send(codec);
    if (init && this.open) {
      this.socket.send(init, { binary: true });
      this.#hooks.onBytes(init.length);
    }
  }

  media(seg: MediaSegment): void {
    if (!this.open) return;
    const buffered = this.socket.bufferedAmount;
    const max = this.#hooks.maxBufferedBytes;
    if (this.#waitKey) {
      // Resume only at a key frame and once the backlog is mostly gone.
      if (!seg.keyframe || buffered > max / 4) {
        if (this.#sentMedia) this.#drop(seg);
        return;
      }
      if (this.#dropFrom !== null && seg.fragment) this.#shift += seg.fragment.decodeTime - this.#dropFrom;
      this.#dropFrom = null;
      this.#waitKey = false;
    } else if (buffered + seg.data.length > max) {
      this.#waitKey = true;
      this.#drop(seg);
      return;
    }
    const data = seg.fragment && this.#shift !== 0 ? withDecodeTime(seg.data, seg.fragment, seg.fragment.decodeTime - this.#shift) : seg.data;
    this.socket.send(data, { binary: true });
    this.#sentMedia = true;
    this.#hooks.onBytes(data.length);
  }

  #drop(seg: MediaSegment): void {
    if (this.#dropFrom === null && seg.fragment) this.#dropFrom = seg.fragment.decodeTime;
    this.dropped++;
    this.#hooks.onDrop();
  }

  /** Sends the error and closes; the reason is cut to the 123 bytes a close frame allows. */
  fail(code: number, message: Extract<VideoServerMessage, { type: 'error' }>): void {
    this.send(message);
    this.close(code, message.code);
  }

  close(code: number, reason: string): void {
    if (this.socket.readyState > OPEN) return;
    this.socket.close(code, Buffer.from(reason).subarray(0, 123).toString());
  }
}
